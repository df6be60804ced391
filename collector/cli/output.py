"""Output a script can trust: a machine format reaches standard output whole or not at all.

A command printing ``--format json`` or ``csv`` writes into a buffer (memory, spilling to a
temporary file past :data:`SPILL_BYTES`); only when its handler returns is the buffer copied to
the real standard output. When the handler raises (the collector stopped answering half-way
through a stream, a deadline passed, ...) the buffer is dropped: the caller's error handling
prints the reason on standard error and exits non-zero, and standard output stays empty, so a
script never parses half a JSON document or a CSV cut after some rows.

Human formats (tables, text) are not held back: they show progress as it comes.
"""
from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from typing import Iterator

#: formats a program reads: written only when complete
MACHINE_FORMATS = frozenset({"json", "csv"})
#: how much output stays in memory before the buffer moves to a temporary file
SPILL_BYTES = 8 * 1024 * 1024


@contextlib.contextmanager
def complete_output(fmt: str | None) -> Iterator[None]:
    """Hold standard output for a machine format ``fmt`` until the block ends without an exception."""
    if fmt not in MACHINE_FORMATS:
        yield
        return
    real = sys.stdout
    with tempfile.SpooledTemporaryFile(max_size=SPILL_BYTES, mode="w+", encoding="utf-8", newline="") as buf:
        sys.stdout = buf  # type: ignore[assignment] - a text file, as print() and the writers need
        try:
            yield
        finally:
            sys.stdout = real
        # only reached when the block returned: the output is complete
        buf.seek(0)
        shutil.copyfileobj(buf, real)
        real.flush()

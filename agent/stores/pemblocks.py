"""Finding the blocks of a PEM file, damaged ones included: every block is a block or a problem.

:func:`scan_pem` walks a PEM buffer (``bytes``, or an ``mmap`` for a large file) and yields, in
file order, a :class:`Block` for every well-formed ``-----BEGIN X----- ... -----END X-----``
block and a :class:`BlockProblem` for every block it cannot take as one: a damaged BEGIN line, a
damaged or missing END line (the next block's BEGIN comes first: the two would merge), an END
line without its BEGIN, a file that ends inside a block. Each carries its block number (1, 2, ...
in file order) and the byte offset where it starts, so the reader can say which block was lost.

No parsing beyond the boundary lines: finding the next ``-----`` is ``bytes.find``; base64 lines
never hold a ``-``. Text between blocks (openssl's "Bag Attributes", ``subject=`` lines) is ignored.
A boundary line may share a physical line with base64 or another boundary (a PEM file written on
one line, or two files concatenated without a newline).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, Union

__all__ = ["Block", "BlockProblem", "scan_pem", "well_formed"]

_DASHES = b"-----"
_MARKER = re.compile(rb"-----(BEGIN|END) ([\x20-\x2c\x2e-\x7e]{1,64})-----\Z")


@dataclass(slots=True)
class Block:
    """A well-formed block: ``buffer[offset:end]`` is the whole block, ``buffer[body_start:body_end]`` its body.

    ``at`` is its byte offset in the file (``offset`` plus where the buffer starts in the file).
    """

    index: int
    offset: int
    label: bytes
    body_start: int
    body_end: int
    end: int
    at: int


@dataclass(frozen=True, slots=True)
class BlockProblem:
    """A block that cannot be taken: ``reason`` is a ScanProblem reason code (corrupt, truncated)."""

    index: int
    offset: int
    reason: str
    message: str


def _text(raw: bytes, limit: int = 60) -> str:
    s = raw.decode("ascii", "replace").strip()
    return s if len(s) <= limit else s[:limit] + "..."


def well_formed(buf) -> list[tuple[bytes, int, int, int, int]] | None:  # noqa: ANN001 - bytes or mmap
    """``(label, start, body_start, body_end, end)`` of every block when each is whole and well formed, and no
    dashes hide between them; None otherwise (the careful walk below then finds what is wrong)."""
    find, startswith = buf.find, buf.startswith
    out = []
    pos, n = 0, len(buf)
    while True:
        b = find(b"-----BEGIN ", pos)
        if find(_DASHES, pos, n if b < 0 else b) >= 0:
            return None                               # a stray or damaged boundary between blocks
        if b < 0:
            return out
        if b and buf[b - 1] != 10:
            return None                               # a BEGIN line that shares its line
        close = find(_DASHES, b + 11)
        label = buf[b + 11:close]
        if close < 0 or not label or len(label) > 64 or b"\n" in label or b"-" in label:
            return None
        body = close + 5
        e = find(b"-", body)
        end_marker = b"-----END " + label + _DASHES
        if e < 0 or not startswith(end_marker, e):
            return None
        out.append((label, b, body, e, e + len(end_marker)))
        pos = e + len(end_marker)


def _tokens(buf, start: int = 0) -> Iterator[tuple[int, int, str, bytes]]:  # noqa: ANN001 - bytes or mmap
    """``(offset, end, kind, label_or_token)`` of each boundary: kind BEGIN, END, or ``damaged``."""
    n = len(buf)
    pos = start
    find, rfind, match = buf.find, buf.rfind, _MARKER.match
    while pos < n:
        i = find(_DASHES, pos)
        if i < 0:
            return
        if i != pos and buf[i - 1] != 10:             # not at the start of a line: what comes before?
            line_start = max(pos, rfind(b"\n", 0, i) + 1)
            prefix = bytes(buf[line_start:i]).strip()
            if prefix.startswith(b"-") or (b" " in prefix and (b"BEGIN" in prefix or b"END" in prefix)):
                # the leading dashes are damaged ("----BEGIN CERTIFICATE-----"): the token starts at the line
                yield line_start, i + 5, "damaged", bytes(buf[line_start:i + 5])
                pos = i + 5
                continue
        line_end = find(b"\n", i)
        if line_end < 0:
            line_end = n
        close = find(_DASHES, i + 5, line_end)
        end = close + 5 if close >= 0 else line_end
        m = match(buf[i:end])
        if m is not None:
            yield i, end, m.group(1).decode(), m.group(2)
        else:
            yield i, end, "damaged", bytes(buf[i:end]).rstrip(b"\r \t")
        pos = end


def scan_pem(buf, base: int = 0, index: int = 0) -> Iterator[Union[Block, BlockProblem]]:  # noqa: ANN001
    """Every block of ``buf`` in order, each a :class:`Block` or a :class:`BlockProblem`.

    ``buf`` is bytes (or an mmap). When it is a part of a file, ``base`` is where it starts in the file
    and ``index`` the number of blocks before it; a part must start outside a block (after an END line).
    """
    fast = well_formed(buf)
    if fast is not None:                  # the common case: every block whole, nothing damaged between them
        for label, start, body_start, body_end, end in fast:
            index += 1
            yield Block(index, start, label, body_start, body_end, end, base + start)
        return
    open_label: bytes | None = None       # the open block's label (None: outside a block)
    open_at = open_local = body_at = 0
    skipping = False                      # inside a block whose BEGIN line was damaged (already reported)
    for offset, end, kind, what in _tokens(buf):
        local = offset
        offset += base
        if kind == "damaged":
            looks_end = b"END" in what and b"BEGIN" not in what
            if open_label is not None:
                yield BlockProblem(index, open_at, "corrupt",
                                   f"block {index} ({_text(open_label)}, at byte {open_at}) has a damaged END line "
                                   f"at byte {offset} ({_text(what)!r}); the block is skipped")
                open_label = None
                skipping = not looks_end and b"BEGIN" in what
                if skipping:
                    index += 1
                    yield BlockProblem(index, offset, "corrupt",
                                       f"block {index} at byte {offset} has a damaged BEGIN line ({_text(what)!r}); "
                                       "the block is skipped")
                continue
            if skipping and looks_end:
                skipping = False                  # the damaged block's END line
                continue
            index += 1
            if looks_end:
                yield BlockProblem(index, offset, "corrupt",
                                   f"block {index}: a damaged END line at byte {offset} ({_text(what)!r}) "
                                   "without its BEGIN line; the block is skipped")
            else:
                reason = "truncated" if end >= len(buf) and b"\n" not in what else "corrupt"
                yield BlockProblem(index, offset, reason,
                                   f"block {index} at byte {offset} has a damaged BEGIN line ({_text(what)!r}); "
                                   "the block is skipped")
                skipping = True
            continue
        if kind == "BEGIN":
            if open_label is not None:
                yield BlockProblem(index, open_at, "corrupt",
                                   f"block {index} ({_text(open_label)}, at byte {open_at}) has no END line before "
                                   f"the next BEGIN line at byte {offset} (its END line is missing or damaged); "
                                   "the block is skipped")
            index += 1
            open_label, open_at, open_local, body_at, skipping = what, offset, local, end, False
            continue
        # END
        if open_label is None:
            if skipping:
                skipping = False
                continue
            index += 1
            yield BlockProblem(index, offset, "corrupt",
                               f"block {index}: an END {_text(what)} line at byte {offset} without its BEGIN line "
                               "(the BEGIN line is missing or damaged); the block is skipped")
            continue
        if what != open_label:
            yield BlockProblem(index, open_at, "corrupt",
                               f"block {index} ({_text(open_label)}, at byte {open_at}) ends with an END "
                               f"{_text(what)} line (the BEGIN or END line is damaged); the block is skipped")
        else:
            yield Block(index, open_local, open_label, body_at, local, end, open_at)
        open_label = None
    if open_label is not None:
        what = "a certificate block" if open_label.endswith(b"CERTIFICATE") else f"a {_text(open_label)} block"
        yield BlockProblem(index, open_at, "truncated",
                           f"the file ends inside {what} (block {index}, from byte {open_at}; "
                           f"no -----END {_text(open_label)}----- line)")

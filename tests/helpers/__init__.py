"""Test helpers as an importable package (``from tests.helpers.x import ...``), instead of
``sys.path`` edits in conftests: real servers and tools started on loopback (nginx, TLS servers,
SMTP), certificate and store makers, registry fixtures' building blocks."""

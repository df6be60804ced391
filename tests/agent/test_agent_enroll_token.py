"""Where `certfleet-agent enroll` takes its token from: exactly one source, never echoed."""
from __future__ import annotations

import io
import pytest

from agent.cli.enroll import TOKEN_ENV, EnrollError, read_token


def test_token_from_file_stdin_env_or_argument(tmp_path, monkeypatch) -> None:
    f = tmp_path / "token"
    f.write_text("cfe_fromfile\n")
    assert read_token(None, str(f), {}) == "cfe_fromfile"
    monkeypatch.setattr("sys.stdin", io.StringIO("cfe_fromstdin\n"))
    assert read_token(None, "-", {}) == "cfe_fromstdin"
    assert read_token(None, None, {TOKEN_ENV: " cfe_fromenv "}) == "cfe_fromenv"
    assert read_token("cfe_arg", None, {}) == "cfe_arg"


def test_token_sources_are_exclusive_and_errors_do_not_echo(tmp_path) -> None:
    with pytest.raises(EnrollError, match="no enrollment token"):
        read_token(None, None, {})
    with pytest.raises(EnrollError, match="--token and " + TOKEN_ENV):
        read_token("cfe_a", None, {TOKEN_ENV: "cfe_b"})
    with pytest.raises(EnrollError, match="cannot read the token file") as e:
        read_token(None, str(tmp_path / "missing"), {})
    bad = tmp_path / "bad"
    bad.write_text("cfe_secret and more words")
    with pytest.raises(EnrollError) as e:
        read_token(None, str(bad), {})
    assert "cfe_secret" not in str(e.value)

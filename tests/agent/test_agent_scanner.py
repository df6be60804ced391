"""The scanner: globs, symlinks, rescans and bad input, on real files."""
from __future__ import annotations

import logging
import os
import pwd
import shutil
import time
from pathlib import Path

import pytest

from agent.config import load_config
from agent.errors import AgentError
from agent.inventory import MATCHES
from agent.scan.scanner import Scanner, compile_glob

from tests.helpers.agent_stores import config_for, reasons, scan_by_path, store_toml, unprivileged, write_config


@pytest.fixture
def tree(samples: dict, tmp_path: Path) -> Path:
    """tree/a.pem, sub/b.pem, sub/deeper/c.pem, sub/dhparam.pem, sub/skip.bak, other/d.crt"""
    f = samples["files"]
    root = tmp_path / "tree"
    (root / "sub/deeper").mkdir(parents=True)
    (root / "other").mkdir()
    for rel, src in {"a.pem": "cert", "sub/b.pem": "expired", "sub/deeper/c.pem": "expiring_soon",
                     "sub/skip.bak": "cert", "other/d.crt": "cert"}.items():
        shutil.copyfile(f[src], root / rel)
    (root / "sub/dhparam.pem").write_bytes(b"-----BEGIN DH PARAMETERS-----\nMAYCAQI=\n-----END DH PARAMETERS-----\n")
    return root


def found(scans: dict, root: Path) -> set[str]:
    """Relative paths of files that gave certificates."""
    return {os.path.relpath(p, root) for p, fs in scans.items() if fs.entries}


def test_sample_stores_end_to_end(samples: dict) -> None:
    scanner = Scanner(load_config(samples["config_path"]))
    scans = scan_by_path(scanner)
    f = samples["files"]
    types = {name: scans[f[name]].store_type for name in ("cert", "der", "p12", "keytool_p12", "jks", "jceks")}
    assert types == {"cert": "pem", "der": "der", "p12": "pkcs12", "keytool_p12": "pkcs12", "jks": "jks",
                     "jceks": "jceks"}
    assert {name: reasons(scans[f[name]]) for name in ("empty", "truncated", "corrupt", "wrong_password")} == {
        "empty": ["empty"], "truncated": ["truncated"], "corrupt": ["corrupt"], "wrong_password": ["wrong_password"]}
    problems = [p for fs in scans.values() for p in fs.problems]
    assert len(problems) == 4
    c = scanner.counters
    assert (c.stores_scanned, c.files_seen, c.files_read, c.files_reused, c.problems) == (5, 20, 19, 0, 4)
    assert c.certificates == sum(len(fs.entries) for fs in scans.values()) == 26
    entry = scans[f["combined"]].entries[0]
    st = os.stat(f["combined"])
    assert entry.key_match == MATCHES
    owner = pwd.getpwuid(st.st_uid).pw_name
    assert (entry.file_owner, entry.file_mode, entry.file_mtime) == (owner, 0o600, st.st_mtime)
    assert dict(entry.labels) == {"environment": "sample", "service": "web", "owner": "web-team"}


def test_secrets_stay_out_of_problems_and_logs(samples: dict, caplog: pytest.LogCaptureFixture) -> None:
    secrets = [Path(p).read_text().strip() for p in samples["password_files"].values()]
    caplog.set_level(logging.DEBUG)
    scanner = Scanner(load_config(samples["config_path"]))
    scans = scan_by_path(scanner)
    text = repr(list(scans.values())) + caplog.text + repr(scanner.__dict__)
    for s in secrets:
        assert s not in text


def test_globs_and_excludes(tree: Path, tmp_path: Path) -> None:
    def run(*globs: str, **extra: object) -> set[str]:
        extra.setdefault("type", "pem")
        cfg = config_for(tmp_path, store_toml("s", [str(tree / g) for g in globs], **extra))  # type: ignore[arg-type]
        return found(scan_by_path(Scanner(cfg)), tree)

    assert run("**/*.pem", exclude=["**/dhparam.pem"]) == {"a.pem", "sub/b.pem", "sub/deeper/c.pem"}
    assert run("*/*.pem") == {"sub/b.pem"}
    assert run("**/a.pem") == {"a.pem"}                       # ** also matches no directory at all
    assert run("sub/**", type="auto", exclude=["*.bak", "dhparam.pem"]) == {"sub/b.pem", "sub/deeper/c.pem"}
    assert run("**/*.pem", exclude=[str(tree / "sub/deeper")]) == {"a.pem", "sub/b.pem"}
    assert run("**/*.pem", exclude=["**/deeper/**"]) == {"a.pem", "sub/b.pem"}
    assert run("[ab].pem", "sub/?.pem", "o*/*.crt") == {"a.pem", "sub/b.pem", "other/d.crt"}


def test_glob_compilation_prunes_to_the_fixed_prefix() -> None:
    g = compile_glob("/etc/nginx/**/ssl/*.pem")
    assert g.base == "/etc/nginx" and not g.literal
    lit = compile_glob("/srv/app/keystore.jks")
    assert lit.literal and lit.base == "/srv/app/keystore.jks"


def test_missing_paths(tree: Path, tmp_path: Path) -> None:
    cfg = config_for(tmp_path, store_toml("s", [str(tree / "nope/**/*.pem"), str(tree / "gone.jks"),
                                                str(tree / "a.pem")]))
    scans = scan_by_path(Scanner(cfg))
    # a glob whose directory is missing matches nothing, quietly; a named file that is missing is a problem
    assert set(scans) == {str(tree / "gone.jks"), str(tree / "a.pem")}
    p = scans[str(tree / "gone.jks")].problems[0]
    assert (p.reason, p.message, p.store_type) == ("vanished", "the configured file does not exist", "jks")


def test_a_file_in_two_stores_is_read_once_for_the_first(tree: Path, tmp_path: Path) -> None:
    cfg = config_for(tmp_path, store_toml("first", [str(tree / "*.pem"), str(tree / "a.pem")], labels={"owner": "one"}),
                     store_toml("second", [str(tree / "**/*.pem")], labels={"owner": "two"}))
    scanner = Scanner(cfg)
    scans = list(scanner.scan())
    paths = [fs.path for fs in scans]
    assert paths.count(str(tree / "a.pem")) == 1
    a = next(fs for fs in scans if fs.path == str(tree / "a.pem"))
    assert a.store_name == "first" and a.entries[0].labels["owner"] == "one"


def test_symlink_loops_and_dangling_links(tree: Path, tmp_path: Path) -> None:
    (tree / "sub/loop").symlink_to("..")                     # back to tree/
    (tree / "self.pem").symlink_to("self.pem")                # a file link that loops
    (tree / "gone.pem").symlink_to("missing.pem")             # dangling
    (tree / "link.pem").symlink_to("a.pem")
    cfg = config_for(tmp_path, store_toml("s", [str(tree / "**/*.pem")], exclude=["dhparam.pem"]))
    scans = scan_by_path(Scanner(cfg))
    assert found(scans, tree) == {"a.pem", "link.pem", "sub/b.pem", "sub/deeper/c.pem"}
    loop = scans[str(tree / "sub/loop")]
    assert reasons(loop) == ["symlink_loop"] and str(tree) in loop.problems[0].message
    assert reasons(scans[str(tree / "self.pem")]) == ["symlink_loop"]
    gone = scans[str(tree / "gone.pem")].problems[0]
    assert gone.reason == "vanished" and "dangling symbolic link" in gone.message and "missing.pem" in gone.message


def test_directory_reached_twice_is_walked_once(tree: Path, tmp_path: Path) -> None:
    (tree / "alias").symlink_to("sub")
    cfg = config_for(tmp_path, store_toml("s", [str(tree / "**/b.pem")]))
    scans = scan_by_path(Scanner(cfg))
    assert len([p for p in scans if p.endswith("b.pem")]) == 1
    assert all(not fs.problems for fs in scans.values())


def test_follow_symlinks_false_skips_links(tree: Path, tmp_path: Path) -> None:
    (tree / "alias").symlink_to("sub")
    (tree / "link.pem").symlink_to("a.pem")
    cfg = config_for(tmp_path, store_toml("s", [str(tree / "**/*.pem"), str(tree / "link.pem")], type="pem",
                                          follow_symlinks=False, exclude=["dhparam.pem"]))
    scans = scan_by_path(Scanner(cfg))
    assert found(scans, tree) == {"a.pem", "sub/b.pem", "sub/deeper/c.pem"}
    # named explicitly, the link is reported rather than silently ignored
    assert reasons(scans[str(tree / "link.pem")]) == ["unsupported"]


def test_special_files_never_block(tree: Path, tmp_path: Path) -> None:
    os.mkfifo(tree / "pipe.pem")
    scans = scan_by_path(Scanner(config_for(tmp_path, store_toml("s", [str(tree / "*.pem")]))))
    assert found(scans, tree) == {"a.pem"} and str(tree / "pipe.pem") not in scans
    # named explicitly, it is reported
    scans = scan_by_path(Scanner(config_for(tmp_path, store_toml("s", [str(tree / "pipe.pem")]))))
    assert reasons(scans[str(tree / "pipe.pem")]) == ["unsupported"]


def test_rescan_reuses_unchanged_files_and_rereads_changed_ones(tree: Path, tmp_path: Path) -> None:
    cfg = config_for(tmp_path, store_toml("s", [str(tree / "**/*.pem")], exclude=["dhparam.pem"]))
    scanner = Scanner(cfg)
    first = scan_by_path(scanner)
    second = scan_by_path(scanner)
    assert all(fs.reused for fs in second.values()) and scanner.counters.files_read == 0
    assert scanner.counters.files_reused == 3 and scanner.counters.certificates == 3
    for path, fs in second.items():
        # memory-saving copies: no DER, but the same fingerprint and digest as the full entry
        assert [e.der for e in fs.entries] == [b""]
        assert [e.digest() for e in fs.entries] == [e.digest() for e in first[path].entries]
        assert fs.signature == first[path].signature

    a, b, c = tree / "a.pem", tree / "sub/b.pem", tree / "sub/deeper/c.pem"
    st = a.stat()
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))    # touched
    b.chmod(0o600)                                                      # permissions changed
    shutil.copyfile(c, tree / "new.pem")                                # a new file
    third = scan_by_path(scanner)
    assert {os.path.relpath(p, tree) for p, fs in third.items() if not fs.reused} == {"a.pem", "sub/b.pem", "new.pem"}
    assert third[str(b)].entries[0].file_mode == 0o600 and third[str(b)].entries[0].der
    assert third[str(a)].entries[0].file_mtime == a.stat().st_mtime

    (tree / "new.pem").unlink()
    fourth = scan_by_path(scanner)
    assert str(tree / "new.pem") not in fourth and all(fs.reused for fs in fourth.values())

    forced = scan_by_path(scanner, force=True)
    assert not any(fs.reused for fs in forced.values()) and all(e.der for fs in forced.values() for e in fs.entries)
    full = scanner.read_file(str(c))
    assert not full.reused and full.entries[0].der
    assert full.entries[0].fingerprint == first[str(c)].entries[0].fingerprint
    fresh = Scanner(cfg).read_file(str(c))          # never scanned: the store is found by its globs
    assert fresh.store_name == "s" and fresh.entries[0].der
    with pytest.raises(AgentError, match="not in any configured store"):
        scanner.read_file(str(tree / "sub/skip.bak"))


def test_fixed_password_is_noticed_without_a_forced_scan(samples: dict, tmp_path: Path) -> None:
    store = tmp_path / "ks"
    store.mkdir()
    shutil.copyfile(samples["files"]["p12"], store / "server.p12")
    pw = tmp_path / "pw"
    pw.write_text("wrong\n")
    cfg = config_for(tmp_path, store_toml("s", [str(store / "*.p12")], password_file=str(pw)))
    scanner = Scanner(cfg)
    assert reasons(scan_by_path(scanner)[str(store / "server.p12")]) == ["wrong_password"]
    assert scan_by_path(scanner)[str(store / "server.p12")].reused
    shutil.copyfile(samples["password_files"]["p12"], pw)
    fs = scan_by_path(scanner)[str(store / "server.p12")]
    assert not fs.reused and not fs.problems and len(fs.entries) == 2
    pw.unlink()
    fs = scan_by_path(scanner)[str(store / "server.p12")]
    assert reasons(fs) == ["no_password"] and str(pw) in fs.problems[0].message


def test_size_limit_and_empty_files(tree: Path, tmp_path: Path) -> None:
    (tree / "empty.pem").write_bytes(b"")
    (tree / "blank.pem").write_bytes(b"\n  \n")
    big = tree / "big.pem"
    big.write_bytes((tree / "a.pem").read_bytes() * 3)
    cfg = config_for(tmp_path, store_toml("s", [str(tree / "*.pem")]), agent='max_file_size = "2KB"\n')
    scanner = Scanner(cfg)
    scans = scan_by_path(scanner)
    assert reasons(scans[str(big)]) == ["too_large"] and "max_file_size (2.0 KB)" in scans[str(big)].problems[0].message
    assert reasons(scans[str(tree / "empty.pem")]) == ["empty"]
    assert reasons(scans[str(tree / "blank.pem")]) == ["empty"]
    assert scans[str(tree / "a.pem")].entries
    assert scanner.counters.files_read == 2          # the big and the empty file were not read
    assert scan_by_path(scanner)[str(big)].reused    # and are not looked at again while unchanged


def test_file_vanishing_between_listing_and_reading(tree: Path, tmp_path: Path) -> None:
    flat = tree / "flat"
    flat.mkdir()
    for i in range(5):
        shutil.copyfile(tree / "a.pem", flat / f"c{i}.pem")
    cfg = config_for(tmp_path, store_toml("s", [str(flat / "*.pem")]))
    scans = Scanner(cfg).scan()
    first = next(scans)                 # the directory has been listed; the rest is not read yet
    for p in flat.iterdir():
        if str(p) != first.path:
            p.unlink()
    rest = list(scans)
    assert first.entries and len(rest) == 4
    for fs in rest:
        assert reasons(fs) == ["vanished"] and fs.problems[0].message == "the file disappeared during the scan"


def test_unreadable_files_and_directories(samples: dict, public_tmp: Path) -> None:
    root = public_tmp / "certs"
    (root / "locked").mkdir(parents=True)
    for name in ("ok.pem", "secret.pem", "locked/inner.pem"):
        shutil.copyfile(samples["files"]["cert"], root / name)
        (root / name).chmod(0o644)
    (root / "secret.pem").chmod(0)
    (root / "locked").chmod(0)
    cfg_path = write_config(public_tmp / "cfg", store_toml("s", [str(root / "**/*.pem")]), mode=0o644)
    public_tmp.joinpath("cfg").chmod(0o755)
    cfg = load_config(cfg_path)
    with unprivileged():
        scans = scan_by_path(Scanner(cfg))
    assert scans[str(root / "ok.pem")].entries
    secret = scans[str(root / "secret.pem")].problems[0]
    assert (secret.reason, secret.message) == ("unreadable", "the file cannot be read (permission denied)")
    locked = scans[str(root / "locked")].problems[0]
    assert (locked.reason, locked.message) == ("unreadable", "the directory cannot be read (permission denied)")


def test_scan_duration_and_counters_are_reset_per_scan(tree: Path, tmp_path: Path) -> None:
    cfg = config_for(tmp_path, store_toml("s", [str(tree / "*.pem")]))
    scanner = Scanner(cfg)
    before = time.time()
    list(scanner.scan())
    c = scanner.counters
    assert c.started_at >= before and c.duration > 0 and (c.files_seen, c.files_read) == (1, 1)
    list(scanner.scan())
    assert (scanner.counters.files_read, scanner.counters.files_reused) == (0, 1)

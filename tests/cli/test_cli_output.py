"""What ``certfleet`` prints, from real admin API messages and an injected ``now``: the shared
helpers (collector/cli/format.py, collector/reports/text.py) and the certificate, agent and job
tables and pages (certs.py, agents.py, jobs.py, renew.py). The same messages come from a real
collector in tests/e2e; here every line can be pinned down."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json

from google.protobuf.timestamp_pb2 import Timestamp

from certfleet.v1 import admin_pb2, common_pb2
from collector.cli import format as f
from collector.cli.agents import agent_dict, agents_table
from collector.cli.certs import cert_detail, cert_dict, certs_csv, certs_table, location_facts
from collector.cli.jobs import job_detail, job_dict, jobs_table
from collector.cli.renew import reload_line
from collector.reports import text

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def stamp(t: dt.datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(t)
    return out


# -- shared helpers -----------------------------------------------------------------------------


def test_text_helpers_cut_with_an_ellipsis() -> None:
    assert text.fit("abcdef", 6) == "abcdef" and text.fit("abcdefg", 6) == "abcde…"
    assert text.fit_left("/etc/ssl/site.pem", 10) == "…/site.pem"
    assert text.fit("abc", 1) == "a" and text.fit_left("abc", 1) == "c" and text.fit_left("abc", 0) == ""
    assert f.fit is text.fit and f.fit_left is text.fit_left and f.short_dn is text.short_dn


def test_short_dn_is_the_cn_and_respects_escaped_commas() -> None:
    assert text.short_dn("CN=web.example.com,O=Example") == "web.example.com"
    assert text.short_dn("O=Example\\, Inc.,CN=a\\,b") == "a\\,b"
    assert text.short_dn("O=No CN") == "O=No CN" and text.short_dn("") == ""


def test_times_from_the_wire() -> None:
    t = dt.datetime(2026, 1, 31, 10, 0, 0, 250000, tzinfo=UTC)
    assert f.ts(stamp(t)) == t and f.ts(Timestamp()) is None and f.ts(stamp(t), present=False) is None
    assert f.iso(t) == "2026-01-31T10:00:00.250000Z" and f.iso(None) is None


def test_ago_in_one_unit() -> None:
    s = dt.timedelta(seconds=1)
    assert [f.ago(k * s) for k in (-5, 0, 119, 120, 7199, 7200, 172799, 172800)] == [
        "0s ago", "0s ago", "119s ago", "2m ago", "119m ago", "2h ago", "47h ago", "2d ago"]


def test_days_left_rounds_down_and_goes_negative() -> None:
    assert f.days_left(NOW + dt.timedelta(days=2, hours=23), NOW) == 2
    assert f.days_left(NOW - dt.timedelta(hours=1), NOW) == -1


def test_render_table_gives_way_in_its_flex_column_cut_at_the_start() -> None:
    rows = [["1", "/var/lib/very/long/path/to/the/certificate.pem", "x"]]
    wide = f.render_table(["N", "PATH", "Z"], rows, 200, flex=1)
    assert wide == ("N  PATH                                            Z\n"
                    "1  /var/lib/very/long/path/to/the/certificate.pem  x\n")
    narrow = f.render_table(["N", "PATH", "Z"], rows, 30, flex=1)
    assert narrow == ("N  PATH                      Z\n"
                      "1  …/to/the/certificate.pem  x\n")
    assert all(len(line) <= 30 for line in narrow.splitlines())
    # the flex column never goes below 12
    assert "…certificate" not in f.render_table(["N", "PATH", "Z"], rows, 5, flex=1).splitlines()[1][:3]
    assert len(f.render_table(["N", "PATH", "Z"], rows, 5, flex=1).splitlines()[1].split("  ")[1]) == 12


# -- certificates ---------------------------------------------------------------------------------


def certificate() -> admin_pb2.CertificateInfo:
    c = admin_pb2.CertificateInfo(
        fingerprint_sha256="ab" * 32, subject="CN=shop.example.com,O=Shop", issuer="CN=Shop CA,O=Shop",
        serial="1003", sans=[admin_pb2.SubjectAltName(type="dns", value="shop.example.com")],
        key_type="EC", key_curve="secp256r1", signature_algorithm="ecdsa-with-SHA256",
        key_usage=["digital_signature"], extended_key_usage=["serverAuth"], issuer_fingerprint_sha256="cd" * 32,
    )
    c.not_before.CopyFrom(stamp(NOW - dt.timedelta(days=80)))
    c.not_after.CopyFrom(stamp(NOW + dt.timedelta(days=10, hours=1)))
    present = c.locations.add(agent_id="a1", hostname="web1", store_type="pem", path="/etc/nginx/shop.pem",
                              has_private_key=True, key_match="matches", status="present", file_owner="root",
                              file_group="nginx", file_mode=0o640)
    present.last_seen.CopyFrom(stamp(NOW - dt.timedelta(minutes=5)))
    present.processes.add(pid=812, name="nginx", user="root", service="nginx.service", listen=["0.0.0.0:443"],
                          evidence="config:nginx", config_path="/etc/nginx/nginx.conf", suggested_reload="nginx")
    present.stale.CopyFrom(common_pb2.StaleService(endpoint="0.0.0.0:443", served_fingerprint="ef" * 32, pid=812,
                                                   process_name="nginx", since=stamp(NOW - dt.timedelta(days=1))))
    gone = c.locations.add(agent_id="a2", hostname="web2", store_type="pkcs12", path="/srv/app/keystore.p12",
                           alias="shop", status="removed", file_mode=0o600)
    gone.removed_at.CopyFrom(stamp(NOW - dt.timedelta(days=2)))
    served = c.locations.add(agent_id="a1", hostname="web1", store_type="endpoint", path="10.0.0.5:443",
                             alias="shop.example.com", status="present")
    served.endpoint.CopyFrom(common_pb2.EndpointInfo(host="10.0.0.5", port=443, sni="shop.example.com",
                                                     protocol="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256",
                                                     chain_valid=True, source="network_scan", scan_id="5ca1ab1e" * 4,
                                                     handshake_seconds=0.0123, chain_fingerprints=["cd" * 32]))
    return c


def test_certificate_as_json_keeps_every_field() -> None:
    d = cert_dict(certificate(), NOW)
    assert d["days_left"] == 10 and d["not_after"] == "2026-03-11T13:00:00Z" and d["key_curve"] == "secp256r1"
    assert d["sans"] == ["dns:shop.example.com"]
    first, gone, served = d["locations"]
    assert first["file_mode"] == "0640" and first["role"] == "service" and first["removed_at"] is None
    assert first["stale"] == {"served_fingerprint": "ef" * 32, "endpoint": "0.0.0.0:443", "pid": 812,
                              "process_name": "nginx", "since": "2026-02-28T12:00:00Z"}
    assert first["processes"][0]["listen"] == ["0.0.0.0:443"] and first["processes"][0]["pid"] == 812
    assert gone["removed_at"] == "2026-02-27T12:00:00Z" and gone["stale"] is None and gone["endpoint"] is None
    assert served["endpoint"]["scan_id"] == "5ca1ab1e" * 4 and served["endpoint"]["handshake_seconds"] == 0.0123
    json.dumps(d)                                   # all plain values


def test_certificates_table_shows_the_first_present_location_and_how_many_more() -> None:
    expired = admin_pb2.CertificateInfo(fingerprint_sha256="99" * 32, subject="", key_type="RSA", key_size=2048)
    expired.not_after.CopyFrom(stamp(NOW - dt.timedelta(hours=1)))
    table = certs_table([certificate(), expired], NOW, 200)
    assert table.splitlines() == [
        "DAYS     NOT AFTER   SUBJECT           KEY           WHERE                          FINGERPRINT",
        "10       2026-03-11  shop.example.com  EC secp256r1  web1:/etc/nginx/shop.pem (+1)  abababababab",
        "EXPIRED  2026-03-01  (empty subject)   RSA 2048      -                              999999999999",
        "2 certificates",
    ]
    assert certs_table([], NOW, 80) == "no certificates match\n"


def test_certificates_csv_has_one_row_per_location() -> None:
    out = io.StringIO()
    certs_csv([certificate()], NOW, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(r["host"], r["path"], r["alias"], r["status"]) for r in rows] == [
        ("web1", "/etc/nginx/shop.pem", "", "present"), ("web2", "/srv/app/keystore.p12", "shop", "removed"),
        ("web1", "10.0.0.5:443", "shop.example.com", "present")]
    assert rows[0]["sans"] == "dns:shop.example.com" and rows[0]["days_left"] == "10"


def test_certificate_page_names_keys_files_processes_and_the_stale_service() -> None:
    lines = cert_detail(certificate(), NOW).splitlines()
    assert lines[:12] == [
        "Fingerprint:  " + "ab" * 32,
        "Subject:      CN=shop.example.com,O=Shop",
        "Issuer:       CN=Shop CA,O=Shop  (cdcdcdcdcdcd)",
        "Serial:       1003",
        "Valid:        2025-12-11T12:00:00Z .. 2026-03-11T13:00:00Z  (10 days left)",
        "Key:          EC secp256r1",
        "Signature:    ecdsa-with-SHA256",
        "CA:           no",
        "SANs:         dns:shop.example.com",
        "Key usage:    digital_signature",
        "Ext. usage:   serverAuth",
        "Locations:    3",
    ]
    assert lines[12] == ("  - [present] web1:/etc/nginx/shop.pem #0 (pem) key:matches root:nginx 0640 "
                         "last seen 2026-03-01T11:55:00Z")
    assert lines[13] == ("      used by nginx pid 812 (nginx.service) as root listening on 0.0.0.0:443 "
                         "[config:nginx /etc/nginx/nginx.conf]; reload: nginx")
    assert lines[14].startswith("      STALE since 2026-02-28T12:00:00Z: 0.0.0.0:443 by nginx pid 812 serves efefefef")
    assert lines[15] == ("  - [removed] web2:/srv/app/keystore.p12 alias=shop #0 (pkcs12) key:none : 0600 "
                         "last seen None removed 2026-02-27T12:00:00Z")
    assert lines[16] == "  - [present] web1:10.0.0.5:443 alias=shop.example.com #0 (endpoint) served last seen None"
    assert lines[17] == ("      endpoint 10.0.0.5:443 TLS SNI shop.example.com: TLSv1.3 TLS_AES_128_GCM_SHA256, "
                         "chain valid; found by network_scan 5ca1ab1e, handshake 0.012s")
    assert lines[18] == "        chain sent: cdcdcdcdcdcd"


def test_location_facts_for_trust_anchors_windows_and_iis() -> None:
    loc = {"role": "trust_anchor",
           "windows": {"store_location": "LocalMachine", "store_name": "My", "thumbprint": "AB12",
                       "friendly_name": "shop", "key_exportable": False, "key_provider": "KSP"},
           "iis_bindings": [{"site": "Default Web Site", "protocol": "https", "ip": "*", "port": 443,
                             "host_name": "", "sni": True, "store_name": "My"}]}
    assert location_facts(loc) == [
        "trust anchor (an entry of a trust store: not renewed, not judged as a service certificate)",
        'Windows store LocalMachine\\My thumbprint AB12 "shop": key not exportable, KSP',
        "IIS site 'Default Web Site': https *:443 host * SNI (My)",
    ]
    assert location_facts({}) == []


# -- agents ------------------------------------------------------------------------------------------


def test_agents_table_lists_scan_errors_under_it() -> None:
    a = admin_pb2.AgentInfo(agent_id="2e2fe12a-8a87", hostname="web1", os="Linux", os_version="6.1",
                            agent_version="0.1.0", status="active", location_count=28)
    a.last_seen.CopyFrom(stamp(NOW - dt.timedelta(minutes=3)))
    a.errors.add(store_type="pkcs12", path="/srv/bad.p12", alias="", reason="wrong_password",
                 message="the configured password does not open the store")
    never = admin_pb2.AgentInfo(agent_id="ffff0000", hostname="new", status="active")
    table = agents_table([a, never], NOW, 120)
    assert table.splitlines()[0] == "HOST  AGENT     STATUS  OS         VERSION  LAST SEEN  LOCATIONS  ERRORS"
    assert table.splitlines()[1] == "web1  2e2fe12a  active  Linux 6.1  0.1.0    3m ago     28         1"
    assert table.splitlines()[2].split() == ["new", "ffff0000", "active", "never", "0", "0"]
    assert table.endswith("\nScan errors:\n  web1: /srv/bad.p12: wrong_password: "
                          "the configured password does not open the store\n")
    assert agents_table([], NOW, 80).startswith("no agents enrolled yet")
    d = agent_dict(a)
    assert d["locations"] == 28 and d["errors"][0]["reason"] == "wrong_password" and d["first_seen"] is None


# -- jobs -------------------------------------------------------------------------------------------


def job() -> admin_pb2.JobInfo:
    j = admin_pb2.JobInfo(job_id="997f1058-382f", kind="renew", hostname="web1", store_type="pem",
                          path="/etc/nginx/shop.pem", state="verified", reason="", template="web",
                          old_fingerprint="ab" * 32, new_fingerprint="12" * 32, served_fingerprint="12" * 32,
                          requested_by="admin:alice", attempts=1,
                          result_detail=json.dumps({"steps": [{"step": "write", "ok": True, "seconds": 0.01,
                                                                "detail": "wrote 2 files"},
                                                               {"step": "verify", "ok": True, "seconds": 0.5,
                                                                "detail": "served"}],
                                                    "reload_seconds": 0.25}))
    j.created_at.CopyFrom(stamp(NOW - dt.timedelta(minutes=10)))
    j.deadline.CopyFrom(stamp(NOW + dt.timedelta(minutes=20)))
    for minutes, old, new, why in ((10, "", "requested", "expiring"), (9, "requested", "verified", "served")):
        j.events.add(from_state=old, to_state=new, reason=why, actor="admin:alice").at.CopyFrom(
            stamp(NOW - dt.timedelta(minutes=minutes)))
    return j


def test_job_page_shows_history_and_install_steps() -> None:
    assert job_detail(job()).splitlines() == [
        "Job:          997f1058-382f (renew)",
        "State:        verified",
        "Where:        web1:/etc/nginx/shop.pem (pem)",
        "Template:     web",
        "Old cert:     " + "ab" * 32,
        "New cert:     " + "12" * 32,
        "Served now:   " + "12" * 32,
        "Requested by: admin:alice at 2026-03-01T11:50:00Z; deadline 2026-03-01T12:20:00Z; attempts 1",
        "History:",
        "  2026-03-01T11:50:00Z             - -> requested    expiring  (admin:alice)",
        "  2026-03-01T11:51:00Z     requested -> verified     served  (admin:alice)",
        "Install steps:",
        "  ok  write    0.01s  wrote 2 files",
        "  ok  verify   0.50s  served",
        "  service reload took 0.25s",
    ]
    d = job_dict(job())
    assert d["result"]["reload_seconds"] == 0.25 and d["finished_at"] is None and len(d["events"]) == 2


def test_jobs_table() -> None:
    assert jobs_table([job()], NOW, 120).splitlines() == [
        "JOB       STATE     CREATED  WHERE                     TEMPLATE  REASON",
        "997f1058  verified  10m ago  web1:/etc/nginx/shop.pem  web",
    ]
    assert jobs_table([], NOW, 120) == "no jobs\n"


def test_the_suggested_reload_line_under_a_renewal() -> None:
    h = admin_pb2.ReloadSuggestion(action="nginx", process="nginx", pid=812, service="nginx.service")
    assert reload_line(h) == "  suggested reload: nginx (nginx pid 812, nginx.service uses this location)"
    assert reload_line(admin_pb2.ReloadSuggestion(action="restart-app", pid=9)) == (
        "  suggested reload: restart-app (a process pid 9 uses this location)")

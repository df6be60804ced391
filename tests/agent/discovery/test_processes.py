"""Which process uses which file: real nginx, openssl s_server, a STARTTLS SMTP server and an open file on loopback."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from agent.config import ReloadAction
from agent.discovery.linker import build_index, suggest_reload
from agent.discovery.processes import ProcessInfo, snapshot, unit_from_cgroup


def _actions(**commands: list[str]) -> dict[str, ReloadAction]:
    return {name.replace("_", "-"): ReloadAction(name.replace("_", "-"), tuple(cmd)) for name, cmd in commands.items()}


def test_nginx_is_linked_by_its_config_with_its_sockets_and_reload_action(make_site, nginx) -> None:
    site = make_site("www.example.test")
    live = site.directory / "live"
    live.mkdir()
    (live / "fullchain.pem").symlink_to(site.fullchain)       # nginx names the link, the store finds the file
    ng = nginx(live / "fullchain.pem", site.key)
    actions = _actions(
        apache=["/usr/sbin/apachectl", "graceful"],
        nginx=ng.reload_command,
        nginx_elsewhere=["/usr/sbin/nginx", "-c", "/etc/other/nginx.conf", "-s", "reload"],
        postfix=["systemctl", "reload", "postfix"],
    )
    index = build_index(snapshot(), actions)

    uses = index.uses(str(site.fullchain))
    assert len(uses) == 1, uses                  # master and worker are one service: linked once, to the master
    link = uses[0].link
    assert link.pid == ng.proc.pid and link.name == "nginx" and link.executable.endswith("nginx")
    assert link.evidence == "config:nginx" and link.config_path == str(ng.conf)
    assert f"127.0.0.1:{ng.port}" in link.listen          # the worker holds the socket; the service listens there
    assert link.suggested_reload == "nginx"                # not the one for another config, not apache's
    assert uses[0].serves
    assert [u.link.pid for u in index.uses(str(site.key))] == [ng.proc.pid]
    assert index.uses(str(site.chain)) == ()             # not named by nginx


def test_openssl_s_server_is_linked_by_its_command_line(make_site, s_server, loopback_ip) -> None:
    site = make_site("s.example.test")
    srv = s_server(loopback_ip(3), site)
    index = build_index(snapshot(), _actions(nginx=["/usr/sbin/nginx", "-s", "reload"]))
    uses = index.uses(str(site.cert))
    assert [u.link.pid for u in uses] == [srv.pid]
    link = uses[0].link
    assert link.name == "openssl" and link.evidence == "cmdline"
    assert link.listen == (f"{srv.ip}:{srv.port}",)
    assert link.suggested_reload == ""                     # no configured action fits openssl
    assert [u.link.pid for u in index.uses(str(site.key))] == [srv.pid]


def test_starttls_smtp_server_process_is_linked(make_site, process_servers, loopback_ip) -> None:
    site = make_site("mail.example.test")
    smtp = process_servers.smtp(loopback_ip(4), site.fullchain, site.key)
    index = build_index(snapshot(), {})
    uses = index.uses(str(site.fullchain))
    assert [u.link.pid for u in uses] == [smtp.pid]
    assert uses[0].link.evidence == "cmdline" and uses[0].link.listen == (f"{smtp.ip}:{smtp.port}",)


def test_a_file_kept_open_by_a_listening_process_is_linked_as_open_file(make_site, process_servers,
                                                                        loopback_ip) -> None:
    site = make_site("held.example.test")
    holder = process_servers.hold(loopback_ip(5), site.cert)
    uses = build_index(snapshot(), {}).uses(str(site.cert))
    assert [(u.link.pid, u.link.evidence) for u in uses] == [(holder.pid, "open_file")]


def test_snapshot_survives_zombies_and_vanishing_processes() -> None:
    zombie = subprocess.Popen(["true"])
    short = subprocess.Popen(["sleep", "0.05"])
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:            # until `true` has exited (and is a zombie: not waited for)
            try:
                with open(f"/proc/{zombie.pid}/stat") as f:
                    if f.read().split(") ", 1)[1].startswith("Z"):
                        break
            except OSError:
                break
            time.sleep(0.01)
        table = snapshot()
        index = build_index(table, {})
        assert os.getpid() in table                      # the walk went through
        if zombie.pid in table:
            assert table.get(zombie.pid).cmdline == ()  # a zombie has no command line; it is not an error
        assert zombie.pid not in index.paths_by_root
    finally:
        zombie.wait()
        short.wait()


def test_unit_from_cgroup_texts() -> None:
    assert unit_from_cgroup("0::/system.slice/nginx.service\n") == "nginx.service"
    v1 = ("12:pids:/system.slice/postfix@-.service\n1:name=systemd:/system.slice/postfix@-.service\n"
          "0::/system.slice/postfix@-.service\n")
    assert unit_from_cgroup(v1) == "postfix@-.service"
    assert unit_from_cgroup("0::/user.slice/user-1000.slice/user@1000.service/app.slice/web.service\n") == "web.service"
    assert unit_from_cgroup("0::/user.slice/user-1000.slice/session-3.scope\n") == ""
    assert unit_from_cgroup("0::/\n") == ""


def _proc(name: str, exe: str, *args: str) -> ProcessInfo:
    return ProcessInfo(pid=100, ppid=1, name=name, exe=exe, cmdline=(exe, *args))


def test_suggested_reload_matches_unit_executable_and_config() -> None:
    actions = _actions(
        web=["systemctl", "reload", "nginx"],
        web_direct=["/usr/sbin/nginx", "-s", "reload"],
        web_b=["/usr/sbin/nginx", "-c", "/etc/nginx-b/nginx.conf", "-s", "reload"],
        apache=["/usr/sbin/apachectl", "graceful"],
        mail=["/usr/sbin/postfix", "reload"],
        haproxy_unit=["/bin/systemctl", "--no-block", "reload", "haproxy.service"],
    )
    nginx = _proc("nginx", "/usr/sbin/nginx", "-g", "daemon on;")
    assert suggest_reload(nginx, actions, unit="nginx.service") == "web"          # its own unit wins
    assert suggest_reload(nginx, actions, unit="") == "web-direct"                # without a unit: the binary
    nginx_b = _proc("nginx", "/usr/sbin/nginx", "-c", "/etc/nginx-b/nginx.conf")
    assert suggest_reload(nginx_b, actions, configs={"/etc/nginx-b/nginx.conf"}) == "web-b"
    assert suggest_reload(_proc("apache2", "/usr/sbin/apache2", "-k", "start"), actions) == "apache"
    assert suggest_reload(_proc("master", "/usr/lib/postfix/sbin/master", "-w"), actions) == "mail"
    assert suggest_reload(_proc("haproxy", "/usr/sbin/haproxy", "-f", "/etc/haproxy/haproxy.cfg"), actions,
                          unit="haproxy.service") == "haproxy-unit"
    assert suggest_reload(_proc("java", "/usr/bin/java", "-jar", "app.jar"), actions) == ""
    assert suggest_reload(_proc("nginx", "/usr/sbin/nginx"), actions, unit="openresty.service") == "web-direct"


def test_process_discovery_cost_is_small() -> None:
    """One snapshot + link index per report: CPU time well under a second on a normal host."""
    t0 = time.process_time()
    for _ in range(3):
        build_index(snapshot(), {})
    per_report = (time.process_time() - t0) / 3
    assert per_report < 1.0, f"{per_report:.3f} s of CPU per report"


def test_paths_of_lists_every_file_of_a_process(make_site, s_server, loopback_ip) -> None:
    site = make_site("p.example.test")
    srv = s_server(loopback_ip(6), site)
    paths = build_index(snapshot(), {}).paths_of(srv.pid)
    assert {str(site.cert), str(site.key), str(site.chain)} <= set(paths)
    assert isinstance(Path(next(iter(paths))), Path)

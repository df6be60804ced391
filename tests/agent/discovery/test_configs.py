"""Config parsers and readers on real configuration text: nginx, Apache, HAProxy, Postfix, JVM/Tomcat."""
from __future__ import annotations

from pathlib import Path

from agent.discovery.servers import FileAccess, cmdline_paths, config_refs, server_kind
from agent.discovery.servers.apache import parse_apache, read_apache
from agent.discovery.servers.haproxy import parse_crt_list, parse_haproxy, read_haproxy
from agent.discovery.servers.java import jvm_refs, parse_tomcat_server_xml, read_tomcat
from agent.discovery.servers.nginx import parse_nginx, read_nginx
from agent.discovery.servers.postfix import parse_postfix_main, parse_postfix_master, read_postfix

# --------------------------------------------------------------------------- nginx

NGINX_MAIN = """\
user www-data;
worker_processes auto;
pid /run/nginx.pid;
include /etc/nginx/modules-enabled/*.conf;

events {
\tworker_connections 768;
\t# multi_accept on;
}

http {
\tsendfile on;
\ttcp_nopush on;
\ttypes_hash_max_size 2048;
\tinclude /etc/nginx/mime.types;
\tdefault_type application/octet-stream;

\t##
\t# SSL Settings
\t##
\tssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3; # Dropping SSLv3, ref: POODLE
\tssl_prefer_server_ciphers on;
\t# ssl_certificate /etc/ssl/commented-out.pem;

\taccess_log /var/log/nginx/access.log;
\terror_log /var/log/nginx/error.log;
\tgzip on;

\tinclude conf.d/*.conf;
\tinclude sites-enabled/*;
}
"""

NGINX_SITE = """\
server {
    listen 443 ssl http2;
    listen [::]:443 ssl http2;
    server_name www.example.com example.com;

    ssl_certificate /etc/letsencrypt/live/example.com/fullchain.pem; # managed by Certbot
    ssl_certificate_key "/etc/letsencrypt/live/example.com/privkey.pem"; # managed by Certbot
    ssl_trusted_certificate '/etc/letsencrypt/live/example.com/chain.pem';
    ssl_certificate /etc/ssl/$ssl_server_name.crt;
    ssl_certificate_key data:$variable_key;

    location / {
        return 200 "ssl_certificate /not/a/directive.pem; {";
    }
    location /proxy {
        proxy_pass https://backend;
        proxy_ssl_certificate certs/client.pem;
    }
}
"""


def test_nginx_parser_finds_path_directives_and_includes() -> None:
    found = [(d.name, d.value) for d in parse_nginx(NGINX_MAIN + NGINX_SITE)]
    assert ("ssl_certificate", "/etc/letsencrypt/live/example.com/fullchain.pem") in found
    assert ("ssl_certificate_key", "/etc/letsencrypt/live/example.com/privkey.pem") in found
    assert ("ssl_trusted_certificate", "/etc/letsencrypt/live/example.com/chain.pem") in found
    assert ("include", "sites-enabled/*") in found
    assert ("ssl_certificate", "/etc/ssl/$ssl_server_name.crt") in found       # parsed; the reader skips it
    # comments and strings are not directives
    assert all(v != "/etc/ssl/commented-out.pem" and "not/a/directive" not in v for _, v in found)


def test_nginx_reader_follows_include_globs_resolves_relative_and_skips_variables(tmp_path: Path) -> None:
    (tmp_path / "sites-enabled").mkdir()
    (tmp_path / "conf.d").mkdir()
    main = tmp_path / "nginx.conf"
    main.write_text(NGINX_MAIN)
    (tmp_path / "sites-enabled" / "example").write_text(NGINX_SITE)
    (tmp_path / "conf.d" / "a.conf").write_text("server { listen 8443 ssl; ssl_certificate ssl/relative.pem; }\n")
    (tmp_path / "conf.d" / "loop.conf").write_text("include conf.d/*.conf;\n")     # an include loop ends
    refs = read_nginx(str(main))
    paths = {r.path: r for r in refs}
    assert set(paths) == {
        "/etc/letsencrypt/live/example.com/fullchain.pem", "/etc/letsencrypt/live/example.com/privkey.pem",
        "/etc/letsencrypt/live/example.com/chain.pem", str(tmp_path / "certs" / "client.pem"),
        str(tmp_path / "ssl" / "relative.pem"),
    }
    full = paths["/etc/letsencrypt/live/example.com/fullchain.pem"]
    assert full.evidence == "config:nginx" and full.serves and full.config_path == str(tmp_path / "sites-enabled" / "example")
    assert not paths["/etc/letsencrypt/live/example.com/chain.pem"].serves
    assert not paths[str(tmp_path / "certs" / "client.pem")].serves      # a client certificate towards upstreams


def test_nginx_config_from_command_line_or_prefix(tmp_path: Path) -> None:
    conf = tmp_path / "custom.conf"
    conf.write_text("http { server { ssl_certificate site.pem; } }\n")
    refs = config_refs("nginx", ["/usr/sbin/nginx", "-c", str(conf), "-p", "/somewhere/"], None)
    assert [r.path for r in refs] == [str(tmp_path / "site.pem")]
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "nginx.conf").write_text("ssl_certificate other.pem;\n")
    refs = config_refs("nginx", ["nginx", "-p", f"{tmp_path}/"], None)
    assert [r.path for r in refs] == [str(tmp_path / "conf" / "other.pem")]


def test_reader_gives_up_quietly_on_missing_or_huge_files(tmp_path: Path) -> None:
    assert read_nginx(str(tmp_path / "missing.conf")) == []
    big = tmp_path / "big.conf"
    big.write_text("ssl_certificate /a.pem;\n" + "#" * 2000)
    assert read_nginx(str(big), FileAccess(max_bytes=1000)) == []


# --------------------------------------------------------------------------- Apache

APACHE_MAIN = """\
# This is the main Apache server configuration file.
ServerRoot "/etc/apache2"
Define SSLDIR /etc/ssl/example
Timeout 300
KeepAlive On
IncludeOptional mods-enabled/*.load
IncludeOptional mods-enabled/*.conf
Include ports.conf
<Directory />
\tOptions FollowSymLinks
\tAllowOverride None
</Directory>
IncludeOptional sites-enabled/*.conf
"""

APACHE_SITE = """\
<IfModule mod_ssl.c>
\t<VirtualHost _default_:443>
\t\tServerAdmin webmaster@localhost
\t\tDocumentRoot /var/www/html
\t\tErrorLog ${APACHE_LOG_DIR}/error.log
\t\tSSLEngine on
\t\tSSLCertificateFile\t/etc/ssl/certs/ssl-cert-snakeoil.pem
\t\tsslcertificatekeyfile /etc/ssl/private/ssl-cert-snakeoil.key
\t\t#SSLCertificateChainFile /etc/apache2/ssl.crt/server-ca.crt
\t\tSSLCertificateChainFile "${SSLDIR}/chain.pem"
\t\tSSLCACertificateFile ${UNDEFINED_DIR}/ca.pem
\t\tSSLCertificateFile \\
\t\t\tssl/continued.pem
\t</VirtualHost>
</IfModule>
"""


def test_apache_parser_is_case_insensitive_and_joins_continuations() -> None:
    found = [(d.name, d.value) for d in parse_apache(APACHE_SITE)]
    assert ("sslcertificatefile", "/etc/ssl/certs/ssl-cert-snakeoil.pem") in found
    assert ("sslcertificatekeyfile", "/etc/ssl/private/ssl-cert-snakeoil.key") in found
    assert ("sslcertificatefile", "ssl/continued.pem") in found
    assert ("sslcertificatechainfile", "${SSLDIR}/chain.pem") in found
    assert not any("server-ca.crt" in v for _, v in found)           # commented out


def test_apache_reader_follows_includes_defines_and_server_root(tmp_path: Path) -> None:
    (tmp_path / "sites-enabled").mkdir()
    (tmp_path / "mods-enabled").mkdir()
    main = tmp_path / "apache2.conf"
    main.write_text(APACHE_MAIN.replace('"/etc/apache2"', f'"{tmp_path}"'))
    (tmp_path / "ports.conf").write_text("Listen 80\n<IfModule ssl_module>\n\tListen 443\n</IfModule>\n")
    (tmp_path / "sites-enabled" / "default-ssl.conf").write_text(APACHE_SITE)
    refs = {r.path: r for r in read_apache(str(main))}
    assert set(refs) == {
        "/etc/ssl/certs/ssl-cert-snakeoil.pem", "/etc/ssl/private/ssl-cert-snakeoil.key",
        "/etc/ssl/example/chain.pem", str(tmp_path / "ssl" / "continued.pem"),
    }   # ${UNDEFINED_DIR} is skipped, not guessed
    assert refs["/etc/ssl/certs/ssl-cert-snakeoil.pem"].evidence == "config:apache"
    assert refs["/etc/ssl/certs/ssl-cert-snakeoil.pem"].serves
    assert not refs["/etc/ssl/example/chain.pem"].serves


# --------------------------------------------------------------------------- HAProxy

HAPROXY_CFG = """\
global
\tlog /dev/log\tlocal0
\tchroot /var/lib/haproxy
\tcrt-base /etc/haproxy/certs
\tca-base /etc/ssl/certs
\tssl-default-bind-ciphers ECDHE-ECDSA-AES128-GCM-SHA256
\tdaemon

defaults
\tmode\thttp
\ttimeout connect 5000

frontend https-in
\tbind :443 ssl crt site.pem crt /etc/haproxy/more/ alpn h2,http/1.1 # comment crt /not/this.pem
\tbind :8443 ssl crt-list lists/crt-list.txt ca-file ca.pem verify optional
\tbind :9443 ssl crt "${CERT_FROM_ENV}"
\tdefault_backend servers

backend servers
\tserver s1 10.0.0.1:443 ssl crt client.pem ca-file backend-ca.pem check
"""

CRT_LIST = """\
# certificate  [ssl options]  [sni filters]
/etc/haproxy/listed/www.pem [alpn h2 ocsp-update on] www.example.com
api.pem api.example.com !old.example.com
"""


def test_haproxy_parser_reads_bind_and_server_paths() -> None:
    found = [(d.name, d.value) for d in parse_haproxy(HAPROXY_CFG)]
    assert ("crt-base", "/etc/haproxy/certs") in found
    assert ("bind:crt", "site.pem") in found and ("bind:crt", "/etc/haproxy/more/") in found
    assert ("bind:crt-list", "lists/crt-list.txt") in found and ("bind:ca-file", "ca.pem") in found
    assert ("server:crt", "client.pem") in found
    assert not any(v == "/not/this.pem" for _, v in found)
    assert [d.value for d in parse_crt_list(CRT_LIST)] == ["/etc/haproxy/listed/www.pem", "api.pem"]


def test_haproxy_reader_expands_directories_and_crt_lists(tmp_path: Path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    base = tmp_path / "certs"
    (base / "lists").mkdir(parents=True)
    (base / "lists" / "crt-list.txt").write_text(CRT_LIST)
    more = tmp_path / "more"
    more.mkdir()
    for name in ("a.pem", "a.pem.key", "a.pem.ocsp", "b.pem"):
        (more / name).write_text("x")
    cfg.write_text(HAPROXY_CFG.replace("/etc/haproxy/certs", str(base)).replace("/etc/haproxy/more/", str(more)))
    refs = read_haproxy([str(cfg)])
    served = {r.path for r in refs if r.serves}
    assert served == {str(base / "site.pem"), str(more / "a.pem"), str(more / "b.pem"),
                      "/etc/haproxy/listed/www.pem", str(base / "api.pem")}
    others = {r.path for r in refs if not r.serves}
    assert "/etc/ssl/certs/ca.pem" in others and "/etc/ssl/certs/backend-ca.pem" in others
    assert str(base / "client.pem") in others          # presented to backends, not to clients
    assert all(r.evidence == "config:haproxy" for r in refs)


# --------------------------------------------------------------------------- Postfix

POSTFIX_MAIN = """\
# See /usr/share/postfix/main.cf.dist for a commented, more complete version
smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)
biff = no
append_dot_mydomain = no
readme_directory = no
compatibility_level = 3.6

# TLS parameters
certdir = /etc/ssl/mail
smtpd_tls_cert_file=/etc/ssl/certs/ssl-cert-snakeoil.pem
smtpd_tls_key_file=/etc/ssl/private/ssl-cert-snakeoil.key
smtpd_tls_chain_files =
    ${certdir}/rsa-chain.pem,
    $certdir/ec-chain.pem
smtpd_tls_security_level=may
smtp_tls_cert_file = $undefined_parameter/client.pem
smtp_tls_CAfile=/etc/ssl/certs/ca-certificates.crt
#smtpd_tls_eccert_file = /etc/ssl/old-ec.pem
"""

POSTFIX_MASTER = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
smtp      inet  n       -       y       -       -       smtpd
submission inet n       -       y       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_cert_file=/etc/ssl/mail/submission.pem
#  -o smtpd_tls_cert_file=/etc/ssl/mail/commented.pem
"""


def test_postfix_main_cf_with_continuations_and_parameter_expansion(tmp_path: Path) -> None:
    params = parse_postfix_main(POSTFIX_MAIN)
    assert params["smtpd_tls_chain_files"][0].split() == ["${certdir}/rsa-chain.pem,", "$certdir/ec-chain.pem"]
    assert [d.value for d in parse_postfix_master(POSTFIX_MASTER)] == ["/etc/ssl/mail/submission.pem"]
    (tmp_path / "main.cf").write_text(POSTFIX_MAIN)
    (tmp_path / "master.cf").write_text(POSTFIX_MASTER)
    refs = {r.path: r for r in read_postfix(str(tmp_path))}
    assert set(refs) == {
        "/etc/ssl/certs/ssl-cert-snakeoil.pem", "/etc/ssl/private/ssl-cert-snakeoil.key",
        "/etc/ssl/mail/rsa-chain.pem", "/etc/ssl/mail/ec-chain.pem", "/etc/ssl/certs/ca-certificates.crt",
        "/etc/ssl/mail/submission.pem",
    }   # $undefined_parameter is skipped
    assert refs["/etc/ssl/certs/ssl-cert-snakeoil.pem"].serves
    assert refs["/etc/ssl/mail/submission.pem"].config_path == str(tmp_path / "master.cf")
    assert not refs["/etc/ssl/certs/ca-certificates.crt"].serves
    assert config_refs("postfix", ["/usr/lib/postfix/sbin/master", "-c", str(tmp_path), "-w"], None)


# --------------------------------------------------------------------------- JVM and Tomcat

SERVER_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<Server port="8005" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="8080" protocol="HTTP/1.1" connectionTimeout="20000" redirectPort="8443" />
    <Connector port="8443" protocol="org.apache.coyote.http11.Http11NioProtocol" SSLEnabled="true">
      <SSLHostConfig>
        <Certificate certificateKeystoreFile="conf/localhost-rsa.jks"
                     certificateKeystorePassword="not-read" type="RSA" />
      </SSLHostConfig>
    </Connector>
    <Connector port="9443" SSLEnabled="true" scheme="https" secure="true"
               keystoreFile="${catalina.base}/conf/legacy.keystore" keystorePass="not-read"
               truststoreFile="${trust.dir}/trust.jks" />
    <!-- <Connector port="10443" keystoreFile="/commented/out.jks" /> -->
  </Service>
</Server>
"""


def test_jvm_arguments_name_key_stores() -> None:
    argv = ["/usr/lib/jvm/java-17/bin/java", "-Xmx512m", "-Djavax.net.ssl.keyStore=/etc/app/keystore.p12",
            "-Djavax.net.ssl.keyStorePassword=secret", "-Djavax.net.ssl.trustStore=rel/trust.jks",
            "-Dserver.ssl.key-store=file:/etc/app/spring.p12", "-jar", "app.jar",
            "--server.ssl.trust-store=classpath:trust.jks"]
    refs = {r.path: r for r in jvm_refs(argv, "/opt/app")}
    assert set(refs) == {"/etc/app/keystore.p12", "/opt/app/rel/trust.jks", "/etc/app/spring.p12"}
    assert refs["/etc/app/keystore.p12"].evidence == "jvm_keystore" and refs["/etc/app/keystore.p12"].serves
    assert not refs["/opt/app/rel/trust.jks"].serves
    assert all("secret" not in r.path and "secret" not in r.directive for r in refs.values())


def test_tomcat_server_xml_named_by_catalina_base(tmp_path: Path) -> None:
    assert {d.name for d in parse_tomcat_server_xml(SERVER_XML)} == {
        "Certificate@certificateKeystoreFile", "Connector@keystoreFile", "Connector@truststoreFile"}
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "server.xml").write_text(SERVER_XML)
    argv = ["java", f"-Dcatalina.base={tmp_path}", "-Dtrust.dir=/etc/tomcat-trust",
            "org.apache.catalina.startup.Bootstrap", "start"]
    refs = {r.path: r for r in read_tomcat(argv)}
    assert set(refs) == {str(tmp_path / "conf" / "localhost-rsa.jks"), str(tmp_path / "conf" / "legacy.keystore"),
                         "/etc/tomcat-trust/trust.jks"}
    assert refs[str(tmp_path / "conf" / "localhost-rsa.jks")].config_path == str(tmp_path / "conf" / "server.xml")
    assert parse_tomcat_server_xml("<Server><broken") == []


# --------------------------------------------------------------------------- command lines and kinds

def test_cmdline_paths_take_arguments_and_option_values() -> None:
    argv = ["openssl", "s_server", "-cert", "cert.pem", "-key=/abs/key.pem", "--tls-cert=file:/x/y.pem",
            "-accept", "127.0.0.5:4433"]
    paths = cmdline_paths(argv, "/srv")
    assert "/srv/cert.pem" in paths and "/abs/key.pem" in paths and "/x/y.pem" in paths
    assert cmdline_paths(argv, None) == ["/abs/key.pem", "/x/y.pem"]       # relative without a cwd: skipped


def test_server_kinds() -> None:
    assert server_kind("nginx") == "nginx"
    assert server_kind("apache2") == "apache" and server_kind("httpd") == "apache"
    assert server_kind("haproxy") == "haproxy"
    assert server_kind("master", "/usr/lib/postfix/sbin/master") == "postfix"
    assert server_kind("master", "/opt/other/master") == ""
    assert server_kind("java") == "java"
    assert server_kind("openssl") == ""


# --------------------------------------------------------------------------- the agent's [discovery] section

def test_discovery_section_defaults_and_errors(tmp_path: Path) -> None:
    import pytest

    from agent.config import ConfigError, load_config
    from agent.discovery.settings import DiscoverySettings

    def cfg(text: str):  # noqa: ANN202
        p = tmp_path / "agent.toml"
        p.write_text(f'[agent]\ndata_dir = "{tmp_path}/data"\n{text}')
        p.chmod(0o600)
        return load_config(p)

    assert cfg("").discovery == DiscoverySettings()
    s = cfg('[discovery]\nprocesses = true\nstale_check = false\nprobe_timeout = "1500ms"\n'
            'trust_store_paths = ["trust/*.pem", "/opt/ca"]\n').discovery
    assert (s.stale_check, s.probe_timeout, s.trust_store_paths) == (False, 1.5, (f"{tmp_path}/trust/*.pem", "/opt/ca"))
    with pytest.raises(ConfigError, match=r"agent.toml:4: \[discovery\] stale_check: must be true or false"):
        cfg('[discovery]\nstale_check = "yes"\n')
    with pytest.raises(ConfigError, match=r"unknown key 'proceses'"):
        cfg("[discovery]\nproceses = true\n")
    with pytest.raises(ConfigError, match="probe_timeout"):
        cfg('[discovery]\nprobe_timeout = "0s"\n')

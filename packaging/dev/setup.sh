#!/usr/bin/env bash
# Prepare a development machine (Debian): system packages the project needs,
# a virtualenv in .venv, and certfleet installed into it with the collector
# and test extras. Safe to run again; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf '[setup] %s\n' "$*" >&2; }

pick_python() {
  for py in python3.11 python3.12 python3.13 python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$py"; return 0
    fi
  done
  return 1
}

apt_install() {
  [ $# -eq 0 ] && return 0
  log "installing Debian packages: $*"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # Packages such as nginx start a system service on install; the tests start their own
  # instances on loopback, so keep the package scripts from starting any (policy-rc.d: 101).
  local policy=/usr/sbin/policy-rc.d made_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod +x "$policy" && made_policy=1
  fi
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  [ -n "$made_policy" ] && $sudo rm -f "$policy"
  return 0
}

need=()
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v keytool >/dev/null 2>&1 || need+=(default-jre-headless)   # real JKS/JCEKS/PKCS#12 stores
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)                # pyjks -> twofish builds from source
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)   # install tests: real nginx on loopback
command -v pebble >/dev/null 2>&1 || need+=(pebble)                   # real ACME server (+ pebble-challtestsrv) for the issuer tests
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)   # tests/ha: two collectors behind a real TCP load balancer
command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)          # tests/ha: CA keys in a PKCS#11 token (SoftHSM2)
{ [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import apt' 2>/dev/null; } || need+=(python3-apt)   # ansible.builtin.apt in the role tests (tests/ansible)
# packaging/build-deb.sh builds the packages' environments on the system python3: it needs its venv
# module and headers (twofish); tests/packaging checks the installed units with systemd-analyze
{ [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import ensurepip' 2>/dev/null; } || need+=(python3-venv)
{ [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; } || need+=(python3-dev)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)              # metrics tests: real Prometheus server + promtool rule tests
PY=$(pick_python || true)
if [ -z "$PY" ]; then
  need+=(python3 python3-venv python3-dev)
else
  "$PY" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || need+=(python3-dev)
  "$PY" -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
fi
apt_install "${need[@]}"
PY=$(pick_python) || { log "no Python 3.11 or newer found"; exit 1; }

if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $PY"
  "$PY" -m venv .venv
fi
stamp=.venv/.certfleet-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  log "installing certfleet[collector,test] into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[collector,test]'
  touch "$stamp"
fi
log "ready: $(.venv/bin/python --version), certfleet in .venv"

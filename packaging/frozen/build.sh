#!/usr/bin/env bash
# Build the agent as one self-contained executable with PyInstaller, for hosts without a
# suitable Python (the Debian package needs python3 >= 3.11).
#
#   packaging/frozen/build.sh [OUTDIR]      (default: dist/frozen) -> OUTDIR/certfleet-agent
#
# Uses the Python of the repository's .venv (set CERTFLEET_PYTHON to use another), which must
# have certfleet and pyinstaller installed: pip install -e '.[test]'. PyInstaller's work files
# go to a temporary directory. The executable unpacks itself into $TMPDIR at each start
# (PrivateTmp= in a unit is fine) and needs the build machine's glibc or newer: build on the
# oldest distribution you deploy to (this one: Debian 12, glibc 2.36).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
outdir=${1:-$repo/dist/frozen}
python=${CERTFLEET_PYTHON:-$repo/.venv/bin/python}

log() { printf '[frozen] %s\n' "$*" >&2; }
[ -x "$python" ] || { log "error: $python not found (run packaging/dev/setup.sh, or set CERTFLEET_PYTHON)"; exit 1; }
"$python" -c 'import PyInstaller' 2>/dev/null \
  || { log "error: PyInstaller is not installed for $python: pip install -e '.[test]'"; exit 1; }
"$python" -c 'import agent, certfleet.v1, jks, twofish, grpc, psutil, cryptography' \
  || { log "error: $python cannot import the agent and its dependencies: pip install -e ."; exit 1; }

mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/certfleet-frozen.XXXXXX")
trap 'rm -rf "$work"' EXIT

SECONDS=0
log "PyInstaller ($("$python" -m PyInstaller --version)) with $("$python" --version)"
CERTFLEET_REPO=$repo "$python" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath "$outdir" --workpath "$work/build" "$here/certfleet-agent.spec" >&2
exe=$outdir/certfleet-agent
"$exe" --version >&2
log "$(du -h "$exe" | cut -f1) in ${SECONDS} s -> $exe"
echo "$exe"

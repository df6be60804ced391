#!/usr/bin/env bash
# Build the Debian packages certfleet-agent and certfleet-collector from this repository.
#
#   packaging/build-deb.sh [OUTDIR]          (default OUTDIR: dist/ in the repository)
#
# writes OUTDIR/certfleet-agent_<version>_<arch>.deb and OUTDIR/certfleet-collector_<version>_<arch>.deb
# and prints their paths. Needs dpkg-deb, the system Python (>= 3.11, with its venv module),
# a C compiler and the Python headers (pyjks -> twofish builds from source), and PyPI (or the
# pip cache). Runs as any user; nothing outside a temporary directory and OUTDIR is written.
#
# Environment:
#   CERTFLEET_DEB_VERSION    package version (default: [project] version in pyproject.toml)
#   CERTFLEET_PYTHON         the interpreter the packages run on (default /usr/bin/python3); the
#                            packages depend on its Debian package (python3.X)
#   CERTFLEET_DEB_COMPRESS   dpkg-deb compression: zstd (default: fast and small; dpkg >= 1.21.18,
#                            i.e. Debian 12 / Ubuntu 22.04 and later, which the python3.11
#                            dependency needs anyway), gzip (for older tools), xz (smallest,
#                            ten times slower), none
#   CERTFLEET_WHEELHOUSE     a folder of wheels kept between builds. When set, the build first
#                            tries it alone (no index: fast, and the same versions as last
#                            time) and falls back to resolving against the index, saving every
#                            wheel there. Unset: every build resolves against the index.
#
# The installed layout is a contract the Ansible roles rely on: see packaging/debian/README.Debian.
#
# How each package gets its own Python environment at /opt/certfleet/<pkg>
# -----------------------------------------------------------------------
# A virtualenv is made with the system interpreter in a staging root, at
# <staging>/opt/certfleet/<pkg>, and certfleet is pip-installed into it from a wheel built from
# a copy of the sources. A venv locates its site-packages from the place of bin/python and
# pyvenv.cfg ("home = /usr/bin"), not from an absolute path, so the tree works wherever it is
# unpacked. What does hold absolute paths is fixed here:
#   - console-script shebangs (#!<staging>/.../bin/python): rewritten to
#     "#!/opt/certfleet/<pkg>/bin/python -I" (isolated mode: PYTHONPATH and the current
#     directory cannot inject modules into a root service);
#   - the activate scripts and pyvenv.cfg's "command =" line: deleted;
#   - direct_url.json (the wheel's temporary path): deleted;
#   - the file names compiled into .pyc files: compiled with the final path (compileall -s/-p).
# The build then fails if the staging path is left anywhere in the tree.
# Rejected alternatives: building the venv at the real /opt/certfleet/<pkg> (needs root and
# would overwrite an installed package on the build machine, as the upgrade test does), and
# `pip install --target` plus a launcher (no console scripts, no .pth handling, no pip metadata).
# The cross-over code is dropped: the agent's environment has no `collector` package (and no
# certfleet/certfleet-collector scripts), the collector's none of the `agent` package.
set -euo pipefail

log() { printf '[build-deb %3ds] %s\n' "$SECONDS" "$*" >&2; }
die() { printf '[build-deb] error: %s\n' "$*" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
outdir=${1:-$repo/dist}

command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found (Debian package dpkg)"
command -v dpkg >/dev/null 2>&1 || die "dpkg not found"
python=${CERTFLEET_PYTHON:-/usr/bin/python3}
[ -x "$python" ] || die "$python not found: install python3 (>= 3.11) or set CERTFLEET_PYTHON"
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "$python is Python $pyver; certfleet needs 3.11 or newer"
pybin=/usr/bin/python$pyver
[ -x "$pybin" ] || die "$pybin not found: the packages run on the system's python$pyver"
"$pybin" -c 'import venv, ensurepip' 2>/dev/null || die "$pybin has no venv/ensurepip: install python$pyver-venv"
command -v cc >/dev/null 2>&1 || die "no C compiler: install gcc and python$pyver-dev (pyjks -> twofish builds from source)"
python_pkg=python$pyver
if pydeb=$(dpkg -S "$pybin" 2>/dev/null); then
  # python3.11-minimal: /usr/bin/python3.11 -> depend on python3.11 (the full standard library)
  python_pkg=${pydeb%%:*}
  python_pkg=${python_pkg%-minimal}
fi

version=${CERTFLEET_DEB_VERSION:-$("$pybin" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$repo/pyproject.toml")}
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || die "not a Debian version: '$version'"
arch=$(dpkg --print-architecture)
case "${CERTFLEET_DEB_COMPRESS:-zstd}" in
  gzip|xz|zstd|none) compress=${CERTFLEET_DEB_COMPRESS:-zstd} ;;
  *) die "CERTFLEET_DEB_COMPRESS must be zstd, gzip, xz or none" ;;
esac

umask 022
work=$(mktemp -d "${TMPDIR:-/tmp}/certfleet-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
SECONDS=0

# ---------------------------------------------------------------- the sources, copied
# Only what the distribution is made of; a copy, so that the build never writes into the
# repository (setuptools' build/ and *.egg-info) and stale build output cannot leak in.
src=$work/src
mkdir -p "$src"
cp -a "$repo/pyproject.toml" "$repo/README.md" "$src/"
for d in agent collector proto; do
  cp -a "$repo/$d" "$src/$d"
done
find "$src" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +

# ---------------------------------------------------------------- one environment per package
# Dependencies are resolved once into a wheelhouse (pip wheel: network), then both
# environments are installed from it without an index.
wheelhouse=${CERTFLEET_WHEELHOUSE:-$work/wheelhouse}
mkdir -p "$wheelhouse" "$work/tools"
wheelhouse=$(cd "$wheelhouse" && pwd)

tool_pip() {  # pip of a throwaway venv on the target interpreter (wheels are built for it)
  if [ ! -x "$work/tools/venv/bin/python" ]; then
    "$pybin" -m venv "$work/tools/venv"
  fi
  "$work/tools/venv/bin/python" -m pip "$@"
}

fill_wheelhouse() {
  # a certfleet wheel of an earlier build (same version number, older dependencies) left in a kept
  # wheelhouse is taken for the new one and its dependency list used: a dependency added since is
  # then never fetched ("no matching distribution" at the offline install). Only ours goes.
  rm -f "$wheelhouse"/certfleet-*.whl
  log "resolving dependencies against the package index into $wheelhouse"
  tool_pip wheel -q --wheel-dir "$wheelhouse" "setuptools>=68" wheel >&2
  rm -rf "$work/wheel"
  PIP_FIND_LINKS="$wheelhouse" tool_pip wheel -q --no-deps --wheel-dir "$work/wheel" "$src" >&2
  tool_pip wheel -q --wheel-dir "$wheelhouse" "$(echo "$work"/wheel/certfleet-*.whl)[collector]" >&2
}

build_wheel_offline() {
  rm -rf "$work/wheel"
  PIP_NO_INDEX=1 PIP_FIND_LINKS="$wheelhouse" tool_pip wheel -q --no-deps --wheel-dir "$work/wheel" "$src" >&2
}

install_venv() {  # install_venv PKG EXTRA: certfleet into <staging>/opt/certfleet/<pkg>, no index
  local pkg=$1 extra=$2
  local venv=$work/$pkg/root/opt/certfleet/$pkg
  rm -rf "$work/$pkg"
  mkdir -p "$work/$pkg/root/opt/certfleet"
  "$pybin" -m venv --without-pip "$venv"
  PIP_NO_INDEX=1 PIP_FIND_LINKS="$wheelhouse" tool_pip --python "$venv/bin/python" install -q --no-compile \
    --no-warn-script-location "$(echo "$work"/wheel/certfleet-*.whl)$extra" >&2
}

install_all() {
  build_wheel_offline && install_venv agent "" && install_venv collector "[collector]"
}

if [ -n "${CERTFLEET_WHEELHOUSE:-}" ] && install_all 2>"$work/offline.log"; then
  log "installed from the wheelhouse alone ($wheelhouse)"
else
  fill_wheelhouse
  install_all
fi

finish_venv() {  # finish_venv PKG: drop what is not this package's, fix absolute paths
  local pkg=$1
  local root=$work/$pkg/root
  local venv=$root/opt/certfleet/$pkg
  local final=/opt/certfleet/$pkg
  local site
  site=$(echo "$venv"/lib/python"$pyver"/site-packages)
  [ -d "$site" ] || die "$pkg: no site-packages in $venv"
  # the other program's code and commands (one distribution holds both)
  local drop_pkg drop_scripts
  if [ "$pkg" = agent ]; then drop_pkg=collector; drop_scripts="certfleet certfleet-collector"
  else drop_pkg=agent; drop_scripts="certfleet-agent"; fi
  rm -rf "${site:?}/$drop_pkg"
  local record
  record=$(echo "$site"/certfleet-*.dist-info/RECORD)
  sed -i "/^$drop_pkg\//d" "$record"
  for s in $drop_scripts; do
    rm -f "$venv/bin/$s"
    sed -i "/^\.\.\/\.\.\/\.\.\/bin\/$s,/d" "$record"
  done
  rm -f "$site"/certfleet-*.dist-info/direct_url.json

  # absolute paths (see the header): shebangs, activate scripts, pyvenv.cfg, .pyc file names
  rm -f "$venv"/bin/activate* "$venv"/bin/Activate.ps1
  sed -i '/^command = /d' "$venv/pyvenv.cfg"
  local f first
  for f in "$venv"/bin/*; do
    [ -f "$f" ] && [ ! -L "$f" ] || continue
    IFS= read -r first < "$f" || true
    case "$first" in
      "#!$venv/bin/python"*) sed -i "1s|.*|#!$final/bin/python -I|" "$f" ;;
    esac
  done
  find "$venv" -name __pycache__ -prune -exec rm -rf {} +
  # (a module that does not compile for this Python, such as javaobj/v3/beans.py with 3.12
  # syntax, is reported and left without .pyc, as pip does; it is never imported)
  "$venv/bin/python" -m compileall -q -j 0 -s "$root" -p / "$venv/lib" >"$work/compile-$pkg.log" 2>&1 \
    || grep -F "Error compiling" "$work/compile-$pkg.log" | sed "s|^|[build-deb] $pkg: not compiled: |" >&2 || true
  if grep -rlF -- "$work" "$venv" >"$work/leftover-$pkg" 2>/dev/null; then
    die "$pkg: the staging path is still written in: $(head -5 "$work/leftover-$pkg" | tr '\n' ' ')"
  fi
}

# ---------------------------------------------------------------- the package trees
assemble() {  # assemble PKG CONFFILE MODE
  local pkg=$1 conf=$2 conf_mode=$3
  local name=certfleet-$pkg
  local root=$work/$pkg/root
  local deb=$here/debian/$name

  install -d -m 0755 "$root/usr/bin" "$root/lib/systemd/system" "$root/usr/share/doc/$name"
  install -d -m 0750 "$root/etc/certfleet"
  install -m "$conf_mode" "$deb/$conf" "$root/etc/certfleet/$conf"
  install -m 0644 "$here/systemd/$name.service" "$root/lib/systemd/system/$name.service"
  install -m 0644 "$here/debian/README.Debian" "$here/debian/copyright" "$root/usr/share/doc/$name/"
  if [ "$pkg" = agent ]; then
    ln -s /opt/certfleet/agent/bin/certfleet-agent "$root/usr/bin/certfleet-agent"
  else
    ln -s /opt/certfleet/collector/bin/certfleet-collector "$root/usr/bin/certfleet-collector"
    ln -s /opt/certfleet/collector/bin/certfleet "$root/usr/bin/certfleet"
  fi

  install -d -m 0755 "$root/DEBIAN"
  local size
  size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
  sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@SIZE@|$size|" -e "s|@PYTHON_PKG@|$python_pkg|" \
    "$deb/control.in" > "$root/DEBIAN/control"
  echo "/etc/certfleet/$conf" > "$root/DEBIAN/conffiles"
  local script
  for script in postinst prerm postrm; do
    # the shared functions go where the "#@COMMON@" line is
    awk -v common="$here/debian/maintscript-common.sh" \
      '$0 == "#@COMMON@" { while ((getline line < common) > 0) print line; close(common); next } { print }' \
      "$deb/$script" > "$root/DEBIAN/$script"
    chmod 0755 "$root/DEBIAN/$script"
    sh -n "$root/DEBIAN/$script" || die "$name: $script is not valid sh"
  done
  (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
     | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
  chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

  local out=$outdir/${name}_${version}_${arch}.deb
  log "$name: dpkg-deb"
  dpkg-deb --root-owner-group -Z"$compress" --build "$root" "$out" >/dev/null
  log "$name: $(du -h "$out" | cut -f1) ($size KiB installed) -> $out"
  echo "$out"
}

log "environments installed"
finish_venv agent
finish_venv collector
log "environments ready"
assemble agent agent.toml 0600
assemble collector collector.toml 0640
log "done"

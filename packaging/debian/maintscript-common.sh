# Shared by the maintainer scripts of certfleet-agent and certfleet-collector; build-deb.sh
# puts it in place of the "#@COMMON@" line. Every function is safe to run again, works
# without systemd as PID 1, and never changes an existing file or directory (the admin's
# config, identity and state): modes and owners are set only when something is created.

CF_USER=certfleet
CF_ETC=/etc/certfleet
CF_LIB=/var/lib/certfleet

cf_ensure_user() {
    if ! getent group "$CF_USER" >/dev/null; then
        if command -v addgroup >/dev/null 2>&1; then
            addgroup --quiet --system "$CF_USER"
        else
            groupadd --system "$CF_USER"
        fi
    fi
    if ! getent passwd "$CF_USER" >/dev/null; then
        if command -v adduser >/dev/null 2>&1; then
            adduser --quiet --system --ingroup "$CF_USER" --home "$CF_LIB" --no-create-home \
                --shell /usr/sbin/nologin --gecos "certfleet" "$CF_USER"
        else
            useradd --system --gid "$CF_USER" --home-dir "$CF_LIB" --no-create-home \
                --shell /usr/sbin/nologin --comment "certfleet" "$CF_USER"
        fi
    fi
}

# cf_ensure_dir PATH MODE OWNER GROUP: create PATH with that mode and owner if it is missing.
cf_ensure_dir() {
    if [ ! -d "$1" ]; then
        mkdir -p "$1"
        chown "$3:$4" "$1"
        chmod "$2" "$1"
    fi
}

# cf_first_install_mode PATH MODE OWNER GROUP: on the first installation only ($CF_PREV empty),
# give a path dpkg unpacked (as root:root) its final owner and mode, unless the admin set a
# dpkg-statoverride for it.
cf_first_install_mode() {
    [ -z "$CF_PREV" ] || return 0
    [ -e "$1" ] || return 0
    if dpkg-statoverride --list "$1" >/dev/null 2>&1; then
        return 0
    fi
    chown "$3:$4" "$1"
    chmod "$2" "$1"
}

cf_base_dirs() {
    cf_first_install_mode "$CF_ETC" 0750 root "$CF_USER"
    cf_ensure_dir "$CF_ETC" 0750 root "$CF_USER"
    cf_ensure_dir "$CF_ETC/secrets" 0750 root "$CF_USER"
    cf_ensure_dir "$CF_LIB" 0750 root "$CF_USER"
}

cf_systemd_running() {
    [ -d /run/systemd/system ]
}

# After unpacking: register the unit with deb-systemd-helper without enabling it (the service
# needs configuring, the agent an enrollment, first); on upgrade restart it if it runs.
cf_unit_configure() {
    if command -v deb-systemd-helper >/dev/null 2>&1; then
        deb-systemd-helper unmask "$1" >/dev/null || true
        deb-systemd-helper update-state "$1" >/dev/null || true
    fi
    if cf_systemd_running; then
        systemctl --system daemon-reload >/dev/null || true
        if [ -n "$CF_PREV" ]; then
            if command -v deb-systemd-invoke >/dev/null 2>&1; then
                deb-systemd-invoke try-restart "$1" >/dev/null || true
            else
                systemctl try-restart "$1" >/dev/null || true
            fi
        fi
    fi
}

cf_unit_stop() {
    if cf_systemd_running; then
        if command -v deb-systemd-invoke >/dev/null 2>&1; then
            deb-systemd-invoke stop "$1" >/dev/null || true
        else
            systemctl stop "$1" >/dev/null || true
        fi
    fi
}

cf_unit_removed() {
    if cf_systemd_running; then
        systemctl --system daemon-reload >/dev/null || true
    fi
    if command -v deb-systemd-helper >/dev/null 2>&1; then
        deb-systemd-helper mask "$1" >/dev/null || true
    fi
}

cf_unit_purged() {
    if command -v deb-systemd-helper >/dev/null 2>&1; then
        deb-systemd-helper purge "$1" >/dev/null || true
        deb-systemd-helper unmask "$1" >/dev/null || true
    fi
}

# cf_other_package_remains PKG: true while PKG is installed or its config files are left.
cf_other_package_remains() {
    status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)
    case "$status" in
        ""|*" not-installed") return 1 ;;
        *) return 0 ;;
    esac
}

# On purge of the last certfleet package: everything certfleet kept on this host goes.
cf_purge_shared() {
    rm -rf "$CF_ETC" "$CF_LIB"
    if getent passwd "$CF_USER" >/dev/null; then
        if command -v deluser >/dev/null 2>&1; then
            deluser --quiet --system "$CF_USER" >/dev/null 2>&1 || true
        else
            userdel "$CF_USER" >/dev/null 2>&1 || true
        fi
    fi
    if getent group "$CF_USER" >/dev/null; then
        if command -v delgroup >/dev/null 2>&1; then
            delgroup --quiet --system --only-if-empty "$CF_USER" >/dev/null 2>&1 || true
        else
            groupdel "$CF_USER" >/dev/null 2>&1 || true
        fi
    fi
}

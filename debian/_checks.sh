# Checks shared by the config script and the postinst. Each check prints why
# a value is refused and returns 1, or prints nothing and returns 0.
PKG={{ config.package }}
CONF=/etc/$PKG/$PKG.conf

conf_get() {
    if [ -r "$CONF" ]; then sed -n "s/^$1=//p" "$CONF" | tail -n 1; fi
}

# line_frontend: whether debconf's frontend reads a bare line (teletype, or
# readline without a line editor). Those say they cannot go back, show no
# default, and refuse Enter at a choice; dialog and the others edit a field.
line_frontend() {
    db_capb || true
    case " $RET " in *" backup "*) return 1 ;; esac
}

check_port() {
    case $1 in
        '' | *[!0-9]*) echo "port '$1' is not a number from 1 to 65535"; return 1 ;;
    esac
    if [ "${#1}" -gt 5 ] || [ "$1" -lt 1 ] || [ "$1" -gt 65535 ]; then
        echo "port $1 is outside 1-65535"
        return 1
    fi
    # While the appliance runs, its own front door holds the configured port.
    if [ "$1" = "$(conf_get PYPI_PORT)" ] && systemctl is-active --quiet "$PKG.service" 2>/dev/null; then
        return 0
    fi
    if command -v ss >/dev/null 2>&1 && [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; then
        holder=$(ss -Hltnp "sport = :$1" 2>/dev/null |
            sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\),.*/\1 (pid \2)/p' | head -n 1)
        echo "port $1 is already in use${holder:+ by $holder}; choose another port or stop that service"
        return 1
    fi
}

check_user() {
    if ! printf '%s\n' "$1" | grep -Eqx '{{ username_pattern }}'; then
        echo "username '$1' is invalid: use 1-64 letters, digits and ._@+- starting with a letter or digit (no ':' or spaces)"
        return 1
    fi
}

check_data_dir() {
    case $1 in
        /*) ;;
        *) echo "data dir '$1' is not an absolute path; use one such as /srv/pypi"; return 1 ;;
    esac
    if ! printf '%s\n' "$1" | grep -Eqx '/[A-Za-z0-9._/+-]*'; then
        echo "data dir '$1' may only contain letters, digits and ._/+-"
        return 1
    fi
    case $1/ in
        / | //* | */./* | */../* | /var/)
            echo "data dir '$1' is not a dedicated directory; use one such as /srv/pypi"
            return 1
            ;;
    esac
    for system in {{ system_dirs | join(" ") }}; do
        case $1/ in
            "/$system"/*)
                echo "data dir '$1' is under /$system, a system or volatile path the container cannot keep packages in; use a dedicated directory such as /srv/pypi"
                return 1
                ;;
        esac
    done
    if [ -e "$1" ] && [ ! -d "$1" ]; then
        echo "data dir '$1' exists and is not a directory"
        return 1
    fi
}

check_passwords() {
    if [ "$1" != "$2" ]; then
        echo "the two passwords you typed do not match"
        return 1
    fi
    if [ "$(printf '%s' "$1" | wc -c)" -gt {{ bcrypt_max_bytes }} ]; then
        echo "the password is longer than bcrypt's {{ bcrypt_max_bytes }}-byte limit"
        return 1
    fi
}

check_access() {
    case $1 in
        {{ access_modes | join(" | ") }}) ;;
        *) echo "access '$1' is not one of {{ access_modes | join(", ") }}"; return 1 ;;
    esac
}

check_upstream() {
    case $1 in '' | none) return 0 ;; esac
    case $1 in
        *@*) echo "the upstream URL holds credentials (not shown); give the URL alone and put USER:PASSWORD in the file PYPI_UPSTREAM_CREDENTIALS names (in $CONF)"; return 1 ;;
    esac
    if ! printf '%s\n' "$1" | grep -Eqx '{{ upstream_pattern }}'; then
        echo "upstream '$1' is not an http:// or https:// simple-API URL such as https://pypi.org/simple/"
        return 1
    fi
}

check_tls() {
    case $1 in
        {{ tls_modes | join(" | ") }}) ;;
        *) echo "TLS mode '$1' is not one of {{ tls_modes | join(", ") }}"; return 1 ;;
    esac
}

# check_file WHAT PATH: an absolute path to a readable file.
check_file() {
    case $2 in
        /*) ;;
        *) echo "$1 path '$2' is not an absolute path"; return 1 ;;
    esac
    if [ ! -f "$2" ] || [ ! -r "$2" ]; then
        echo "$1 '$2' does not exist or cannot be read"
        return 1
    fi
}

# The pair is checked with openssl when it is installed (always on reconfigure;
# on a first install the postinst checks again before using it).
check_tls_cert() {
    check_file certificate "$1" || return 1
    command -v openssl >/dev/null 2>&1 || return 0
    if ! openssl x509 -in "$1" -noout 2>/dev/null; then
        echo "'$1' does not hold a PEM certificate"
        return 1
    fi
    if ! openssl x509 -in "$1" -noout -checkend 0 >/dev/null 2>&1; then
        echo "the certificate in '$1' expired on $(openssl x509 -in "$1" -noout -enddate | cut -d= -f2); renew it first"
        return 1
    fi
}

# check_tls_key KEY CERT
check_tls_key() {
    check_file key "$1" || return 1
    command -v openssl >/dev/null 2>&1 || return 0
    if ! key_pub=$(openssl pkey -in "$1" -passin pass: -pubout 2>/dev/null); then
        echo "'$1' does not hold an unencrypted PEM private key"
        return 1
    fi
    if [ "$key_pub" != "$(openssl x509 -in "$2" -noout -pubkey 2>/dev/null)" ]; then
        echo "the key '$1' does not match the certificate '$2'"
        return 1
    fi
}

check_duration() {
    if ! printf '%s\n' "$1" | grep -Eqx '{{ duration_pattern }}'; then
        echo "'$1' is not a duration such as 7d, 36h, 1d12h, 90m or 0 (off)"
        return 1
    fi
}

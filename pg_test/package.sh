#!/usr/bin/env bash
# The Debian package (scripts/package.sh), installed with dpkg and used on
# a throwaway cluster:
#
#   1. the package builds (revision 1): its name, version (Cargo.toml's),
#      architecture, dependencies and license;
#   2. dpkg -i installs it; dpkg -L lists the library, the control file and
#      every install and upgrade script (sql/pii_vault--A--B.sql,
#      sql/install/pii_vault--*.sql); the files on disk are the package's;
#   3. on a cluster preloading the installed library: CREATE EXTENSION, a
#      record stored by a writer, read back by a reader, found by email;
#   4. the same package at a higher revision installed with dpkg -i while
#      the server runs and a session is open: dpkg renames the library into
#      place (a new inode; the open backend keeps its old copy, mapped as
#      deleted), the open session goes on working, the postmaster is the
#      same, the server log records no crash, dpkg -s shows the new version;
#   5. the extension's own upgrade path from the package's files: after a
#      restart (on the new library) serving a second database,
#      CREATE EXTENSION pii_vault VERSION '0.1.0' there, then
#      ALTER EXTENSION pii_vault UPDATE reaches the default version.
#
#   pg_test/package.sh [DEB [DEB_NEXT]]
#
# Builds both packages with scripts/package.sh (CARGO_TARGET_DIR as set:
# after scripts/install.sh the release build is already there), or takes
# them as arguments or as PII_VAULT_DEB and PII_VAULT_DEB_NEXT (DEB_NEXT of
# a higher version than DEB). Leaves the package installed: its files are
# those of the same build that scripts/install.sh installs.
#
# The cluster runs as the `postgres` OS user on 127.0.0.1:54345, in its own
# directory under /tmp, removed on exit (PII_VAULT_KEEP_CLUSTER=1 keeps it).
# Prints one line per check and ends with "package: N passed, N failed".
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=../scripts/cluster.sh
. "$ROOT/scripts/cluster.sh"
# shellcheck source=checks.sh
. "$HERE/checks.sh"
export PATH="$HOME/.cargo/bin:$PATH"
PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"
PG_MAJOR="$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')"
PKG="postgresql-$PG_MAJOR-pii-vault"
SO="$("$PG_CONFIG" --pkglibdir)/pii_vault.so"
EXTDIR="$("$PG_CONFIG" --sharedir)/extension"
BASE="$(mktemp -d /tmp/pii_vault_package_test.XXXXXX)"
chmod 755 "$BASE"
KEEP="${PII_VAULT_KEEP_CLUSTER:-0}"
PORT=54345
DB=vault
DEB="${1:-${PII_VAULT_DEB:-}}"
DEB_NEXT="${2:-${PII_VAULT_DEB_NEXT:-}}"
CLUSTER_DIR="$BASE/cluster" PGDATA="$BASE/cluster/data"
SESSION=""

cleanup() {
    session_close
    if cluster_running; then cluster_stop immediate || true; fi
    if [ "$KEEP" = 1 ]; then echo "cluster kept in $BASE"; else rm -rf "$BASE"; fi
}
trap cleanup EXIT
finish() {
    echo "package: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

# Over loopback TCP, as the postgres superuser unless -U says otherwise.
q() { as_pg "$PG_BIN/psql" -X -q -At -h 127.0.0.1 -p "$PORT" -d "$DB" "$@"; }

# One session kept open across the package's upgrade: psql reading from a
# FIFO (fd 3); each statement is followed by a marker line, and
# session_sql prints what came back before it. (It runs in command
# substitutions: its count of markers is kept in a file.)
session_open() { # psql arguments
    mkfifo "$BASE/session.in"
    as_pg stdbuf -oL "$PG_BIN/psql" -X -q -At -h 127.0.0.1 -p "$PORT" -d "$DB" "$@" \
        <"$BASE/session.in" >"$BASE/session.out" 2>&1 &
    SESSION=$!
    exec 3>"$BASE/session.in"
    echo 0 >"$BASE/session.n"
    printf '\\echo @@0\n' >&3
}
session_sql() { # SQL (one statement, no semicolon)
    local session_n
    session_n=$(($(cat "$BASE/session.n") + 1))
    echo "$session_n" >"$BASE/session.n"
    printf '%s;\n\\echo @@%s\n' "$1" "$session_n" >&3
    for _ in $(seq 1 600); do
        grep -qx "@@$session_n" "$BASE/session.out" && break
        sleep 0.05
    done
    awk -v from="@@$((session_n - 1))" -v to="@@$session_n" '$0 == to {exit} f {print} $0 == from {f = 1}' \
        "$BASE/session.out"
}
session_close() {
    [ -n "$SESSION" ] || return 0
    exec 3>&-
    wait "$SESSION" 2>/dev/null
    SESSION=""
}

# build REVISION: scripts/package.sh into $BASE/debs; prints the package's path.
build() {
    local log="$BASE/package_$1.log"
    if "$ROOT/scripts/package.sh" --revision "$1" --out "$BASE/debs" >"$log" 2>&1; then
        tail -n 1 "$log"
    else
        tail -n 30 "$log" >&2
    fi
}
deb_field() { dpkg-deb --showformat="\${$2}" -W "$1"; }
# dpkg_install DEB LOG: dpkg -i, its output in LOG (shown when it fails).
dpkg_install() { dpkg -i "$1" >"$2" 2>&1 || { tail -n 20 "$2"; return 1; }; }

VERSION="$(cargo pkgid --offline --manifest-path "$ROOT/Cargo.toml" -p pii_vault)"
VERSION="${VERSION##*[#@]}"
UPSTREAM="${VERSION//-/\~}"

# ---- 1. the package ------------------------------------------------------------
if [ -z "$DEB" ]; then
    start=$SECONDS
    DEB="$(build 1)"
    check "scripts/package.sh builds $PKG, revision 1 ($((SECONDS - start)) s)" \
        all_of '[ -n "$DEB" ]' '[ "$(basename "$DEB")" = "${PKG}_${UPSTREAM}-1_$(dpkg --print-architecture).deb" ]' \
        '[ -f "$DEB" ]'
fi
[ -f "$DEB" ] || { fail "a package to install (got '$DEB')"; finish; }
V1="$(deb_field "$DEB" Version)"
echo "note   - $DEB: $(du -k "$DEB" | cut -f1) kB"
check_equal "the package is $PKG $UPSTREAM-REVISION for this machine's architecture" \
    "$(deb_field "$DEB" Package) ${V1%-*} $(deb_field "$DEB" Architecture)" \
    "$PKG $UPSTREAM $(dpkg --print-architecture)"
depends="$(deb_field "$DEB" Depends)"
check "it depends on postgresql-$PG_MAJOR and libc6 (with a minimum version): $depends" \
    all_of '[[ ", $depends," == *", postgresql-$PG_MAJOR,"* ]]' '[[ "$depends" == *"libc6 (>= "* ]]'
check "it carries the Apache-2.0 license (LICENSE) as /usr/share/doc/$PKG/copyright" \
    all_of 'dpkg-deb --fsys-tarfile "$DEB" | tar -xOf - "./usr/share/doc/$PKG/copyright" >"$BASE/copyright"' \
           'grep -qx "License: Apache-2.0" "$BASE/copyright"' \
           'diff <(tail -n +4 "$BASE/copyright") "$ROOT/LICENSE" >/dev/null'
if [ -z "$DEB_NEXT" ]; then
    revision="${V1##*-}"
    [[ "$revision" =~ ^[0-9]+$ ]] || revision=1
    start=$SECONDS
    DEB_NEXT="$(build $((revision + 1)))"
    check "scripts/package.sh --revision $((revision + 1)) builds the next revision ($((SECONDS - start)) s)" [ -f "$DEB_NEXT" ]
fi
[ -f "$DEB_NEXT" ] || { fail "a second package to upgrade to (got '$DEB_NEXT')"; finish; }
V2="$(deb_field "$DEB_NEXT" Version)"
check "the second package ($V2) is $PKG of a higher version than the first ($V1)" \
    all_of '[ "$(deb_field "$DEB_NEXT" Package)" = "$PKG" ]' 'dpkg --compare-versions "$V2" gt "$V1"'

# ---- 2. dpkg -i, dpkg -L ---------------------------------------------------------
# (Over a newer revision left by an earlier run, this is a downgrade, which
# dpkg -i does with a warning.)
check "dpkg -i installs $PKG $V1" dpkg_install "$DEB" "$BASE/dpkg_1.log"
check_equal "dpkg -s: $PKG $V1 installed" "$(dpkg-query -W -f='${Status} ${Version}' "$PKG" 2>&1)" \
    "install ok installed $V1"
dpkg -L "$PKG" >"$BASE/listed.txt" 2>&1
expected=("$SO" "$EXTDIR/pii_vault.control" "$EXTDIR/pii_vault--$VERSION.sql" "/usr/share/doc/$PKG/copyright")
for script in "$ROOT"/sql/pii_vault--*.sql "$ROOT"/sql/install/pii_vault--*.sql; do
    expected+=("$EXTDIR/$(basename "$script")")
done
missing="" extra=""
for file in "${expected[@]}"; do grep -qxF "$file" "$BASE/listed.txt" || missing="$missing $file"; done
while read -r path; do
    [ -d "$path" ] || printf '%s\n' "${expected[@]}" | grep -qxF "$path" || extra="$extra $path"
done <"$BASE/listed.txt"
check_equal "dpkg -L lists the library, the control file, every install and upgrade script and the license: ${#expected[@]} files, no other" \
    "missing:$missing; other:$extra" "missing:; other:"
check_equal "dpkg --verify: the files on disk are the package's" "$(dpkg --verify "$PKG" 2>&1)" ""

# ---- 3. the installed extension at work ----------------------------------------
mkdir -p "$CLUSTER_DIR"
cluster_init "$CLUSTER_DIR" "$PORT" "$DB"
cluster_conf "listen_addresses = '127.0.0.1'"
cluster_start || { tail -n 20 "$CLUSTER_LOG"; fail "the cluster starts on 127.0.0.1:$PORT with the installed library"; finish; }
q -d postgres -c "CREATE DATABASE $DB" >/dev/null
check_equal "CREATE EXTENSION pii_vault creates $VERSION" \
    "$(q -c "SET client_min_messages = warning" -c "CREATE EXTENSION pii_vault" \
         -c "SELECT extversion FROM pg_extension WHERE extname = 'pii_vault'" 2>&1 | tail -n 1)" "$VERSION"
q -c "CREATE ROLE pkg_writer LOGIN IN ROLE pii_vault_writer" -c "CREATE ROLE pkg_reader LOGIN IN ROLE pii_vault_reader" >/dev/null
TOKEN="$(q -U pkg_writer -c "SELECT vault_store('{\"name\": \"Ada Lovelace\", \"email\": \"ada@package.example\"}')" 2>&1)"
check "vault_store (as a pii_vault_writer) returns a token: $TOKEN" \
    all_of '[[ "$TOKEN" =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]]'
check_equal "vault_get (as a pii_vault_reader) returns the record" \
    "$(q -U pkg_reader -c "SELECT vault_get('$TOKEN') ->> 'name', vault_get('$TOKEN') ->> 'email'" 2>&1)" \
    "Ada Lovelace|ada@package.example"
check_equal "vault_lookup('email', ...) (as a pii_vault_reader) finds it, however the email is written" \
    "$(q -U pkg_reader -c "SELECT vault_lookup('email', ' ADA@Package.example')" 2>&1)" "$TOKEN"

# ---- 4. dpkg -i of the next revision under the running server -------------------
session_open -U pkg_reader
BACKEND="$(session_sql "SELECT pg_backend_pid()")"
check_equal "a session is open, and reads the record" \
    "$(session_sql "SELECT vault_get('$TOKEN') ->> 'email'")" "ada@package.example"
check "its backend ($BACKEND) has the installed library mapped" grep -qE " $SO\$" "/proc/$BACKEND/maps"
POSTMASTER="$(head -n 1 "$PGDATA/postmaster.pid")"
INODE="$(stat -c %i "$SO")"
start=$SECONDS
dpkg_install "$DEB_NEXT" "$BASE/dpkg_2.log"
check "dpkg -i installs $PKG $V2 while the server runs and the session is open ($((SECONDS - start)) s)" [ $? -eq 0 ]
check_equal "dpkg -s shows the new version" "$(dpkg-query -W -f='${Status} ${Version}' "$PKG" 2>&1)" \
    "install ok installed $V2"
# Whether the two builds' bytes are equal or not, an overwrite in place
# would keep the inode; dpkg's rename gives the path a new file, and the
# backends keep the old one, which the kernel shows as deleted.
check "the library was renamed into place, not overwritten: a new inode ($INODE -> $(stat -c %i "$SO")), no .dpkg-new left" \
    all_of '[ "$(stat -c %i "$SO")" != "$INODE" ]' '[ ! -e "$SO.dpkg-new" ]'
check "the open backend keeps its copy of the old library (mapped, deleted)" \
    grep -qF " $SO (deleted)" "/proc/$BACKEND/maps"
check_equal "the open session still works after the upgrade (same backend, reads, lookups)" \
    "$(session_sql "SELECT pg_backend_pid(), vault_get('$TOKEN') ->> 'email', vault_lookup('email', 'ada@package.example') = '$TOKEN'")" \
    "$BACKEND|ada@package.example|t"
check "the postmaster is the same process ($POSTMASTER), still running" \
    all_of '[ "$(head -n 1 "$PGDATA/postmaster.pid")" = "$POSTMASTER" ]' 'kill -0 "$POSTMASTER"'
check_equal "a new session works: a store and a read back" \
    "$(q -U pkg_writer -c "SELECT vault_get(vault_store('{\"email\": \"grace@package.example\"}')) ->> 'email'" 2>&1)" \
    "grace@package.example"
session_close
check_equal "the server log records no crashed backend" \
    "$(grep -cE "terminated by signal|was terminated|terminating any other active server processes|reinitializing" "$CLUSTER_LOG")" 0
check_equal "dpkg --verify: the files on disk are the new package's" "$(dpkg --verify "$PKG" 2>&1)" ""

# ---- 5. the extension's upgrade path, from the package's files -------------------
# pii_vault.database is read at server start, and a vault is created only
# there: the second database is served after a restart, which also loads
# the library the upgrade installed.
q -d postgres -c "CREATE DATABASE ${DB}2" >/dev/null
cluster_stop
cluster_conf "pii_vault.database = '${DB}2'"
cluster_start || { tail -n 20 "$CLUSTER_LOG"; fail "the cluster restarts serving ${DB}2"; finish; }
POSTMASTER="$(head -n 1 "$PGDATA/postmaster.pid")"
check "the restarted server maps the library the package's upgrade installed" \
    all_of 'grep -qE " $SO\$" "/proc/$POSTMASTER/maps"' '! grep -qF "$SO (deleted)" "/proc/$POSTMASTER/maps"'
DB="${DB}2"
# (The cluster's collation is C: ORDER BY sorts as sort does under LC_ALL=C.)
available="$(q -c "SELECT string_agg(version, ' ' ORDER BY version) FROM pg_available_extension_versions WHERE name = 'pii_vault'")"
wanted="$(for script in "$ROOT"/sql/install/pii_vault--*.sql "$EXTDIR/pii_vault--$VERSION.sql"; do
              basename "$script" .sql | sed 's/^pii_vault--//'
          done | LC_ALL=C sort -u | tr '\n' ' ' | sed 's/ $//')"
check_equal "PostgreSQL offers every released version and this one: $wanted" "$available" "$wanted"
check_equal "CREATE EXTENSION pii_vault VERSION '0.1.0' in a second database" \
    "$(q -c "SET client_min_messages = warning" -c "CREATE EXTENSION pii_vault VERSION '0.1.0'" \
         -c "SELECT extversion FROM pg_extension WHERE extname = 'pii_vault'" 2>&1 | tail -n 1)" "0.1.0"
check_equal "ALTER EXTENSION pii_vault UPDATE reaches the default version, $VERSION" \
    "$(q -c "SET client_min_messages = warning" -c "ALTER EXTENSION pii_vault UPDATE" \
         -c "SELECT extversion = default_version, extversion FROM pg_extension, pg_available_extensions
             WHERE extname = 'pii_vault' AND name = extname" 2>&1 | tail -n 1)" "t|$VERSION"
token2="$(q -U pkg_writer -c "SELECT vault_store('{\"email\": \"ada@package.example\"}')" 2>&1)"
check_equal "the updated vault stores, reads and looks up" \
    "$(q -U pkg_reader -c "SELECT vault_get('$token2') ->> 'email', vault_lookup('email', 'ADA@package.example') = '$token2'" 2>&1)" \
    "ada@package.example|t"

finish

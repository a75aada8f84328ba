# shellcheck shell=bash
# Shell functions for a throwaway PostgreSQL cluster run as the `postgres`
# OS user (initdb and postgres refuse root). Sourced by pg_test/run.sh and
# scripts/demo.sh.
#
#   cluster_init DIR PORT DB   initdb in DIR/data, generate DIR/vault.key,
#                              preload pii_vault with that keyfile, for
#                              the database DB (pii_vault.database)
#   cluster_start / cluster_stop / cluster_psql ARGS...

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"

as_pg() { runuser -u postgres -- "$@"; }

new_key() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }

# write_keyfile PATH KEY MODE
write_keyfile() {
    (umask 077 && printf '%s\n' "$2" > "$1")
    chown postgres:postgres "$1"
    chmod "$3" "$1"
}

cluster_init() {
    CLUSTER_DIR="$1"
    CLUSTER_PORT="$2"
    local database="${3:-postgres}"
    PGDATA="$CLUSTER_DIR/data"
    CLUSTER_LOG="$CLUSTER_DIR/server.log"
    chown postgres:postgres "$CLUSTER_DIR"
    chmod 700 "$CLUSTER_DIR"
    VAULT_KEY="$(new_key)"
    write_keyfile "$CLUSTER_DIR/vault.key" "$VAULT_KEY" 600
    as_pg "$PG_BIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
    cat >> "$PGDATA/postgresql.conf" <<CONF
listen_addresses = ''
port = $CLUSTER_PORT
unix_socket_directories = '$CLUSTER_DIR'
shared_preload_libraries = 'pii_vault'
pii_vault.keyfile = '$CLUSTER_DIR/vault.key'
pii_vault.database = '$database'
# The vault's own messages never carry values; statement texts written by
# a client can, so statements are not logged, not even failing ones.
log_statement = none
log_min_error_statement = panic
log_parameter_max_length = 0
log_error_verbosity = terse
CONF
}

cluster_conf() { for line in "$@"; do echo "$line" >> "$PGDATA/postgresql.conf"; done; }

cluster_start() { as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$CLUSTER_LOG" -w start >/dev/null; }

cluster_stop() { as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -w stop -m "${1:-fast}" >/dev/null; }

cluster_running() { [ -f "$PGDATA/postmaster.pid" ]; }

cluster_psql() { as_pg "$PG_BIN/psql" -X -h "$CLUSTER_DIR" -p "$CLUSTER_PORT" "$@"; }

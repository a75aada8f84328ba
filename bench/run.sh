#!/usr/bin/env bash
# pii_vault beside plain PostgreSQL and hand-written pgcrypto, in one run.
#
#   bench/run.sh [--records N] [--seconds S] [--rounds R] [--clients "1 2"]
#                [--scale M] [--rss CALLS] [--secdef-cost] [--floor]
#                [--budget-cost] [--smoke] [--rotation] [--rotation-pause MS]
#                [--life-cycle] [--standby] [--shards] [--fields]
#                [--migrate-rows N] [--no-install]
#
# Starts a throwaway cluster (pii_vault preloaded, synchronous_commit on),
# loads N ~1 KB customer profiles into each system, then runs pgbench
# (-M prepared) for get, lookup and store, alternating plain, pgcrypto and
# pii_vault in every round (in an order rotated per round) so machine noise
# hits all three alike. Prints ops/s and p50/p99 latency per operation and
# system, and the ratios.
# --scale M grows the data to M records and reruns get and lookup (plain
# and pii_vault) to compare latencies; --rss CALLS measures one backend's
# RSS after 10 000 and after CALLS vault_get calls. --secdef-cost reruns get
# and lookup with the most clients once more with vault_get and vault_lookup
# altered to SECURITY INVOKER without their pinned search_path (an
# experiment on the throwaway cluster, never a configuration: it measures
# what DESIGN.md's SECURITY DEFINER rule costs). --floor reruns lookup with
# two more systems: a call of the lookup's shape to a function that does
# nothing (PostgreSQL's own texteq), plain and as SECURITY DEFINER with the
# vault's pinned search_path: how fast a lookup could ever be, and what the
# pin alone costs. --budget-cost reruns get and lookup with the most
# clients as a non-superuser role with the per-role read budget on and off.
# --rotation runs instead of all of that (its own cluster, pii_vault only):
# N records stored under key version 1; the server restarted with versions
# 1 and 2 in the keyfile (2 active); then get and lookup with the most
# clients, alternating in 1 s pgbench runs: S s each before the rotation,
# throughout CALL vault_rotate(1000) (its default pause of 250 ms after each
# batch) in another session (counted only while it runs, however long that
# is), and S s each after it. R rounds: each
# later round restarts with the other version active and rotates back.
# Prints the rotation's wall time and records/s, ops/s during it over
# before, the failed calls (pgbench's failed transactions and aborted
# clients, and get and lookup calls the audit records as not ok: any makes
# the run FAILED) and vault_key_versions() (no record may be left under the
# old version). --rotation-pause MS: the same with CALL vault_rotate(1000,
# 'MS ms') (0: no pause, rotation at full speed).
# --life-cycle runs instead of the tables too (its own cluster, plain and
# pii_vault only): one share per record (three fields, vault_share beside a
# plain shares table) and one session per record (a small document,
# vault_session_store beside a plain sessions table), then get_shared,
# session_get, session_store and get, plain and pii_vault, as the main
# table runs them; then R rounds of the purge: N records stored
# expiring 1 s later (pii_vault.purge_interval a day meanwhile,
# pii_vault.delete_grace 0), vault get with the most clients in 1 s runs,
# S s before, throughout the purge (set off by purge_interval = 1 and a
# reload; over when no expiring row is left) and S s after. Prints the
# purge's records/s and get's ops/s during it over before (target: at
# least 0.90); a failed or not-ok get, a purge not audited, a live record
# gone or one purged before the reload makes the run FAILED.
# --standby: vault_get on a hot standby of the cluster (pg_basebackup -R,
# the same key) beside plain SELECT on the same standby, and the
# forwarding lag sampled from vault_stats() every 100 ms meanwhile; fails
# unless every read served there reaches the primary's audit.
# --shards: the cluster becomes shard 0 of two (pii_vault.shards = 2), a
# second shard and a PL/Proxy proxy database (examples/plproxy/, as
# written) start beside it; N records are stored through the proxy, and
# plain rows (the same on both shards) are read through a PL/Proxy
# function routed the same way. Then get and lookup, in turns: plain and
# vault called directly on shard 0 (its own records), and plain and vault
# through the proxy; the vault through the proxy over plain through the
# proxy is the vault's cost behind PL/Proxy (target: 0.9).
# --fields: single values (release 0.6.0): vault_tokenize and
# vault_detokenize beside a plain INSERT and SELECT of the value; a page of
# 50 records read by vault_get_many, by 50 vault_get calls in one
# statement, by 50 statements of one vault_get each (as an application
# showing a page makes them), and by plain SELECT ... WHERE id = ANY
# (records/s); then
# CALL vault_migrate of a table of --migrate-rows rows (default 1 000 000):
# records/s, and vault get throughput of other sessions while it runs
# over before it started.
# --smoke: tiny and quick (part of scripts/test.sh); it ends with
# get_shared, the purge and --fields, tiny (with --life-cycle: only the
# first two). The audit
# writer runs throughout: every pii_vault figure includes the audit.
# PII_VAULT_BENCH_PORT (54331) and PII_VAULT_BENCH_TMP (/tmp) choose the
# cluster's port and the directory its own directory is made in;
# PII_VAULT_KEEP_CLUSTER=1 keeps the cluster.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/.."
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/cluster.sh

RECORDS=100000 SECONDS_PER_RUN=10 ROUNDS=3 CLIENTS="1 2" SCALE=0 RSS_CALLS=0 SECDEF_COST=0 FLOOR=0 BUDGET_COST=0 ROTATION=0 ROTATION_PAUSE="" LIFE_CYCLE=0 STANDBY=0 SHARDS=0 FIELDS=0 MIGRATE_ROWS=1000000 SMOKE=0 INSTALL=1
while [ $# -gt 0 ]; do
    case "$1" in
        --records) RECORDS="$2"; shift 2 ;;
        --seconds) SECONDS_PER_RUN="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --clients) CLIENTS="$2"; shift 2 ;;
        --scale) SCALE="$2"; shift 2 ;;
        --rss) RSS_CALLS="$2"; shift 2 ;;
        --secdef-cost) SECDEF_COST=1; shift ;;
        --floor) FLOOR=1; shift ;;
        --budget-cost) BUDGET_COST=1; shift ;;
        --rotation) ROTATION=1; shift ;;
        --rotation-pause) ROTATION=1 ROTATION_PAUSE="$2"; shift 2 ;;
        --life-cycle) LIFE_CYCLE=1; shift ;;
        --standby) STANDBY=1; shift ;;
        --shards) SHARDS=1; shift ;;
        --fields) FIELDS=1; shift ;;
        --migrate-rows) MIGRATE_ROWS="$2"; shift 2 ;;
        --smoke) RECORDS=2000 SECONDS_PER_RUN=1 ROUNDS=1 CLIENTS=1 SCALE=0 RSS_CALLS=20000 MIGRATE_ROWS=5000 SMOKE=1; shift ;;
        --no-install) INSTALL=0; shift ;;
        *) echo "bench: unknown option $1" >&2; exit 2 ;;
    esac
done
if [ "$ROTATION" = 1 ] && [ "$LIFE_CYCLE" = 1 ]; then
    echo "bench: --rotation and --life-cycle each run on a cluster of their own: one at a time" >&2; exit 2
fi

if [ "$INSTALL" = 1 ]; then
    scripts/setup.sh >/dev/null
    echo "bench: building and installing pii_vault (release)"
    scripts/install.sh >/dev/null 2>&1
fi

# Anything else busy on the machine skews every figure: say how busy it was.
echo "bench: load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
lib="$("$PG_BIN/pg_config" --pkglibdir)/pii_vault.so"
echo "bench: $lib of $(date -r "$lib" '+%F %T'), sha256 $(sha256sum "$lib" | cut -c1-12)"
DIR="$(mktemp -d "${PII_VAULT_BENCH_TMP:-/tmp}/pii_vault_bench.XXXXXX")"
PORT="${PII_VAULT_BENCH_PORT:-54331}"
RESULTS="$DIR/results"
finish() {
    # A worker that ignores the fast shutdown must not keep the cluster up.
    if cluster_running; then cluster_stop || cluster_stop immediate; fi
    if [ "${PII_VAULT_KEEP_CLUSTER:-0}" = 1 ]; then echo "bench: cluster kept in $DIR"; else rm -rf "$DIR"; fi
}
trap finish EXIT
cluster_init "$DIR" "$PORT" bench
# Autovacuum off: a vacuum or analyze set off by one system's inserts would
# run inside whichever system's pgbench run happens to be under way (in one
# run they ran through the two-client store phase; BENCHMARKS.md). The
# script vacuums between phases instead, outside the timed runs.
cluster_conf "shared_buffers = 1GB" "max_wal_size = 8GB" "checkpoint_timeout = 30min" \
    "synchronous_commit = on" "max_connections = 50" "autovacuum = off"
[ "$SHARDS" = 1 ] && cluster_conf "pii_vault.shards = 2" "pii_vault.shard = 0"
cluster_start
mkdir -p "$RESULTS"
chown -R postgres:postgres "$DIR"
cp -r bench/scripts bench/setup.sql bench/load_*.sql "$DIR/"
chown -R postgres:postgres "$DIR"

psql_bench() { cluster_psql -q -X -v ON_ERROR_STOP=1 -U postgres -d bench "$@"; }
cluster_psql -q -U postgres -d postgres -c "CREATE DATABASE bench" >/dev/null
psql_bench -f "$DIR/setup.sql" >/dev/null

load() { # from to system...
    local from="$1" to="$2" step=50000 a b system
    shift 2
    for ((a = from; a <= to; a += step)); do
        b=$((a + step - 1)); [ "$b" -gt "$to" ] && b="$to"
        for system in "$@"; do
            psql_bench -v from="$a" -v to="$b" -f "$DIR/load_$system.sql" >/dev/null
        done
    done
    psql_bench -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null
}

# One 1 s pgbench run of vault OP around a rotation or a purge (LABEL).
# Its per-transaction log is what report.py counts: for the runs during
# the rotation or purge, only the transactions that ended while it ran,
# over that time.
window_run() { # label clients round phase op n
    local prefix="$RESULTS/$1-$3-$4-$5-$6" out status=0 failed aborted
    out=$(cd "$RESULTS" && as_pg pgbench -n -M prepared -c "$2" -j "$2" -T 1 \
        -h "$DIR" -p "$PORT" -U postgres -D records="$RECORDS" \
        -l --log-prefix="$prefix" -f "$DIR/scripts/vault_$5.sql" bench 2>&1) || status=$?
    # 2: the run went on with errors; they are counted, not fatal here.
    if [ "$status" != 0 ] && [ "$status" != 2 ]; then
        echo "$out" >&2; echo "bench: pgbench could not run vault $5" >&2; exit 1
    fi
    failed=$(grep -Eo 'number of failed transactions: [0-9]+' <<<"$out" | grep -Eo '[0-9]+$' || echo 0)
    aborted=$(grep -Ec 'client [0-9]+ .*aborted' <<<"$out" || true)
    if [ "$status" = 2 ] && [ "$failed" = 0 ] && [ "$aborted" = 0 ]; then aborted=1; fi
    if [ "$failed" != 0 ] || [ "$aborted" != 0 ]; then
        { grep -E 'aborted|failed|ERROR' <<<"$out" || true; echo "bench: errors in $1 round $3's $4 vault $5 run $6"; } >&2
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$3" "$4" "$5" "$2" "$failed" "$aborted" "$prefix.*" >>"$RESULTS/$1.tsv"
}

if [ "$ROTATION" = 1 ]; then
    # Key rotation under load, on this cluster alone (see the top): only
    # pii_vault is loaded and the other modes' tables are not made.
    c="${CLIENTS##* }"
    echo "bench: rotation: loading $RECORDS records into pii_vault (keyfile: one bare key, version 1)"
    t0=$(date +%s)
    load 1 "$RECORDS" vault
    echo "bench: loaded in $(( $(date +%s) - t0 )) s"
    key_versions() { psql_bench -At -c "SELECT string_agg(format('%s:%s:%s:%s', key_version, loaded, active, records), ' '
        ORDER BY key_version) FROM vault_key_versions()"; }
    expect_versions() { # expected when
        local got
        got=$(key_versions)
        if [ "$got" != "$1" ]; then echo "bench: $2, vault_key_versions() reads $got, not $1" >&2; exit 1; fi
    }
    expect_versions "1:t:t:$RECORDS" "before the new key"
    if [ -z "$ROTATION_PAUSE" ]; then
        rotate=(-c "CALL vault_rotate(1000)") how="CALL vault_rotate(1000) (its default pause, 250 ms after each batch)"
    else
        rotate=(-c "CALL vault_rotate(1000, '$ROTATION_PAUSE ms')") how="CALL vault_rotate(1000, '$ROTATION_PAUSE ms')"
    fi

    mark() { date +%s.%N; }
    slice() { window_run rotation "$c" "$@"; } # round phase op n
    phase() { # round phase seconds: get and lookup alternating, that many runs each
        local i
        for ((i = 1; i <= $3; i++)); do slice "$1" "$2" get "$i"; slice "$1" "$2" lookup "$i"; done
    }

    # Round 1 moves every record from version 1 to 2; round 2 back to 1
    # (pii_vault.active_key_version = 1), round 3 to 2 again, and so on:
    # the same two versions loaded in every round. Each round starts from a
    # vacuumed table and a restart, as the first does.
    : >"$RESULTS/rotation.rounds"
    : >"$RESULTS/rotation.audit"
    failed_rounds=0
    for ((round = 1; round <= ROUNDS; round++)); do
        to=$((2 - (round + 1) % 2)) from=$((1 + (round + 1) % 2))
        cluster_stop
        if [ "$round" = 1 ]; then
            # The old key as version 1 beside a new version 2, which the
            # restart makes active (pii_vault.active_key_version = 0: the
            # highest loaded).
            write_keyfile "$DIR/vault.key" "$(printf '1:%s\n2:%s' "$VAULT_KEY" "$(new_key)")" 600
        else
            cluster_conf "pii_vault.active_key_version = $to"
        fi
        cluster_start
        if [ "$to" = 2 ]; then
            expect_versions "1:t:f:$RECORDS 2:t:t:0" "round $round, after the restart"
        else
            expect_versions "1:t:t:0 2:t:f:$RECORDS" "round $round, after the restart"
        fi
        # The restart emptied shared_buffers: read the vault's tables and
        # indexes back in, so the runs before the rotation do not pay for it.
        psql_bench -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" -c "SELECT sum(pg_prewarm(c.oid))
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'i') AND (n.nspname = 'pii_vault' OR c.relname LIKE 'vault_ids%')" >/dev/null

        echo "bench: rotation round $round (version $from to $to): get and lookup (clients: $c), ${SECONDS_PER_RUN} x 1 s each before"
        before_start=$(mark)
        phase "$round" before "$SECONDS_PER_RUN"
        echo "bench: rotation round $round: $how, get and lookup alternating until it ends"
        # The rotation in its own session; the window file, written when
        # it has returned, ends the runs.
        window="$RESULTS/rotation-$round.window"
        (
            start=$(mark) status=0
            psql_bench "${rotate[@]}" >"$RESULTS/rotate-$round.out" 2>&1 || status=$?
            echo "$start $(mark) $status" >"$window.new"
            mv "$window.new" "$window"
        ) &
        rotator=$!
        for ((i = 1; ; i++)); do
            [ -f "$window" ] && break
            slice "$round" during get "$i"
            [ -f "$window" ] && break
            slice "$round" during lookup "$i"
        done
        wait "$rotator"
        read -r rot_start rot_end rot_status <"$window"
        if [ "$rot_status" != 0 ]; then
            cat "$RESULTS/rotate-$round.out" >&2; echo "bench: round $round: the rotation failed" >&2
            failed_rounds=$((failed_rounds + 1))
        fi
        # Records the rotation could not move are named in warnings.
        grep -F 'WARNING' "$RESULTS/rotate-$round.out" >&2 || true
        batches=$(grep -c 'records moved to key version' "$RESULTS/rotate-$round.out" || true)
        versions_after=$(psql_bench -At -F ' | ' -c "SELECT key_version, loaded, active, records FROM vault_key_versions() ORDER BY 1")
        left=$(psql_bench -At -c "SELECT coalesce(sum(records) FILTER (WHERE key_version <> $to), 0) FROM vault_key_versions()")
        if [ "$left" != 0 ]; then
            echo "bench: round $round: $left records left under other versions than $to" >&2
            failed_rounds=$((failed_rounds + 1))
        fi
        echo "bench: rotation round $round: get and lookup, ${SECONDS_PER_RUN} x 1 s each after it"
        after_start=$(mark)
        phase "$round" after "$SECONDS_PER_RUN"
        after_end=$(mark)
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$from" "$to" "$rot_start" "$rot_end" "$batches" "$left" \
            >>"$RESULTS/rotation.rounds"

        # Calls that returned without an error but did not find their
        # record (an existing token or email each time) are failures too:
        # the audit has every call's outcome.
        waited=$(psql_bench -At -c "SELECT pii_vault.audit_wait(60000)")
        if [ "$waited" != t ]; then echo "bench: the audit writer did not catch up within 60 s" >&2; exit 1; fi
        psql_bench -At -F $'\t' -c "SELECT $round, CASE WHEN at < to_timestamp($rot_start) THEN 'before'
                    WHEN at < to_timestamp($after_start) THEN 'during' ELSE 'after' END, operation, count(*)
                FROM pii_vault.audit_log
                WHERE operation IN ('get', 'lookup') AND outcome <> 'ok'
                    AND at >= to_timestamp($before_start) AND at < to_timestamp($after_end)
                GROUP BY 1, 2, 3" >>"$RESULTS/rotation.audit"
        # No further round after a failed one: it would start from records
        # under both versions.
        if [ "$failed_rounds" != 0 ]; then break; fi
        psql_bench -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null
    done

    printf 'records\t%s\n' "$RECORDS" >"$RESULTS/rotation.facts"
    echo
    echo "## Key rotation: $RECORDS records, $how, clients: $c, pgbench -M prepared in 1 s runs, $ROUNDS round(s)"
    echo
    python3 bench/report.py "$RESULTS" --rotation
    echo
    echo "vault_key_versions() after the last round:"
    echo
    echo "| key_version | loaded | active | records |"
    echo "| --- | --- | --- | --- |"
    sed 's/^/| /; s/$/ |/' <<<"$versions_after"
    echo
    failures=$(awk -F'\t' '{ n += $5 + $6 } END { print n + 0 }' "$RESULTS/rotation.tsv")
    not_ok=$(awk -F'\t' '{ n += $4 } END { print n + 0 }' "$RESULTS/rotation.audit")
    if [ "$failed_rounds" != 0 ] || [ "$failures" != 0 ] || [ "$not_ok" != 0 ]; then
        echo "bench: rotation FAILED: $failed_rounds rotation(s) failed or left records behind," \
            "$failures failed pgbench transactions or aborted clients, $not_ok get/lookup calls not ok in the audit" >&2
        exit 1
    fi
    echo "bench: rotation: no failed calls; after each round every record under its new key version"
    echo
    echo "bench: done"
    exit 0
fi

# pgbench one system/op; appends to runs.tsv. System vault_invoker runs
# the vault's scripts (see --secdef-cost).
run() { # op clients round system records label
    local op="$1" c="$2" round="$3" system="$4" records="$5" label="$6"
    local script="${system%_invoker}" user=postgres
    # vault_app / vault_app_off: the vault as a non-superuser login role
    # (bench_app), whose calls the per-role budgets charge (superusers are
    # exempt); _off runs while the budget is switched off.
    case "$system" in vault_app*) script=vault user=bench_app ;; esac
    local prefix="$RESULTS/$label-$op-$c-$round-$system"
    local out
    out=$(cd "$RESULTS" && as_pg pgbench -n -M prepared -c "$c" -j "$c" -T "$SECONDS_PER_RUN" \
        -h "$DIR" -p "$PORT" -U "$user" -D records="$records" \
        -l --log-prefix="$prefix" -f "$DIR/scripts/${script}_${op}.sql" bench 2>&1) || {
        echo "$out" >&2; echo "bench: pgbench failed for $system $op" >&2; exit 1; }
    local tps
    tps=$(grep -Eo 'tps = [0-9.]+ \(without initial connection time\)' <<<"$out" | grep -Eo '[0-9.]+' | head -1)
    local failed
    failed=$(grep -Eo 'number of failed transactions: [0-9]+' <<<"$out" | grep -Eo '[0-9]+$' || echo 0)
    if [ -z "$tps" ] || [ "${failed:-0}" != 0 ]; then
        echo "$out" >&2; echo "bench: $system $op did not run cleanly" >&2; exit 1
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$op" "$c" "$round" "$system" "$tps" "$prefix*" >> "$RESULTS/$label.tsv"
}

# The systems in the order round R runs them: rotated one place per round,
# so none always goes first (right after the previous operation's writes)
# or always follows the same neighbour.
in_turn() { # round system...
    local r="$1" i
    shift
    local systems=("$@")
    for ((i = 0; i < ${#systems[@]}; i++)); do
        echo "${systems[$(((i + r - 1) % ${#systems[@]}))]}"
    done
}

if [ "$SHARDS" = 1 ]; then
    # Shard 0 is this cluster; shard 1 and the proxy start beside it with
    # the same key. Everything runs as the superuser postgres (budgets do
    # not apply; PL/Proxy connects to the shards as postgres).
    node_start() { # name port database: a cluster like this one, same key
        local dir="$DIR/$1"
        mkdir -p "$dir"; chown postgres:postgres "$dir"; chmod 700 "$dir"
        write_keyfile "$dir/vault.key" "$VAULT_KEY" 600
        as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
        cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = ''
port = $2
unix_socket_directories = '$dir'
shared_preload_libraries = 'pii_vault'
pii_vault.keyfile = '$dir/vault.key'
pii_vault.database = '$3'
pii_vault.shards = 2
pii_vault.shard = ${4:-0}
shared_buffers = 512MB
synchronous_commit = on
autovacuum = off
CONF
        as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
        as_pg "$PG_BIN/psql" -X -q -h "$dir" -p "$2" -d postgres -c "CREATE DATABASE $3" >/dev/null
    }
    S1_DIR="$DIR/shard1" S1_PORT=$((PORT + 1)) PX_DIR="$DIR/proxy" PX_PORT=$((PORT + 2))
    nodes_stop() {
        for d in "$PX_DIR" "$S1_DIR"; do
            [ -f "$d/data/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$d/data" -w stop -m fast >/dev/null
        done
        return 0
    }
    trap 'nodes_stop; finish' EXIT
    node_start shard1 "$S1_PORT" bench 1
    node_start proxy "$PX_PORT" proxy
    s1() { as_pg "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$S1_DIR" -p "$S1_PORT" -d bench "$@"; }
    px() { as_pg "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$PX_DIR" -p "$PX_PORT" -d proxy "$@"; }
    s1 -f "$DIR/setup.sql" >/dev/null
    psql_bench -f examples/plproxy/shard.sql >/dev/null
    s1 -f examples/plproxy/shard.sql >/dev/null
    px -c "CREATE EXTENSION pii_vault" >/dev/null
    px -v shard0="host=$DIR port=$PORT dbname=bench" -v shard1="host=$S1_DIR port=$S1_PORT dbname=bench" \
       -f examples/plproxy/cluster.sql >/dev/null
    px -f examples/plproxy/proxy.sql >/dev/null
    echo "bench: shards: storing $RECORDS records through the proxy; plain rows on both shards"
    px -c "CREATE TABLE vault_ids (n int PRIMARY KEY, id uuid NOT NULL)" -c "CREATE TABLE plain_ids (n int PRIMARY KEY, id uuid NOT NULL)" >/dev/null
    { psql_bench -At -c "SELECT pg_get_functiondef('bench_doc'::regproc)"; echo ";"; } | px >/dev/null
    px -c "SET pii_vault.max_reads_per_statement = 0" -c "SET pii_vault.max_writes_per_statement = 0" \
       -c "INSERT INTO vault_ids SELECT n, vault.vault_store(bench_doc(n, 'user' || n || '@example.com')) FROM generate_series(1, $RECORDS) n" >/dev/null
    load 1 "$RECORDS" plain
    psql_bench -c "COPY plain_customers TO STDOUT" | s1 -c "COPY plain_customers FROM STDIN"
    psql_bench -c "COPY plain_ids TO STDOUT" | px -c "COPY plain_ids FROM STDIN"
    # Shard 0's own records, numbered 1..K, for the direct calls.
    psql_bench -c "SET pii_vault.max_reads_per_statement = 0" -c "CREATE TABLE shard_ids AS SELECT row_number() OVER (ORDER BY token)::int AS n, token AS id FROM pii_vault.records" \
               -c "CREATE TABLE shard_emails AS SELECT row_number() OVER ()::int AS n, email FROM (SELECT vault_get(id) ->> 'email' AS email FROM shard_ids) e" \
               -c "ALTER TABLE shard_ids ADD PRIMARY KEY (n)" -c "ALTER TABLE shard_emails ADD PRIMARY KEY (n)" >/dev/null
    K="$(psql_bench -At -c "SELECT count(*) FROM shard_ids")"
    s1 -c "VACUUM ANALYZE" >/dev/null; px -c "VACUUM ANALYZE" >/dev/null; psql_bench -c "VACUUM ANALYZE" >/dev/null
    # Plain rows through PL/Proxy, routed by one function call as the
    # vault's are (both shards hold every plain row).
    px -f - >/dev/null <<'SQL'
CREATE FUNCTION plain_get(i_id uuid) RETURNS jsonb AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_shard_of(i_id);
    SELECT c.doc AS plain_get FROM plain_customers c WHERE c.id = i_id;
$$ LANGUAGE plproxy;
CREATE FUNCTION plain_lookup(i_email text) RETURNS uuid AS $$
    CLUSTER 'vault_shards'; RUN ON hashtext(i_email);
    SELECT c.id AS plain_lookup FROM plain_customers c WHERE c.email = i_email;
$$ LANGUAGE plproxy;
SQL
    cat >"$DIR/direct_plain_get.sql" <<'SQL'
\set n random(1, :records)
SELECT doc FROM plain_customers WHERE id = (SELECT id FROM plain_ids WHERE n = :n);
SQL
    cat >"$DIR/direct_vault_get.sql" <<'SQL'
\set n random(1, :shard_records)
SELECT vault_get((SELECT id FROM shard_ids WHERE n = :n));
SQL
    cat >"$DIR/direct_plain_lookup.sql" <<'SQL'
\set n random(1, :records)
SELECT id FROM plain_customers WHERE email = 'user' || :n || '@example.com';
SQL
    cat >"$DIR/direct_vault_lookup.sql" <<'SQL'
\set n random(1, :shard_records)
SELECT vault_lookup('email', (SELECT email FROM shard_emails WHERE n = :n));
SQL
    cat >"$DIR/proxied_plain_get.sql" <<'SQL'
\set n random(1, :records)
SELECT plain_get((SELECT id FROM plain_ids WHERE n = :n));
SQL
    cat >"$DIR/proxied_vault_get.sql" <<'SQL'
\set n random(1, :records)
SELECT vault.vault_get((SELECT id FROM vault_ids WHERE n = :n));
SQL
    cat >"$DIR/proxied_plain_lookup.sql" <<'SQL'
\set n random(1, :records)
SELECT plain_lookup('user' || :n || '@example.com');
SQL
    cat >"$DIR/proxied_vault_lookup.sql" <<'SQL'
\set n random(1, :records)
SELECT vault.vault_lookup('email', 'user' || :n || '@example.com');
SQL
    chown postgres:postgres "$DIR"/*.sql
    : >"$RESULTS/shards.tsv"
    for op in get lookup; do
        for c in $CLIENTS; do
            for ((round = 1; round <= ROUNDS; round++)); do
                for system in $(in_turn "$round" direct_plain direct_vault proxied_plain proxied_vault); do
                    case "$system" in direct_*) where=(-h "$DIR" -p "$PORT" bench) ;; *) where=(-h "$PX_DIR" -p "$PX_PORT" proxy) ;; esac
                    out=$(cd "$RESULTS" && as_pg pgbench -n -M prepared -c "$c" -j "$c" -T "$SECONDS_PER_RUN" -U postgres \
                        -D records="$RECORDS" -D shard_records="$K" -f "$DIR/${system}_$op.sql" "${where[@]}" 2>&1)
                    tps=$(grep -Eo 'tps = [0-9.]+' <<<"$out" | head -1 | grep -Eo '[0-9.]+')
                    failed=$(grep -Eo 'number of failed transactions: [0-9]+' <<<"$out" | grep -Eo '[0-9]+$' || echo 0)
                    if [ -z "$tps" ] || [ "${failed:-0}" != 0 ]; then echo "$out" >&2; echo "bench: shards $system $op failed" >&2; exit 1; fi
                    printf '%s\t%s\t%s\t%s\t%s\n' "$op" "$c" "$round" "$system" "$tps" >>"$RESULTS/shards.tsv"
                done
            done
        done
    done
    echo
    echo "## Two shards behind PL/Proxy ($RECORDS records, ${SECONDS_PER_RUN} s runs, $ROUNDS round(s), ops/s medians)"
    echo
    python3 - "$RESULTS/shards.tsv" <<'PY'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
print("| op | clients | plain, direct | vault, direct | vault / plain, direct | plain, proxied | vault, proxied | vault / plain, proxied |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for op in ("get", "lookup"):
    for c in sorted({r[1] for r in rows if r[0] == op}, key=int):
        m = {s: statistics.median(float(r[4]) for r in rows if r[0] == op and r[1] == c and r[3] == s)
             for s in ("direct_plain", "direct_vault", "proxied_plain", "proxied_vault")}
        print(f"| {op} | {c} | {m['direct_plain']:.0f} | {m['direct_vault']:.0f} | {m['direct_vault'] / m['direct_plain']:.2f} "
              f"| {m['proxied_plain']:.0f} | {m['proxied_vault']:.0f} | {m['proxied_vault'] / m['proxied_plain']:.2f} |")
PY
    echo
    echo "bench: done"
    exit 0
fi

if [ "$STANDBY" = 1 ]; then
    # Reads on a hot standby (pg_basebackup -R, the same key): vault_get
    # beside a plain SELECT on the same standby, each run of SECONDS_PER_RUN
    # seconds, in turns; while vault_get runs, the forwarding lag (the age
    # of the oldest event the primary has not taken, vault_stats()) is
    # sampled every 100 ms. Afterwards every read must be in the primary's
    # audit, naming the standby.
    echo "bench: standby: loading $RECORDS records into plain and pii_vault on the primary"
    load 1 "$RECORDS" plain vault
    SB_DIR="$DIR/standby" SB_PORT=$((PORT + 1))
    mkdir -p "$SB_DIR"; chown postgres:postgres "$SB_DIR"; chmod 700 "$SB_DIR"
    as_pg "$PG_BIN/pg_basebackup" -h "$DIR" -p "$PORT" -D "$SB_DIR/data" -R -X stream -c fast
    write_keyfile "$SB_DIR/vault.key" "$VAULT_KEY" 600
    echo "port = $SB_PORT" >>"$SB_DIR/data/postgresql.conf"
    echo "unix_socket_directories = '$SB_DIR'" >>"$SB_DIR/data/postgresql.conf"
    echo "pii_vault.keyfile = '$SB_DIR/vault.key'" >>"$SB_DIR/data/postgresql.conf"
    as_pg "$PG_BIN/pg_ctl" -D "$SB_DIR/data" -l "$SB_DIR/server.log" -w start >/dev/null
    standby_stop() { as_pg "$PG_BIN/pg_ctl" -D "$SB_DIR/data" -w stop -m fast >/dev/null || true; }
    trap 'standby_stop; finish' EXIT
    sb() { as_pg "$PG_BIN/psql" -X -q -At -h "$SB_DIR" -p "$SB_PORT" -U postgres -d bench "$@"; }
    until [ "$(sb -c "SELECT count(*) FROM vault_ids")" = "$RECORDS" ]; do sleep 0.2; done
    sb -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" >/dev/null 2>&1 || true
    : >"$RESULTS/standby.tsv"
    total_vault=0
    for c in $CLIENTS; do
        for ((round = 1; round <= ROUNDS; round++)); do
            for system in $(in_turn "$round" plain vault); do
                lagfile="$RESULTS/lag-$c-$round-$system"
                : >"$lagfile"
                if [ "$system" = vault ]; then
                    ( while :; do sb -c "SELECT value FROM vault_stats() WHERE metric = 'forward_lag_ms'" >>"$lagfile" 2>/dev/null
                                  sleep 0.1; done ) &
                    sampler=$!
                fi
                out=$(cd "$RESULTS" && as_pg pgbench -n -M prepared -c "$c" -j "$c" -T "$SECONDS_PER_RUN" \
                    -h "$SB_DIR" -p "$SB_PORT" -U postgres -D records="$RECORDS" -f "$DIR/scripts/${system}_get.sql" bench 2>&1)
                if [ "$system" = vault ]; then kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true; fi
                tps=$(grep -Eo 'tps = [0-9.]+' <<<"$out" | head -1 | grep -Eo '[0-9.]+')
                done_n=$(grep -Eo 'number of transactions actually processed: [0-9]+' <<<"$out" | grep -Eo '[0-9]+$')
                failed=$(grep -Eo 'number of failed transactions: [0-9]+' <<<"$out" | grep -Eo '[0-9]+$' || echo 0)
                if [ -z "$tps" ] || [ "${failed:-0}" != 0 ]; then echo "$out" >&2; echo "bench: standby $system get failed" >&2; exit 1; fi
                [ "$system" = vault ] && total_vault=$((total_vault + done_n))
                printf '%s\t%s\t%s\t%s\t%s\n' "$c" "$round" "$system" "$tps" "$lagfile" >>"$RESULTS/standby.tsv"
            done
        done
    done
    # Every read the standby served reaches the primary's audit.
    got=0
    for _ in $(seq 1 600); do
        got=$(psql_bench -At -c "SELECT count(*) FROM pii_vault.audit_log WHERE operation = 'get' AND outcome = 'ok' AND server LIKE '%:$SB_PORT'")
        [ "$got" -ge "$total_vault" ] && break
        sleep 0.1
    done
    echo
    echo "## vault_get on a hot standby beside plain SELECT on it ($RECORDS records, ${SECONDS_PER_RUN} s runs, $ROUNDS round(s))"
    echo
    python3 - "$RESULTS/standby.tsv" <<'PY'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
print("| clients | plain tps (median) | vault tps (median) | vault / plain | forwarding lag p99 (ms) | max (ms) |")
print("| --- | --- | --- | --- | --- | --- |")
for c in sorted({r[0] for r in rows}, key=int):
    plain = statistics.median(float(r[3]) for r in rows if r[0] == c and r[2] == "plain")
    vault = statistics.median(float(r[3]) for r in rows if r[0] == c and r[2] == "vault")
    lags = sorted(int(x) for r in rows if r[0] == c and r[2] == "vault" for x in open(r[4]).read().split() if x.isdigit())
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else 0
    print(f"| {c} | {plain:.0f} | {vault:.0f} | {vault / plain:.2f} | {p99} | {max(lags) if lags else 0} |")
PY
    echo
    if [ "$got" -lt "$total_vault" ]; then
        echo "bench: standby: only $got of the $total_vault reads served there are in the primary's audit" >&2; exit 1
    fi
    echo "bench: standby: all $total_vault reads served there are in the primary's audit ($got get events naming it)"
    echo
    echo "bench: done"
    exit 0
fi

# Shares (--life-cycle; get_shared alone in --smoke): one share of each
# preloaded record in plain and pii_vault, then pgbench of the operations
# given, alternating the two systems as the main table does.
life_cycle_shares() { # op...
    local op c round system sample
    echo "bench: one share of each of the $RECORDS records, plain and pii_vault"
    load 1 "$RECORDS" plain_shares vault_shares
    # Every share made, and both systems give the same three fields.
    sample=$(psql_bench -At -c "SELECT count(*) = $RECORDS AND count(id) = $RECORDS FROM vault_share_ids" \
        -c "SELECT bool_and(vault_get_shared(v.id) = (SELECT jsonb_object_agg(f.key, f.value) FROM jsonb_each(c.doc) AS f
                WHERE f.key = ANY (s.fields)) AND vault_get_shared(v.id) ?& ARRAY['name', 'phone', 'address']
                AND NOT vault_get_shared(v.id) ? 'email')
            FROM vault_share_ids v JOIN plain_share_ids p USING (n) JOIN plain_shares s ON s.id = p.id
            JOIN plain_customers c ON c.id = s.token WHERE v.n IN (1, $((RECORDS / 2)), $RECORDS)")
    if [ "$sample" != $'t\nt' ]; then echo "bench: the shares are not as expected ($sample)" >&2; exit 1; fi
    if [[ " $* " == *" session_"* ]]; then
        echo "bench: one session of each of the $RECORDS records, plain and pii_vault"
        load 1 "$RECORDS" plain_sessions vault_sessions
        # Both systems give each session's document back as it was stored.
        sample=$(psql_bench -At -c "SELECT (SELECT count(id) FROM vault_session_ids) = $RECORDS
                AND bool_and(vault_session_get(v.id) = s.data)
            FROM vault_session_ids v JOIN plain_session_ids p USING (n) JOIN plain_sessions s ON s.id = p.id
            WHERE v.n IN (1, $((RECORDS / 2)), $RECORDS)")
        if [ "$sample" != t ]; then echo "bench: the sessions are not as expected ($sample)" >&2; exit 1; fi
    fi
    echo "bench: $ROUNDS round(s) of ${SECONDS_PER_RUN}s per system, clients: $CLIENTS"
    for op in "$@"; do
        for c in $CLIENTS; do
            for ((round = 1; round <= ROUNDS; round++)); do
                for system in $(in_turn "$round" plain vault); do
                    run "$op" "$c" "$round" "$system" "$RECORDS" shares
                done
            done
        done
    done
    cp "$RESULTS/shares.tsv" "$RESULTS/runs.tsv"
    echo
    echo "## Shares and sessions: $RECORDS records, one share each (3 of 9 fields) and one session each, pgbench -M prepared, ${SECONDS_PER_RUN}s x $ROUNDS rounds"
    echo
    python3 bench/report.py "$RESULTS" --shares
}

# The purge (--life-cycle; tiny in --smoke): ROUNDS rounds, each storing
# RECORDS records that expire 1 s later while no purge pass runs (a day
# between passes), then vault get on the live records in 1 s pgbench runs
# before, throughout and after the purge. A reload wakes the purge worker,
# which then purges at once: the purge starts with purge_interval = 1 and
# its reload, and is over when no record with an expiry is left (polled
# every 50 ms from one session). A failed get, a get the audit records as
# not ok, a purged record not audited as purged, a live one gone or one
# purged before the reload makes the run FAILED.
purge_interval() { # seconds
    psql_bench -c "ALTER SYSTEM SET pii_vault.purge_interval = $1" -c "SELECT pg_reload_conf()" >/dev/null
}
purge_slice() { window_run purge "$1" "$2" "$3" get "$4"; } # clients round phase n
life_cycle_purge() {
    local c="${CLIENTS##* }" round i live got heap id0 window purger start end status after_start audited problems=0
    : >"$RESULTS/purge.tsv"
    : >"$RESULTS/purge.rounds"
    : >"$RESULTS/purge.audit"
    # The purge worker connects once the bench database exists: it retries
    # 10 s after failing to, at the cluster's start.
    for ((i = 0; i < 300; i++)); do
        [ "$(psql_bench -At -c "SELECT count(*) FROM pg_stat_activity
            WHERE backend_type = 'pii_vault purge worker' AND datname = current_database()")" = 1 ] && break
        sleep 0.2
    done
    if [ "$i" = 300 ]; then echo "bench: the purge worker did not start within 60 s" >&2; exit 1; fi
    # No grace to wait out: an expired record is due at once.
    psql_bench -c "ALTER SYSTEM SET pii_vault.delete_grace = 0" >/dev/null
    purge_interval 86400
    for ((round = 1; round <= ROUNDS; round++)); do
        # Each round from a vacuumed table: the last purge's space is free
        # again, so every round's table is laid out as the first's (live
        # rows, then the expired ones). Vacuumed before the store, not
        # after: the worker runs a pass whenever its latch is set, and
        # VACUUM's invalidations can set it (a catch-up interrupt).
        psql_bench -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null
        live=$(psql_bench -At -c "SELECT count(*) FROM pii_vault.records")
        echo "bench: purge round $round: storing $RECORDS records that expire 1 s after they are stored ($live live)"
        # n from 4 000 001 on: phones unlike the preloaded records' and
        # the stored ones' (bench_store_n).
        for ((i = 4000001 + (round - 1) * RECORDS; i <= 4000000 + round * RECORDS; i += 50000)); do
            psql_bench -v from="$i" -v to=$((i + 49999 > 4000000 + round * RECORDS ? 4000000 + round * RECORDS : i + 49999)) \
                -f "$DIR/load_vault_expiring.sql" >/dev/null
        done
        until [ "$(psql_bench -At -c "SELECT max(expires_at) < clock_timestamp() FROM pii_vault.records")" = t ]; do
            sleep 0.2
        done
        heap=$(psql_bench -At -c "SELECT pg_relation_size('pii_vault.records') / 1048576")
        id0=$(psql_bench -At -c "SELECT pii_vault.audit_wait(60000)" -c "SELECT coalesce(max(last_id), 0) FROM pii_vault.audit_batches" | tail -1)
        echo "bench: purge round $round: vault get (clients: $c), ${SECONDS_PER_RUN} x 1 s before"
        for ((i = 1; i <= SECONDS_PER_RUN; i++)); do purge_slice "$c" "$round" before "$i"; done
        # Nothing may have been purged yet.
        got=$(psql_bench -At -c "SELECT count(*) FROM pii_vault.records")
        if [ "$got" != $((live + RECORDS)) ]; then
            echo "bench: purge round $round: $got rows before the purge, not $((live + RECORDS)): a purge pass ran off its interval" >&2
            exit 1
        fi
        echo "bench: purge round $round: purge_interval = 1 and a reload, vault get in 1 s runs until the purge ends"
        window="$RESULTS/purge-$round.window"
        (
            status=0
            # The poll must not be what slows get: with half the table
            # expiring, the planner would scan all of it every 50 ms; the
            # partial index on expires_at answers it.
            psql_bench -At -c "SET enable_seqscan = off" -c "SET enable_bitmapscan = off" \
                -c "SELECT extract(epoch FROM clock_timestamp())" \
                -c "ALTER SYSTEM SET pii_vault.purge_interval = 1" -c "SELECT pg_reload_conf()" \
                -c "DO \$\$ BEGIN
                        FOR i IN 1 .. 12000 LOOP
                            IF NOT EXISTS (SELECT 1 FROM pii_vault.records WHERE expires_at IS NOT NULL) THEN RETURN; END IF;
                            PERFORM pg_sleep(0.05);
                        END LOOP;
                        RAISE EXCEPTION 'the purge did not end within 10 minutes';
                    END \$\$" \
                -c "SELECT extract(epoch FROM clock_timestamp())" >"$RESULTS/purge-$round.out" 2>&1 || status=$?
            echo "$status $(head -1 "$RESULTS/purge-$round.out") $(tail -1 "$RESULTS/purge-$round.out")" >"$window.new"
            mv "$window.new" "$window"
        ) &
        purger=$!
        for ((i = 1; ; i++)); do
            [ -f "$window" ] && break
            purge_slice "$c" "$round" during "$i"
        done
        wait "$purger"
        read -r status start end <"$window"
        if [ "$status" != 0 ]; then
            cat "$RESULTS/purge-$round.out" >&2; echo "bench: purge round $round: the purge did not end" >&2; exit 1
        fi
        echo "bench: purge round $round: vault get, ${SECONDS_PER_RUN} x 1 s after it"
        after_start=$(date +%s.%N)
        for ((i = 1; i <= SECONDS_PER_RUN; i++)); do purge_slice "$c" "$round" after "$i"; done
        purge_interval 86400
        got=$(psql_bench -At -c "SELECT count(*) FROM pii_vault.records")
        if [ "$got" != "$live" ]; then
            echo "bench: purge round $round: $got records after the purge, not the $live live ones" >&2; problems=$((problems + 1))
        fi
        # Every removal audited as a purge; every get ok.
        if [ "$(psql_bench -At -c "SELECT pii_vault.audit_wait(60000)")" != t ]; then
            echo "bench: the audit writer did not catch up within 60 s" >&2; exit 1
        fi
        psql_bench -At -F $'\t' -c "SELECT $round, CASE WHEN e.at < to_timestamp($start) THEN 'before'
                    WHEN e.at < to_timestamp($after_start) THEN 'during' ELSE 'after' END, e.operation, count(*)
                FROM pii_vault.audit_batches b CROSS JOIN LATERAL pii_vault.audit_events(b.first_id, b.events) e
                WHERE b.last_id > $id0 AND ((e.operation = 'get' AND e.outcome <> 'ok') OR e.operation = 'purge')
                GROUP BY 1, 2, 3" >>"$RESULTS/purge.audit"
        audited=$(awk -F'\t' -v r="$round" '$1 == r && $3 == "purge" { n += $4 } END { print n + 0 }' "$RESULTS/purge.audit")
        if [ "$audited" != "$RECORDS" ]; then
            echo "bench: purge round $round: $audited purges audited, not $RECORDS" >&2; problems=$((problems + 1))
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$live" "$RECORDS" "$start" "$end" "$audited" "$heap" >>"$RESULTS/purge.rounds"
    done
    psql_bench -c "ALTER SYSTEM RESET pii_vault.purge_interval" -c "ALTER SYSTEM RESET pii_vault.delete_grace" \
        -c "SELECT pg_reload_conf()" >/dev/null
    echo
    echo "## The purge: $RECORDS expired records beside the live ones, vault get with $c client(s) in 1 s runs, $ROUNDS round(s)"
    echo
    python3 bench/report.py "$RESULTS" --purge
    echo
    failures=$(awk -F'\t' '{ n += $5 + $6 } END { print n + 0 }' "$RESULTS/purge.tsv")
    not_ok=$(awk -F'\t' '$3 == "get" { n += $4 } END { print n + 0 }' "$RESULTS/purge.audit")
    if [ "$problems" != 0 ] || [ "$failures" != 0 ] || [ "$not_ok" != 0 ]; then
        echo "bench: purge FAILED: $problems round(s) with records left, lost or not audited," \
            "$failures failed pgbench transactions or aborted clients, $not_ok get calls not ok in the audit" >&2
        exit 1
    fi
    echo "bench: purge: no failed get; every expired record purged and audited, every live one kept"
}


# Single values and pages (--fields; tiny in --smoke): see the top. Needs
# plain and vault loaded with $RECORDS records.
fields() {
    local op c round system
    echo "bench: one value per record, in the clear and tokenized"
    load 1 "$RECORDS" plain_values vault_values
    local sample
    sample=$(psql_bench -At -c "SELECT bool_and(vault_detokenize(v.token) = p.value)
        FROM vault_field_ids v JOIN plain_value_ids i USING (n) JOIN plain_values p ON p.id = i.id
        WHERE v.n IN (1, $((RECORDS / 2)), $RECORDS)")
    if [ "$sample" != t ]; then echo "bench: the field tokens do not read back ($sample)" >&2; exit 1; fi
    for op in tokenize detokenize; do
        for c in $CLIENTS; do
            for ((round = 1; round <= ROUNDS; round++)); do
                for system in $(in_turn "$round" plain vault); do
                    run "$op" "$c" "$round" "$system" "$RECORDS" fields
                done
            done
        done
    done
    for c in $CLIENTS; do
        for ((round = 1; round <= ROUNDS; round++)); do
            for system in $(in_turn "$round" plain vault vault_single vault_calls); do
                run page "$c" "$round" "$system" "$RECORDS" fields
            done
        done
    done
    cp "$RESULTS/fields.tsv" "$RESULTS/runs.tsv"
    echo
    echo "## Field tokens and pages of 50: $RECORDS records, pgbench -M prepared, ${SECONDS_PER_RUN}s x $ROUNDS rounds"
    echo
    python3 bench/report.py "$RESULTS" --fields

    # vault_migrate of MIGRATE_ROWS rows, while CLIENTS' most clients run
    # vault get in 1 s pgbench runs: three before, and until it ends.
    c="${CLIENTS##* }"
    echo "bench: a table of $MIGRATE_ROWS rows to move into the vault"
    psql_bench -c "CREATE TABLE migrate_users (id int PRIMARY KEY, email text, name text, born date, token uuid)" \
        -c "INSERT INTO migrate_users SELECT n, 'moved' || n || '@migrate.example', 'Moved Customer ' || n, date '1950-01-01' + n % 20000
            FROM generate_series(1, $MIGRATE_ROWS) AS n" -c "VACUUM ANALYZE migrate_users" -c "CHECKPOINT" >/dev/null
    # ops/s of one 1 s pgbench run of vault get.
    get_tps() {
        as_pg pgbench -n -M prepared -c "$c" -j "$c" -T 1 -h "$DIR" -p "$PORT" -U postgres -D records="$RECORDS" \
            -f "$DIR/scripts/vault_get.sql" bench 2>&1 | grep -Eo 'tps = [0-9]+' | grep -Eo '[0-9]+' | head -1
    }
    local before=0 during=0 runs=0 started ended moved
    for ((round = 1; round <= 3; round++)); do
        before=$(( before + $(get_tps) ))
    done
    started=$(date +%s%N)
    psql_bench -c "SET client_min_messages = warning" \
        -c "CALL vault_migrate('migrate_users', 'token', '{email,name,born}')" >"$RESULTS/migrate.out" 2>&1 &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        runs=$((runs + 1))
        during=$(( during + $(get_tps) ))
    done
    wait "$pid" || { cat "$RESULTS/migrate.out" >&2; echo "bench: vault_migrate failed" >&2; exit 1; }
    ended=$(date +%s%N)
    moved=$(psql_bench -At -c "SELECT count(token) FROM migrate_users WHERE email IS NULL")
    if [ "$moved" != "$MIGRATE_ROWS" ]; then echo "bench: vault_migrate moved $moved of $MIGRATE_ROWS rows" >&2; exit 1; fi
    echo
    python3 - "$MIGRATE_ROWS" "$started" "$ended" "$before" 3 "$during" "$runs" "$c" <<'PY'
import sys
rows, t0, t1, before, nb, during, nd, c = sys.argv[1:]
secs = (int(t1) - int(t0)) / 1e9
b, d = int(before) / int(nb), int(during) / max(int(nd), 1)
print(f"## vault_migrate: {int(rows):,} rows in {secs:.1f} s ({int(rows) / secs:,.0f} records/s); "
      f"vault get by {c} other client(s) while it ran: {d:,.0f} ops/s against {b:,.0f} before ({d / b:.2f})")
PY
}

if [ "$LIFE_CYCLE" = 1 ]; then
    # Shares and the purge, on this cluster alone (see the top): only
    # plain and pii_vault are loaded.
    echo "bench: life cycle: loading $RECORDS records into plain and pii_vault"
    t0=$(date +%s)
    load 1 "$RECORDS" plain vault
    echo "bench: loaded in $(( $(date +%s) - t0 )) s"
    life_cycle_shares get_shared session_get session_store get
    life_cycle_purge
    echo
    echo "bench: done"
    exit 0
fi

echo "bench: loading $RECORDS records into plain, pgcrypto and pii_vault"
t0=$(date +%s)
load 1 "$RECORDS" plain pgcrypto vault
echo "bench: loaded in $(( $(date +%s) - t0 )) s"

echo "bench: $ROUNDS round(s) of ${SECONDS_PER_RUN}s per system, clients: $CLIENTS"
for op in get lookup store; do
    for c in $CLIENTS; do
        for ((round = 1; round <= ROUNDS; round++)); do
            for system in $(in_turn "$round" plain pgcrypto vault); do
                run "$op" "$c" "$round" "$system" "$RECORDS" main
            done
        done
    done
done
psql_bench -c "VACUUM ANALYZE" >/dev/null
cp "$RESULTS/main.tsv" "$RESULTS/runs.tsv"
echo
echo "## $RECORDS records, synchronous_commit = on, pgbench -M prepared, ${SECONDS_PER_RUN}s x $ROUNDS rounds"
echo
python3 bench/report.py "$RESULTS"

if [ "$SECDEF_COST" = 1 ]; then
    # As installed: SECURITY DEFINER with the search_path pinned
    # (#[search_path] in src/api). The invoker variant is the experiment.
    secdef() { # on|off
        local fn
        for fn in "vault_get(uuid)" "vault_lookup(text, text)"; do
            if [ "$1" = on ]; then
                psql_bench -c "ALTER FUNCTION $fn SECURITY DEFINER SET search_path = pg_catalog, pii_vault, pg_temp"
            else
                psql_bench -c "ALTER FUNCTION $fn SECURITY INVOKER RESET search_path"
            fi
        done
    }
    c="${CLIENTS##* }"
    for op in get lookup; do
        for ((round = 1; round <= ROUNDS; round++)); do
            for system in $(in_turn "$round" plain pgcrypto vault vault_invoker); do
                if [ "$system" = vault_invoker ]; then secdef off; fi
                run "$op" "$c" "$round" "$system" "$RECORDS" secdef
                if [ "$system" = vault_invoker ]; then secdef on; fi
            done
        done
    done
    restored=$(psql_bench -At -c "SELECT bool_and(prosecdef AND proconfig IS NOT NULL) FROM pg_proc
        WHERE proname IN ('vault_get', 'vault_lookup')")
    if [ "$restored" != t ]; then echo "bench: vault_get/vault_lookup not restored to SECURITY DEFINER" >&2; exit 1; fi
    cp "$RESULTS/secdef.tsv" "$RESULTS/runs.tsv"
    echo
    echo "## What SECURITY DEFINER with a pinned search_path costs ($c clients, experiment)"
    echo
    python3 bench/report.py "$RESULTS" --secdef
fi

if [ "$BUDGET_COST" = 1 ]; then
    # The per-role read budget (pii_vault.max_reads_per_minute) charged on
    # every call, set as high as it goes (one call costs 1 us of budget:
    # never refused at these rates), against the same role with it off.
    budget() { # value
        psql_bench -c "ALTER SYSTEM SET pii_vault.max_reads_per_minute = $1" -c "SELECT pg_reload_conf()" >/dev/null
        sleep 0.5
    }
    psql_bench -c "DO \$\$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_app') THEN
                CREATE ROLE bench_app LOGIN IN ROLE pii_vault_writer;
            END IF;
        END \$\$" -c "GRANT SELECT ON vault_ids TO bench_app" >/dev/null
    budget 2147483647
    c="${CLIENTS##* }"
    for op in get lookup; do
        for ((round = 1; round <= ROUNDS; round++)); do
            for system in $(in_turn "$round" plain pgcrypto vault_app vault_app_off); do
                if [ "$system" = vault_app_off ]; then budget 0; fi
                run "$op" "$c" "$round" "$system" "$RECORDS" budget
                if [ "$system" = vault_app_off ]; then budget 2147483647; fi
            done
        done
    done
    throttled=$(psql_bench -At -c "SELECT pii_vault.audit_wait()" -c "SELECT count(*) FROM pii_vault.audit_log WHERE outcome = 'throttled'" | tail -1)
    if [ "$throttled" != 0 ]; then echo "bench: $throttled calls were throttled during the budget runs" >&2; exit 1; fi
    psql_bench -c "ALTER SYSTEM RESET pii_vault.max_reads_per_minute" -c "SELECT pg_reload_conf()" >/dev/null
    cp "$RESULTS/budget.tsv" "$RESULTS/runs.tsv"
    echo
    echo "## What the per-role read budget costs ($c clients, as a non-superuser role)"
    echo
    python3 bench/report.py "$RESULTS" --budget
fi

if [ "$FLOOR" = 1 ]; then
    # Functions that do nothing: texteq, PostgreSQL's own C function, so
    # neither pgrx nor any vault code is measured; the pinned one is set up
    # exactly as vault_lookup is (#[search_path] in src/api).
    psql_bench -c "CREATE FUNCTION bench_noop(text, text) RETURNS boolean
            LANGUAGE internal STRICT VOLATILE AS 'texteq'" \
        -c "CREATE FUNCTION bench_noop_pinned(text, text) RETURNS boolean
            LANGUAGE internal STRICT VOLATILE SECURITY DEFINER
            SET search_path = pg_catalog, pii_vault, pg_temp AS 'texteq'" >/dev/null
    for c in $CLIENTS; do
        for ((round = 1; round <= ROUNDS; round++)); do
            for system in $(in_turn "$round" plain pgcrypto vault noop noop_pinned); do
                run lookup "$c" "$round" "$system" "$RECORDS" floor
            done
        done
    done
    cp "$RESULTS/floor.tsv" "$RESULTS/runs.tsv"
    echo
    echo "## What a lookup could ever reach: a call that does nothing (lookup's shape)"
    echo
    python3 bench/report.py "$RESULTS" --floor
fi

if [ "$SCALE" -gt "$RECORDS" ]; then
    echo
    echo "bench: growing plain and pii_vault to $SCALE records"
    load $((RECORDS + 1)) "$SCALE" plain vault
    for op in get lookup; do
        for ((round = 1; round <= ROUNDS; round++)); do
            for system in $(in_turn "$round" plain vault); do
                run "$op" 1 "$round" "$system" "$SCALE" scale
            done
        done
    done
    cp "$RESULTS/scale.tsv" "$RESULTS/runs.tsv"
    echo
    echo "## $SCALE records (get and lookup, 1 client)"
    echo
    python3 bench/report.py "$RESULTS"
fi

if [ "$RSS_CALLS" -gt 10000 ]; then
    echo
    rss=$(psql_bench -At <<SQL
SET pii_vault.max_reads_per_statement = 0;
SELECT count(vault_get(v.id)) FROM generate_series(1, 10000) AS g JOIN vault_ids v ON v.n = 1 + g % $RECORDS;
SELECT substring(pg_read_file('/proc/self/status') FROM 'RssAnon:\s*(\d+)'), substring(pg_read_file('/proc/self/status') FROM 'VmRSS:\s*(\d+)');
SELECT count(vault_get(v.id)) FROM generate_series(10001, $RSS_CALLS) AS g JOIN vault_ids v ON v.n = 1 + g % $RECORDS;
SELECT substring(pg_read_file('/proc/self/status') FROM 'RssAnon:\s*(\d+)'), substring(pg_read_file('/proc/self/status') FROM 'VmRSS:\s*(\d+)');
SQL
)
    # Lines: count, "anon|rss", count, "anon|rss". RssAnon is the backend's
    # private memory; VmRSS also counts the shared buffers it has touched.
    read -r _ first _ last <<<"$(echo $rss)"
    anon_10k="${first%%|*}" rss_10k="${first##*|}" anon_n="${last%%|*}" rss_n="${last##*|}"
    growth=$((anon_n - anon_10k))
    echo "## Memory: one backend, private RSS (RssAnon) after 10 000 vault_get: ${anon_10k} kB; after $RSS_CALLS: ${anon_n} kB (growth ${growth} kB; target < 10240 kB). VmRSS, shared buffers included: ${rss_10k} kB → ${rss_n} kB"
    if [ "$growth" -ge 10240 ]; then echo "bench: private memory grew by ${growth} kB" >&2; exit 1; fi
fi
if [ "$SMOKE" = 1 ]; then
    echo
    life_cycle_shares get_shared session_get session_store
    life_cycle_purge
fi
if [ "$SMOKE" = 1 ] || [ "$FIELDS" = 1 ]; then
    echo
    fields
fi
echo
echo "bench: done"

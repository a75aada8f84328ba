#!/usr/bin/env bash
# pii_vault beside plain PostgreSQL and hand-written pgcrypto, in one run.
#
#   bench/run.sh [--records N] [--seconds S] [--rounds R] [--clients "1 2"]
#                [--scale M] [--rss CALLS] [--secdef-cost] [--floor]
#                [--budget-cost] [--smoke] [--rotation] [--rotation-pause MS]
#                [--no-install]
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
# --smoke: tiny and quick (part of scripts/test.sh). The audit writer runs
# throughout: every pii_vault figure includes the audit.
# PII_VAULT_BENCH_PORT (54331) and PII_VAULT_BENCH_TMP (/tmp) choose the
# cluster's port and the directory its own directory is made in;
# PII_VAULT_KEEP_CLUSTER=1 keeps the cluster.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/.."
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/cluster.sh

RECORDS=100000 SECONDS_PER_RUN=10 ROUNDS=3 CLIENTS="1 2" SCALE=0 RSS_CALLS=0 SECDEF_COST=0 FLOOR=0 BUDGET_COST=0 ROTATION=0 ROTATION_PAUSE="" INSTALL=1
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
        --smoke) RECORDS=2000 SECONDS_PER_RUN=1 ROUNDS=1 CLIENTS=1 SCALE=0 RSS_CALLS=20000; shift ;;
        --no-install) INSTALL=0; shift ;;
        *) echo "bench: unknown option $1" >&2; exit 2 ;;
    esac
done

if [ "$INSTALL" = 1 ]; then
    scripts/setup.sh >/dev/null
    echo "bench: building and installing pii_vault (release)"
    scripts/install.sh >/dev/null 2>&1
fi

DIR="$(mktemp -d "${PII_VAULT_BENCH_TMP:-/tmp}/pii_vault_bench.XXXXXX")"
PORT="${PII_VAULT_BENCH_PORT:-54331}"
RESULTS="$DIR/results"
finish() {
    if cluster_running; then cluster_stop; fi
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
    # One 1 s pgbench run of vault get or lookup. Its per-transaction log
    # is what report.py counts: for the runs during the rotation, only the
    # transactions that ended while it ran, over that time.
    slice() { # round phase op n
        local prefix="$RESULTS/rotation-$1-$2-$3-$4" out status=0 failed aborted
        out=$(cd "$RESULTS" && as_pg pgbench -n -M prepared -c "$c" -j "$c" -T 1 \
            -h "$DIR" -p "$PORT" -U postgres -D records="$RECORDS" \
            -l --log-prefix="$prefix" -f "$DIR/scripts/vault_$3.sql" bench 2>&1) || status=$?
        # 2: the run went on with errors; they are counted, not fatal here.
        if [ "$status" != 0 ] && [ "$status" != 2 ]; then
            echo "$out" >&2; echo "bench: pgbench could not run vault $3" >&2; exit 1
        fi
        failed=$(grep -Eo 'number of failed transactions: [0-9]+' <<<"$out" | grep -Eo '[0-9]+$' || echo 0)
        aborted=$(grep -Ec 'client [0-9]+ .*aborted' <<<"$out" || true)
        if [ "$status" = 2 ] && [ "$failed" = 0 ] && [ "$aborted" = 0 ]; then aborted=1; fi
        if [ "$failed" != 0 ] || [ "$aborted" != 0 ]; then
            { grep -E 'aborted|failed|ERROR' <<<"$out" || true; echo "bench: errors in round $1's $2 vault $3 run $4"; } >&2
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$c" "$failed" "$aborted" "$prefix.*" >> "$RESULTS/rotation.tsv"
    }
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

echo "bench: loading $RECORDS records into plain, pgcrypto and pii_vault"
t0=$(date +%s)
load 1 "$RECORDS" plain pgcrypto vault
echo "bench: loaded in $(( $(date +%s) - t0 )) s"

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
echo
echo "bench: done"

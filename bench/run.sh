#!/usr/bin/env bash
# pii_vault beside plain PostgreSQL and hand-written pgcrypto, in one run.
#
#   bench/run.sh [--records N] [--seconds S] [--rounds R] [--clients "1 2"]
#                [--scale M] [--rss CALLS] [--secdef-cost] [--floor] [--smoke]
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
# pin alone costs. --smoke: tiny and quick
# (part of scripts/test.sh). The audit writer runs throughout: every
# pii_vault figure includes the audit.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/.."
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/cluster.sh

RECORDS=100000 SECONDS_PER_RUN=10 ROUNDS=3 CLIENTS="1 2" SCALE=0 RSS_CALLS=0 SECDEF_COST=0 FLOOR=0 BUDGET_COST=0 INSTALL=1
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

DIR="$(mktemp -d /tmp/pii_vault_bench.XXXXXX)"
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

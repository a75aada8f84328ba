# shellcheck shell=bash
# Check helpers shared by pg_test/run.sh and pg_test/day_two.sh (sourced
# after scripts/cluster.sh; until_sql reads $DB). Each check prints one
# line; the caller ends with "N passed, N failed" from $passed/$failed.

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok     - $1"; }
fail() { failed=$((failed + 1)); echo "FAILED - $1"; }
check() { # description, then a command that succeeds when the check holds
    local what="$1"; shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}

# all_of CONDITION...: every condition (a shell test, as text) holds; for
# check, which runs one command.
all_of() {
    local c
    for c in "$@"; do eval "$c" || return 1; done
}

check_equal() { # description, what came back, what must come back
    check "$1" [ "$2" = "$3" ]
    [ "$2" = "$3" ] || echo "   got: $2"
}

#   until_sql SQL: polls until SQL returns t (30 s at most).
until_sql() {
    for _ in $(seq 1 600); do
        [ "$(cluster_psql -q -At -d "$DB" -c "$1")" = t ] && return 0
        sleep 0.05
    done
    echo "   timed out waiting for: $1"
    return 1
}

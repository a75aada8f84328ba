#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine (root, Rust 1.95) lacks to build
# and test pii_vault; skips whatever is already there. Safe to run again.
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH"

PG_MAJOR=15
PG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config"
PGRX_VERSION=0.18.0

say() { echo "setup: $*"; }

# Debian packages: PostgreSQL 15 server and headers, libclang for bindgen,
# sudo for `cargo pgrx test --runas`, python3 for the harness's file scans,
# the shell-script gate (shellcheck), dpkg-dev for the Debian package's
# library dependencies (dpkg-shlibdeps, scripts/package.sh), the
# Prometheus exporter pg_test/run.sh scrapes (monitoring/), and PL/Proxy,
# the sharding engine pg_test/shards.sh runs the recipes on
# (examples/plproxy/).
packages=("postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR" libclang-dev clang pkg-config sudo gcc make python3 shellcheck dpkg-dev
          prometheus-postgres-exporter "postgresql-$PG_MAJOR-plproxy")
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    say "Debian packages present"
fi

# Client libraries the harness drives the protocol with (pg_test/protocol_paths.py):
# psycopg's named cursors and asyncpg's row-limited portals.
if python3 -c 'import psycopg, asyncpg' 2>/dev/null; then
    say "psycopg and asyncpg present"
else
    say "installing psycopg and asyncpg (PyPI)"
    if ! python3 -m pip --version >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
    fi
    # Debian's own python3 marks its packages externally managed; pyenv's does not.
    python3 -m pip install --quiet --root-user-action=ignore 'psycopg[binary]>=3.1,<3.3' 'asyncpg>=0.29,<0.31' 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages 'psycopg[binary]>=3.1,<3.3' 'asyncpg>=0.29,<0.31'
fi

# cargo-pgrx, exactly the version of the pgrx crate (0.19 needs Rust 1.96).
if cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$"; then
    say "cargo-pgrx $PGRX_VERSION present"
else
    say "installing cargo-pgrx $PGRX_VERSION (about 6 minutes)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --quiet
fi

# Point pgrx at Debian's PostgreSQL 15 (no pgrx-managed PostgreSQL).
if grep -qs "^pg$PG_MAJOR = \"$PG_CONFIG\"" "$HOME/.pgrx/config.toml"; then
    say "pgrx knows pg$PG_MAJOR"
else
    say "cargo pgrx init --pg$PG_MAJOR $PG_CONFIG"
    cargo pgrx init "--pg$PG_MAJOR" "$PG_CONFIG" >/dev/null
fi

# The core's gates: Miri (nightly) for its unsafe code, cargo-fuzz to build
# the fuzz targets, cargo-deny for licenses, bans and sources.
if rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^miri'; then
    say "miri present"
else
    say "installing miri and rust-src for the nightly toolchain"
    rustup component add miri rust-src --toolchain nightly >/dev/null
fi
if cargo +nightly fuzz --version >/dev/null 2>&1; then
    say "cargo-fuzz present"
else
    say "installing cargo-fuzz (about 2 minutes)"
    cargo install cargo-fuzz --locked --quiet
fi
if cargo deny --version >/dev/null 2>&1; then
    say "cargo-deny present"
else
    say "installing cargo-deny (about 6 minutes)"
    cargo install cargo-deny --locked --quiet
fi

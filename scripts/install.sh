#!/usr/bin/env bash
# Builds pii_vault (release) and installs it into PostgreSQL 15 without
# disturbing a running server: every file is written under a temporary
# name next to its destination and renamed into place. (Overwriting
# pii_vault.so in place, as `cargo pgrx install` does, crashes the
# backends that have it mapped; a rename leaves them their old copy, and
# the next server start loads the new one.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"
OUT="$(mktemp -d /tmp/pii_vault_package.XXXXXX)"
trap 'rm -rf "$OUT"' EXIT
cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$OUT"
# The package holds this release's install script and the upgrade scripts
# (sql/pii_vault--A--B.sql); the install scripts of earlier releases, kept
# in sql/install/, go beside them, so CREATE EXTENSION pii_vault VERSION
# '0.1.0' works (the upgrade suite starts from there).
EXTDIR="$("$PG_CONFIG" --sharedir)/extension"
for script in sql/install/pii_vault--*.sql; do
    [ -e "$OUT$EXTDIR/$(basename "$script")" ] || install -D -m 0644 "$script" "$OUT$EXTDIR/$(basename "$script")"
done
# The package mirrors the absolute paths it installs to.
(cd "$OUT" && find . -type f) | while read -r file; do
    dest="/${file#./}"
    install -D -m 0644 "$OUT/$file" "$dest.new.$$"
    case "$dest" in *.so) chmod 0755 "$dest.new.$$" ;; esac
    mv -f "$dest.new.$$" "$dest"
done

#!/usr/bin/env bash
# Builds a Debian package of pii_vault for Debian 12 and PostgreSQL 15 from
# the release build:
#
#   scripts/package.sh [--revision N] [--out DIR]
#
# postgresql-15-pii-vault_VERSION-N_ARCH.deb, VERSION the crate's version
# (Cargo.toml), N the Debian revision (default 1), ARCH this machine's
# (dpkg --print-architecture). It holds the library (pii_vault.so in
# pg_config --pkglibdir), the control file and every install and upgrade
# script (those `cargo pgrx package` produces, the install scripts of
# earlier releases in sql/install/, the upgrade scripts sql/pii_vault--A--B.sql)
# in pg_config --sharedir/extension, and the license in
# /usr/share/doc/postgresql-15-pii-vault/copyright. Written to DIR (default
# target/debian, under CARGO_TARGET_DIR when that is set); the build's
# output goes to stderr, and the package's path is the last line printed.
#
# Installing it (dpkg -i) over a running server is safe: dpkg unpacks every
# file of a package under a temporary name beside its destination
# (FILE.dpkg-new) and renames it into place, as scripts/install.sh does, so
# the backends that have pii_vault.so mapped keep their copy of the old
# file (overwriting it in place, as `cargo pgrx install` does, crashes
# them). The server loads the new library at its next start.
# pg_test/package.sh checks this with a session open across an upgrade.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
export PATH="$HOME/.cargo/bin:$PATH"
PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"

usage() { echo "usage: $0 [--revision N] [--out DIR]" >&2; exit 2; }
REVISION=1
OUT="${CARGO_TARGET_DIR:-$ROOT/target}/debian"
while [ $# -gt 0 ]; do
    case "$1" in
        --revision) [ $# -ge 2 ] || usage; REVISION="$2"; shift 2 ;;
        --revision=*) REVISION="${1#*=}"; shift ;;
        --out) [ $# -ge 2 ] || usage; OUT="$2"; shift 2 ;;
        --out=*) OUT="${1#*=}"; shift ;;
        -h|--help) usage ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
[[ "$REVISION" =~ ^[0-9][0-9A-Za-z.+~]*$ ]] || { echo "--revision: not a Debian revision: $REVISION" >&2; exit 2; }
for tool in dpkg-deb dpkg-shlibdeps; do
    command -v "$tool" >/dev/null || { echo "$tool is missing (dpkg-dev: scripts/setup.sh installs it)" >&2; exit 1; }
done

PG_MAJOR="$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')"
PKGLIBDIR="$("$PG_CONFIG" --pkglibdir)"
EXTDIR="$("$PG_CONFIG" --sharedir)/extension"
NAME="postgresql-$PG_MAJOR-pii-vault"
ARCH="$(dpkg --print-architecture)"
# The crate's version (Cargo.toml's, through cargo: never written here).
# A pre-release (0.4.0-rc.1) sorts before its release in Debian as 0.4.0~rc.1.
CRATE_VERSION="$(cargo pkgid --offline -p pii_vault)"
CRATE_VERSION="${CRATE_VERSION##*[#@]}"
DEB_VERSION="${CRATE_VERSION//-/\~}-$REVISION"

WORK="$(mktemp -d /tmp/pii_vault_deb.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
# dpkg-shlibdeps wants a debian/control and the files under debian/PACKAGE.
PKGROOT="$WORK/debian/$NAME"

echo "package.sh: building $NAME $DEB_VERSION ($ARCH)" >&2
cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$PKGROOT" >&2

# What cargo pgrx package staged: the library, the control file, this
# release's install script and the upgrade scripts of sql/. The install
# scripts of earlier releases (sql/install/) and any upgrade script it did
# not copy go beside them, as scripts/install.sh does, so CREATE EXTENSION
# pii_vault VERSION '0.1.0' and ALTER EXTENSION ... UPDATE work from the
# package alone. The install script pgrx generated for this release, when
# there is one, is kept over a frozen copy.
for script in sql/install/pii_vault--*.sql sql/pii_vault--*--*.sql; do
    dest="$PKGROOT$EXTDIR/$(basename "$script")"
    [ -e "$dest" ] || install -D -m 0644 "$script" "$dest"
done
for file in "$PKGROOT$PKGLIBDIR/pii_vault.so" "$PKGROOT$EXTDIR/pii_vault.control" \
            "$PKGROOT$EXTDIR/pii_vault--$CRATE_VERSION.sql"; do
    [ -f "$file" ] || { echo "cargo pgrx package did not produce ${file#"$PKGROOT"}" >&2; exit 1; }
done
control_version="$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$PKGROOT$EXTDIR/pii_vault.control")"
[ "$control_version" = "$CRATE_VERSION" ] \
    || { echo "pii_vault.control says $control_version, Cargo.toml $CRATE_VERSION" >&2; exit 1; }

DOC="$PKGROOT/usr/share/doc/$NAME"
mkdir -p "$DOC"
{
    echo "pii_vault: encrypted personal-data vault inside PostgreSQL"
    echo "License: Apache-2.0"
    echo
    cat LICENSE
} >"$DOC/copyright"

# Shared-library dependencies (libc6, libgcc-s1) with their minimum
# versions, from the symbols the library uses.
mkdir -p "$WORK/debian" "$PKGROOT/DEBIAN"
printf 'Source: pii-vault\n\nPackage: %s\nArchitecture: any\n' "$NAME" >"$WORK/debian/control"
shlibs="$(cd "$WORK" && dpkg-shlibdeps -O "${PKGROOT#"$WORK/"}$PKGLIBDIR/pii_vault.so" 2>/dev/null \
          | sed -n 's/^shlibs:Depends=//p')"
[ -n "$shlibs" ] || { echo "dpkg-shlibdeps found no dependencies" >&2; exit 1; }

(cd "$PKGROOT" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
    >"$PKGROOT/DEBIAN/md5sums"
cat >"$PKGROOT/DEBIAN/control" <<CONTROL
Package: $NAME
Version: $DEB_VERSION
Architecture: $ARCH
Maintainer: ${DEBFULLNAME:-pii_vault maintainers} <${DEBEMAIL:-pii-vault@localhost}>
Installed-Size: $(du -sk --exclude=DEBIAN "$PKGROOT" | cut -f1)
Depends: postgresql-$PG_MAJOR, $shlibs
Section: database
Priority: optional
Description: encrypted personal-data vault inside PostgreSQL $PG_MAJOR
 pii_vault stores personal records (PII, PHI, KYC, PCI) encrypted with
 authenticated envelope encryption in a schema no role can read, behind
 function-only roles; it returns a token per record, finds tokens through
 keyed-hash (blind) indexes, and audits every call in a MAC-chained log.
 .
 The server needs shared_preload_libraries = 'pii_vault' and a key
 (pii_vault.keyfile or pii_vault.key_command); then CREATE EXTENSION
 pii_vault. An installed library is loaded at the server's next start.
CONTROL

# Debian's modes: directories 0755, files 0644 (DEBIAN's, and shared
# libraries too, as PostgreSQL's own in $PKGLIBDIR); --root-owner-group
# makes them root's.
find "$PKGROOT" -type d -exec chmod 0755 {} +
find "$PKGROOT" -type f -exec chmod 0644 {} +

mkdir -p "$OUT"
DEB="$(cd "$OUT" && pwd)/${NAME}_${DEB_VERSION}_$ARCH.deb"
dpkg-deb --build --root-owner-group "$PKGROOT" "$DEB" >&2
echo "$DEB"

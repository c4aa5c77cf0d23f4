#!/usr/bin/env bash
# Builds OpenSSL 4 (the independent RFC 8998 peer of the `tls` interop tests) from the Rust-registry
# package `openssl-src` 400.x, once per machine, into a cache outside the repository, and prints the
# path of its `openssl` binary. Usage: scripts/openssl4.sh   (about 7 minutes on 2 cores, then instant)
set -euo pipefail
VERSION="400.0.2+4.0.3"
CACHE="${XY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/xinyong}"
PREFIX="$CACHE/openssl-src-$VERSION"
BIN="$PREFIX/apps/openssl"
if [ -x "$BIN" ] && "$BIN" version >/dev/null 2>&1; then echo "$BIN"; exit 0; fi

# The build needs a C compiler, make and perl; install them on a bare machine.
missing=()
for tool in cc make perl; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing build tools for OpenSSL 4 (missing: ${missing[*]})" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc make perl >&2
fi

mkdir -p "$CACHE"
WORK=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# Fetch the crate through cargo (the only registry reachable), from a throwaway manifest.
mkdir -p "$WORK/fetch/src"
cat > "$WORK/fetch/Cargo.toml" <<TOML
[package]
name = "fetch-openssl-src"
version = "0.0.0"
edition = "2021"
[dependencies]
openssl-src = "=$VERSION"
TOML
echo "" > "$WORK/fetch/src/lib.rs"
(cd "$WORK/fetch" && cargo fetch --quiet >&2)
SRC=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 2 -type d -name "openssl-src-$VERSION" | head -n1)
[ -n "$SRC" ] || { echo "openssl-src $VERSION not found after cargo fetch" >&2; exit 1; }
cp -r "$SRC/openssl" "$WORK/openssl"
(
    cd "$WORK/openssl"
    ./Configure linux-x86_64 no-shared no-module no-legacy no-docs no-tests no-comp no-zlib >&2
    make -j"$(nproc)" build_programs >&2
)
rm -rf "$PREFIX"
mv "$WORK/openssl" "$PREFIX"
"$BIN" version >&2
echo "$BIN"

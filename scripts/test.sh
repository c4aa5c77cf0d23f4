#!/usr/bin/env bash
# The project's test suite, exactly as CI runs it (.ci/run calls this script):
#   formatting, clippy with warnings denied, then every test of the workspace, with Debian's
#   openssl as an independent oracle, headless Chromium for the report page, iproute2 for the
#   network-namespace test, and a throwaway PostgreSQL cluster (initdb + pg_ctl in a temporary directory on a free loopback port) for the
#   PostgreSQL store tests. PostgreSQL is installed with apt-get when missing; the cluster is
#   stopped and removed on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*" >&2; }

find_pg_bin() {
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return
    fi
    local d
    for d in /usr/lib/postgresql/*/bin; do
        if [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
    done
}

# OpenSSL is the independent oracle of the ShangMi interop tests.
if ! command -v openssl >/dev/null 2>&1; then
    log "openssl not found: installing it with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
fi

# iproute2 (ip netns, veth, tc) builds the network namespaces of the federation's network test.
if ! command -v ip >/dev/null 2>&1 || ! command -v tc >/dev/null 2>&1; then
    log "iproute2 not found: installing it with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null
fi

# Headless Chromium loads the coordinator's statistics page and checks that its chart is drawn.
if ! command -v chromium >/dev/null 2>&1; then
    log "chromium not found: installing it with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

PG_BIN=$(find_pg_bin || true)
if [ -z "${PG_BIN:-}" ]; then
    log "PostgreSQL not found: installing it with apt-get"
    if [ "$(id -u)" -ne 0 ]; then echo "PostgreSQL is missing and this is not root: install postgresql" >&2; exit 1; fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
    PG_BIN=$(find_pg_bin)
fi

# initdb refuses to run as root: run the cluster as the 'postgres' user (created by the package),
# or as a dedicated test user.
RUN_AS=()
if [ "$(id -u)" -eq 0 ]; then
    PG_USER=postgres
    if ! id "$PG_USER" >/dev/null 2>&1; then
        PG_USER=xytest
        id "$PG_USER" >/dev/null 2>&1 || useradd --system --no-create-home "$PG_USER"
    fi
    RUN_AS=(runuser -u "$PG_USER" --)
fi

PG_DIR=$(mktemp -d /tmp/xy-pg.XXXXXX)
chmod 755 "$PG_DIR"
[ ${#RUN_AS[@]} -gt 0 ] && chown "$PG_USER" "$PG_DIR"
PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')

cleanup() {
    "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
}
trap cleanup EXIT

log "starting a throwaway PostgreSQL ($("$PG_BIN/postgres" --version)) on 127.0.0.1:$PG_PORT"
"${RUN_AS[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust --encoding=UTF8 --no-locale >/dev/null
"${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$PG_DIR -c fsync=off -c max_connections=200" start >/dev/null
export XY_TEST_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"

# OpenSSL 4 is the independent RFC 8998 TLS 1.3 peer of the interop tests; built once per machine
# (about 7 minutes on 2 cores) into a cache outside the repository.
log "OpenSSL 4 for the TLS interop tests"
XY_OPENSSL4=$(bash scripts/openssl4.sh)
export XY_OPENSSL4
"$XY_OPENSSL4" version >&2

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

log "fuzz targets compile (cargo check in fuzz/; running them needs nightly cargo-fuzz)"
# Checked rather than built: a second full debug build of every crate (fuzz/ is a workspace of
# its own) doubled the suite's disk use for nothing that type-checking does not already show.
cargo check --quiet --manifest-path fuzz/Cargo.toml --bins

log "cargo test"
# Library, binary and integration tests (the workspace has no doc tests); the output is kept to
# print one total at the end, since cargo ends with the line of its last (possibly empty) harness.
OUT="$PG_DIR/cargo-test.out"
chmod 777 "$PG_DIR"
set +e
cargo test --workspace --lib --bins --tests 2>&1 | tee "$OUT"
status=${PIPESTATUS[0]}
set -e

# The portable SM4 path under valgrind (memory errors, uninitialised reads); valgrind masks the
# AVX-512 CPUID bits, and the test pins the portable path anyway.
log "portable SM4 path under valgrind"
if ! command -v valgrind >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi
# Built for the baseline x86-64 in a target directory of its own: the workspace builds for the host
# CPU (.cargo/config.toml), whose AVX-512 instructions valgrind cannot run.
SM4_TESTS=$(RUSTFLAGS="-C target-cpu=x86-64" CARGO_TARGET_DIR=target/portable \
    cargo test -p xy-sm4 --test paths --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "paths":
        print(m["executable"])' | tail -n1)
set +e
valgrind --quiet --error-exitcode=99 "$SM4_TESTS" portable_path_under_valgrind --exact 2>&1 | tee -a "$OUT"
vstatus=${PIPESTATUS[0]}
set -e
if [ "$vstatus" -ne 0 ] && [ "$status" -eq 0 ]; then status=$vstatus; fi

awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "\nsummary: %d passed, %d failed\n", p, f }' "$OUT"
exit "$status"

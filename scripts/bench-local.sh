#!/usr/bin/env bash
# Local-CA issuance benchmark matrix for BENCHMARKS.md: starts a real
# certgate server (HTTPS, bearer auth, validation, persistence) on SQLite or
# PostgreSQL, drives it with `certgate bench` at several concurrencies, runs
# `certgate bench --in-process` (the signing ceiling) at the same concurrency
# right after each, measures the plain-HTTP yardstick (`--serve-baseline`,
# `--baseline`) the same way, and prints the server's peak RSS and how many
# writes shared each database commit.
#
#   scripts/bench-local.sh [sqlite|postgres] [duration]
#
# PostgreSQL uses CERTGATE_TEST_POSTGRES_DSN (a fresh schema is created).
set -euo pipefail
cd "$(dirname "$0")/.."
driver="${1:-sqlite}"
dur="${2:-10s}"
work="$(mktemp -d)"
bin="$work/certgate"
go build -o "$bin" ./cmd/certgate
port=$((20000 + RANDOM % 20000))
export CERTGATE_LISTEN="127.0.0.1:$port" CERTGATE_DATA_DIR="$work/data" CERTGATE_LOG_LEVEL=warn
if [ "$driver" = postgres ]; then
  : "${CERTGATE_TEST_POSTGRES_DSN:?set CERTGATE_TEST_POSTGRES_DSN}"
  schema="cg_bench_$$"
  psql "$CERTGATE_TEST_POSTGRES_DSN" -qc "CREATE SCHEMA $schema" >/dev/null
  sep='?'; case "$CERTGATE_TEST_POSTGRES_DSN" in *\?*) sep='&';; esac
  export CERTGATE_DATABASE_DRIVER=postgres CERTGATE_DATABASE_DSN="${CERTGATE_TEST_POSTGRES_DSN}${sep}search_path=$schema"
fi
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [ -n "${schema:-}" ]; then psql "$CERTGATE_TEST_POSTGRES_DSN" -qc "DROP SCHEMA $schema CASCADE" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
"$bin" serve >"$work/serve.log" 2>&1 &
pid=$!
pids+=("$pid")
for _ in $(seq 1 100); do [ -f "$work/data/admin.token" ] && curl -sk "https://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
client=(--server "https://127.0.0.1:$port" --token "$(cat "$work/data/admin.token")" --ca-file "$work/data/ca/root.crt")
echo "# driver=$driver duration=$dur"
ratio() {
  python3 - "$@" <<'PY'
import json, sys
s, i = (json.load(open(p)) for p in sys.argv[1:3])
label = sys.argv[3] if len(sys.argv) > 3 else s['mode']
print(f"c={s['concurrency']:>2}  {label:<22} {s['rps']:8.1f}/s  p50 {s['p50_ms']:6.2f}ms  p99 {s['p99_ms']:6.2f}ms  errors {s['errors']}"
      f"   in-process {i['rps']:8.1f}/s   ratio {100*s['rps']/i['rps']:5.1f}%")
PY
}
# Concurrency 8 is the target's: three rounds, each a back-to-back pair.
for c in 1 8 8 8 32; do
  "$bin" bench "${client[@]}" --concurrency "$c" --duration "$dur" --json > "$work/s.json"
  "$bin" bench --in-process --concurrency "$c" --duration "$dur" --json > "$work/i.json"
  ratio "$work/s.json" "$work/i.json" certgate
done
# The yardstick: a plain-HTTP signer (no TLS, auth or database) driven by the
# same checking client, in its own process as certgate is, and in the load
# generator's process.
bport=$((port + 1))
"$bin" bench --serve-baseline "127.0.0.1:$bport" 2>/dev/null &
bpid=$!
pids+=("$bpid")
for _ in $(seq 1 100); do curl -s "http://127.0.0.1:$bport/v1/trust-bundle" >"$work/broot.pem" 2>/dev/null && [ -s "$work/broot.pem" ] && break; sleep 0.1; done
"$bin" bench --server "http://127.0.0.1:$bport" --ca-file "$work/broot.pem" --concurrency 8 --duration "$dur" --json > "$work/b.json"
"$bin" bench --in-process --concurrency 8 --duration "$dur" --json > "$work/i.json"
ratio "$work/b.json" "$work/i.json" "plain HTTP (2 procs)"
"$bin" bench --baseline --concurrency 8 --duration "$dur" --json > "$work/b.json"
"$bin" bench --in-process --concurrency 8 --duration "$dur" --json > "$work/i.json"
ratio "$work/b.json" "$work/i.json" "plain HTTP (1 proc)"
"$bin" bench "${client[@]}" --concurrency 8 --duration "$dur" --server-keys --key-type rsa-2048 --json > "$work/r.json"
"$bin" bench --in-process --concurrency 8 --duration "$dur" --server-keys --key-type rsa-2048 --json > "$work/ri.json"
python3 - "$work/r.json" "$work/ri.json" <<'PY'
import json, sys
s, i = (json.load(open(p)) for p in sys.argv[1:3])
print(f"rsa-2048 server-side keys, c=8: server {s['rps']:.1f}/s p50 {s['p50_ms']:.1f}ms p99 {s['p99_ms']:.1f}ms errors {s['errors']}"
      f"   in-process {i['rps']:.1f}/s   ratio {100*s['rps']/i['rps']:.1f}%")
PY
echo "server peak RSS: $(grep VmHWM /proc/$pid/status | awk '{print $2/1024 " MiB"}')"
echo "writes per commit: $(curl -sk -H "Authorization: Bearer $(cat "$work/data/admin.token")" "https://127.0.0.1:$port/metrics" |
  awk '/^certgate_db_writes_total/ {w=$2} /^certgate_db_write_transactions_total/ {t=$2} END {if (t) printf "%.2f (%d writes, %d transactions)", w/t, w, t}')"

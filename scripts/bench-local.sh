#!/usr/bin/env bash
# Local-CA issuance benchmark matrix for BENCHMARKS.md: starts a real
# certgate server (HTTPS, bearer auth, validation, persistence) on SQLite or
# PostgreSQL, drives it with `certgate bench` at several concurrencies, runs
# `certgate bench --in-process` (the signing ceiling) at the same concurrency
# right after each, and prints the server's peak RSS.
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
  trap 'psql "$CERTGATE_TEST_POSTGRES_DSN" -qc "DROP SCHEMA $schema CASCADE" >/dev/null 2>&1 || true' EXIT
  sep='?'; case "$CERTGATE_TEST_POSTGRES_DSN" in *\?*) sep='&';; esac
  export CERTGATE_DATABASE_DRIVER=postgres CERTGATE_DATABASE_DSN="${CERTGATE_TEST_POSTGRES_DSN}${sep}search_path=$schema"
fi
"$bin" serve >"$work/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [ -f "$work/data/admin.token" ] && curl -sk "https://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
client=(--server "https://127.0.0.1:$port" --token "$(cat "$work/data/admin.token")" --ca-file "$work/data/ca/root.crt")
echo "# driver=$driver duration=$dur"
for c in 1 8 32; do
  "$bin" bench "${client[@]}" --concurrency "$c" --duration "$dur" --json > "$work/s.json"
  "$bin" bench --in-process --concurrency "$c" --duration "$dur" --json > "$work/i.json"
  python3 - "$work/s.json" "$work/i.json" <<'PY'
import json, sys
s, i = (json.load(open(p)) for p in sys.argv[1:3])
print(f"c={s['concurrency']:>2}  server {s['rps']:8.1f}/s  p50 {s['p50_ms']:6.2f}ms  p99 {s['p99_ms']:6.2f}ms  errors {s['errors']}"
      f"   in-process {i['rps']:8.1f}/s   ratio {100*s['rps']/i['rps']:5.1f}%")
PY
done
"$bin" bench "${client[@]}" --concurrency 8 --duration "$dur" --server-keys --key-type rsa-2048 --json > "$work/r.json"
"$bin" bench --in-process --concurrency 8 --duration "$dur" --server-keys --key-type rsa-2048 --json > "$work/ri.json"
python3 - "$work/r.json" "$work/ri.json" <<'PY'
import json, sys
s, i = (json.load(open(p)) for p in sys.argv[1:3])
print(f"rsa-2048 server-side keys, c=8: server {s['rps']:.1f}/s p50 {s['p50_ms']:.1f}ms p99 {s['p99_ms']:.1f}ms errors {s['errors']}"
      f"   in-process {i['rps']:.1f}/s   ratio {100*s['rps']/i['rps']:.1f}%")
PY
echo "server peak RSS: $(grep VmHWM /proc/$pid/status | awk '{print $2/1024 " MiB"}')"

#!/usr/bin/env bash
# CPU per certificate of the server and of the load generator, in one run:
# certgate (HTTPS, auth, SQLite), the plain-HTTP baseline signer in its own
# process, and --in-process, each at concurrency 8 for 8 s. See BENCHMARKS.md.
#
#   scripts/bench-cpu.sh        (needs GNU time at /usr/bin/time)
set -euo pipefail
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
work=$(mktemp -d); bin="$work/certgate"
cd "$(dirname "$0")/.." && go build -o "$bin" ./cmd/certgate
port=$((20000 + RANDOM % 20000))
export CERTGATE_LISTEN="127.0.0.1:$port" CERTGATE_DATA_DIR="$work/data"
$bin serve >"$work/serve.log" 2>&1 & pid=$!
for _ in $(seq 1 100); do [ -f "$work/data/admin.token" ] && curl -sk "https://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
client=(--server "https://127.0.0.1:$port" --token "$(cat "$work/data/admin.token")" --ca-file "$work/data/ca/root.crt")
$bin bench "${client[@]}" --count 300 --json >/dev/null
hz=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' /proc/$1/stat; } # in clock ticks
row() { # label report.json load-generator-cpu-seconds server-cpu-ticks
python3 - "$@" "$hz" <<'PY'
import json,sys
label,js,ccpu,sticks,hz=sys.argv[1],json.load(open(sys.argv[2])),float(sys.argv[3]),int(sys.argv[4]),int(sys.argv[5])
n=js['requests']
srv = f"{sticks*1e6/hz/n:6.0f}" if sticks > 0 else "     -"
print(f"{label:<24} {js['rps']:8.1f}/s  server {srv} us/cert  load generator {ccpu*1e6/n:6.0f} us/cert  p50 {js['p50_ms']:.2f} p99 {js['p99_ms']:.2f}")
PY
}
s0=$(cpu $pid)
/usr/bin/time -f "%U %S" -o $work/t $bin bench "${client[@]}" --concurrency 8 --duration 8s --json > $work/s.json
s1=$(cpu $pid); c=$(awk '{print $1+$2}' $work/t)
row certgate $work/s.json $c $((s1-s0))
kill $pid; wait $pid 2>/dev/null || true
$bin bench --serve-baseline 127.0.0.1:$((port+1)) 2>/dev/null & bp=$!
for _ in $(seq 1 100); do curl -s "http://127.0.0.1:$((port+1))/v1/trust-bundle" >"$work/broot.pem" 2>/dev/null && [ -s "$work/broot.pem" ] && break; sleep 0.1; done
s0=$(cpu $bp)
/usr/bin/time -f "%U %S" -o $work/t $bin bench --server http://127.0.0.1:$((port+1)) --ca-file $work/broot.pem --concurrency 8 --duration 8s --json > $work/b.json
s1=$(cpu $bp); c=$(awk '{print $1+$2}' $work/t)
row "plain HTTP (2 procs)" $work/b.json $c $((s1-s0))
kill $bp; wait $bp 2>/dev/null || true
/usr/bin/time -f "%U %S" -o $work/t $bin bench --in-process --concurrency 8 --duration 8s --json > $work/i.json
c=$(awk '{print $1+$2}' $work/t)
row "in-process" $work/i.json $c 0

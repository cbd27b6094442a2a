#!/usr/bin/env bash
# Registry read benchmark: `GET /schemas/ids/{id}` on a cached schema, measured with wrk against
# the release `gatehouse serve`, beside a baseline in the same run: the admin listener's
# trivial `/health` handler (same HTTP stack, no registry work). Prints req/s and the ratio.
# The registry serves HTTPS with HTTP Basic auth under `serve` (wrk keeps connections open, so
# the TLS handshake is paid once per connection; the Basic check is cached after the first).
# Usage: scripts/bench-registry.sh   (needs `wrk`: apt-get install wrk; DURATION=10s by default)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -d "$HOME/.cargo/bin" ]; then PATH="$HOME/.cargo/bin:$PATH"; fi
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 2; }
DURATION=${DURATION:-10s}
cargo build --release --bin gatehouse
dir=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
bp=$(port); ap=$(port); rp=$(port); gp=$(port); pp=$(port)
export GATEHOUSE_ADMIN_PASSWORD=${GATEHOUSE_ADMIN_PASSWORD:-bench-admin-password}
auth="Authorization: Basic $(printf 'admin:%s' "$GATEHOUSE_ADMIN_PASSWORD" | base64 -w0)"
GATEHOUSE_LOG=warn target/release/gatehouse serve --data-dir "$dir/data" \
    --broker-listen "127.0.0.1:$bp" --admin-listen "127.0.0.1:$ap" --registry-listen "127.0.0.1:$rp" \
    --gateway-listen "127.0.0.1:$gp" --gateway-plain-listen "127.0.0.1:$pp" \
    >"$dir/out.txt" 2>"$dir/err.txt" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$ap/health" >/dev/null && break
    sleep 0.1
done
curl -sf --cacert "$dir/data/tls/ca.pem" -H "$auth" -X POST \
    -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
    "https://localhost:$rp/subjects/bench-value/versions" \
    -d '{"schema":"{\"type\":\"record\",\"name\":\"Bench\",\"fields\":[{\"name\":\"id\",\"type\":\"long\"},{\"name\":\"name\",\"type\":\"string\"}]}"}' >/dev/null
# wrk shares the 2 cores with the server, so besides req/s the server's own CPU time is read
# from /proc (utime + stime of every thread): requests per server-CPU-second is what two cores
# given to the server alone would serve.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
rate() {
    local t0 t1 r
    t0=$(cpu_ticks)
    r=$(wrk -t2 -c64 -d"$DURATION" "$@" | awk '/Requests\/sec/ {print $2}')
    t1=$(cpu_ticks)
    echo "$r $(( t1 - t0 ))"
}
read -r base base_ticks <<<"$(rate "http://127.0.0.1:$ap/health")"
read -r reg reg_ticks <<<"$(rate -H "$auth" "https://localhost:$rp/schemas/ids/1")"
secs=${DURATION%s}
per_cpu() { python3 -c "r=float('$1'); t=int('$2')/int('$hz'); s=float('$secs'); print(f'server used {t/s:.2f} cores; {r*s/t:,.0f} req per server-CPU-second (x2 cores = {2*r*s/t:,.0f} req/s)')"; }
echo "baseline  GET /health server CPU:        $(per_cpu "$base" "$base_ticks")"
echo "registry  GET /schemas/ids/1 server CPU: $(per_cpu "$reg" "$reg_ticks")"
# Registration with a BACKWARD_TRANSITIVE check against 100 earlier versions, end to end (HTTPS,
# the check, the durable append to `_schemas`), beside a plain lookup over a fresh connection in
# the same run (the TLS handshake and Basic check both pay).
curl -sf --cacert "$dir/data/tls/ca.pem" -H "$auth" -X PUT -H 'Content-Type: application/json' \
    "https://localhost:$rp/config/evolving-value" -d '{"compatibility":"BACKWARD_TRANSITIVE"}' >/dev/null
avro_version() {
    python3 -c 'import json,sys
n=int(sys.argv[1])
f=[{"name":"id","type":"long"}]+[{"name":f"f{i}","type":["null","string"],"default":None} for i in range(n)]
print(json.dumps({"schema":json.dumps({"type":"record","name":"Evolving","namespace":"bench","fields":f})}))' "$1"
}
register() {
    avro_version "$1" | curl -sf --cacert "$dir/data/tls/ca.pem" -H "$auth" -X POST \
        -H 'Content-Type: application/vnd.schemaregistry.v1+json' -o /dev/null -w '%{time_total}' \
        "https://localhost:$rp/subjects/evolving-value/versions" --data-binary @-
}
for i in $(seq 0 99); do register "$i" >/dev/null; done
reg_times=(); get_times=()
for i in 100 101 102 103 104; do
    reg_times+=("$(register "$i")")
    get_times+=("$(curl -sf --cacert "$dir/data/tls/ca.pem" -H "$auth" -o /dev/null -w '%{time_total}' \
        "https://localhost:$rp/schemas/ids/1")")
done
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
reg_ms=$(python3 -c "print(round(float('$(median "${reg_times[@]}")')*1000, 2))")
get_ms=$(python3 -c "print(round(float('$(median "${get_times[@]}")')*1000, 2))")
echo "register version 101..105 under BACKWARD_TRANSITIVE (100+ earlier versions), end to end: median $reg_ms ms"
echo "baseline  GET /schemas/ids/1 on a new connection, same run:                        median $get_ms ms"

echo "baseline  GET /health (admin, trivial handler): $base req/s"
echo "registry  GET /schemas/ids/1 (HTTPS + Basic):    $reg req/s"
python3 -c "print(f'ratio registry/baseline = {float($reg)/float($base):.2f}x; goal 50,000 req/s on 2 cores (published: Confluent ~6,100, Redpanda ~7,700)')"

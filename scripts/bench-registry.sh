#!/usr/bin/env bash
# Registry read benchmark: `GET /schemas/ids/{id}` on a cached schema, measured with wrk against
# the release `gatehouse serve`, beside a baseline in the same run: the admin listener's
# trivial `/health` handler (same HTTP stack, no registry work). Prints req/s and the ratio.
# Usage: scripts/bench-registry.sh   (needs `wrk`: apt-get install wrk; DURATION=10s by default)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -d "$HOME/.cargo/bin" ]; then PATH="$HOME/.cargo/bin:$PATH"; fi
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 2; }
DURATION=${DURATION:-10s}
cargo build --release --bin gatehouse
dir=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
bp=$(port); ap=$(port); rp=$(port)
GATEHOUSE_LOG=warn target/release/gatehouse serve --data-dir "$dir/data" \
    --broker-listen "127.0.0.1:$bp" --admin-listen "127.0.0.1:$ap" --registry-listen "127.0.0.1:$rp" \
    >"$dir/out.txt" 2>"$dir/err.txt" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$ap/health" >/dev/null && break
    sleep 0.1
done
curl -sf -X POST -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
    "http://127.0.0.1:$rp/subjects/bench-value/versions" \
    -d '{"schema":"{\"type\":\"record\",\"name\":\"Bench\",\"fields\":[{\"name\":\"id\",\"type\":\"long\"},{\"name\":\"name\",\"type\":\"string\"}]}"}' >/dev/null
rate() { wrk -t2 -c64 -d"$DURATION" "$1" | awk '/Requests\/sec/ {print $2}'; }
base=$(rate "http://127.0.0.1:$ap/health")
reg=$(rate "http://127.0.0.1:$rp/schemas/ids/1")
echo "baseline  GET /health (admin, trivial handler): $base req/s"
echo "registry  GET /schemas/ids/1 (cached schema):   $reg req/s"
python3 -c "print(f'ratio registry/baseline = {float($reg)/float($base):.2f}x; goal 50,000 req/s on 2 cores (published: Confluent ~6,100, Redpanda ~7,700)')"

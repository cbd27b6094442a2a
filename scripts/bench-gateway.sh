#!/usr/bin/env bash
# The gateway's cost in one command: direct to the broker vs through the gateway (plaintext
# SASL) vs TLS + SCRAM + ACLs, with the broker in --log-flush os mode; then produce latency at
# half of peak (acks=1) and the memory of 1,000 idle client connections.
# Usage: scripts/bench-gateway.sh   (BENCH_MIB=N to change the data per run, default 256)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -d "$HOME/.cargo/bin" ]; then PATH="$HOME/.cargo/bin:$PATH"; fi
start=$(date +%s)
cargo bench --bench gateway
echo "bench wall time (build + run): $(($(date +%s) - start))s"

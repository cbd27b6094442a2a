#!/usr/bin/env bash
# The test command (README: "run the whole test suite"), for a machine that already has the
# dependencies (.ci/run installs them): formatting, every Rust test (unit + end-to-end with
# real clients against the real binary), the Python client tests, then clippy.
# Every suite runs even when an earlier one failed; the exit code is non-zero if any failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -d "$HOME/.cargo/bin" ]; then PATH="$HOME/.cargo/bin:$PATH"; fi

summary=()
failed=0

now_ms() { date +%s%3N; }

suite() {
    local name=$1
    shift
    printf '\n=== %s: %s\n' "$name" "$*"
    local t0 status
    t0=$(now_ms)
    if "$@"; then status=ok; else status="FAILED (exit $?)"; failed=1; fi
    local ms=$(($(now_ms) - t0))
    local line
    line=$(printf '%-8s %-18s %4d.%01ds' "$name" "$status" $((ms / 1000)) $((ms % 1000 / 100)))
    summary+=("$line")
    printf '=== %s\n' "$line"
}

suite fmt cargo fmt --all -- --check
# One profile (dev) for everything; `cargo test` also builds target/debug/gatehouse, which
# the end-to-end tests and pytest spawn (a separate `cargo build` would rebuild shared
# dependencies with different features).
suite test cargo test --workspace --no-fail-fast
if [ -x .venv/bin/python ]; then
    suite pytest env GATEHOUSE_BIN="$PWD/target/debug/gatehouse" .venv/bin/python -m pytest tests/python -q
else
    echo "no .venv: run .ci/run (or python3 -m venv .venv && .venv/bin/pip install -r requirements-test.txt)" >&2
    summary+=("pytest   FAILED (no .venv)")
    failed=1
fi
# Last: clippy re-checks every target with its own driver and costs a while.
suite clippy cargo clippy --workspace --all-targets -- -D warnings

printf '\n=== summary (wall time per suite)\n'
printf '%s\n' "${summary[@]}"
exit "$failed"

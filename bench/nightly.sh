#!/usr/bin/env bash
# The nightly benchmark set: `agentport bench run` (the engine scenario for llama.cpp, and MLX
# where it imports, then agentport against llama-server over HTTP), its records kept under
# bench/results/nightly/<time>/ with bench/results/nightly/latest pointing at the newest.
#
# The first run's comparison record becomes bench/results/nightly/baseline.json; every later run
# is gated against it and exits 3 when a metric regressed by more than MAX_REGRESSION (default
# 5%) beyond the run-to-run spread, 1 when a run failed. Replace the baseline on purpose, by
# copying a newer compare-*.json over it. On a shared machine, MAX_FOREIGN_CPU=10% runs a round
# again when other processes took more than that of the CPU.
#
#   bench/nightly.sh                     # from anywhere; uses the checkout's .venv
#   MAX_REGRESSION=10% PYTHON=python3 bench/nightly.sh
set -euo pipefail

cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
nightly=bench/results/nightly
out=$nightly/$(date +%Y%m%d-%H%M%S)
baseline=$nightly/baseline.json
mkdir -p "$out"

gate=()
if [[ -f $baseline ]]; then
    gate=(--baseline "$baseline" --max-regression "${MAX_REGRESSION:-5%}")
fi
if [[ -n ${MAX_FOREIGN_CPU:-} ]]; then
    gate+=(--max-foreign-cpu "$MAX_FOREIGN_CPU")
fi

status=0
"$python" -m agentport bench run --out "$out" "${gate[@]+"${gate[@]}"}" 2>&1 \
    | tee "$out/run.log" || status=${PIPESTATUS[0]}

ln -sfn "$(basename "$out")" "$nightly/latest"
newest=$(ls -1 "$out"/compare-*.json 2>/dev/null | tail -n 1 || true)
if [[ ! -f $baseline && -n $newest && $status -eq 0 ]]; then
    cp "$newest" "$baseline"
    echo "baseline: $baseline (from $newest)"
fi
exit "$status"

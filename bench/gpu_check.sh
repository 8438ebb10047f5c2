#!/usr/bin/env bash
# GPU check, ready to run on one CUDA machine (at most ~8 minutes), printing one summary at the end:
#   1. the tests that exercise CUDA paths (engine, features' fp32-vs-bf16 parity, U-AFNO, replay);
#   2. bench/rollout.py at 64² (engine vs one-operator-at-a-time; target ≥ 5x) with the memory-roofline
#      fraction of the engine's sample-steps/s;
#   3. the baseline slice (bench/baseline_slice.py) with K = 64 operators of configs/baseline-10k.yaml,
#      extrapolated to 10K operators (goal: ≤ 20 minutes on one H100).
# Usage (from the repository root, package installed):  bash bench/gpu_check.sh [OUTDIR]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
mkdir -p "$out"
export PYTHONPATH=$PWD
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this script checks a GPU')" || exit 2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

timeout 200 python -m pytest -q -p no:cacheprovider tests/test_engine.py tests/test_features_precision.py \
    tests/test_uafno.py tests/test_generate.py -k "not cluster" > "$out/tests.txt" 2>&1
tests_rc=$?
timeout 120 python bench/rollout.py --grid 64 --steps 64 --operators 32 --realizations 3 --width 32 \
    --depth 3 --kernel 5 > "$out/rollout.txt" 2>&1
rollout_rc=$?
timeout 240 python bench/baseline_slice.py --operators 64 --out "$out/slice" > "$out/slice.txt" 2>&1
slice_rc=$?

echo
echo "================ GPU check summary ================"
cat "$out/gpu.txt"
echo "tests (rc $tests_rc): $(tail -n 1 "$out/tests.txt")"
echo "rollout 64² (rc $rollout_rc):"
grep -E "ratio|roofline|sample-steps/s" "$out/rollout.txt" | sed 's/^/  /'
echo "baseline slice K=64 (rc $slice_rc):"
grep -E "^(time|10K|bytes|peak|census)" "$out/slice.txt" | sed 's/^/  /'
echo "full logs: $out"

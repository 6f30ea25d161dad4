#!/usr/bin/env bash
# The benchmark grid on one H100-class GPU in under 8 minutes: bf_jax's jitted train/eval steps
# (ResNet-32 at batch 512 in float32 and bfloat16, ResNet-50 at 224 / batch 256 in bfloat16,
# each with and without BatchFormer) and, when torch imports, the same PyTorch train step side by
# side. Figures go to $OUT (bench.jsonl, bench.md).
#
#   OUT=runs/bench_gpu benchmarks/gpu.sh            # PYTHON=... to pick the interpreter
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
OUT=${OUT:-runs/bench_gpu}
cd "$ROOT"

"$PY" - <<'CHECK'
import jax
if jax.default_backend() != "gpu":
  raise SystemExit(f"benchmarks/gpu.sh needs a GPU; JAX sees {jax.devices()}. On a CPU run "
                   f"python -m bf_jax.bench --grid cpu instead.")
print("devices:", jax.devices())
CHECK

torch_args=()
if "$PY" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  torch_args=(--torch_python "$PY")
else
  echo "torch with CUDA not importable: JAX figures only." >&2
fi
# The time limit keeps a stuck case from eating the GPU session; the grid takes a few minutes.
timeout 470 "$PY" -m bf_jax.bench --grid gpu --warmup 3 --iters 20 --out "$OUT" "${torch_args[@]}"

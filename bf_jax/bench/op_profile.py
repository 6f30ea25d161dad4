"""Where a train step's time goes: ``python -m bf_jax.bench.op_profile --backbone resnet32``.

Traces a few steps with ``jax.profiler`` and sums the XLA ops' durations over all threads by
kind (the fusion name without its number: ``ynn_fusion`` = YNNPACK convolutions and dots on CPU,
``transpose_copy_fusion`` = layout copies, ...). Prints the kinds, largest first, in ms per step.
"""

from __future__ import annotations

import argparse
import collections
import glob
import re
import tempfile
import time

import jax
import numpy as np
from jax.profiler import ProfileData

from bf_jax.bench.jax_steps import Case, build

_RUNTIME = ("ThunkExecutor::Execute", "ThunkExecutor::Execute (wait for completion)")


def op_time_by_kind(case: Case, steps: int = 3) -> tuple[dict[str, float], float]:
  """({op kind: ms per step summed over threads}, wall ms per step) of ``case``'s train step."""
  train_step, _, state, batch, _ = build(case)
  holder = {"state": state}

  def run():
    holder["state"], metrics = train_step(holder["state"], batch, np.int32(0))
    jax.block_until_ready(metrics)

  run()
  run()
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    t = time.perf_counter()
    for _ in range(steps):
      run()
    wall_ms = 1e3 * (time.perf_counter() - t) / steps
    jax.profiler.stop_trace()
    path = sorted(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True))[-1]
    data = ProfileData.from_file(path)
  kinds = collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      if not line.name.startswith("tf_XLAEigen"):  # XLA's intra-op worker threads
        continue
      for event in line.events:
        if event.name not in _RUNTIME:
          kinds[re.sub(r"[.\d]+$", "", event.name)] += event.duration_ns / 1e6 / steps
  return dict(kinds.most_common()), wall_ms


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--backbone", default="resnet32")
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--bf", type=int, default=1, choices=(0, 1))
  parser.add_argument("--top", type=int, default=12)
  args = parser.parse_args()
  kinds, wall_ms = op_time_by_kind(Case(args.backbone, args.batch, bool(args.bf)))
  print(f"{args.backbone} batch {args.batch} bf={args.bf} on {jax.devices()[0].device_kind}: "
        f"{wall_ms:.0f} ms wall per step (profiler on), {sum(kinds.values()):.0f} ms of op time "
        f"summed over threads")
  for kind, ms in list(kinds.items())[:args.top]:
    print(f"  {ms:9.1f} ms  {kind}")


if __name__ == "__main__":
  main()

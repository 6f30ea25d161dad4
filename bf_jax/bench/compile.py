"""Compile and step time of a config's train step with its blocks unrolled and scanned.

  python -m bf_jax.bench.compile                  # DeiT-S (V2 on, off), ResNet-50, RIDE R50
  python -m bf_jax.bench.compile --only bf=on --batch 16 --iters 5
  python -m bf_jax.bench.compile --only deit --set data.mixup=0 --set model.drop_path=0
  python -m bf_jax.bench.compile --depths 4,12,24 --batch 32   # DeiT-tiny of N blocks, no V2

Each case builds the config's real train step (bf_jax/bench/memory.py's ``train_step``, the
optimizer and loss included) on one device, then times jit's tracing and lowering, XLA's
compile, and the median of ``--iters`` steps on random images after one warm-up step. Compile
time barely depends on the batch, so a small one keeps the steps short on a CPU. The persistent
compilation cache is off, so every compile is a real one. ``--set field=value`` changes every
case's config (what a part of the step costs to compile: Mixup's sampler, dropout's random bits).
``--depths`` compiles the CIFAR DeiT-tiny (65 tokens, no insertion point) with N blocks instead,
an entry this script adds to ``VIT_ARCHS``: how compile time grows with depth.
"""

from __future__ import annotations

import argparse
import time
from typing import Sequence

import jax
import numpy as np

from bf_jax.bench.memory import Case, train_step
from bf_jax.models import vit
from bf_jax.trainer import sharding

# DeiT-S with V2 after block 8: runs of 9 and 3 blocks (the bf=off arm is split alike). The
# CIFAR DeiT-tiny V2 config inserts after every block, which leaves nothing to scan. ResNet-50:
# each stage's blocks after its first (2, 3, 5, 2); RIDE's shared and expert stages.
CASES = (("imagenet_deit_small_v2.py", "bf=on,scope=global"),
         ("imagenet_deit_small_v2.py", "bf=off"),
         ("imagenet_lt_balanced_softmax_r50.py", "bf=on,scope=global"),
         ("imagenet_lt_ride_r50.py", "bf=on,scope=global"))


def measure(case: Case, iters: int) -> dict:
  """Trace, compile and step seconds of ``case`` on one device."""
  devices = jax.devices()[:1]
  step, state, batch_spec, c, _ = train_step(case, devices)
  t0 = time.perf_counter()
  lowered = step.lower(state, batch_spec, np.int32(0))
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  rng = np.random.default_rng(0)
  mesh = sharding.make_mesh(devices)
  batch = sharding.put_batch({
      "image": rng.normal(size=batch_spec["image"].shape).astype(np.float32),
      "label": rng.integers(0, c.data.num_classes, batch_spec["label"].shape).astype(np.int32),
  }, mesh)
  times = []
  for i in range(iters + 1):  # the first is the warm-up
    t = time.perf_counter()
    state, metrics = compiled(state, batch, np.int32(i))
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t)
  label = f"{case.config}:{case.arg}" + "".join(f" {s}" for s in case.sets)
  return {"case": label, "scan": case.scan_layers, "batch": c.batch_size,
          "model": c.model.name, "insert_after": tuple(c.bf.insert_after),
          "trace_s": t1 - t0, "compile_s": t2 - t1, "step_s": float(np.median(times[1:]))}


def table(rows: Sequence[dict]) -> str:
  lines = ["| config | blocks | trace s | XLA compile s | compile x unrolled | step s | "
           "step x unrolled |", "|---|---|---|---|---|---|---|"]
  unrolled = {r["case"]: r for r in rows if not r["scan"]}
  for r in rows:
    base = unrolled.get(r["case"])
    ratio = (lambda k: f"{r[k] / base[k]:.2f}" if base else "-")
    v2 = f", V2 after {r['insert_after']}" if r["insert_after"] else ""
    lines.append(f"| {r['case']} ({r['model']}{v2}, batch {r['batch']}) | "
                 f"{'scanned' if r['scan'] else 'unrolled'} | "
                 f"{r['trace_s']:.1f} | {r['compile_s']:.1f} | {ratio('compile_s')} | "
                 f"{r['step_s']:.3f} | {ratio('step_s')} |")
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--only", default="", help="the cases whose config:arg contains this")
  p.add_argument("--batch", type=int, default=8, help="global batch of every case")
  p.add_argument("--iters", type=int, default=5, help="timed steps after the warm-up")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="a config override for every case (repeatable), e.g. data.mixup=0")
  p.add_argument("--depths", default="", help="e.g. 4,12,24: DeiT-tiny of N blocks instead")
  args = p.parse_args(argv)
  jax.config.update("jax_enable_compilation_cache", False)
  cases = [(config, arg, tuple(args.set)) for config, arg in CASES]
  if args.depths:
    cases = []
    for n in (int(d) for d in args.depths.split(",")):
      vit.VIT_ARCHS.setdefault(f"deit_tiny_x{n}", (192, n, 3))
      cases.append(("cifar100_deit_tiny_v2.py", "bf=off",
                    (f"model.name=deit_tiny_x{n}", "bf.insert_after=()", *args.set)))
  rows = []
  for config, arg, sets in cases:
    if args.only not in f"{config}:{arg}":
      continue
    for scan in (False, True):
      case = Case(config, arg, batch=args.batch, scan_layers=scan, sets=sets)
      rows.append(measure(case, args.iters))
      print(rows[-1], flush=True)
  print(f"\nJAX {jax.__version__}, {jax.devices()[0].device_kind}, one device\n")
  print(table(rows))


if __name__ == "__main__":
  main()

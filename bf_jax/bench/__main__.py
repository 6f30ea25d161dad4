"""python -m bf_jax.bench [--grid cpu|scope|gpu] [--torch_python PY] [--out DIR]

Times bf_jax's real jitted train and eval steps (after warm-up, block_until_ready, median of
--iters) over a grid, plus the PyTorch reference of the same train step when a Python with torch
is given (or torch imports here), plus the input pipeline alone. Writes ``bench.jsonl`` (one line
per case, naming hardware, JAX version and devices) and ``bench.md`` (the tables) to --out.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import platform
import subprocess
import sys

import jax

from bf_jax.bench import report
from bf_jax.bench.jax_steps import RECIPES, Case, eval_programs_equal, paired_overhead, time_case

TORCH_REF = pathlib.Path(__file__).with_name("torch_ref.py")


def grid(name: str) -> list[Case]:
  """'cpu': what 2 cores time in minutes; 'scope': global vs device scope over 8 devices;
  'gpu': the recipes' batches in bf16 on one GPU (float32 too for ResNet-32); 'overhead': only
  the paired with/without-BatchFormer overhead, for the CIFAR recipe's batch and for ResNet-50 at
  the largest batch a 24 GiB CPU machine holds."""
  if name == "tiny":  # seconds: what the tests run
    return [Case("mlp", 64, bf) for bf in (False, True)]
  if name == "cpu":
    return ([Case("resnet32", 128, bf) for bf in (False, True)]
            + [Case("resnet50", 32, bf) for bf in (False, True)])
  if name == "scope":
    return [Case("resnet32", 128, bf, scope, devices=8)
            for bf, scope in ((False, "global"), (True, "device"), (True, "global"))]
  if name == "gpu":
    return ([Case("resnet32", 512, bf, dtype=dt) for dt in ("float32", "bfloat16")
             for bf in (False, True)]
            + [Case("resnet50", 256, bf, dtype="bfloat16") for bf in (False, True)])
  if name == "overhead":
    return [Case("resnet32", 512, True), Case("resnet50", 64, True)]
  raise ValueError(f"--grid={name!r} must be 'tiny', 'cpu', 'scope', 'gpu' or 'overhead'.")


def hardware() -> dict:
  dev = jax.devices()[0]
  cpu = platform.processor()
  info = pathlib.Path("/proc/cpuinfo")
  if info.exists():
    cpu = next((line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
                if line.startswith("model name")), cpu)
  return {"platform": dev.platform, "device_kind": dev.device_kind,
          "devices": jax.device_count(), "jax": jax.__version__, "cpu": cpu,
          "cpu_count": os.cpu_count()}


def torch_case(python: str, case: Case, warmup: int, iters: int) -> dict | None:
  size, classes = RECIPES[case.backbone]
  cmd = [python, str(TORCH_REF), f"--backbone={case.backbone}", f"--batch={case.batch}",
         f"--bf={int(case.bf)}", f"--size={size}", f"--classes={classes}",
         f"--dtype={case.dtype}", f"--warmup={warmup}", f"--iters={iters}"]
  out = subprocess.run(cmd, capture_output=True, text=True)
  if out.returncode:
    print(f"torch reference failed for {case.name}: {out.stderr[-500:]}", file=sys.stderr)
    return None
  return {"case": case.name, **json.loads(out.stdout.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--grid", default="gpu" if jax.default_backend() == "gpu" else "cpu")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--iters", type=int, default=5)
  parser.add_argument("--torch_python", default=None,
                      help="a Python with torch for the reference (default: this one, if torch "
                           "imports here)")
  parser.add_argument("--no_pipeline", action="store_true")
  parser.add_argument("--pairs", type=int, default=10,
                      help="alternating with/without-BatchFormer pairs for the overhead figure of "
                           "the grid's first backbone (0: skip)")
  parser.add_argument("--out", default="runs/bench")
  args = parser.parse_args(argv)
  torch_python = args.torch_python or (sys.executable if importlib.util.find_spec("torch")
                                       else None)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  hw = hardware()
  rows = []
  with open(out / "bench.jsonl", "w") as f:
    def emit(row: dict) -> None:
      row = {**hw, **row}
      rows.append(row)
      f.write(json.dumps(row) + "\n")
      f.flush()
      print(json.dumps(row), flush=True)

    cases = grid(args.grid)
    if max(c.devices for c in cases) > jax.device_count():
      raise SystemExit(f"--grid={args.grid} needs {max(c.devices for c in cases)} devices, this "
                       f"process has {jax.device_count()}; on a CPU run with XLA_FLAGS="
                       f"--xla_force_host_platform_device_count=8.")
    if args.grid == "overhead":  # the pairs are the timing; a separate median adds nothing
      for case in cases:
        emit({"impl": "jax", **paired_overhead(case, args.pairs, args.warmup)})
      cases = []
    for case in cases:
      emit({"impl": "jax", **time_case(case, args.warmup, args.iters)})
      if torch_python and case.devices == 1:
        ref = torch_case(torch_python, case, args.warmup, args.iters)
        if ref:
          emit(ref)
    if args.pairs and cases and args.grid != "scope":
      emit({"impl": "jax", **paired_overhead(cases[0], args.pairs, args.warmup)})
    if cases and args.grid != "scope":
      backbone = cases[0].backbone
      emit({"impl": "jax", "check": "eval_program_equal_with_and_without_bf",
            "backbone": backbone, "equal": eval_programs_equal(backbone, 64)})
    if not args.no_pipeline:
      from bf_jax.bench import pipeline
      for row in pipeline.measure_all():
        emit({"impl": "pipeline", **row})
  (out / "bench.md").write_text(report.markdown(rows))
  print(report.markdown(rows))


if __name__ == "__main__":
  main()

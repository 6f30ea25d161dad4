"""A run's second start against its first, with the compilation cache: compile and trace seconds.

  python benchmarks/compile_cache.py --config configs/imagenet_deit_small_v2.py:smoke --mock_data

Each start is a fresh process training the config in a fresh workdir (the same programs a
restart before its first checkpoint compiles), both with one new cache folder
(config.compile_cache_dir); a third start with the cache off is the check that the second one's
saving comes from the cache. Seconds are JAX's own timing events (XLA compile, which includes a
program read back from the cache; jaxpr tracing), and the whole process's wall time.
``--mock_data`` serves TFDS datasets from ``tfds.testing.mock_data`` (64 random examples), as the
smoke tests do.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time

_COMPILE = "/jax/core/compile/backend_compile_duration"
_TRACE = "/jax/core/compile/jaxpr_trace_duration"
_HIT = "/jax/compilation_cache/cache_hits"


def child(config_arg: str, workdir: str, cache: str, mock: bool) -> dict:
  """One start: trains the config in this process; its compile figures."""
  from jax import monitoring

  from bf_jax import tasks
  from bf_jax.demo import load_config

  seen = {"compile_s": 0.0, "trace_s": 0.0, "programs": 0, "cache_hits": 0}

  def on_duration(event: str, secs: float, **_):
    if event == _COMPILE:
      seen["compile_s"] += secs
      seen["programs"] += 1
    elif event == _TRACE:
      seen["trace_s"] += secs

  def on_event(event: str, **_):
    if event == _HIT:
      seen["cache_hits"] += 1

  monitoring.register_event_duration_secs_listener(on_duration)
  monitoring.register_event_listener(on_event)
  path, _, arg = config_arg.partition(":")
  config = load_config(path, arg)
  config.compile_cache_dir = cache
  if mock:
    import tensorflow_datasets as tfds
    serve = tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE)
  else:
    serve = contextlib.nullcontext()
  with serve:
    tasks.run(config, workdir)
  return seen


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", required=True, help="config file[:args], e.g. ...:smoke")
  parser.add_argument("--mock_data", action="store_true", help="TFDS mock data (64 examples)")
  parser.add_argument("--child", nargs=2, metavar=("WORKDIR", "CACHE"), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    seen = child(args.config, *args.child, args.mock_data)
    print("FIGURES " + json.dumps(seen), flush=True)
    return
  env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  rows = []
  with tempfile.TemporaryDirectory(prefix="bf_jax_compile_cache_") as tmp:
    for name, cache in (("first start", f"{tmp}/cache"), ("second start", f"{tmp}/cache"),
                        ("cache off", "")):
      cmd = [sys.executable, __file__, "--config", args.config,
             "--child", f"{tmp}/run_{len(rows)}", cache] + (["--mock_data"] * args.mock_data)
      t0 = time.time()
      done = subprocess.run(cmd, env=env, capture_output=True, text=True)
      wall = time.time() - t0
      if done.returncode:
        sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
      figures = json.loads(done.stdout.rpartition("FIGURES ")[2])
      rows.append((name, wall, figures))
  first = rows[0][2]["compile_s"]
  print(f"{args.config}{' (TFDS mock data)' if args.mock_data else ''}\n")
  print("| start | wall s | XLA compile s | x first | tracing s | programs | cache hits |")
  print("|---|---|---|---|---|---|---|")
  for name, wall, f in rows:
    print(f"| {name} | {wall:.1f} | {f['compile_s']:.1f} | {f['compile_s'] / first:.2f} | "
          f"{f['trace_s']:.1f} | {f['programs']} | {f['cache_hits']} |")


if __name__ == "__main__":
  main()

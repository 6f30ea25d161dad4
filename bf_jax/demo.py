"""The main job: long-tailed digits, baseline vs +BatchFormer, paired over seeds.

  python -m bf_jax.demo --workdir runs/demo --seeds 10

Both arms of a seed share the data split, the data order and every initial parameter they have
in common (checked, see bf_jax/compare.py). Prints each run, then the paired table (the mean
difference, its 95% interval, wins/ties/losses, p-values) and one sentence per metric; writes it
to ``<workdir>/compare.md`` (+ ``compare.json``, ``paired_differences.png``) and plots per-class
accuracy against class size for both arms. Then what the trained layer does
(bf_jax/trainer/probe_stats.py): each +BatchFormer run holds attention.png, gradient_share.png
and probe.json; the means over seeds are printed and written to ``<workdir>/probe.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import pathlib
import shutil
import time
from typing import Callable

import numpy as np

from bf_jax import compare
from bf_jax.tasks import classify
from bf_jax.trainer import plots, probe_stats, writers

METRICS = (("acc", "overall"), ("many_acc", "many"), ("medium_acc", "medium"), ("few_acc", "few"))
ARMS = (("baseline", "off"), ("+BatchFormer", "on"))


def load_config(path: str, arg: str):
  spec = importlib.util.spec_from_file_location("demo_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def run_arms(config_path: str, workdir: str | pathlib.Path, seeds: int,
             adjust: Callable | None = None, arg: str = "") -> dict:
  """Trains both arms for seeds 0..seeds-1 (fresh runs), writes the comparison; its report.

  ``adjust(config)`` edits each config before it trains (tests shorten the runs with it);
  ``arg`` is more of the config's args, e.g. ``"branches=both"``."""
  workdir = pathlib.Path(workdir)
  per_class: dict[str, list] = {arm: [] for arm, _ in ARMS}
  t0 = time.time()
  for seed in range(seeds):
    for arm, bf in ARMS:
      run_dir = workdir / f"bf_{bf}_seed{seed}"
      shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run each time, never a resume
      config = load_config(config_path, ",".join(filter(None, (f"bf={bf},seed={seed}", arg))))
      # What the layer attends to (the bf=off arm has none; PaCo's step has no probe yet).
      config.probe.enabled = not config.paco.enabled
      if adjust is not None:
        adjust(config)
      result = classify.run(config, run_dir)
      info = json.loads((run_dir / "per_class.json").read_text())
      per_class[arm].append((info["train_counts"], info["test_acc"]))
      print(f"[{time.time() - t0:5.0f}s] {arm:13s} seed {seed}: " +
            " ".join(f"{name} {100 * result[key]:.1f}" for key, name in METRICS if key in result),
            flush=True)
  # This call's runs only: a workdir may still hold seeds of an earlier, longer demo.
  report = compare.compare(
      *(compare.find_runs([str(workdir / f"bf_{bf}_seed{seed}") for seed in range(seeds)])
        for _, bf in ARMS), names=tuple(arm for arm, _ in ARMS))
  compare.write(report, workdir)
  plots.plot_per_class(
      {arm: (runs[0][0], np.nanmean([acc for _, acc in runs], axis=0))
       for arm, runs in per_class.items()}, workdir / "per_class_accuracy.png",
      title=f"Long-tailed digits, mean over {seeds} seeds")
  return report


def probe_summary(workdir: str | pathlib.Path, seeds: int) -> dict | None:
  """The +BatchFormer runs' final probe records, averaged over seeds; written to
  ``<workdir>/probe.md`` and ``probe.json``."""
  workdir = pathlib.Path(workdir)
  records = []
  for seed in range(seeds):
    path = workdir / f"bf_on_seed{seed}" / probe_stats.FILE
    if path.exists():
      history = json.loads(path.read_text())
      records.append(history[max(history, key=int)])
  if not records:
    return None
  mean = probe_stats.mean_records(records)
  mean["seeds"], mean["probe_batches"] = len(records), records[0]["probe_batches"]
  (workdir / probe_stats.FILE).write_text(json.dumps(mean, indent=1))
  (workdir / "probe.md").write_text(probe_stats.markdown(mean) + "\n")
  return mean


def main(argv: list[str] | None = None) -> None:
  # argparse, not absl flags: importing this module (tests do) defines no global flags.
  parser = argparse.ArgumentParser(prog="python -m bf_jax.demo", description=__doc__)
  parser.add_argument("--workdir", default="runs/demo", help="parent folder of the runs")
  parser.add_argument("--seeds", type=int, default=10, help="seeds (each trains both arms)")
  parser.add_argument("--config", default="configs/digits_lt.py",
                      help="config file to compare with bf=off/on")
  parser.add_argument("--arg", default="", help="more config args, e.g. branches=both")
  args = parser.parse_args(argv)
  if args.seeds < 1:
    parser.error(f"--seeds={args.seeds} must be at least 1")
  owned = sorted({item.partition("=")[0] for item in args.arg.split(",")} & {"bf", "seed"})
  if owned:
    parser.error(f"--arg={args.arg!r} sets {owned}, which the demo sets itself (bf=off and "
                 f"bf=on are its two arms, seed=0..--seeds-1 its pairs); drop them from --arg")
  try:  # the config and its args, checked before anything trains
    for _, bf in ARMS:
      classify.validate(load_config(args.config, ",".join(filter(None, (f"bf={bf}", args.arg)))))
  except (OSError, SyntaxError, ValueError, AttributeError) as e:
    parser.error(f"--config={args.config} --arg={args.arg!r}: {e}")
  writers.setup_logging(logging.WARNING)  # the demo prints its own one line per run
  t0 = time.time()
  report = run_arms(args.config, args.workdir, args.seeds, arg=args.arg)
  print("\n" + compare.markdown(report))
  workdir = pathlib.Path(args.workdir)
  mean = probe_summary(workdir, args.seeds)
  if mean is not None:
    print(f"\nWhat the trained BatchFormer does on the probe batches (mean over {mean['seeds']} "
          f"seeds, {mean['probe_batches']} batches each; pictures: "
          f"{workdir / 'bf_on_seed0' / 'attention.png'}, gradient_share.png):\n")
    print(probe_stats.markdown(mean))
  print(f"wrote {workdir / 'compare.md'}, {workdir / 'paired_differences.png'} and "
        f"{workdir / 'per_class_accuracy.png'} ({time.time() - t0:.0f}s)")


if __name__ == "__main__":
  main()

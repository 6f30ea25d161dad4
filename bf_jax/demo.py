"""The main job: long-tailed digits, baseline vs +BatchFormer over several seeds.

  python -m bf_jax.demo --workdir runs/demo --seeds 5

Prints a table of mean +- std (over seeds) of overall, many, medium and few accuracy, writes it
to ``<workdir>/results.md`` and plots per-class accuracy against class size for both.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import pathlib
import shutil
import time

import numpy as np
from absl import app, flags

from bf_jax.tasks import classify
from bf_jax.trainer import plots, writers

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/demo", "Parent folder of the runs.")
flags.DEFINE_integer("seeds", 5, "Seeds per arm.")
flags.DEFINE_string("config", "configs/digits_lt.py", "Config file to compare with bf=off/on.")

METRICS = (("acc", "overall"), ("many_acc", "many"), ("medium_acc", "medium"), ("few_acc", "few"))


def load_config(path: str, arg: str):
  spec = importlib.util.spec_from_file_location("demo_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def results_table(results: dict[str, list[dict]]) -> str:
  """Markdown table of mean +- std per arm, and the BatchFormer minus baseline difference."""
  rows = ["| run | seeds | " + " | ".join(name for _, name in METRICS) + " |",
          "|---|---|" + "---|" * len(METRICS)]
  means = {}
  for arm, runs in results.items():
    cells = []
    for key, _ in METRICS:
      vals = 100 * np.array([r[key] for r in runs if key in r])
      means[arm, key] = vals.mean()
      cells.append(f"{vals.mean():.1f} +- {vals.std(ddof=1) if len(vals) > 1 else 0.0:.1f}")
    rows.append(f"| {arm} | {len(runs)} | " + " | ".join(cells) + " |")
  arms = list(results)
  if len(arms) == 2:
    diff = [f"{means[arms[1], k] - means[arms[0], k]:+.1f}" for k, _ in METRICS]
    rows.append(f"| difference | | " + " | ".join(diff) + " |")
  return "\n".join(rows)


def main(argv):
  del argv
  writers.setup_logging(logging.WARNING)  # the demo prints its own one line per run
  workdir = pathlib.Path(FLAGS.workdir)
  results: dict[str, list[dict]] = {"baseline": [], "+BatchFormer": []}
  per_class: dict[str, list] = {arm: [] for arm in results}
  t0 = time.time()
  for arm, bf in (("baseline", "off"), ("+BatchFormer", "on")):
    for seed in range(FLAGS.seeds):
      run_dir = workdir / f"bf_{bf}_seed{seed}"
      shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run each time, never a resume
      result = classify.run(load_config(FLAGS.config, f"bf={bf},seed={seed}"), run_dir)
      results[arm].append(result)
      info = json.loads((run_dir / "per_class.json").read_text())
      per_class[arm].append((info["train_counts"], info["test_acc"]))
      print(f"[{time.time() - t0:5.0f}s] {arm:13s} seed {seed}: " +
            " ".join(f"{name} {100 * result[key]:.1f}" for key, name in METRICS if key in result),
            flush=True)
  table = results_table(results)
  print("\n" + table)
  (workdir / "results.md").write_text(table + "\n")
  plots.plot_per_class(
      {arm: (runs[0][0], np.nanmean([acc for _, acc in runs], axis=0))
       for arm, runs in per_class.items()}, workdir / "per_class_accuracy.png",
      title=f"Long-tailed digits, mean over {FLAGS.seeds} seeds")
  print(f"\nwrote {workdir / 'results.md'} and {workdir / 'per_class_accuracy.png'} "
        f"({time.time() - t0:.0f}s)")


if __name__ == "__main__":
  app.run(main)

"""The main job: long-tailed digits, baseline vs +BatchFormer, paired over seeds.

  python -m bf_jax.demo --workdir runs/demo --seeds 10

Both arms of a seed share the data split, the data order and every initial parameter they have
in common (checked, see bf_jax/compare.py). Prints each run, then the paired table (the mean
difference, its 95% interval, wins/ties/losses, p-values) and one sentence per metric; writes it
to ``<workdir>/compare.md`` (+ ``compare.json``, ``paired_differences.png``) and plots per-class
accuracy against class size for both arms. Then what the trained layer does
(bf_jax/trainer/probe_stats.py): each +BatchFormer run holds attention.png, gradient_share.png
and probe.json; the means over seeds are printed and written to ``<workdir>/probe.md``.

Any classifier config (``--config``, ``--arg``) makes a cell of a table this way, e.g. one of
Fashion-MNIST-LT's (tools/fashion_mnist_tables.sh): ``--keep`` keeps finished runs and trains the
rest, so a sweep stopped anywhere resumes; ``--baseline DIR`` takes the baseline arm from another
cell (one baseline for several treatments); ``--per_class`` compares every class's accuracy too.
``--first_seed N`` trains seeds N.. only, so several processes or machines share one cell (each
its own range of seeds); one more call with ``--keep`` and no ``--first_seed`` compares them all.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import pathlib
import shutil
import textwrap
import time
from typing import Callable

import numpy as np

from bf_jax import compare
from bf_jax.tasks import classify
from bf_jax.trainer import plots, probe_stats, writers
from bf_jax.trainer.run import check_config, finished_result
from bf_jax.trainer.run_record import allowed_changes

METRICS = (("acc", "overall"), ("many_acc", "many"), ("medium_acc", "medium"), ("few_acc", "few"),
           ("head_acc", "head"), ("mid_acc", "mid"), ("tail_acc", "tail"))
ARMS = (("baseline", "off"), ("+BatchFormer", "on"))
TIME_FILE = "wall_time.json"  # how long the demo's run took, end to end (compile included)


def load_config(path: str, arg: str):
  spec = importlib.util.spec_from_file_location("demo_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _arm_dir(workdir: pathlib.Path, bf: str, seed: int, baseline: pathlib.Path | None
             ) -> pathlib.Path:
  return (baseline if baseline is not None and bf == "off" else workdir) / f"bf_{bf}_seed{seed}"


def _train_one(config, run_dir: pathlib.Path, keep: bool) -> tuple[dict, float | None]:
  """Trains ``config`` in ``run_dir``: a fresh run, or with ``keep`` whatever is missing (a run
  finished with this config is kept as it is). (result, seconds; None for a kept run)."""
  if not keep:
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run each time, never a resume
  else:
    try:  # a run of another config is never taken as this one's
      diffs = check_config(config, run_dir)
    except ValueError as e:
      raise ValueError(f"--keep: {run_dir} holds a run of another config, which is never kept as "
                       f"this one's: give another --workdir, or drop --keep to train every run "
                       f"afresh. {e}") from None
    done = finished_result(run_dir)
    if done is not None:
      # Records without a checkpoint (copied from benchmarks/results) are checked here.
      changed = sorted(set(diffs) - set(allowed_changes(config)))
      if changed:
        raise ValueError(f"--keep: {run_dir} finished with another config ({', '.join(changed)} "
                         f"differ); give another --workdir, or drop --keep to train every run "
                         f"afresh.")
      if done.get("step") == config.total_steps:
        return done, None
  resumed = (run_dir / "checkpoints").is_dir()  # then it took longer than this start
  t0 = time.time()
  result = classify.run(config, run_dir)
  seconds = time.time() - t0
  (run_dir / TIME_FILE).write_text(json.dumps({"seconds": seconds, "resumed": resumed}))
  return result, seconds


def run_arms(config_path: str, workdir: str | pathlib.Path, seeds: int,
             adjust: Callable | None = None, arg: str = "", keep: bool = False,
             baseline: str | pathlib.Path | None = None, per_class: bool = False,
             first_seed: int = 0) -> dict | None:
  """Trains both arms for seeds 0..seeds-1, writes the comparison; its report.

  ``adjust(config)`` edits each config before it trains (tests shorten the runs with it);
  ``arg`` is more of the config's args, e.g. ``"branches=both"``. ``keep``: keep the finished
  runs of the same config and train the rest (a table spread over several sessions), instead of
  fresh runs. ``baseline``: the baseline arm is that folder's finished ``bf_off_seed*`` runs (one
  baseline shared by several treatments). ``per_class``: each class's accuracy is compared too.
  ``first_seed``: train seeds first_seed..seeds-1 only and compare nothing (None): a share of a
  cell that other processes train the rest of.
  """
  workdir = pathlib.Path(workdir)
  baseline = None if baseline is None else pathlib.Path(baseline)
  if baseline is not None:  # checked before anything trains
    dirs = [_arm_dir(workdir, "off", seed, baseline) for seed in range(first_seed, seeds)]
    missing = [str(d) for d in dirs if finished_result(d) is None]
    if missing:
      raise FileNotFoundError(f"--baseline {baseline}: {', '.join(missing)} is not a finished "
                              f"run; train that cell first (its own python -m bf_jax.demo).")
  per_class_runs: dict[str, list] = {arm: [] for arm, _ in ARMS}
  t0 = time.time()
  for seed in range(first_seed, seeds):
    for arm, bf in ARMS:
      run_dir = _arm_dir(workdir, bf, seed, baseline)
      config = load_config(config_path, ",".join(filter(None, (f"bf={bf},seed={seed}", arg))))
      # What the layer attends to (the bf=off arm has none; PaCo's step has no probe yet).
      config.probe.enabled = not config.paco.enabled
      if adjust is not None:
        adjust(config)
      if baseline is not None and bf == "off":
        result = finished_result(run_dir)
        if result.get("step") != config.total_steps:
          raise ValueError(f"--baseline {baseline}: {run_dir} trained {result.get('step')} "
                           f"steps, this config {config.total_steps}; it is not this baseline.")
        how = "shared"
      else:
        result, seconds = _train_one(config, run_dir, keep)
        how = "kept" if seconds is None else f"{seconds:.0f}s"
      info = json.loads((run_dir / "per_class.json").read_text())
      per_class_runs[arm].append((info["train_counts"], info["test_acc"]))
      print(f"[{time.time() - t0:5.0f}s] {arm:13s} seed {seed} ({how}): " +
            " ".join(f"{name} {100 * result[key]:.1f}" for key, name in METRICS if key in result),
            flush=True)
  if first_seed:
    return None
  # This call's runs only: a workdir may still hold seeds of an earlier, longer demo.
  arms = [compare.find_runs([str(_arm_dir(workdir, bf, seed, baseline)) for seed in range(seeds)])
          for _, bf in ARMS]
  if per_class:
    for runs in arms:
      for run in runs:
        acc_K = json.loads((run.path / "per_class.json").read_text())["test_acc"]
        run.result.update({f"class{c}_acc": a for c, a in enumerate(acc_K)})
  report = compare.compare(*arms, names=tuple(arm for arm, _ in ARMS))
  report["seconds_per_run"] = {name: _mean_seconds(runs) for (name, _), runs in zip(ARMS, arms)}
  compare.write(report, workdir)
  plots.plot_per_class(
      {arm: (runs[0][0], np.nanmean([acc for _, acc in runs], axis=0))
       for arm, runs in per_class_runs.items()}, workdir / "per_class_accuracy.png",
      title=textwrap.fill(f"{pathlib.Path(config_path).stem}{' ' + arg if arg else ''}, mean "
                          f"over {seeds} seeds", 72))
  return report


def _mean_seconds(runs: list[compare.Run]) -> float | None:
  """The mean wall time of the runs the demo trained in one go (a resumed run's is partial)."""
  records = [json.loads((r.path / TIME_FILE).read_text()) for r in runs
             if (r.path / TIME_FILE).exists()]
  times = [t["seconds"] for t in records if not t.get("resumed")]
  return float(np.mean(times)) if times else None


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
  parser.add_argument("--keep", action="store_true", help="keep the finished runs of the same "
                      "config and train only the missing ones (a table over several sessions); "
                      "default: fresh runs")
  parser.add_argument("--baseline", default=None, help="take the baseline arm from this "
                      "folder's finished bf_off_seed* runs (a baseline shared by several cells)")
  parser.add_argument("--per_class", action="store_true", help="compare each class's accuracy")
  parser.add_argument("--first_seed", type=int, default=0, help="train seeds first_seed..seeds-1 "
                      "only and compare nothing (share a cell between processes; then one call "
                      "with --keep compares all)")
  args = parser.parse_args(argv)
  if args.seeds < 1:
    parser.error(f"--seeds={args.seeds} must be at least 1")
  if not 0 <= args.first_seed < args.seeds:
    parser.error(f"--first_seed={args.first_seed} must be in 0..--seeds-1 ({args.seeds - 1}): "
                 f"this call trains seeds first_seed..seeds-1")
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
  report = run_arms(args.config, args.workdir, args.seeds, arg=args.arg, keep=args.keep,
                    baseline=args.baseline, per_class=args.per_class, first_seed=args.first_seed)
  if report is None:
    print(f"\ntrained seeds {args.first_seed}..{args.seeds - 1}; once every seed is finished, the "
          f"same command with --keep and without --first_seed compares them all")
    return
  print("\n" + compare.markdown(report))
  timed = {arm: s for arm, s in report["seconds_per_run"].items() if s is not None}
  if timed:
    print("Wall time per run, compile included: " +
          ", ".join(f"{arm} {s:.0f} s" for arm, s in timed.items()))
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

"""What a trained run's BatchFormer attends to, from its newest checkpoint.

  python -m bf_jax.probe --workdir runs/demo/bf_on_seed0

Rebuilds the run from its config.json, restores the newest checkpoint and runs the probe of
``config.probe`` (bf_jax/trainer/probe_stats.py) on it: writes probe.json, attention.png and
gradient_share.png into ``--out`` (default: ``<workdir>/probe_of_checkpoint/``, beside the ones
training wrote, never over them) and prints the group tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import sys

import ml_collections

from bf_jax import tasks
from bf_jax.trainer import probe_stats, run_record, user_errors, writers
from bf_jax.tasks import base_config

OUT = "probe_of_checkpoint"  # the default --out, inside the run's folder


def load_run_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
  path = workdir / run_record.CONFIG
  if not path.exists():
    raise FileNotFoundError(f"{workdir} holds no {run_record.CONFIG}: give the --workdir of a "
                            f"bf_jax run (the folder passed to bf_jax.main --workdir).")
  config = base_config()  # fields added to the schema after the run keep their defaults
  _merge(config, json.loads(path.read_text()))
  return config


def _merge(config: ml_collections.ConfigDict, recorded: dict) -> None:
  for key, value in recorded.items():
    if isinstance(value, dict) and isinstance(config.get(key), ml_collections.ConfigDict):
      _merge(config[key], value)
    else:
      config[key] = value


def inspect(workdir: str | pathlib.Path, out: str | pathlib.Path | None = None,
            batches: int | None = None, seed: int | None = None) -> dict:
  """Probes the run in ``workdir``; returns the record (with the checkpoint's ``step``). Writes
  into ``out`` (default ``<workdir>/probe_of_checkpoint``): never over what training wrote."""
  workdir = pathlib.Path(workdir)
  out = workdir / OUT if out is None else out
  config = load_run_config(workdir)
  task = tasks.get(config.task)
  if not hasattr(task, "inspect"):
    raise ValueError(f"{workdir} is a task={config.task!r} run; inspecting a checkpoint is built "
                     f"for task='classify' runs so far (a 'dg' run probes itself at every "
                     f"evaluation with --config.probe.enabled=True).")
  if batches is not None:
    config.probe.batches = batches
  if seed is not None:
    config.probe.seed = seed
  return task.inspect(config, workdir, out)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog="python -m bf_jax.probe", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True, help="the run's folder")
  parser.add_argument("--out", default=None, help=f"where to write (default: <workdir>/{OUT})")
  parser.add_argument("--batches", type=int, default=None,
                      help="probe batches (default: the run's probe.batches)")
  parser.add_argument("--seed", type=int, default=None,
                      help="the probe stream's seed (default: the run's probe.seed)")
  parser.add_argument("--debug", action="store_true", help="show tracebacks")
  args = parser.parse_args(argv)
  writers.setup_logging(logging.INFO)
  try:
    record = inspect(args.workdir, args.out, args.batches, args.seed)
  except (ValueError, FileNotFoundError) as e:
    if user_errors.debugging(flag=args.debug):
      raise
    user_errors.exit_with(str(e), user_errors.USAGE)
  print(f"step {record['step']}, scope {record['scope']}, {record['probe_batches']} probe "
        f"batches:\n")
  print(probe_stats.markdown(record))
  sys.stdout.flush()


if __name__ == "__main__":
  main()

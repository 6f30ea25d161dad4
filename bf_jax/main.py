"""Command line: python -m bf_jax.main --config configs/<task>.py[:args] --workdir DIR.

This file is intentionally tiny; the loop is bf_jax.train.train_and_evaluate, which tests call.
"""

import logging

import jax
from absl import app, flags
from ml_collections import config_flags

from bf_jax import train, writers

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/digits_lt.py:bf=off.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints and logs go; an existing run resumes.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process runs).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process runs).")
flags.DEFINE_integer("process_id", None, "This process's index (multi-process runs).")
flags.mark_flags_as_required(["config", "workdir"])


def _init_distributed() -> None:
  """Explicit flags win; otherwise auto-detect a TPU/Slurm cluster, else run single-process."""
  if FLAGS.coordinator_address is not None:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    return
  try:
    jax.distributed.initialize()
  except (ValueError, RuntimeError):
    pass  # no cluster detected: a single process


def main(argv):
  del argv
  writers.setup_logging(logging.INFO)
  _init_distributed()
  result = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  logging.getLogger("bf_jax").info("final: %s", result)


if __name__ == "__main__":
  app.run(main)

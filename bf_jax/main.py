"""Command line: python -m bf_jax.main --config configs/<task>.py[:args] --workdir DIR.

This file is intentionally tiny; the loops are bf_jax.tasks.run's, which tests call. Errors the
user can fix end in one message (exit 2), see bf_jax/trainer/user_errors.py; --debug shows the
traceback.
"""

import logging
import socket
import sys
import traceback

import jax
from absl import app, flags
from ml_collections import config_flags

from bf_jax import tasks
from bf_jax.trainer import user_errors, writers
from bf_jax.tasks import base_config
from bf_jax.trainer.config_check import get

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/digits_lt.py:bf=off.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints and logs go; an existing run resumes.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process runs).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process runs).")
flags.DEFINE_integer("process_id", None, "This process's index (multi-process runs).")
flags.DEFINE_bool("debug", False, "On an error, show the full traceback (also BF_JAX_DEBUG=1).")
flags.mark_flags_as_required(["config", "workdir"])


def _check_coordinator_flags() -> None:
  """Loud checks before jax.distributed, whose own failures are a hang or a gRPC abort."""
  address, n, i = FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit():
    raise ValueError(f"--coordinator_address={address!r} must be host:port, e.g. "
                     f"10.0.0.2:8476 (process 0's address).")
  if n is None or i is None or not 0 <= i < n:
    raise ValueError(f"--num_processes={n} --process_id={i}: with --coordinator_address "
                     f"give both, with 0 <= process_id < num_processes.")
  if i == 0:  # process 0 serves the coordinator on that port
    with socket.socket() as s:
      try:
        s.bind(("", int(port)))
      except OSError as e:
        raise ValueError(
            f"--coordinator_address={address}: port {port} cannot be opened on this "
            f"machine ({e.strerror}); another run's coordinator may hold it. Pick a free port "
            f"for all processes, e.g. --coordinator_address={host}:{_free_port()}.") from None


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("", 0))
    return s.getsockname()[1]


def _init_distributed() -> None:
  """Explicit flags win; otherwise auto-detect a TPU/Slurm cluster, else run single-process."""
  if FLAGS.coordinator_address is not None:
    _check_coordinator_flags()
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    return
  try:
    jax.distributed.initialize()
  except (ValueError, RuntimeError):
    pass  # no cluster detected: a single process


_SPELLINGS = {"on": "true", "yes": "true", "off": "false", "no": "false"}


def spell_booleans(argv: list[str]) -> list[str]:
  """``--config.bf.enabled=off`` as the config-arg form (``:bf=off``) takes it: on/off/yes/no of
  a boolean field become true/false, which absl's boolean parser accepts."""
  schema, out = base_config(), []
  for arg in argv:
    name, eq, value = arg.partition("=")
    if eq and name.startswith("--config.") and value.lower() in _SPELLINGS:
      try:
        field = get(schema, name[len("--config."):])
      except (AttributeError, KeyError):
        field = None
      if isinstance(field, bool):
        arg = f"{name}={_SPELLINGS[value.lower()]}"
    out.append(arg)
  return out


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with the boolean spellings, and one message for a mistaken flag."""
  argv = spell_booleans(argv)
  try:
    return FLAGS(argv)
  except Exception as e:
    message = user_errors.flag_error(e, argv)
    if message is None:
      raise
    if user_errors.debugging(argv):  # the traceback, and still the same exit code
      traceback.print_exc()
    user_errors.exit_with(message, user_errors.USAGE)


def main(argv):
  # absl hands back what no flag took: `--config.bf.enabled false` would train with the flag True.
  if len(argv) > 1:
    user_errors.exit_with(user_errors.stray_arguments(argv[1:], sys.argv), user_errors.USAGE)
  if not FLAGS.workdir.strip():  # `--workdir=` or an unset $WD: never the current directory
    user_errors.exit_with("--workdir is empty (an unset shell variable?); give the run's folder, "
                          "e.g. --workdir runs/digits (or --workdir . for this directory).",
                          user_errors.USAGE)
  writers.setup_logging(logging.INFO)
  try:
    config = FLAGS.config  # a config file that failed to load raises here
    _init_distributed()
    result = tasks.run(config, FLAGS.workdir)
  except BaseException as e:
    said = user_errors.describe(e, FLAGS.workdir, sys.argv)
    if said is None:
      raise
    if user_errors.debugging(flag=FLAGS.debug):  # the traceback, and still the same exit code
      traceback.print_exc()
    user_errors.exit_with(*said)
  logging.getLogger("bf_jax").info("final: %s", result)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)

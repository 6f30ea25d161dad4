"""Two processes on localhost (jax.distributed, 4 CPU devices each) against one 8-device process:
same losses and parameters, checkpoints that move between them, one agreed preemption step."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from helpers import ROOT, load_config, read_metrics, train_losses

from bf_jax import tasks
from bf_jax.tasks import classify

# Several processes each: make test-fast leaves these out, make test runs them.
pytestmark = pytest.mark.slow

STEPS = ["--config.total_steps=6", "--config.log_every_steps=1", "--config.eval_every_steps=0",
         "--config.ckpt.every_steps=1"]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch_two(workdir, *overrides, config="configs/digits_lt.py:smoke", env=None
                ) -> list[subprocess.Popen]:
  port = _free_port()
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
         "JAX_PLATFORMS": "cpu", **(env or {})}
  return [subprocess.Popen(
      [sys.executable, "-m", "bf_jax.main", "--config", config,
       f"--workdir={workdir}", f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
       f"--process_id={i}", *overrides],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]


def _finish(procs) -> list[str]:
  outs = [p.communicate(timeout=300)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out
  return outs


def _state(workdir, step=None, like=None):
  """A checkpoint's state; ``like`` gives target shardings (a checkpoint from other devices)."""
  target = None if like is None else jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  mngr = ocp.CheckpointManager(workdir / "checkpoints")
  step = mngr.latest_step() if step is None else step
  return mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]


def test_checkpoints_move_between_one_and_two_processes_and_runs_agree(tmp_path):
  config = load_config("digits_lt", "smoke")
  config.total_steps, config.log_every_steps, config.eval_every_steps = 6, 1, 0
  config.ckpt.every_steps = 1
  # One process with 8 devices runs steps 1-3; two processes with 4 each resume a copy for 4-6.
  classify.run(config, tmp_path / "one", stop_at=3)
  shutil.copytree(tmp_path / "one", tmp_path / "one_to_two")
  two = _launch_two(tmp_path / "one_to_two", *STEPS)
  one = classify.run(config, tmp_path / "one")  # meanwhile: steps 4-6 here
  outs = _finish(two)
  # The two processes' step-5 checkpoint resumes in this one process.
  shutil.copytree(tmp_path / "one_to_two", tmp_path / "two_to_one")
  shutil.rmtree(tmp_path / "two_to_one" / "checkpoints" / "6")
  classify.run(config, tmp_path / "two_to_one")

  assert "resumed from the checkpoint at step 3" in outs[0]
  np.testing.assert_allclose(train_losses(tmp_path / "one_to_two"), train_losses(tmp_path / "one"),
                             rtol=1e-5, atol=1e-6)
  final = _state(tmp_path / "one")
  for name in ("one_to_two", "two_to_one"):
    chex.assert_trees_all_close(_state(tmp_path / name, like=final), final, atol=1e-5, rtol=1e-5,
                                custom_message=name)
  assert f"'acc': {one['acc']}" in outs[0]  # eval counted every test example once


def test_ctrl_c_to_one_process_saves_the_same_step_on_both(tmp_path):
  """The Ctrl-C handler hands the signal to JAX's preemption notifier as a SIGTERM, so this is
  also the road a scheduler's SIGTERM to one host takes."""
  procs = _launch_two(tmp_path, "--config.total_steps=100000", "--config.log_every_steps=5",
                      "--config.eval_every_steps=0", "--config.ckpt.every_steps=0")
  deadline = time.time() + 180
  while not (tmp_path / "metrics.jsonl").exists() or not read_metrics(tmp_path):
    assert all(p.poll() is None for p in procs), procs[0].stdout.read()
    assert time.time() < deadline, "training never logged a step"
    time.sleep(0.5)
  procs[1].send_signal(signal.SIGINT)  # e.g. a Ctrl-C in one host's terminal
  outs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 130], outs
  saved_0 = re.search(r"preempted: saved step (\d+);", outs[0])
  saved_1 = re.search(r"interrupted: saved step (\d+);", outs[1])
  assert saved_0 and saved_1 and saved_0.group(1) == saved_1.group(1), outs
  step = int(saved_0.group(1))
  assert (tmp_path / "checkpoints" / str(step)).is_dir() and step < 100000
  assert "Traceback" not in outs[1]


def test_moco_on_two_processes_equals_one_process(tmp_path):
  """Keys gathered over both processes' devices, kNN features gathered to every process."""
  config = load_config("moco_digits", "smoke")
  config.total_steps, config.log_every_steps = 3, 1
  # All three processes skip XLA's optimizations alike (conftest.py; subprocesses inherit it).
  two = _launch_two(tmp_path / "two", "--config.total_steps=3", "--config.log_every_steps=1",
                    config="configs/moco_digits.py:smoke")
  one = tasks.run(config, tmp_path / "one")  # meanwhile, in this process on 8 devices
  outs = _finish(two)
  np.testing.assert_allclose(train_losses(tmp_path / "two"), train_losses(tmp_path / "one"),
                             rtol=1e-5, atol=1e-6)
  for out in outs:  # both processes computed the same monitor over the same 16 queries
    assert f"'knn_acc': {one['knn_acc']}" in out

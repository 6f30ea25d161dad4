"""Two processes on localhost (jax.distributed, 4 CPU devices each) equal one 8-device process."""

import os
import socket
import subprocess
import sys

import chex
import jax
import numpy as np
import orbax.checkpoint as ocp

from bf_jax import train
from helpers import ROOT, load_config, train_losses

OVERRIDES = ["--config.total_steps=6", "--config.log_every_steps=1", "--config.eval_every_steps=0",
             "--config.ckpt.every_steps=0"]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _final_state(workdir, like=None):
  """The latest checkpoint; ``like`` gives target shardings (a checkpoint from other devices)."""
  target = None if like is None else jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  mngr = ocp.CheckpointManager(workdir / "checkpoints")
  return mngr.restore(mngr.latest_step(),
                      args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]


def test_two_processes_match_one_process_with_eight_devices(tmp_path):
  port = _free_port()
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
         "JAX_PLATFORMS": "cpu"}
  procs = [subprocess.Popen(
      [sys.executable, "-m", "bf_jax.main", "--config", "configs/digits_lt.py:smoke",
       f"--workdir={tmp_path / 'two'}", f"--coordinator_address=127.0.0.1:{port}",
       "--num_processes=2", f"--process_id={i}", *OVERRIDES],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]
  outs = [p.communicate(timeout=300)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out
  config = load_config("digits_lt", "smoke")
  config.total_steps, config.log_every_steps, config.eval_every_steps = 6, 1, 0
  config.ckpt.every_steps = 0
  one = train.train_and_evaluate(config, tmp_path / "one")  # this process: 8 devices
  np.testing.assert_allclose(train_losses(tmp_path / "two"), train_losses(tmp_path / "one"),
                             rtol=1e-5, atol=1e-6)
  # The 2-process checkpoint restores here, onto this process's 8 devices (Orbax reshards).
  one_state = _final_state(tmp_path / "one")
  chex.assert_trees_all_close(_final_state(tmp_path / "two", like=one_state), one_state,
                              atol=1e-5, rtol=1e-5)
  assert f"'acc': {one['acc']}" in outs[0]  # eval counted every test example once

"""The command line: a real process, a config file; SIGTERM saves and exits 0, then resumes;
Ctrl-C saves and exits 130."""

import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import ROOT, read_metrics

# Real training processes: make test-fast leaves these out, make test runs them.
pytestmark = pytest.mark.slow


def _launch(workdir, *overrides):
  env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
  cmd = [sys.executable, "-m", "bf_jax.main", "--config", "configs/digits_lt.py",
         f"--workdir={workdir}", "--config.total_steps=100000", "--config.log_every_steps=10",
         "--config.eval_every_steps=0", "--config.steps_per_dispatch=1", *overrides]
  return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _wait_for_a_logged_step(proc, workdir):
  deadline = time.time() + 120
  while not (workdir / "metrics.jsonl").exists() or not read_metrics(workdir):
    assert proc.poll() is None, proc.stdout.read()
    assert time.time() < deadline, "training never logged a step"
    time.sleep(0.5)


def _saved_steps(workdir):
  return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def test_sigterm_saves_a_checkpoint_and_exits_zero_then_resumes(tmp_path):
  proc = _launch(tmp_path)
  _wait_for_a_logged_step(proc, tmp_path)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out
  assert "preempted: saved step" in out
  saved = _saved_steps(tmp_path)
  assert saved and 10 <= saved[-1] < 100000
  # The same command resumes from there (here: told to stop soon after; at least 11 more steps
  # keep total_steps above digits_lt's 20 warmup steps when the save came at step 10).
  again = _launch(tmp_path, f"--config.total_steps={saved[-1] + 11}",
                  "--config.resume_changes=total_steps")
  out, _ = again.communicate(timeout=180)
  assert again.returncode == 0, out
  assert f"resumed from the checkpoint at step {saved[-1]}" in out
  assert "'preempted': False" in out


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path):
  """Issue 17, item 4: today's KeyboardInterrupt lost the work since the last checkpoint."""
  proc = _launch(tmp_path, "--config.ckpt.every_steps=0")  # only the Ctrl-C saves
  _wait_for_a_logged_step(proc, tmp_path)
  proc.send_signal(signal.SIGINT)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 130, out
  assert "Ctrl-C: saving a checkpoint at the next step boundary" in out
  assert "Traceback" not in out
  saved = _saved_steps(tmp_path)
  assert len(saved) == 1 and f"interrupted: saved step {saved[0]}; rerun the same command" in out


# A host pipeline in worker processes: the digits cropped on the host (inception at 8x8), so
# they do not live on the devices.
WORKERS = ("--config.data.workers=2", "--config.data.augment=inception",
           "--config.data.image_size=8")


def test_ctrl_c_to_the_whole_terminal_group_with_workers_on_saves_and_exits_130(tmp_path):
  """A terminal's Ctrl-C reaches every process of its group, the worker processes too: they
  leave it to the trainer, which saves and exits 130 with no traceback."""
  env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
  cmd = [sys.executable, "-m", "bf_jax.main", "--config", "configs/digits_lt.py",
         f"--workdir={tmp_path}", "--config.total_steps=100000", "--config.log_every_steps=10",
         "--config.eval_every_steps=0", "--config.ckpt.every_steps=0",
         "--config.steps_per_dispatch=1", *WORKERS]
  proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True)
  _wait_for_a_logged_step(proc, tmp_path)
  import psutil
  assert len(psutil.Process(proc.pid).children()) >= 2  # the workers run
  os.killpg(proc.pid, signal.SIGINT)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 130, out
  assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
  saved = _saved_steps(tmp_path)
  assert len(saved) == 1 and f"interrupted: saved step {saved[0]}" in out


def test_sigterm_with_workers_on_saves_and_exits_zero(tmp_path):
  proc = _launch(tmp_path, *WORKERS)
  _wait_for_a_logged_step(proc, tmp_path)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out
  assert "preempted: saved step" in out and "Traceback" not in out, out

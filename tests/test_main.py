"""The command line: a real process, a config file, SIGTERM saves and exits 0, then resumes."""

import os
import signal
import subprocess
import sys
import time

from helpers import ROOT, read_metrics


def _launch(workdir, *overrides):
  env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
  cmd = [sys.executable, "-m", "bf_jax.main", "--config", "configs/digits_lt.py",
         f"--workdir={workdir}", "--config.total_steps=100000", "--config.log_every_steps=10",
         "--config.eval_every_steps=0", *overrides]
  return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def test_sigterm_saves_a_checkpoint_and_exits_zero_then_resumes(tmp_path):
  proc = _launch(tmp_path)
  deadline = time.time() + 120
  while not (tmp_path / "metrics.jsonl").exists() or not read_metrics(tmp_path):
    assert proc.poll() is None, proc.stdout.read()
    assert time.time() < deadline, "training never logged a step"
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out
  assert "preempted: saved step" in out
  saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert saved and 10 <= saved[-1] < 100000
  # The same command resumes from there (here: told to stop soon after; at least 11 more steps
  # keep total_steps above digits_lt's 20 warmup steps when the save came at step 10).
  again = _launch(tmp_path, f"--config.total_steps={saved[-1] + 11}",
                  "--config.resume_changes=total_steps")
  out, _ = again.communicate(timeout=180)
  assert again.returncode == 0, out
  assert f"resumed from the checkpoint at step {saved[-1]}" in out
  assert "'preempted': False" in out


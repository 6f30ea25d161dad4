"""What a run refuses before it writes anything, and what it keeps straight when it goes on:
issue 33's records (a result past its run, device scope, the optimizer, total_steps, a second
run in the workdir, a deleted config.json, logs after a kill)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import jax
import pytest
from helpers import ROOT, load_config, read_metrics

from bf_jax import compare
from bf_jax.tasks import classify
from bf_jax.trainer import checkpointing, run_record, workdir_lock


def _config(**fields):
  config = load_config("digits_lt", "smoke")
  config.total_steps, config.eval_every_steps, config.log_every_steps = 4, 0, 1
  config.optim.warmup_steps, config.ckpt.every_steps = 0, 2
  config.update(fields)
  return config


def _listing(root):
  return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def test_a_run_that_goes_on_moves_its_old_result_aside(tmp_path):
  classify.run(_config(), tmp_path)
  longer = _config(total_steps=8, resume_changes="total_steps")
  classify.run(longer, tmp_path, stop_at=6)  # preempted on the way to 8
  assert not (tmp_path / run_record.RESULT_FILE).exists()
  assert json.loads((tmp_path / "result_at_step4.json").read_text())["step"] == 4
  with pytest.raises(FileNotFoundError, match="no finished run"):
    compare.find_runs([str(tmp_path)])
  assert classify.run(longer, tmp_path)["step"] == 8
  assert json.loads((tmp_path / run_record.RESULT_FILE).read_text())["step"] == 8


def test_a_result_written_without_training_matches_its_config(tmp_path):
  classify.run(_config(), tmp_path, stop_at=2)  # preempted at 2 of 4
  shorter = _config(total_steps=2, resume_changes="total_steps")
  assert classify.run(shorter, tmp_path)["step"] == 2  # trains nothing, saves nothing
  config = json.loads((tmp_path / run_record.CONFIG).read_text())
  result = json.loads((tmp_path / run_record.RESULT_FILE).read_text())
  assert config["total_steps"] == result["step"] == 2


def test_a_device_scope_run_does_not_resume_on_another_device_count(tmp_path):
  classify.run(_config(bf=dict(scope="device")), tmp_path, stop_at=2)
  starts = [json.loads(line) for line in (tmp_path / run_record.HISTORY).read_text().splitlines()]
  assert (starts[0]["devices"], starts[0]["per_device_batch"]) == (8, 8)
  before = _listing(tmp_path)
  with pytest.raises(ValueError, match=r"bf.scope='device': .* trained on 8 devices \(8 rows per "
                                       r"device.*this start has 4 \(16 per device\)"):
    classify.run(_config(bf=dict(scope="device")), tmp_path, jax.devices()[:4])
  assert _listing(tmp_path) == before
  other = tmp_path / "global"  # global (and group) scopes may move: same attention either way
  classify.run(_config(), other, stop_at=2)
  assert classify.run(_config(), other, jax.devices()[:4])["step"] == 4


def test_a_change_that_breaks_the_optimizer_state_is_named_before_training(tmp_path):
  classify.run(_config(), tmp_path, stop_at=2)
  before = _listing(tmp_path)
  with pytest.raises(ValueError, match=r"resume_changes lets \['optim.name'\] change.*optimizer"
                                       r".*cannot change mid-run"):
    classify.run(_config(optim=dict(name="adamw"), resume_changes="optim.name"), tmp_path)
  assert _listing(tmp_path) == before


def test_total_steps_below_the_checkpoint_is_refused(tmp_path):
  classify.run(_config(), tmp_path)
  before = _listing(tmp_path)
  with pytest.raises(ValueError, match=r"newest checkpoint .* is at step 4, past total_steps=2"):
    classify.run(_config(total_steps=2, resume_changes="total_steps"), tmp_path)
  assert _listing(tmp_path) == before


def test_a_workdir_held_by_a_live_run_is_refused_and_a_stale_lock_is_taken_over(tmp_path):
  lock = tmp_path / workdir_lock.FILE
  lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": "now"}))
  with pytest.raises(workdir_lock.WorkdirBusy, match=rf"another bf_jax run \(pid {os.getpid()} "
                                                    rf"on {socket.gethostname()}"):
    classify.run(_config(), tmp_path)
  assert sorted(p.name for p in tmp_path.iterdir()) == [workdir_lock.FILE]
  gone = subprocess.Popen(["true"])
  gone.wait()  # a pid that no longer runs: its lock is stale (as after kill -9)
  lock.write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname(), "since": "then"}))
  assert classify.run(_config(), tmp_path)["step"] == 4
  assert not lock.exists()  # released at the end


@pytest.mark.slow  # two processes of the command line
def test_a_second_process_on_the_same_workdir_is_refused(tmp_path):
  env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
  cmd = [sys.executable, "-m", "bf_jax.main", "--config", "configs/digits_lt.py",
         f"--workdir={tmp_path}", "--config.total_steps=100000", "--config.eval_every_steps=0",
         "--config.ckpt.every_steps=0"]
  first = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 120
    while not (tmp_path / "metrics.jsonl").exists():  # the first one is training
      assert first.poll() is None and time.time() < deadline, first.stderr.read()
      time.sleep(0.5)
    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2, second.stderr[-2000:]
    assert f"another bf_jax run (pid {first.pid} on" in second.stderr
  finally:
    first.terminate()  # SIGTERM: saves and stops
    first.wait(timeout=120)


def test_a_deleted_config_json_is_checked_against_the_history(tmp_path):
  classify.run(_config(), tmp_path, stop_at=2)
  (tmp_path / run_record.CONFIG).unlink()
  with pytest.raises(ValueError, match=r"(?s)another config \(config_history.jsonl records it\).*"
                                       r"optim.lr: 0.05 \(recorded\) -> 0.5 \(now\)"):
    classify.run(_config(optim=dict(lr=0.5)), tmp_path)
  assert classify.run(_config(), tmp_path)["step"] == 4
  assert json.loads((tmp_path / run_record.CONFIG).read_text())["optim"]["lr"] == 0.05


def test_logs_keep_one_record_per_step_after_a_kill(tmp_path):
  classify.run(_config(), tmp_path)
  # As after kill -9 between saves: the newest checkpoint is at 2, the logs went on to 4.
  shutil.rmtree(tmp_path / "checkpoints" / "4")
  (tmp_path / run_record.RESULT_FILE).unlink()
  classify.run(_config(), tmp_path)
  steps = [m["step"] for m in read_metrics(tmp_path) if "train/loss" in m]
  assert steps == [1, 2, 3, 4]


def test_a_resume_with_the_other_block_layout_names_model_scan_layers(tmp_path):
  # The checkpoint stores the blocks one by one or stacked (model.scan_layers): a resume or a
  # second stage with the other layout is refused by name, before anything is written.
  first = tmp_path / "first"
  unrolled = dict(model=dict(name="resnet32", scan_layers=False))
  classify.run(_config(**unrolled), first, stop_at=2)
  before = _listing(first)
  with pytest.raises(ValueError, match=r"(?s)trained with another config.*model.scan_layers: "
                                       r"False \(recorded\) -> True \(now\)"):
    classify.run(_config(model=dict(name="resnet32", scan_layers=True)), first)
  with pytest.raises(checkpointing.IncompatibleCheckpoint,
                     match=r"model.scan_layers=True stores the blocks stacked \(block_stacks\), "
                           r"but the checkpoints in .* were written with model.scan_layers=False.*"
                           r"Resume with --config.model.scan_layers=False"):
    classify.run(_config(model=dict(name="resnet32", scan_layers=True),
                         resume_changes="model.scan_layers"), first)
  assert _listing(first) == before
  second = _config(model=dict(name="resnet32", scan_layers=True))  # a stage from its weights
  second.init.from_workdir = str(first)
  with pytest.raises(ValueError, match=r"init.from_workdir=.* stores its blocks one by one "
                                       r"\(model.scan_layers=False\) and this run stacked "
                                       r"\(model.scan_layers=True\).*Give "
                                       r"--config.model.scan_layers=False"):
    classify.run(second, tmp_path / "second")
  assert _listing(first) == before
  assert classify.run(_config(**unrolled), first)["step"] == 4  # the recorded layout goes on

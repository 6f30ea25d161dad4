"""The run lifecycle every task hands its state, step and evaluation to (trainer/run.py)."""

import time

import numpy as np
import pytest
from helpers import ROOT, load_config, read_metrics

from bf_jax.trainer import checkpointing, run_record, sharding, writers
from bf_jax.trainer.run import Run


def _state(mesh):
  return sharding.replicate({"params": {"w": np.ones(3, np.float32)}, "stats": {},
                             "opt_state": {}}, mesh)


def _batches():
  while True:
    yield {"image": np.zeros((64, 8, 8, 1), np.float32), "label": np.zeros(64, np.int32)}


def test_a_failing_step_still_closes_the_checkpointer_and_the_writer(tmp_path, monkeypatch):
  closed = []
  for cls in (checkpointing.Checkpointer, writers.MetricWriter):
    original = cls.close
    monkeypatch.setattr(cls, "close", lambda self, *a, o=original, c=cls, **kw: (
        closed.append(c), o(self, *a, **kw)))
  config = load_config("digits_lt", "smoke")
  mesh = sharding.make_mesh(config=config)

  def failing_step(state, batch, step):
    raise RuntimeError("a step failed")

  with pytest.raises(RuntimeError, match="a step failed"):
    with Run(config, tmp_path, mesh, _state(mesh)) as run:
      run.train(_batches(), failing_step, lambda *args: None, lambda step: 0.0)
  assert closed == [checkpointing.Checkpointer, writers.MetricWriter]
  assert run.start_step == 0 and not run.finished
  assert not run.finish({"step": 0})  # nothing reached total_steps: no result.json
  assert not (tmp_path / run_record.RESULT_FILE).exists()
  assert (tmp_path / run_record.INIT_FILE).exists() and (tmp_path / run_record.HISTORY).exists()


def test_a_run_that_reaches_total_steps_writes_its_result(tmp_path):
  config = load_config("digits_lt", "smoke")
  config.total_steps, config.eval_every_steps, config.ckpt.every_steps = 3, 0, 0
  mesh = sharding.make_mesh(config=config)

  def step(state, batch, i):
    return state, {"loss": np.float32(1.0)}

  with Run(config, tmp_path, mesh, _state(mesh)) as run:
    _, reached, last = run.train(_batches(), step, lambda s, i, sel: {"at": i}, lambda i: 0.0)
  assert reached == 3 and last == {"at": 3}
  assert run.finish({"step": reached}) and (tmp_path / run_record.RESULT_FILE).exists()


def test_no_task_builds_a_pipeline_or_passes_process_indices_by_hand():
  for path in sorted((ROOT / "bf_jax" / "tasks").rglob("*.py")):
    text = path.read_text()
    for needle in ("pipeline.train_batches", "pipeline.eval_batches", "process_count()",
                   "Checkpointer(", "MetricWriter(", "loop.run("):
      assert needle not in text, f"{path.relative_to(ROOT)} calls {needle}: use trainer.run/feed"


def test_the_share_of_time_spent_waiting_for_input_is_reported(tmp_path, monkeypatch, caplog):
  clock = iter(float(t) for t in range(1000))  # each reading of the clock: one second later
  monkeypatch.setattr(writers.time, "perf_counter", lambda: next(clock))
  progress = writers.Progress(total_steps=10, batch_size=4, start_step=0)  # reads 0
  progress.waited(1.0)
  assert progress.input_share() == pytest.approx(1.0 / 1.0)  # reads 1: 1 s waited of 1 s
  progress.waited(0.5)
  line = progress.line(2, {"loss": 1.0, "input_wait": 0.75})  # reads 2: 1.5 s of 2 s
  assert "| 4 img/s | input 75% |" in line and "input_wait" not in line
  monkeypatch.undo()

  config = load_config("digits_lt", "smoke")
  config.total_steps, config.eval_every_steps, config.log_every_steps = 4, 0, 2
  config.ckpt.every_steps = 0
  mesh = sharding.make_mesh(config=config)

  def slow_batches():  # a host pipeline far slower than the step
    for batch in _batches():
      time.sleep(0.05)
      yield batch

  with Run(config, tmp_path, mesh, _state(mesh)) as run:
    run.train(slow_batches(), lambda s, b, i: (s, {"loss": np.float32(1.0)}),
              lambda *args: None, lambda i: 0.0)
  shares = [m["train/input_wait"] for m in read_metrics(tmp_path) if "train/input_wait" in m]
  assert len(shares) == 2 and all(0.5 < share <= 1.0 for share in shares)

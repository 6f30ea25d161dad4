"""The run lifecycle every task hands its state, step and evaluation to (trainer/run.py)."""

import numpy as np
import pytest
from helpers import ROOT, load_config

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

"""A workdir written before the trainer owned the run (commit ebdedbe: `python -m bf_jax.main
--config configs/digits_lt.py:smoke` at width 8, 4 steps, 8 CPU devices) resumes with today's
code: its config.json matches today's config field for field, its checkpoint restores, and
training the same config afresh reproduces its initial fingerprints and its result."""

import json
import shutil

import numpy as np
import pytest
from helpers import ROOT, load_config

from bf_jax import tasks
from bf_jax.trainer import run_record

OLD = ROOT / "tests" / "golden" / "workdir_ebdedbe"
OVERRIDES = dict(total_steps=4, eval_every_steps=2, log_every_steps=1, eval_batch_size=64)


def _config():
  config = load_config("digits_lt", "smoke")
  config.update(OVERRIDES)
  config.model.width, config.model.depth = 8, 1
  config.ckpt.every_steps, config.ckpt.keep = 2, 1
  return config


def test_the_old_config_json_is_todays_config():
  old = json.loads((OLD / run_record.CONFIG).read_text())
  new = json.loads(_config().to_json_best_effort())
  assert run_record.differences(old, new) == {}


@pytest.mark.xla_optimized  # as the workdir was written: fingerprints compare exact bits
def test_an_old_workdir_resumes_and_a_fresh_run_reproduces_it(tmp_path):
  old_result = json.loads((OLD / run_record.RESULT_FILE).read_text())
  resumed = tmp_path / "resumed"
  shutil.copytree(OLD, resumed)
  result = tasks.run(_config(), resumed)  # the finished run: restores step 4, evaluates it
  assert result["step"] == 4 and not result["preempted"]
  for key in ("acc", "many_acc", "medium_acc", "few_acc"):
    np.testing.assert_allclose(result[key], old_result[key], atol=1e-6)
  history = (resumed / run_record.HISTORY).read_text().splitlines()
  assert [json.loads(line)["start_step"] for line in history] == [0, 4]

  fresh = tmp_path / "fresh"
  again = tasks.run(_config(), fresh)
  assert json.loads((fresh / run_record.INIT_FILE).read_text()) == \
      json.loads((OLD / run_record.INIT_FILE).read_text())
  for key in ("acc", "many_acc", "medium_acc", "few_acc"):
    np.testing.assert_allclose(again[key], old_result[key], atol=1e-6)

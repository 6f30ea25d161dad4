"""A workdir written before the trainer owned the run (commit ebdedbe, ``COMMAND`` on 8 CPU
devices; its TensorBoard folder, plot and logs left out) resumes with today's code: its
config.json matches today's config field for field, its checkpoint restores, and the same command
today writes the same initial fingerprints, result and config.json."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, load_config

from bf_jax import tasks
from bf_jax.trainer import run_record

OLD = ROOT / "tests" / "golden" / "workdir_ebdedbe"
COMMAND = ["--config", "configs/digits_lt.py:smoke", "--config.model.width=8",
           "--config.model.depth=1", "--config.total_steps=4", "--config.eval_every_steps=2",
           "--config.log_every_steps=1", "--config.ckpt.every_steps=2", "--config.ckpt.keep=1",
           "--config.eval_batch_size=64"]
# Fields the config gained after ebdedbe, and their defaults.
ADDED_SINCE = {"data.workers": -1, "steps_per_dispatch": 1, "data.class_groups": "shots",
               "compile_cache_dir": "~/.cache/bf_jax/jax", "model.scan_layers": False}
OVERRIDES = dict(total_steps=4, eval_every_steps=2, log_every_steps=1, eval_batch_size=64)


def _config():
  config = load_config("digits_lt", "smoke")
  config.update(OVERRIDES)
  config.model.width, config.model.depth = 8, 1
  config.ckpt.every_steps, config.ckpt.keep = 2, 1
  return config


def test_the_old_config_json_is_todays_config():
  """Field for field, but for fields added since, at their defaults (which change nothing)."""
  old = json.loads((OLD / run_record.CONFIG).read_text())
  new = json.loads(_config().to_json_best_effort())
  old_f, new_f = run_record.flatten(old), run_record.flatten(new)
  assert {k: v for k, v in new_f.items() if k not in old_f} == ADDED_SINCE
  assert run_record.differences(old, new) == {}  # each at its default: no difference


def test_an_old_workdir_resumes_where_it_stopped(tmp_path):
  old_result = json.loads((OLD / run_record.RESULT_FILE).read_text())
  resumed = tmp_path / "resumed"
  shutil.copytree(OLD, resumed)
  result = tasks.run(_config(), resumed)  # the finished run: restores step 4, evaluates it
  assert result["step"] == 4 and not result["preempted"]
  for key in ("acc", "many_acc", "medium_acc", "few_acc"):
    np.testing.assert_allclose(result[key], old_result[key], atol=1e-6)
  history = (resumed / run_record.HISTORY).read_text().splitlines()
  assert [json.loads(line)["start_step"] for line in history] == [0, 4]


@pytest.mark.slow
def test_the_command_that_wrote_it_reproduces_it_bit_for_bit(tmp_path):
  """The same command line in a fresh process (XLA's default optimizations: in the test process
  an eager op compiled earlier without them can differ in the last bit of an initial value)."""
  fresh = tmp_path / "fresh"
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
         "JAX_PLATFORMS": "cpu", "JAX_DISABLE_MOST_OPTIMIZATIONS": "0"}
  out = subprocess.run([sys.executable, "-m", "bf_jax.main", *COMMAND, f"--workdir={fresh}"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  for name in (run_record.INIT_FILE, run_record.RESULT_FILE):
    assert json.loads((fresh / name).read_text()) == json.loads((OLD / name).read_text()), name
  config = json.loads((fresh / run_record.CONFIG).read_text())
  for field, default in ADDED_SINCE.items():  # written at its default, which changes nothing
    *group, key = field.split(".")
    assert (config[group[0]] if group else config).pop(key) == default
  assert config == json.loads((OLD / run_record.CONFIG).read_text())

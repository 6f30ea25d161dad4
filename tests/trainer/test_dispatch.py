"""Several train steps per dispatch (a lax.scan of the task's step): the same steps, the same
logs and checkpoints, on the device-resident path and the host path."""

import chex
import jax
import orbax.checkpoint as ocp
import pytest
from helpers import load_config, read_metrics

from bf_jax import tasks


def _config(k: int, **data):
  config = load_config("digits_lt", "smoke")  # 30 steps, logs every 5, evaluates every 15
  config.steps_per_dispatch = k
  config.data.update(data)
  return config


def _state(workdir):
  mngr = ocp.CheckpointManager(workdir / "checkpoints")
  return mngr.restore(mngr.latest_step(),
                      args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]


@pytest.mark.parametrize("data", [{}, {"augment": "inception", "image_size": 8}],
                         ids=["resident", "host"])
def test_k_steps_per_dispatch_are_the_same_steps(tmp_path, data):
  one = tasks.run(_config(1, **data), tmp_path / "one", devices=jax.devices()[:2])
  five = tasks.run(_config(5, **data), tmp_path / "five", devices=jax.devices()[:2])
  assert one == five
  losses = lambda d: [(m["step"], m["train/loss"]) for m in read_metrics(d) if "train/loss" in m]
  got, want = losses(tmp_path / "five"), losses(tmp_path / "one")
  assert [s for s, _ in got] == [s for s, _ in want] == list(range(5, 31, 5))
  chex.assert_trees_all_close([l for _, l in got], [l for _, l in want], rtol=1e-5)
  chex.assert_trees_all_close(_state(tmp_path / "five"), _state(tmp_path / "one"),
                              rtol=1e-5, atol=1e-6)


def test_a_value_that_splits_a_log_eval_or_save_interval_is_refused():
  config = _config(4)  # the smoke logs every 5 steps
  with pytest.raises(ValueError, match=r"steps_per_dispatch=4 must divide total_steps=30"):
    tasks.validate(config)
  config = _config(5)
  config.ckpt.every_steps = 12
  with pytest.raises(ValueError, match=r"steps_per_dispatch=5 must divide ckpt.every_steps=12"):
    tasks.validate(config)


def test_a_resume_off_the_dispatch_grid_is_refused_before_training(tmp_path):
  config = _config(1)
  tasks.run(config, tmp_path, devices=jax.devices()[:1], stop_at=10)
  config = _config(15)
  config.log_every_steps, config.ckpt.every_steps = 15, 0
  config.resume_changes = "steps_per_dispatch,log_every_steps,ckpt.every_steps"
  with pytest.raises(ValueError, match=r"resumes at step 10, not a multiple of "
                                       r"config.steps_per_dispatch=15"):
    tasks.run(config, tmp_path, devices=jax.devices()[:1])

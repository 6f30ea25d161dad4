"""classify.run end to end: digits, mock CIFAR-100, device-count invariance, resume."""

import chex
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds
from helpers import load_config, train_losses

from bf_jax.tasks import classify


def test_digits_smoke_trains_logs_and_plots(tmp_path):
  config = load_config("digits_lt", "smoke")
  result = classify.run(config, tmp_path)
  assert result["step"] == config.total_steps and not result["preempted"]
  for key in ("acc", "many_acc", "medium_acc", "few_acc"):
    assert 0.0 <= result[key] <= 1.0
  assert result["acc"] > 0.3  # 10 classes: chance is 0.1
  losses = train_losses(tmp_path)
  assert losses[-1] < losses[0]
  for name in ("config.json", "metrics.jsonl", "per_class.json", "per_class_accuracy.png"):
    assert (tmp_path / name).exists(), name
  assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
  assert ocp.CheckpointManager(tmp_path / "checkpoints").latest_step() == config.total_steps


@pytest.mark.parametrize("dataset", ["cifar100", "cifar10"])
def test_mock_cifar_tiny_cnn(tmp_path, dataset):
  config = load_config("cifar_lt", f"dataset={dataset},imbalance=1,smoke")
  config.data.n_max, config.data.imbalance = 0, 1.0  # the mocked split as it is
  config.total_steps, config.log_every_steps = 12, 3
  with tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE):
    result = classify.run(config, tmp_path)
  assert result["step"] == 12
  losses = train_losses(tmp_path)
  assert losses[-1] < losses[0], losses


def _invariance_config(scope: str):
  config = load_config("digits_lt", "smoke")
  config.model.name, config.model.width = "cnn", 8  # BatchNorm synchronized over devices
  config.bf.scope = scope
  config.total_steps, config.log_every_steps, config.eval_every_steps = 4, 1, 0
  config.ckpt.every_steps = 0
  return config


@pytest.mark.parametrize("scope", ["global", "4"])
def test_same_losses_on_one_and_eight_devices(tmp_path, scope):
  """Global/group scope, synced BatchNorm and dropout ON: the device count changes nothing."""
  config = _invariance_config(scope)
  assert config.bf.dropout > 0
  one = classify.run(config, tmp_path / "one", devices=jax.devices()[:1])
  eight = classify.run(config, tmp_path / "eight", devices=jax.devices())
  np.testing.assert_allclose(train_losses(tmp_path / "eight"), train_losses(tmp_path / "one"),
                             rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(eight["acc"], one["acc"], atol=1e-6)


def _final_state(workdir, step):
  mngr = ocp.CheckpointManager(workdir / "checkpoints")
  return mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]


def test_interrupted_and_resumed_run_ends_where_a_straight_run_ends(tmp_path):
  config = load_config("digits_lt", "smoke")
  config.model.name, config.model.width = "cnn", 8
  config.data.augment = "crop_flip"  # the data position and augmentation RNG must resume too
  config.total_steps, config.ckpt.every_steps, config.eval_every_steps = 8, 0, 0
  config.log_every_steps = 1
  classify.run(config, tmp_path / "straight")
  stopped = classify.run(config, tmp_path / "resumed", stop_at=4)
  assert stopped["preempted"] and stopped["step"] == 4
  resumed = classify.run(config, tmp_path / "resumed")
  assert resumed["step"] == 8
  chex.assert_trees_all_close(_final_state(tmp_path / "resumed", 8),
                              _final_state(tmp_path / "straight", 8), atol=1e-6, rtol=1e-6)
  np.testing.assert_allclose(train_losses(tmp_path / "resumed")[-4:],
                             train_losses(tmp_path / "straight")[-4:], rtol=1e-6)


def test_checkpoint_from_another_config_is_refused(tmp_path):
  config = load_config("digits_lt", "smoke")
  config.total_steps = 3
  classify.run(config, tmp_path)
  config.total_steps = 6
  config.model.width = 64
  with pytest.raises(ValueError, match=r"(?s)trained with another config.*model\.width: 128 "
                                       r"\(recorded\) -> 64 \(now\).*total_steps: 3"):
    classify.run(config, tmp_path)  # the workdir's config.json refuses it first
  config.resume_changes = "model.width,total_steps"  # said on purpose: the checkpoint refuses it
  with pytest.raises(ValueError, match=r"written by another config: params/.* is \(.*128"):
    classify.run(config, tmp_path)

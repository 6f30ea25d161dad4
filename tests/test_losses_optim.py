"""Losses against hand-computed values; the BatchFormer lr/wd multipliers; schedules."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from bf_jax import losses, optim
from bf_jax.config_base import base_config


def test_balanced_softmax_adds_the_log_prior():
  logits = jnp.array([[1.0, 2.0, 0.5]])
  counts = np.array([60, 30, 10])
  loss = losses.build_loss(ml_collections.ConfigDict({"name": "balanced_softmax"}), counts)
  z = np.array([1.0, 2.0, 0.5]) + np.log(counts / 100)
  want = -(z[2] - np.log(np.exp(z).sum()))  # label 2, the rarest class
  np.testing.assert_allclose(loss(logits, jnp.array([2])), [want], rtol=1e-6)
  ce = losses.build_loss(ml_collections.ConfigDict({"name": "ce"}), counts)
  z = np.array([1.0, 2.0, 0.5])
  np.testing.assert_allclose(ce(logits, jnp.array([2])), [-(z[2] - np.log(np.exp(z).sum()))],
                             rtol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_batchformer_params_get_their_own_lr_and_decay(name):
  cfg = base_config()
  cfg.optim.update(name=name, lr=0.1, weight_decay=0.0, schedule="constant", momentum=0.0)
  cfg.bf.update(lr_mult=0.1, wd_mult=1.0)
  tx, _ = optim.build_optimizer(cfg.optim, cfg.bf, total_steps=10)
  params = {"bf": {"w": jnp.ones(3)}, "head": {"w": jnp.ones(3)}}
  grads = {"bf": {"w": jnp.ones(3)}, "head": {"w": jnp.ones(3)}}
  updates, _ = tx.update(grads, tx.init(params), params)
  ratio = np.asarray(updates["bf"]["w"]) / np.asarray(updates["head"]["w"])
  np.testing.assert_allclose(ratio, 0.1, rtol=1e-5)


def test_bf_weight_decay_multiplier():
  cfg = base_config()
  cfg.optim.update(name="sgd", lr=1.0, weight_decay=0.5, schedule="constant", momentum=0.0)
  cfg.bf.update(lr_mult=1.0, wd_mult=0.0)
  tx, _ = optim.build_optimizer(cfg.optim, cfg.bf, total_steps=10)
  params = {"bf": {"w": jnp.ones(2)}, "head": {"w": jnp.ones(2)}}
  zeros = {"bf": {"w": jnp.zeros(2)}, "head": {"w": jnp.zeros(2)}}
  updates, _ = tx.update(zeros, tx.init(params), params)
  np.testing.assert_allclose(updates["bf"]["w"], 0.0)  # no decay on BatchFormer
  np.testing.assert_allclose(updates["head"]["w"], -0.5)  # lr * wd * w


def test_schedules_warmup_cosine_and_step():
  cfg = base_config().optim
  cfg.update(lr=1.0, warmup_steps=10, schedule="cosine")
  s = optim.build_schedule(cfg, total_steps=110)
  assert float(s(0)) == 0.0 and abs(float(s(10)) - 1.0) < 1e-6 and float(s(110)) < 1e-6
  cfg.update(schedule="step", step_fractions=(0.5, 0.75), step_factor=0.1)
  s = optim.build_schedule(cfg, total_steps=100)
  np.testing.assert_allclose([s(5), s(20), s(60), s(90)], [0.5, 1.0, 0.1, 0.01], rtol=1e-5)

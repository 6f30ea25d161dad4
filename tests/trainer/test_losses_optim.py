"""Losses against hand-computed values; the BatchFormer lr/wd multipliers; schedules."""

import jax.numpy as jnp
import numpy as np
import pytest

from bf_jax.trainer import optim, supervised
from bf_jax.tasks import base_config


def _loss_cfg(**kw):
  cfg = base_config().loss
  cfg.update(kw)
  return cfg


def _ce(z: np.ndarray, y: int) -> float:
  return float(-(z[y] - np.log(np.exp(z).sum())))


LOGITS, COUNTS = np.array([1.0, 2.0, 0.5]), np.array([60, 30, 10])


def test_cross_entropy_and_balanced_softmax_by_hand():
  logits, label = jnp.asarray(LOGITS)[None], jnp.array([2])  # label 2: the rarest class
  ce = supervised.build_loss(_loss_cfg(name="ce"), COUNTS)
  np.testing.assert_allclose(ce(logits, label, 0), [_ce(LOGITS, 2)], rtol=1e-6)
  bs = supervised.build_loss(_loss_cfg(name="balanced_softmax"), COUNTS)
  np.testing.assert_allclose(bs(logits, label, 0), [_ce(LOGITS + np.log(COUNTS / 100), 2)],
                             rtol=1e-6)


def test_logit_adjusted_scales_the_prior_by_tau():
  la = supervised.build_loss(_loss_cfg(name="logit_adjusted", tau=0.5), COUNTS)
  want = _ce(LOGITS + 0.5 * np.log(COUNTS / 100), 0)
  np.testing.assert_allclose(la(jnp.asarray(LOGITS)[None], jnp.array([0]), 0), [want], rtol=1e-6)


def test_ldam_margin_and_deferred_reweighting_switch():
  cfg = _loss_cfg(name="ldam", ldam_max_margin=0.5, ldam_scale=30.0, drw_beta=0.99,
                  drw_start_step=100)
  fn = supervised.build_loss(cfg, COUNTS)
  m = COUNTS ** -0.25
  m = 0.5 * m / m.max()  # the rarest class gets the largest margin, 0.5
  np.testing.assert_allclose(supervised.ldam_margins(COUNTS, 0.5), m, rtol=1e-6)
  shifted = LOGITS - 30.0 * m[2] * np.eye(3)[2]
  logits, label = jnp.asarray(LOGITS)[None], jnp.array([2])
  np.testing.assert_allclose(fn(logits, label, 99), [_ce(shifted, 2)], rtol=1e-5)  # before DRW
  w = (1 - 0.99) / (1 - 0.99 ** COUNTS)
  w = w * 3 / w.sum()
  np.testing.assert_allclose(fn(logits, label, 100), [w[2] * _ce(shifted, 2)], rtol=1e-5)
  assert w[2] > 1.0 > w[0]  # after the switch the tail weighs more


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

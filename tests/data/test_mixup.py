"""Mixup / CutMix / label smoothing on device (bf_jax/data/mixup.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bf_jax.data.mixup import MixConfig, mix, smooth_one_hot


def _batch(b=8, k=5):
  rng = np.random.default_rng(0)
  return (jnp.asarray(rng.normal(size=(b, 12, 10, 3)), jnp.float32),
          jnp.asarray(rng.integers(0, k, b)))


def test_label_smoothing_alone():
  images, labels = _batch()
  out, targets = mix(images, labels, jax.random.key(0), MixConfig(0.0, 0.0, 0.5, 0.1, 5))
  np.testing.assert_array_equal(out, images)
  np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(targets[np.arange(8), labels], 0.9 + 0.1 / 5, rtol=1e-6)
  np.testing.assert_allclose(smooth_one_hot(jnp.array([2]), 4, 0.0), [[0, 0, 1, 0]])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixup_blends_with_the_reversed_batch_and_targets_follow(seed):
  images, labels = _batch()
  out, targets = mix(images, labels, jax.random.key(seed), MixConfig(0.8, 0.0, 0.5, 0.0, 5))
  # Recover lambda from the pixels: out = lam * x + (1 - lam) * x[::-1].
  diff = np.asarray(images - images[::-1]).ravel()
  lam = float(np.dot(np.asarray(out - images[::-1]).ravel(), diff) / np.dot(diff, diff))
  np.testing.assert_allclose(out, lam * images + (1 - lam) * images[::-1], atol=1e-5)
  one_hot = jax.nn.one_hot(labels, 5)
  np.testing.assert_allclose(targets, lam * one_hot + (1 - lam) * one_hot[::-1], atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_cutmix_pastes_one_box_and_weights_targets_by_kept_area(seed):
  images, labels = _batch()
  out, targets = mix(images, labels, jax.random.key(seed), MixConfig(0.0, 1.0, 0.5, 0.0, 5))
  pasted_HxW = np.all(np.asarray(out[0]) == np.asarray(images[-1]), axis=-1)
  kept = 1.0 - pasted_HxW.mean()
  rows, cols = np.nonzero(pasted_HxW)
  if len(rows):  # a single solid rectangle
    assert pasted_HxW[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
  one_hot = jax.nn.one_hot(labels, 5)
  np.testing.assert_allclose(targets, kept * one_hot + (1 - kept) * one_hot[::-1], atol=1e-5)


def test_switch_picks_cutmix_or_mixup_per_batch():
  images, labels = _batch()
  kinds = set()
  for seed in range(20):
    out, _ = mix(images, labels, jax.random.key(seed), MixConfig(0.8, 1.0, 0.5, 0.0, 5))
    same = np.all(np.asarray(out[0]) == np.asarray(images[0]), axis=-1).mean()
    kinds.add("cutmix" if same > 0 or np.all(np.asarray(out[0]) == np.asarray(images[-1]),
                                              axis=-1).any() else "mixup")
  assert kinds == {"cutmix", "mixup"}

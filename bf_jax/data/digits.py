"""The embedded dataset: scikit-learn's real handwritten digits (1,797 8x8 images), long-tailed.

A balanced test set of ``test_per_class`` images per class is held out first; the long-tailed
training set is drawn from the rest with the exponential profile (class 0 the head).
"""

from __future__ import annotations

import numpy as np

from bf_jax.data import long_tail
from bf_jax.data.sources import ArraySource

NUM_CLASSES = 10


def load_digits_lt(imbalance: float, test_per_class: int = 50, split_seed: int = 0,
                   profile: str = "exp") -> tuple[ArraySource, ArraySource, list[int]]:
  """Returns (train, test, train class counts); images are float32 [8, 8, 1] in [0, 1]."""
  from sklearn.datasets import load_digits

  digits = load_digits()
  images = (digits.images.astype(np.float32) / 16.0)[..., None]
  labels = digits.target.astype(np.int64)
  rng = np.random.default_rng(split_seed)
  test_idx, pool_idx = [], []
  for c in range(NUM_CLASSES):
    idx = rng.permutation(np.flatnonzero(labels == c))
    test_idx.append(idx[:test_per_class])
    pool_idx.append(idx[test_per_class:])
  n_max = min(len(p) for p in pool_idx)  # the head class must be fillable
  counts = long_tail.class_counts(NUM_CLASSES, n_max, imbalance, profile)
  pool = np.concatenate(pool_idx)
  train_idx = pool[long_tail.long_tail_indices(labels[pool], counts, split_seed)]
  test = np.sort(np.concatenate(test_idx))
  return (ArraySource(images[train_idx], labels[train_idx]),
          ArraySource(images[test], labels[test]), counts)

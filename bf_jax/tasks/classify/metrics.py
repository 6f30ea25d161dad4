"""Evaluation metrics: overall accuracy and the class groups' accuracies."""

from __future__ import annotations

import numpy as np

from bf_jax.data.long_tail import class_groups


def group_accuracy(correct_K: np.ndarray, total_K: np.ndarray, train_counts_K: np.ndarray,
                   rule: str = "shots") -> dict[str, float]:
  """Overall top-1, and per group of ``rule`` (``data.class_groups``) the mean of per-class
  accuracies (docs/classify.md).

  A group with no classes is left out rather than reported as 0.
  """
  correct_K, total_K = np.asarray(correct_K, np.float64), np.asarray(total_K, np.float64)
  per_class = np.divide(correct_K, total_K, out=np.zeros_like(correct_K), where=total_K > 0)
  seen = total_K > 0
  out = {"acc": float(correct_K.sum() / max(total_K.sum(), 1.0))}
  for name, members in class_groups(train_counts_K, rule).items():
    members = members & seen
    if members.any():
      out[f"{name}_acc"] = float(per_class[members].mean())
  return out


def per_class_accuracy(correct_K: np.ndarray, total_K: np.ndarray) -> np.ndarray:
  total_K = np.asarray(total_K, np.float64)
  return np.divide(np.asarray(correct_K, np.float64), total_K, out=np.full(total_K.shape, np.nan),
                   where=total_K > 0)

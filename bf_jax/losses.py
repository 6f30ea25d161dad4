"""Per-row classification losses; the train step sums them and divides by the global count."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

LOSSES = ("ce", "balanced_softmax")

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def cross_entropy(logits_NxK: jax.Array, labels_N: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(logits_NxK.astype(jnp.float32), labels_N)


def balanced_softmax(logits_NxK: jax.Array, labels_N: jax.Array, log_prior_K: jax.Array) -> jax.Array:
  """Balanced Softmax (Ren et al. 2020): cross-entropy on logits + log class prior."""
  return cross_entropy(logits_NxK + log_prior_K, labels_N)


def build_loss(loss_cfg, train_class_counts: np.ndarray) -> LossFn:
  """The per-row loss a config names; the class prior comes from the training-set counts."""
  if loss_cfg.name == "ce":
    return cross_entropy
  if loss_cfg.name == "balanced_softmax":
    counts = np.maximum(np.asarray(train_class_counts, np.float64), 1.0)  # empty class: no -inf
    log_prior_K = jnp.asarray(np.log(counts / counts.sum()), jnp.float32)
    return lambda logits, labels: balanced_softmax(logits, labels, log_prior_K)
  raise ValueError(f"loss.name={loss_cfg.name!r} is unknown; choose one of {LOSSES}.")

"""Per-row classification losses for long-tailed training.

Each loss is ``fn(logits_NxK, labels_N, step) -> loss_N``; the train step sums the rows and
divides by the global row count, so results do not depend on the device count. ``step`` drives
schedules inside a loss (LDAM's deferred re-weighting).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

LOSSES = ("ce", "balanced_softmax", "logit_adjusted", "ldam")

LossFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def cross_entropy(logits_NxK: jax.Array, labels_N: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(logits_NxK.astype(jnp.float32), labels_N)


def balanced_softmax(logits_NxK: jax.Array, labels_N: jax.Array, log_prior_K: jax.Array) -> jax.Array:
  """Balanced Softmax (Ren et al. 2020): cross-entropy on logits + log class prior."""
  return cross_entropy(logits_NxK + log_prior_K, labels_N)


def logit_adjusted(logits_NxK: jax.Array, labels_N: jax.Array, log_prior_K: jax.Array,
                   tau: float) -> jax.Array:
  """Logit-adjusted cross-entropy (Menon et al. 2021); tau = 1 is Balanced Softmax."""
  return cross_entropy(logits_NxK + tau * log_prior_K, labels_N)


def ldam_margins(counts_K: np.ndarray, max_margin: float) -> np.ndarray:
  """LDAM margins m_j proportional to n_j^(-1/4), the largest equal to max_margin."""
  m = 1.0 / np.sqrt(np.sqrt(np.maximum(counts_K, 1)))
  return m * (max_margin / m.max())


def drw_weights(counts_K: np.ndarray, beta: float) -> np.ndarray:
  """Class-balanced weights (1 - beta) / (1 - beta^n_j), normalized to sum to K."""
  w = (1.0 - beta) / (1.0 - np.power(beta, np.maximum(counts_K, 1)))
  return w * len(counts_K) / w.sum()


def ldam(logits_NxK: jax.Array, labels_N: jax.Array, margins_K: jax.Array, scale: float,
         weights_K: jax.Array) -> jax.Array:
  """LDAM (Cao et al. 2019): cross-entropy after subtracting scale * m_y from the true logit.

  With a cosine head whose logits are ``scale * cos``, this is the paper's s * (cos - m_y).
  Rows are weighted by ``weights_K[y]`` (all ones before deferred re-weighting starts).
  """
  onehot_NxK = jax.nn.one_hot(labels_N, logits_NxK.shape[-1], dtype=jnp.float32)
  shifted = logits_NxK.astype(jnp.float32) - scale * margins_K * onehot_NxK
  return weights_K[labels_N] * cross_entropy(shifted, labels_N)


def build_loss(loss_cfg, train_class_counts: np.ndarray) -> LossFn:
  """The per-row loss a config names; priors and margins come from the training-set counts."""
  counts = np.maximum(np.asarray(train_class_counts, np.float64), 1.0)  # empty class: no -inf
  log_prior_K = jnp.asarray(np.log(counts / counts.sum()), jnp.float32)
  name = loss_cfg.name
  if name == "ce":
    return lambda logits, labels, step: cross_entropy(logits, labels)
  if name == "balanced_softmax":
    return lambda logits, labels, step: balanced_softmax(logits, labels, log_prior_K)
  if name == "logit_adjusted":
    return lambda logits, labels, step: logit_adjusted(logits, labels, log_prior_K, loss_cfg.tau)
  if name == "ldam":
    margins_K = jnp.asarray(ldam_margins(counts, loss_cfg.ldam_max_margin), jnp.float32)
    drw_K = jnp.asarray(drw_weights(counts, loss_cfg.drw_beta), jnp.float32)
    start = loss_cfg.drw_start_step  # deferred re-weighting: class-balanced weights from here

    def fn(logits, labels, step):
      weights_K = jnp.where(step >= start, drw_K, jnp.ones_like(drw_K)) if start >= 0 \
          else jnp.ones_like(drw_K)
      return ldam(logits, labels, margins_K, loss_cfg.ldam_scale, weights_K)

    return fn
  raise ValueError(f"loss.name={name!r} is unknown; choose one of {LOSSES}.")

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
  """Per-row cross-entropy; ``labels`` are class indices [N] or soft targets [N, K] (Mixup,
  label smoothing)."""
  if labels_N.ndim == logits_NxK.ndim:
    return optax.softmax_cross_entropy(logits_NxK.astype(jnp.float32), labels_N)
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


def ride(base: LossFn, diversity_factor: float, temperature: float) -> LossFn:
  """RIDE's loss on expert logits [N, E, K]: each expert's base loss plus the diversity term

  ``factor * T^2 * KL(softmax(mean/T) || softmax(expert/T))`` per expert; the factor is negative
  (RIDE's -0.2), which rewards experts for disagreeing with their mean.
  """

  def fn(logits_NxExK, labels_N, step):
    mean_NxK = logits_NxExK.mean(axis=1).astype(jnp.float32)
    p_mean = jax.nn.softmax(mean_NxK / temperature)
    total = 0.0
    for e in range(logits_NxExK.shape[1]):
      logits_e = logits_NxExK[:, e].astype(jnp.float32)
      kl = jnp.sum(p_mean * (jnp.log(p_mean + 1e-12) - jax.nn.log_softmax(logits_e / temperature)),
                   axis=-1)
      total = total + base(logits_e, labels_N, step) + diversity_factor * temperature ** 2 * kl
    return total

  return fn


def build_loss(loss_cfg, train_class_counts: np.ndarray, experts: int = 0) -> LossFn:
  """The per-row loss a config names; priors and margins come from the training-set counts.

  With ``experts > 0`` it is applied to every expert inside RIDE's loss.
  """
  base = _base_loss(loss_cfg, train_class_counts)
  if experts:
    return ride(base, loss_cfg.diversity_factor, loss_cfg.diversity_temperature)
  return base


def _base_loss(loss_cfg, train_class_counts: np.ndarray) -> LossFn:
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

"""PaCo's loss (Cui et al., ICCV 2021): supervised contrast with learnable class centers.

For an anchor query q (unit), its label y and a contrast set of unit features with labels
(the global batch's queries, then its momentum keys, then the queue), one softmax spans the
class centers and the contrast set:

  a_j = (w_j . f + log p_j) / supt          for the K centers (the linear classifier's logits
                                            plus the log class prior: the balanced center term)
  s_n = q . z_n / T                          for the contrast features, the anchor itself left out
  log P(u) = u - log(sum_j exp(a_j) + gamma * sum_n exp(s_n))

  loss(q) = -(T / T_base) * [beta * log P(a_y) + alpha * sum_{n: y_n = y} log P(s_n)]
            / (beta + alpha * #{n: y_n = y})

The classifier is what the test uses; the projector and the momentum encoder train only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def unit(x_NxD: jax.Array) -> jax.Array:
  x_NxD = x_NxD.astype(jnp.float32)
  return x_NxD / jnp.maximum(jnp.linalg.norm(x_NxD, axis=-1, keepdims=True), 1e-12)


def paco_rows(query_bxD: jax.Array, center_logits_bxK: jax.Array, labels_b: jax.Array,
              contrast_NxD: jax.Array, contrast_labels_N: jax.Array, self_col_b: jax.Array,
              log_prior_K: jax.Array, *, alpha: float, beta: float, gamma: float,
              temperature: float, base_temperature: float, supt: float) -> jax.Array:
  """Per-anchor loss [b]. ``query`` and ``contrast`` are unit vectors; ``self_col_b[i]`` is the
  contrast column holding anchor i itself (left out of both sums), -1 where none does.

  With an empty contrast set (N = 0) this is the center term alone: the balanced softmax of
  the classifier's logits (what a BatchFormer row without its own query gets).
  """
  num_classes = center_logits_bxK.shape[-1]
  centers_bxK = (center_logits_bxK.astype(jnp.float32) + log_prior_K) / supt
  sims_bxN = query_bxD.astype(jnp.float32) @ contrast_NxD.astype(jnp.float32).T / temperature
  logits_bxM = jnp.concatenate([centers_bxK, sims_bxN], axis=1)
  # The max is subtracted for stability only: log P below does not depend on it.
  logits_bxM = logits_bxM - jax.lax.stop_gradient(logits_bxM.max(axis=1, keepdims=True))
  cols_N = jnp.arange(contrast_NxD.shape[0])
  not_self_bxN = (cols_N[None, :] != self_col_b[:, None]).astype(jnp.float32)
  denom_bxM = jnp.concatenate([jnp.ones_like(centers_bxK), gamma * not_self_bxN], axis=1)
  log_norm_bx1 = jnp.log((jnp.exp(logits_bxM) * denom_bxM).sum(axis=1, keepdims=True))
  log_prob_bxM = logits_bxM - log_norm_bx1
  same_bxN = (labels_b[:, None] == contrast_labels_N[None, :]).astype(jnp.float32)
  positives_bxM = jnp.concatenate(
      [beta * jax.nn.one_hot(labels_b, num_classes, dtype=jnp.float32),
       alpha * same_bxN * not_self_bxN], axis=1)
  mean_log_prob_b = (positives_bxM * log_prob_bxM).sum(axis=1) / positives_bxM.sum(axis=1)
  return -(temperature / base_temperature) * mean_log_prob_b

"""Weighted kNN monitor for self-supervised pre-training (Wu et al. 2018, InstDisc).

Labels are never used in training; this classifies held-out features by a vote of their nearest
neighbours in a labelled feature bank, a cheap check that the representation is learning classes.
Not jittable as a whole (inputs are validated on the host); the per-chunk work is one jitted
program, so a monitor run on a fixed-size eval set compiles once.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np


def _l2_normalize(x_NxC: jax.Array) -> jax.Array:
  """Rows divided by their norm; an all-zero row stays zero instead of becoming NaN."""
  x_NxC = x_NxC.astype(jnp.float32)
  norm_Nx1 = jnp.linalg.norm(x_NxC, axis=-1, keepdims=True)
  return x_NxC / jnp.maximum(norm_Nx1, 1e-12)


_normalize_bank = jax.jit(_l2_normalize)


@partial(jax.jit, static_argnames=("num_classes", "k"))
def _chunk_scores(query_BxC: jax.Array, bank_MxC: jax.Array, bank_labels_M: jax.Array,
                  temperature: jax.Array, *, num_classes: int, k: int) -> jax.Array:
  """Scores [B, num_classes] for one chunk; the bank is already L2-normalized.

  Votes are scatter-added, so memory is O(B * M) for the similarities and O(B * k) for the votes,
  never the O(B * k * num_classes) of a one-hot sum. HIGHEST precision keeps the neighbour order
  from depending on the backend's reduced-precision f32 matmul (TF32 / bf16 passes).
  """
  sims_BxM = jnp.matmul(_l2_normalize(query_BxC), bank_MxC.T, precision=jax.lax.Precision.HIGHEST)
  sims_BxK, idx_BxK = jax.lax.top_k(sims_BxM, k)
  weights_BxK = jnp.exp(sims_BxK / temperature)
  labels_BxK = bank_labels_M[idx_BxK]
  rows_BxK = jnp.broadcast_to(jnp.arange(sims_BxK.shape[0])[:, None], labels_BxK.shape)
  scores_BxL = jnp.zeros((sims_BxK.shape[0], num_classes), jnp.float32)
  return scores_BxL.at[rows_BxK, labels_BxK].add(weights_BxK)


def _check_inputs(query_NxC: jax.Array, bank_MxC: jax.Array, bank_labels_M: jax.Array,
                  num_classes: int, k: int, temperature: float) -> None:
  """Stops on inputs that would otherwise give silently wrong scores (JAX clamps bad indices)."""
  if query_NxC.ndim != 2 or bank_MxC.ndim != 2:
    raise ValueError(f"knn: query has shape {tuple(query_NxC.shape)} and bank has shape "
                     f"{tuple(bank_MxC.shape)}; both must be 2-D [rows, features].")
  if query_NxC.shape[1] != bank_MxC.shape[1]:
    raise ValueError(f"knn: query feature dim {query_NxC.shape[1]} != bank feature dim "
                     f"{bank_MxC.shape[1]}; embed both with the same model/head.")
  if bank_labels_M.ndim != 1 or bank_labels_M.shape[0] != bank_MxC.shape[0]:
    raise ValueError(f"knn: bank_labels has shape {tuple(bank_labels_M.shape)} but the bank has "
                     f"{bank_MxC.shape[0]} rows; pass one integer label per bank row.")
  if bank_MxC.shape[0] == 0:
    raise ValueError("knn: the bank has 0 rows; fill it with labelled features first.")
  if not jnp.issubdtype(bank_labels_M.dtype, jnp.integer):
    raise ValueError(f"knn: bank_labels has dtype {bank_labels_M.dtype}; pass integer class ids.")
  if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
      or num_classes < 1:
    raise ValueError(f"knn: num_classes={num_classes!r} must be an int >= 1.")
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"knn: k={k!r} must be an int >= 1 (it is clamped to the bank size).")
  if not temperature > 0:
    raise ValueError(f"knn: temperature={temperature!r} must be > 0 (InstDisc/MoCo use 0.07-0.1).")
  labels_M = np.asarray(bank_labels_M)
  lo, hi = int(labels_M.min()), int(labels_M.max())
  if lo < 0 or hi >= num_classes:
    bad = lo if lo < 0 else hi
    raise ValueError(f"knn: bank label {bad} lies outside [0, num_classes={num_classes}); "
                     f"raise num_classes or fix the labels.")


def knn_predict(query_NxC: jax.Array, bank_MxC: jax.Array, bank_labels_M: jax.Array,
                num_classes: int, k: int = 200, temperature: float = 0.1,
                chunk: int = 1024) -> jax.Array:
  """Class scores [N, num_classes] by weighted kNN voting over the bank, cosine similarity.

  Both inputs are L2-normalized inside; each of the k nearest bank rows votes for its label with
  weight exp(sim / temperature). Queries are processed in chunks of `chunk` rows so memory stays
  O(chunk * M).

  k > M is clamped to M. The last chunk is zero-padded to the chunk size (and the padding rows
  sliced off), so every chunk runs the same compiled program.
  """
  query_NxC, bank_MxC = jnp.asarray(query_NxC), jnp.asarray(bank_MxC)
  bank_labels_M = jnp.asarray(bank_labels_M)
  _check_inputs(query_NxC, bank_MxC, bank_labels_M, num_classes, k, temperature)
  if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
    raise ValueError(f"knn: chunk={chunk!r} must be an int >= 1.")
  num_query, num_bank = query_NxC.shape[0], bank_MxC.shape[0]
  if num_query == 0:
    return jnp.zeros((0, num_classes), jnp.float32)
  k, num_classes = min(int(k), num_bank), int(num_classes)
  chunk = min(int(chunk), num_query)  # a small eval set should not pay for 1024 padded rows
  bank_MxC = _normalize_bank(bank_MxC)
  temperature_ = jnp.float32(temperature)
  pieces = []
  for start in range(0, num_query, chunk):
    query_BxC = query_NxC[start:start + chunk]
    rows = query_BxC.shape[0]
    if rows < chunk:
      query_BxC = jnp.pad(query_BxC, ((0, chunk - rows), (0, 0)))
    scores_BxL = _chunk_scores(query_BxC, bank_MxC, bank_labels_M, temperature_,
                               num_classes=num_classes, k=k)
    pieces.append(scores_BxL[:rows])
  return jnp.concatenate(pieces, axis=0)


def knn_accuracy(query_NxC: jax.Array, query_labels_N: jax.Array, bank_MxC: jax.Array,
                 bank_labels_M: jax.Array, num_classes: int, k: int = 200,
                 temperature: float = 0.1) -> float:
  """Top-1 accuracy of knn_predict (a Python float)."""
  query_NxC, query_labels_N = jnp.asarray(query_NxC), np.asarray(query_labels_N)
  num_query = query_NxC.shape[0] if query_NxC.ndim == 2 else None  # else knn_predict says why
  if num_query is not None and (query_labels_N.ndim != 1 or query_labels_N.shape[0] != num_query):
    raise ValueError(f"knn: query_labels has shape {query_labels_N.shape} but there are "
                     f"{num_query} queries; pass one label per query row.")
  if num_query == 0:
    raise ValueError("knn: accuracy of 0 queries is undefined; pass at least one query.")
  scores_NxL = knn_predict(query_NxC, bank_MxC, bank_labels_M, num_classes, k, temperature)
  pred_N = np.asarray(jnp.argmax(scores_NxL, axis=-1))
  return float(np.mean(pred_N == query_labels_N))

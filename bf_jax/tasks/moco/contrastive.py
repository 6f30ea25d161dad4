"""MoCo v3's symmetric InfoNCE, over the original and BatchFormer streams.

Which query stream is contrasted with which key stream (``moco.pairing``):

- ``"matched"`` (default): original queries against original keys, BatchFormer queries against
  the keys of the momentum model's BatchFormer copy. Each term is a plain MoCo v3 loss within one
  stream, so (1) the original-stream term, the one that trains what a probe uses, is exactly
  MoCo v3's and never chases a key that depends on which other images share the batch, and (2)
  an image's other stream is never one of its negatives. The BatchFormer stream shares the
  backbone, projector and predictor, as the shared classifier does in supervised training.
- ``"orig_keys"``: both query streams against the original keys only; the momentum model needs
  no BatchFormer (``moco.momentum_bf="none"``).
- ``"all"``: every query stream against every key stream, both view orders: upstream's 8-term
  loss, divided by 4 (upstream ``add_bf=36``; ``add_bf=1``/``34`` returned the 8-term sum,
  i.e. 4x this, as of the Nov 2022 fix of its duplicated/missing terms).

Each term is ``2 T * CE(q . k_all / T, own key)`` per query row, keys from the whole global
batch, and the loss is the mean over terms of the two view orders' sum; with one stream it is
MoCo v3's loss exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

PAIRINGS = {"matched": ((0, 0), (1, 1)), "orig_keys": ((0, 0), (1, 0)),
            "all": ((0, 0), (0, 1), (1, 0), (1, 1))}


def _unit(x: jax.Array) -> jax.Array:
  x = x.astype(jnp.float32)
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def info_nce(q_bxD: jax.Array, k_GxD: jax.Array, first_row: jax.Array | int,
             temperature: float) -> jax.Array:
  """Per-query loss [b]: query i's positive is key ``first_row + i``, the other G - 1 keys are
  negatives; cosine similarity over ``temperature``, scaled by 2T as MoCo v3."""
  logits_bxG = _unit(q_bxD) @ _unit(k_GxD).T / temperature
  labels_b = first_row + jnp.arange(q_bxD.shape[0])
  return 2.0 * temperature * optax.softmax_cross_entropy_with_integer_labels(logits_bxG, labels_b)


def terms(pairing: str, query_streams: int, key_streams: int) -> tuple[tuple[int, int], ...]:
  """The (query stream, key stream) pairs the loss averages over."""
  if pairing not in PAIRINGS:
    raise ValueError(f"moco.pairing={pairing!r} is unknown; choose one of {tuple(PAIRINGS)}.")
  if query_streams == 1:  # no BatchFormer: plain MoCo v3
    return ((0, 0),)
  pairs = PAIRINGS[pairing]
  if any(t >= key_streams for _, t in pairs):
    raise ValueError(f"moco.pairing={pairing!r} needs keys from the BatchFormer stream, but the "
                     f"momentum model has none (moco.momentum_bf='none'); set "
                     f"--config.moco.momentum_bf=ema or --config.moco.pairing=orig_keys.")
  return pairs


def moco_loss_rows(q1_SxbxD: jax.Array, q2_SxbxD: jax.Array, k1_TxGxD: jax.Array,
                   k2_TxGxD: jax.Array, first_row: jax.Array | int, pairing: str,
                   temperature: float) -> jax.Array:
  """Per-query-row loss [b] for views 1 and 2; keys are the global batch's, queries local.

  ``first_row`` is the global index of this device's first query (its keys' positives).
  """
  pairs = terms(pairing, q1_SxbxD.shape[0], k1_TxGxD.shape[0])
  total_b = 0.0
  for s, t in pairs:
    total_b = total_b + info_nce(q1_SxbxD[s], k2_TxGxD[t], first_row, temperature)
    total_b = total_b + info_nce(q2_SxbxD[s], k1_TxGxD[t], first_row, temperature)
  return total_b / len(pairs)

"""The BatchFormer's attention across the batch, and its dropout.

Attention over G gathered keys for every position and head is [N, P, H, Q, G]: for V2 tokens
that outgrows the whole block around it (DeiT-S, global batch 1024 on 8 devices: P 197, Q 128,
G 1024). ``attend`` therefore runs big attentions in chunks of queries, each chunk under
``jax.checkpoint`` inside a ``lax.map``: the forward pass holds one chunk's attention at a time
and the backward pass recomputes it chunk by chunk instead of keeping it. Every query's
softmax still sees all its keys, and each query row draws its own dropout mask (keyed by its
global row), so chunks compute what the whole computes.

Under remat (V2 tokens by default) the whole attention is only a transient of one layer's
recompute, while XLA keeps gathered keys and values alive around a ``lax.map`` of chunks, so the
auto rule keeps the whole attention there until it outgrows the layer's input many times over
(``REMAT_WHOLE_UP_TO``; the measurements are in docs/performance.md).

Dimension letters as in ``batchformer.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Below this many attention entries per call, chunking buys nothing worth a loop (4 MiB f32).
MIN_CHUNKED_ENTRIES = 2 ** 20
# Under remat, whole attention while one call's attention has at most this many times the
# entries of the layer's input (H x G against C per query). Compiled train steps on 8 CPU
# devices (`python -m bf_jax.bench.memory --crossover`): whole was the smaller up to 21 on DeiT-Ti
# (12 layers) and 32 on DeiT-S (one), chunks from 32 and 37; past that, whole grows with the
# batch squared and chunks linearly.
REMAT_WHOLE_UP_TO = 24


def dropout(x_NxQxR: jax.Array, rate: float, key: jax.Array | None,
            rows_NxQ: jax.Array | None, cols: tuple[jax.Array, int] | None = None) -> jax.Array:
  """Dropout whose mask for each sample depends only on the key and the sample's global row.

  Keying masks by global row, not by device, keeps training identical on 1 or 8 devices and
  still gives every device its own masks. ``cols = (pos_G, n)``: the last axis holds keys whose
  canonical positions are ``pos_G`` among ``n`` (a query's group), so each row draws ``n``
  values and keys read theirs by position, however many keys a path lays out (all gathered
  keys, masked, or just the group's).
  """
  if key is None or rate == 0.0:
    return x_NxQxR
  if rate >= 1.0:  # torch returns zeros for p=1; avoid 0/0.
    return jnp.zeros_like(x_NxQxR)
  if rows_NxQ is None:  # a direct call: rows are just positions in this call
    rows_NxQ = jnp.arange(x_NxQxR.shape[0] * x_NxQxR.shape[1]).reshape(x_NxQxR.shape[:2])
  row_shape = x_NxQxR.shape[2:] if cols is None else (*x_NxQxR.shape[2:-1], cols[1])
  draw = lambda row: jax.random.bernoulli(jax.random.fold_in(key, row), 1.0 - rate, row_shape)
  keep = jax.vmap(jax.vmap(draw))(rows_NxQ)
  if cols is not None:
    keep = jnp.take(keep, cols[0], axis=-1)
  return jnp.where(keep, x_NxQxR / (1.0 - rate), jnp.zeros_like(x_NxQxR))


def probs(q_NxQxPxHxD: jax.Array, k_NxGxPxHxD: jax.Array, mask_QxG: jax.Array | None,
          dtype) -> jax.Array:
  """Softmax over keys in float32 (queries already scaled), cast to ``dtype``: [N, P, H, Q, G]."""
  logits_NxPxHxQxG = jnp.einsum("nqphd,ngphd->nphqg", q_NxQxPxHxD, k_NxGxPxHxD)
  logits_NxPxHxQxG = logits_NxPxHxQxG.astype(jnp.float32)
  if mask_QxG is not None:
    logits_NxPxHxQxG = jnp.where(mask_QxG, logits_NxPxHxQxG, -jnp.inf)
  return jax.nn.softmax(logits_NxPxHxQxG, axis=-1).astype(dtype)


def _no_dropout(q_NxQxPxHxD, k_NxGxPxHxD, v_NxGxPxHxD, mask_QxG, impl):
  """``jax.nn.dot_product_attention`` with every (group, position) as its batch: JAX 0.12's
  default (None) and 'xla' materialize the logits; 'cudnn' is the fused kernel (NVIDIA GPUs,
  fp16/bf16, within cuDNN's shape limits; it raises where unsupported)."""
  n, q, p, h, d = q_NxQxPxHxD.shape
  flat = lambda t: jnp.moveaxis(t, 2, 1).reshape(n * p, t.shape[1], h, d)
  mask = None if mask_QxG is None else mask_QxG[None, None]
  out = jax.nn.dot_product_attention(flat(q_NxQxPxHxD), flat(k_NxGxPxHxD), flat(v_NxGxPxHxD),
                                     mask=mask, scale=1.0, implementation=impl)
  return jnp.moveaxis(out.reshape(n, p, q, h, d), 1, 2)


def _attend_rows(q_NxQxPxHxD, k_NxGxPxHxD, v_NxGxPxHxD, mask_QxG, rate, key, rows_NxQ, cols,
                 impl):
  if key is None or rate == 0.0:
    return _no_dropout(q_NxQxPxHxD, k_NxGxPxHxD, v_NxGxPxHxD, mask_QxG, impl)
  probs_NxPxHxQxG = probs(q_NxQxPxHxD, k_NxGxPxHxD, mask_QxG, v_NxGxPxHxD.dtype)
  probs_NxQxPxHxG = dropout(jnp.moveaxis(probs_NxPxHxQxG, 3, 1), rate, key, rows_NxQ, cols)
  return jnp.einsum("nqphg,ngphd->nqphd", probs_NxQxPxHxG, v_NxGxPxHxD)


def chunk_rows(queries: int, heads: int, keys: int, dim: int, entries: int,
               query_chunk: int | None, remat: bool = False) -> int:
  """Queries per chunk: ``query_chunk`` 0 = all; None = auto, so that one chunk's attention has
  at most as many entries as the layer's input (H x G per query against C), and no chunking
  under ``MIN_CHUNKED_ENTRIES`` nor, under ``remat``, while H x G <= ``REMAT_WHOLE_UP_TO`` x C;
  else at most ``query_chunk``. A divisor of ``queries``."""
  if query_chunk == 0:
    return queries
  if query_chunk is None:
    if entries <= MIN_CHUNKED_ENTRIES or (remat and heads * keys <= REMAT_WHOLE_UP_TO * dim):
      return queries
    query_chunk = max(1, queries * dim // (heads * keys))
  return max(c for c in range(1, min(query_chunk, queries) + 1) if queries % c == 0)


def attend(q_NxQxPxHxD: jax.Array, k_NxGxPxHxD: jax.Array, v_NxGxPxHxD: jax.Array,
           mask_QxG: jax.Array | None, rate: float, key: jax.Array | None,
           rows_NxQ: jax.Array | None, cols: tuple[jax.Array, int] | None = None, *,
           query_chunk: int | None = None, impl: str | None = None,
           remat: bool = False) -> jax.Array:
  """Attention output [N, Q, P, H, D] with dropout ``rate`` on the probabilities (``key`` None:
  none), computed in chunks of queries as ``chunk_rows`` decides (``remat``: the caller runs
  under ``jax.checkpoint``)."""
  n, q, p, h, d = q_NxQxPxHxD.shape
  g = k_NxGxPxHxD.shape[1]
  c = chunk_rows(q, h, g, h * d, n * p * h * q * g, query_chunk, remat)

  def rows_out(q_chunk, rows_chunk, mask_chunk):
    return _attend_rows(q_chunk, k_NxGxPxHxD, v_NxGxPxHxD, mask_chunk, rate, key, rows_chunk,
                        cols, impl)

  if c == q:
    return rows_out(q_NxQxPxHxD, rows_NxQ, mask_QxG)
  if rows_NxQ is None:  # what dropout would number them: each chunk needs its own rows
    rows_NxQ = jnp.arange(n * q).reshape(n, q)
  m = q // c
  split = lambda t, axis: jnp.moveaxis(t.reshape(*t.shape[:axis], m, c, *t.shape[axis + 1:]),
                                       axis, 0)
  xs = (split(q_NxQxPxHxD, 1), split(rows_NxQ, 1),
        None if mask_QxG is None else split(mask_QxG, 0))
  out_MxNxCxPxHxD = jax.lax.map(jax.checkpoint(lambda a: rows_out(*a)), xs)
  return jnp.moveaxis(out_MxNxCxPxHxD, 0, 1).reshape(n, q, p, h, d)

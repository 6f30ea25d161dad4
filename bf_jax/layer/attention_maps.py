"""What a trained BatchFormer attends to: its head-averaged attention over a batch of samples."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bf_jax.layer.batchformer import BatchFormer


def _run(bf: BatchFormer, x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(output shaped like x, [num_layers, B, B] maps) of the layer in eval mode on the batch x."""
  x_BxPxC = x[:, None, :] if x.ndim == 2 else x
  b, k = x_BxPxC.shape[0], bf.group_size
  if k is not None and b % k:
    raise ValueError(f"group_size={k} does not divide the batch of {b} samples.")
  mask_BxB = None if k is None else (jnp.arange(b)[:, None] // k == jnp.arange(b)[None, :] // k)
  maps = []
  for layer in bf.layers:
    probs_PxHxBxB = layer.attention_probs(x_BxPxC[None], None, mask_BxB)[0][0]
    maps.append(probs_PxHxBxB.astype(jnp.float32).mean(axis=(0, 1)))
    x_BxPxC = layer(x_BxPxC[None], None, mask_BxB, None)[0]
  return (x_BxPxC[:, 0] if x.ndim == 2 else x_BxPxC), jnp.stack(maps)


def attention_maps(bf: BatchFormer, x: jax.Array) -> jax.Array:
  """[num_layers, B, B]: row q is how sample q spreads its attention over the batch's samples.

  ``x`` is the whole batch the layer attends over ([B, C], or [B, L, C] for V2, where the maps
  are averaged over positions too), in eval mode (no dropout), heads averaged. With
  ``bf.group_size`` set, a sample attends within its group of consecutive samples only and its
  row is zero elsewhere. Layer i's map is computed on layer i-1's output, as the layer runs. For a
  batch sharded over devices, gather it first: on the whole batch this is the global scope.
  """
  return _run(bf, x)[1]


def on_whole_batch(bf: BatchFormer, x: jax.Array) -> jax.Array:
  """The layer's eval-mode output when ``x`` is the whole (gathered) batch: what it computes
  across devices under its scope, without needing the mesh axis (``bf.axis_name`` is ignored)."""
  return _run(bf, x)[0]

"""Linen wrappers of the public NNX modules, for Linen models (through ``flax.nnx.bridge``).

Parameters live in the usual ``params`` collection with the NNX names
(``layers/0/in_proj/kernel``, ...); dropout draws from the ``dropout`` rng collection.
"""

from __future__ import annotations

from typing import Any

import jax
from flax import linen as nn
from flax import nnx

from bf_jax.layer import batchformer

__all__ = ["BatchFormer"]


class BatchFormer(nn.Module):
  """Linen version of :class:`bf_jax.BatchFormer`; same arguments, same computation.

  Call as ``BatchFormer(dim=C)(x, deterministic=False)`` inside a Linen module and apply with
  ``rngs={'dropout': key}`` when training.
  """

  dim: int
  num_heads: int = 4
  ffn_dim: int | None = None
  dropout: float = 0.5
  num_layers: int = 1
  axis_name: str | None = None
  group_size: int | None = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    if not deterministic and self.dropout > 0 and not self.has_rng("dropout"):
      raise ValueError("linen.BatchFormer with deterministic=False needs a dropout key: call "
                       "init/apply with rngs={'params': ..., 'dropout': key}.")
    inner = nnx.bridge.to_linen(
        batchformer.BatchFormer, self.dim, num_heads=self.num_heads, ffn_dim=self.ffn_dim,
        dropout=self.dropout, num_layers=self.num_layers, axis_name=self.axis_name,
        group_size=self.group_size, dtype=self.dtype, name="nnx")
    return inner(x, deterministic=deterministic)

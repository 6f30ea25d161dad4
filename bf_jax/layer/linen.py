"""Linen wrappers of the public NNX modules, for Linen models (through ``flax.nnx.bridge``).

Parameters live in the usual ``params`` collection with the NNX names and string keys only
(``nnx/layers/0/in_proj/kernel``, ``"0"`` a string), so ``flatten_dict(params, sep="/")`` and an
Orbax restore without a target work; dropout draws from the ``dropout`` rng collection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
from flax import linen as nn
from flax import nnx

from bf_jax.layer import batchformer

__all__ = ["BatchFormer", "string_keys"]


def string_keys(tree: Any) -> Any:
  """``tree`` (e.g. Linen params) with every integer dict key written as a string.

  Params of this wrapper from before string keys held ``layers/{0: ...}``; either layout is
  read by ``apply``, this gives the one ``flatten_dict`` and Orbax handle.
  """
  if isinstance(tree, Mapping):
    return {str(k) if isinstance(k, int) else k: string_keys(v) for k, v in tree.items()}
  return tree


def _nnx_keys(variables: Mapping[str, Any]) -> dict[str, Any]:
  """The wrapper's variables as the NNX module's state: ``layers`` is an ``nnx.List``."""
  def to_state(tree):
    if not isinstance(tree, Mapping) or "layers" not in tree:
      return tree
    return {**tree, "layers": {int(k): v for k, v in tree["layers"].items()}}

  return {col: to_state(tree) for col, tree in variables.items()}


class BatchFormer(nn.Module):
  """Linen version of :class:`bf_jax.BatchFormer`; same arguments, same computation.

  Fields are the NNX constructor's arguments with its defaults, except ``rngs``: init keys come
  from ``init(rngs={'params': ...})`` and dropout from the ``dropout`` collection. Call as
  ``BatchFormer(dim=C)(x, deterministic=False)`` inside a Linen module and apply with
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
  deterministic: bool | None = None
  remat: bool | None = None
  query_chunk: int | None = None
  attention_impl: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool | None = None) -> jax.Array:
    """BatchFormer features shaped like ``x``; the call's ``deterministic`` overrides the field.

    No ``rngs`` argument, unlike the NNX call: ``Module.apply`` owns that name, so dropout keys
    come from its ``rngs={'dropout': key}``.
    """
    if deterministic is None:
      deterministic = self.deterministic
    if deterministic is None:
      raise ValueError("linen.BatchFormer needs deterministic=True/False: at the call or as "
                       "the module's deterministic field.")
    if not deterministic and self.dropout > 0 and not self.has_rng("dropout"):
      raise ValueError("linen.BatchFormer with deterministic=False needs a dropout key: call "
                       "init/apply with rngs={'params': ..., 'dropout': key}.")
    # The NNX state keys layers by int; Linen trees (flatten_dict, Orbax) want strings. Stored
    # params get strings, the module reads ints, and params saved with int keys still load.
    # Not init=True: that builds the module twice and draws other initial weights than before.
    to_nnx = nn.map_variables(nnx.bridge.ToLinen, True, trans_in_fn=_nnx_keys,
                              trans_out_fn=string_keys, mutable=self.is_initializing())
    inner = to_nnx(batchformer.BatchFormer, args=(self.dim,), kwargs=nn.FrozenDict(
        num_heads=self.num_heads, ffn_dim=self.ffn_dim, dropout=self.dropout,
        num_layers=self.num_layers, axis_name=self.axis_name, group_size=self.group_size,
        dtype=self.dtype, deterministic=self.deterministic, remat=self.remat,
        query_chunk=self.query_chunk, attention_impl=self.attention_impl), name="nnx")
    return inner(x, deterministic=deterministic)

"""Initialization streams that keep paired runs paired."""

from __future__ import annotations

import jax
from flax import nnx

_BF_TAG = 0xBF  # fold-in tag of the BatchFormer's stream


def bf_stream(rngs: nnx.Rngs) -> nnx.Rngs:
  """The BatchFormer's own initialization stream, derived from ``rngs`` without drawing from it:
  building the layer leaves every other module's initial parameters as they are without it, so
  both arms of a paired comparison (bf on/off, same seed) start from the same backbone and head."""
  return nnx.Rngs(jax.random.fold_in(rngs.params.key[...], _BF_TAG))

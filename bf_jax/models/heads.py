"""Classifier heads shared by both streams: linear, or cosine (LDAM, RIDE)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

HEADS = ("linear", "cosine")


class CosineHead(nnx.Module):
  """scale * cos(feature, class weight): the normed linear classifier of LDAM and RIDE."""

  def __init__(self, dim: int, num_classes: int, scale: float, *, rngs: nnx.Rngs):
    init = nnx.initializers.uniform(2.0)  # U(-1, 1) after the shift, as RIDE's NormedLinear
    self.kernel = nnx.Param(init(rngs.params(), (dim, num_classes)) - 1.0)
    self.scale = scale

  def __call__(self, feats_NxC: jax.Array) -> jax.Array:
    f = feats_NxC / (jnp.linalg.norm(feats_NxC, axis=-1, keepdims=True) + 1e-12)
    w = self.kernel[...] / (jnp.linalg.norm(self.kernel[...], axis=0, keepdims=True) + 1e-12)
    return self.scale * f @ w


def build_head(model_cfg, dim: int, num_classes: int, rngs: nnx.Rngs) -> nnx.Module:
  if model_cfg.head == "cosine":
    return CosineHead(dim, num_classes, model_cfg.head_scale, rngs=rngs)
  if model_cfg.head == "linear":
    return nnx.Linear(dim, num_classes, rngs=rngs)
  raise ValueError(f"model.head={model_cfg.head!r} is unknown; choose one of {HEADS}.")

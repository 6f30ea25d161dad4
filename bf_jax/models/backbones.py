"""Small backbones: an MLP (the embedded digits demo) and a tiny CNN (tests, 32x32 smoke runs).

Each maps images [B, H, W, C_in] to pooled features [B, feat_dim]; ``train`` switches BatchNorm
to batch statistics, synchronized over ``axis_name`` so they cover the whole global batch.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx


class MLP(nnx.Module):
  """Flatten, then ``depth`` x (Linear, ReLU); features are the last hidden layer."""

  def __init__(self, image_shape: tuple[int, ...], width: int, depth: int, *, rngs: nnx.Rngs):
    dims = [math.prod(image_shape)] + [width] * depth
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])
    self.feat_dim = width

  def __call__(self, images_BxHxWxC: jax.Array, train: bool) -> jax.Array:
    h_BxD = images_BxHxWxC.reshape(images_BxHxWxC.shape[0], -1)
    for layer in self.layers:
      h_BxD = jax.nn.relu(layer(h_BxD))
    return h_BxD


class TinyCNN(nnx.Module):
  """conv-BN-ReLU blocks (stride 2 after the first), global average pool."""

  def __init__(self, image_shape: tuple[int, ...], width: int, depth: int, *,
               axis_name: str | None, rngs: nnx.Rngs):
    chans = [image_shape[-1]] + [width * 2 ** min(i, 2) for i in range(depth)]
    self.convs = nnx.List([
        nnx.Conv(a, b, (3, 3), strides=1 if i == 0 else 2, use_bias=False, rngs=rngs)
        for i, (a, b) in enumerate(zip(chans[:-1], chans[1:]))])
    self.norms = nnx.List([nnx.BatchNorm(c, momentum=0.9, epsilon=1e-5, axis_name=axis_name,
                                         rngs=rngs) for c in chans[1:]])
    self.feat_dim = chans[-1]

  def __call__(self, images_BxHxWxC: jax.Array, train: bool) -> jax.Array:
    h = images_BxHxWxC
    for conv, norm in zip(self.convs, self.norms):
      h = jax.nn.relu(norm(conv(h), use_running_average=not train))
    return jnp.mean(h, axis=(1, 2))

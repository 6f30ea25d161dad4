"""Small backbones: an MLP (the embedded digits demo), a tiny CNN (tests, 32x32 smoke runs) and a
convnet that keeps where its features are (Fashion-MNIST).

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


class ConvNet(nnx.Module):
  """``depth`` x (conv-BN-ReLU, 2x2 average pool), flattened, then one Linear-ReLU layer.

  Flattening keeps where a feature is, which a global pool loses (small grayscale photos,
  Fashion-MNIST); average pools because a max pool's backward is slow on XLA's CPU backend
  (docs/fashion_mnist.md). Features are ``8 * width`` wide.
  """

  def __init__(self, image_shape: tuple[int, ...], width: int, depth: int, *,
               axis_name: str | None, rngs: nnx.Rngs):
    h, w, c = image_shape
    if h % 2 ** depth or w % 2 ** depth:
      raise ValueError(f"model.depth={depth} halves {h}x{w} images {depth} times, which needs "
                       f"sides divisible by {2 ** depth}; lower model.depth.")
    chans = [c] + [width * 2 ** i for i in range(depth)]
    self.convs = nnx.List([nnx.Conv(a, b, (3, 3), use_bias=False, rngs=rngs)
                           for a, b in zip(chans[:-1], chans[1:])])
    self.norms = nnx.List([nnx.BatchNorm(c, momentum=0.9, epsilon=1e-5, axis_name=axis_name,
                                         rngs=rngs) for c in chans[1:]])
    self.feat_dim = 8 * width
    flat = (h // 2 ** depth) * (w // 2 ** depth) * chans[-1]
    self.fc = nnx.Linear(flat, self.feat_dim, rngs=rngs)

  def __call__(self, images_BxHxWxC: jax.Array, train: bool) -> jax.Array:
    h = images_BxHxWxC
    for conv, norm in zip(self.convs, self.norms):
      h = jax.nn.relu(norm(conv(h), use_running_average=not train))
      h = nnx.avg_pool(h, (2, 2), strides=(2, 2))
    return jax.nn.relu(self.fc(h.reshape(h.shape[0], -1)))

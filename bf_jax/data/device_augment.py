"""The per-pixel end of an augmentation, on the device: the host sends uint8 crops, the device
pads and crops, flips, jitters colour and normalizes them.

Every draw is keyed by (seed, step, position in the global batch), so a batch is the same for
any number of processes, devices and host workers, and resuming at step s draws what the first
run drew at s. The host's numpy functions in ``augment.py`` draw from their own generators, so the
two never give the same bits: a config's augmentation runs on one side only.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

_STREAM = 0xA06  # keeps these draws apart from every other use of the run's seed


@dataclasses.dataclass(frozen=True)
class Finish:
  """What the device does to a batch of uint8 images [B, H, W, C]."""
  mean: tuple[float, ...]
  std: tuple[float, ...]
  scale: float = 255.0  # the stored images' maximum (1.0 for images stored in [0, 1])
  pad_crop: int = 0  # zero-pad by this many pixels, then crop back at a random offset
  flip: bool = False  # random horizontal flip
  jitter: float = 0.0  # brightness, contrast, saturation each x U(1 - s, 1 + s), random order

  def __call__(self, images_BxHxWxC: jax.Array, seed: jax.Array, step: jax.Array,
               first_position: jax.Array | int = 0) -> jax.Array:
    """float32 model inputs; row i is example ``first_position + i`` of its global batch (on a
    mesh: call it per device, inside ``shard_map``, as ``trainer.feed`` does)."""
    positions_B = first_position + jnp.arange(images_BxHxWxC.shape[0])
    base = jax.random.fold_in(jax.random.fold_in(jax.random.key(_STREAM), seed), step)
    keys_B = jax.vmap(lambda p: jax.random.fold_in(base, p))(positions_B)
    return jax.vmap(self._one)(images_BxHxWxC, keys_B)

  def _one(self, image_HxWxC: jax.Array, key: jax.Array) -> jax.Array:
    k_crop, k_flip, k_jitter = jax.random.split(key, 3)
    x = image_HxWxC.astype(jnp.float32)
    if self.pad_crop:
      x = pad_crop(x, k_crop, self.pad_crop)
    if self.flip:
      x = jnp.where(jax.random.bernoulli(k_flip), x[:, ::-1], x)
    if self.jitter:
      x = color_jitter(x * (255.0 / self.scale), k_jitter, self.jitter) * (self.scale / 255.0)
    mean, std = jnp.asarray(self.mean, jnp.float32), jnp.asarray(self.std, jnp.float32)
    return (x / self.scale - mean) / std


def pad_crop(image_HxWxC: jax.Array, key: jax.Array, pad: int) -> jax.Array:
  """Zero-pad by ``pad`` and crop back to size at a random offset (CIFAR's augmentation)."""
  h, w, c = image_HxWxC.shape
  padded = jnp.pad(image_HxWxC, ((pad, pad), (pad, pad), (0, 0)))
  top, left = jax.random.randint(key, (2,), 0, 2 * pad + 1)
  return jax.lax.dynamic_slice(padded, (top, left, 0), (h, w, c))


def color_jitter(image_HxWxC: jax.Array, key: jax.Array, strength: float) -> jax.Array:
  """``augment.color_jitter`` on the device: the same three ops and range, in random order, on
  pixels in [0, 255]."""
  k_order, k_factors = jax.random.split(key)
  factors = jax.random.uniform(k_factors, (3,), minval=1 - strength, maxval=1 + strength)
  order = jax.random.permutation(k_order, 3)
  x = image_HxWxC
  for op in order:  # each of the three (computed, then selected: no branches under vmap)
    x = jnp.select([op == 0, op == 1], [_brightness(x, factors[0]), _contrast(x, factors[1])],
                   _saturation(x, factors[2]))
  return jnp.clip(x, 0.0, 255.0)


def _brightness(x: jax.Array, f: jax.Array) -> jax.Array:
  return x * f


def _contrast(x: jax.Array, f: jax.Array) -> jax.Array:
  m = x.mean()
  return (x - m) * f + m


def _saturation(x: jax.Array, f: jax.Array) -> jax.Array:
  if x.shape[-1] != 3:
    return x
  gray = (x @ jnp.asarray([0.299, 0.587, 0.114], jnp.float32))[..., None]
  return (x - gray) * f + gray

"""Mixup / CutMix with label smoothing, on device inside the train step (DeiT's recipe, timm's
"batch" mode semantics).

One draw per (device) batch: with probability ``switch_prob`` CutMix (lambda ~ Beta(cutmix_alpha,
cutmix_alpha); a random box, area 1 - lambda, pasted from the batch in reverse order, lambda then
set to the exact kept area), otherwise Mixup (lambda ~ Beta(mixup_alpha, mixup_alpha); images
blended with the reversed batch). Targets: ``lambda * smooth(y) + (1 - lambda) * smooth(y
reversed)`` with ``smooth`` the one-hot with ``label_smoothing`` spread over the K classes
(on = 1 - s + s/K, off = s/K). Inside ``shard_map`` the batch is the device's local batch, as a
per-GPU loader's is in timm.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class MixConfig:
  mixup_alpha: float = 0.8
  cutmix_alpha: float = 1.0
  switch_prob: float = 0.5  # probability of CutMix when both are on
  label_smoothing: float = 0.1
  num_classes: int = 1000

  @property
  def active(self) -> bool:
    return self.mixup_alpha > 0 or self.cutmix_alpha > 0 or self.label_smoothing > 0


def smooth_one_hot(labels_B: jax.Array, num_classes: int, smoothing: float) -> jax.Array:
  off = smoothing / num_classes
  return jax.nn.one_hot(labels_B, num_classes) * (1.0 - smoothing) + off


def _box_mask(key: jax.Array, lam: jax.Array, h: int, w: int) -> tuple[jax.Array, jax.Array]:
  """A [H, W] 0/1 mask of a box covering about 1 - lam of the image (clipped at the borders),
  and the exact kept fraction."""
  ky, kx = jax.random.split(key)
  cut = jnp.sqrt(1.0 - lam)
  ch, cw = (cut * h).astype(jnp.int32), (cut * w).astype(jnp.int32)
  cy = jax.random.randint(ky, (), 0, h)
  cx = jax.random.randint(kx, (), 0, w)
  y0, y1 = jnp.clip(cy - ch // 2, 0, h), jnp.clip(cy + ch // 2, 0, h)
  x0, x1 = jnp.clip(cx - cw // 2, 0, w), jnp.clip(cx + cw // 2, 0, w)
  rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
  box_HxW = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
  kept = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
  return box_HxW, kept


def mix(images_BxHxWxC: jax.Array, labels_B: jax.Array, key: jax.Array,
        cfg: MixConfig) -> tuple[jax.Array, jax.Array]:
  """(mixed images, soft targets [B, K]) for one batch."""
  targets = smooth_one_hot(labels_B, cfg.num_classes, cfg.label_smoothing)
  if cfg.mixup_alpha <= 0 and cfg.cutmix_alpha <= 0:
    return images_BxHxWxC, targets
  k_switch, k_mixup, k_cutmix, k_box = jax.random.split(key, 4)
  flipped = images_BxHxWxC[::-1]
  _, h, w, _ = images_BxHxWxC.shape
  if cfg.cutmix_alpha > 0:
    lam_cut = jax.random.beta(k_cutmix, cfg.cutmix_alpha, cfg.cutmix_alpha)
    box_HxW, kept = _box_mask(k_box, lam_cut, h, w)
    cut_images = jnp.where(box_HxW[None, :, :, None], flipped, images_BxHxWxC)
  if cfg.mixup_alpha > 0:
    lam_mix = jax.random.beta(k_mixup, cfg.mixup_alpha, cfg.mixup_alpha)
    mix_images = lam_mix * images_BxHxWxC + (1.0 - lam_mix) * flipped
  if cfg.mixup_alpha <= 0:
    images, lam = cut_images, kept
  elif cfg.cutmix_alpha <= 0:
    images, lam = mix_images, lam_mix
  else:
    use_cut = jax.random.bernoulli(k_switch, cfg.switch_prob)
    images = jnp.where(use_cut, cut_images, mix_images)
    lam = jnp.where(use_cut, kept, lam_mix)
  lam = lam.astype(jnp.float32)
  return images.astype(images_BxHxWxC.dtype), lam * targets + (1.0 - lam) * targets[::-1]

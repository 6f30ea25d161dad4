"""Host-side per-example preprocessing (numpy + Pillow), seeded so results never depend on the
host layout: each example gets its own ``np.random.Generator``.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from bf_jax.data import jpeg

PACO_VIEWS = {"paco_cifar": "cifar", "paco_imagenet": "imagenet", "paco_small": "small"}  # views.paco_views recipes
# Augmentations that make [2, H, W, C]: MoCo v3's pair (blur off for 32x32 images), PaCo's.
TWO_VIEW = ("two_view", "two_view_noblur", *PACO_VIEWS)
AUGMENTATIONS = ("none", "crop_flip", "inception", "inception_jitter", "domainbed", "deit",
                 *TWO_VIEW)  # "deit": crop, flip, RandAugment, random erasing (randaugment.py)


def normalize(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...],
              scale: float) -> np.ndarray:
  """uint8 or float image -> float32 ``(image / scale - mean) / std``."""
  x = image.astype(np.float32) / scale
  return (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def crop_flip(image_HxWxC: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
  """CIFAR augmentation: zero-pad by ``pad``, random crop back to size, random horizontal flip."""
  h, w = image_HxWxC.shape[:2]
  padded = np.pad(image_HxWxC, ((pad, pad), (pad, pad), (0, 0)))
  top, left = rng.integers(0, 2 * pad + 1, size=2)
  out = padded[top:top + h, left:left + w]
  return out[:, ::-1] if rng.random() < 0.5 else out


def _resize(image_HxWxC: np.ndarray, box: tuple[float, float, float, float],
            size: tuple[int, int]):
  """Crops ``box`` (left, top, right, bottom) and resizes to ``size`` (w, h), bilinear."""
  image = image_HxWxC.astype(np.uint8, copy=False)
  pil = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)
  out = np.asarray(pil.resize(size, Image.BILINEAR, box=box))
  return out[..., None] if out.ndim == 2 else out


def crop_box(h: int, w: int, rng: np.random.Generator, scale: tuple[float, float] = (0.08, 1.0),
             ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
  """Inception-style crop box (left, top, right, bottom): random area fraction and aspect
  ratio, ten tries, then the central square."""
  area = h * w
  for _ in range(10):
    target = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
    if 0 < cw <= w and 0 < ch <= h:
      top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
      return left, top, left + cw, top + ch
  side = min(h, w)  # fallback: central square
  top, left = (h - side) // 2, (w - side) // 2
  return left, top, left + side, top + side


def random_resized_crop(image_HxWxC: np.ndarray, rng: np.random.Generator, size: int,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> np.ndarray:
  """Inception-style crop: random area fraction and aspect ratio, resized to size x size."""
  h, w = image_HxWxC.shape[:2]
  return _resize(image_HxWxC, crop_box(h, w, rng, scale, ratio), (size, size))


def random_resized_crop_encoded(data: bytes, what: str, rng: np.random.Generator, size: int,
                                scale: tuple[float, float] = (0.08, 1.0)) -> np.ndarray:
  """``random_resized_crop`` of an encoded image (the same draws), decoding only as much
  resolution as the crop needs at ``size`` (``jpeg.decode_region``)."""
  h, w = jpeg.size(data, what)
  image, box = jpeg.decode_region(data, what, crop_box(h, w, rng, scale), (size, size), (h, w))
  return _resize(image, box, (size, size))


def center_crop_box(h: int, w: int, crop_fraction: float = 0.875) -> tuple[int, int, int, int]:
  side = max(1, int(round(min(h, w) * crop_fraction)))
  top, left = (h - side) // 2, (w - side) // 2
  return left, top, left + side, top + side


def resize_center_crop_encoded(data: bytes, what: str, size: int) -> np.ndarray:
  """``resize_center_crop`` of an encoded image, decoded at the scale the crop needs."""
  h, w = jpeg.size(data, what)
  image, box = jpeg.decode_region(data, what, center_crop_box(h, w), (size, size), (h, w))
  return _resize(image, box, (size, size))


def resize_center_crop(image_HxWxC: np.ndarray, size: int, crop_fraction: float = 0.875):
  """Eval transform: the central crop covering ``crop_fraction`` of the shorter side, resized."""
  h, w = image_HxWxC.shape[:2]
  return _resize(image_HxWxC, center_crop_box(h, w, crop_fraction), (size, size))


def resize_squash(image_HxWxC: np.ndarray, size: int) -> np.ndarray:
  """DomainBed's eval transform, Resize((size, size)): the whole image, aspect ratio not kept."""
  h, w = image_HxWxC.shape[:2]
  return _resize(image_HxWxC, (0, 0, w, h), (size, size))


def color_jitter(image_HxWxC: np.ndarray, rng: np.random.Generator, strength: float = 0.4):
  """Brightness, contrast and saturation each scaled by U(1 - s, 1 + s), in random order.

  Float numpy measured faster than Pillow's ImageEnhance for this (240 vs 211 img/s per core).
  """
  x = image_HxWxC.astype(np.float32)
  for op in rng.permutation(3):
    f = np.float32(rng.uniform(1 - strength, 1 + strength))
    if op == 0:
      x *= f
    elif op == 1:
      m = x.mean()
      x = (x - m) * f + m
    elif x.shape[-1] == 3:
      gray = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
      x = (x - gray) * f + gray
  return np.clip(x, 0, 255, out=x)


def flip(image_HxWxC: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  return image_HxWxC[:, ::-1] if rng.random() < 0.5 else image_HxWxC

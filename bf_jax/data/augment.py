"""Host-side per-example preprocessing (numpy), seeded so results never depend on the host layout."""

from __future__ import annotations

import numpy as np

AUGMENTATIONS = ("none", "crop_flip")


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

"""DeiT's training augmentation, host side (numpy + Pillow): RandAugment and random erasing.

Follows the semantics of timm's ``rand-m9-mstd0.5-inc1`` RandAugment and ``RandomErasing(0.25,
mode='pixel')``. RandAugment picks ``num_ops`` ops uniformly (with replacement) from the
"increasing" set; each applies with probability ``prob`` at a magnitude drawn from
N(magnitude, magnitude_std) clipped to [0, max_magnitude]. Per op the draws are made in a fixed
order (op index, apply coin, magnitude noise, sign) whether or not the op applies, so changing
a probability changes only which ops run, never the other draws.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
       "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
       "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel",
       "TranslateYRel")
LEVEL_DENOM = 10.0  # timm's _LEVEL_DENOM: level = magnitude / 10 (magnitude_max only clips)
FILL = (124, 116, 104)  # timm's img_mean fill: round(255 * ImageNet mean)
# timm passes create_transform's interpolation ('bicubic' for DeiT) to the geometric ops.
RESAMPLE = Image.BICUBIC
_ENHANCERS = {"ColorIncreasing": ImageEnhance.Color, "ContrastIncreasing": ImageEnhance.Contrast,
              "BrightnessIncreasing": ImageEnhance.Brightness,
              "SharpnessIncreasing": ImageEnhance.Sharpness}


def op_arg(name: str, level: float, negate: bool) -> float | None:
  """timm's level -> argument mapping (``level`` = magnitude / 10); None for ops without one.

  ``negate`` is the random sign, used by the signed ops only.
  """
  sign = -1.0 if negate else 1.0
  if name == "Rotate":
    return sign * 30.0 * level  # degrees
  if name in ("ShearX", "ShearY"):
    return sign * 0.3 * level  # shear factor
  if name in ("TranslateXRel", "TranslateYRel"):
    return sign * 0.45 * level  # fraction of the image width / height
  if name in _ENHANCERS:
    return max(0.1, 1.0 + sign * 0.9 * level)  # enhance factor
  if name == "PosterizeIncreasing":
    return float(4 - int(4 * level))  # bits kept
  if name == "SolarizeIncreasing":
    return float(256 - int(256 * level))  # threshold
  if name == "SolarizeAdd":
    return float(int(110 * level))  # added to pixels below 128
  return None


def _lut(pil: Image.Image, table: np.ndarray) -> Image.Image:
  """Applies a 256-entry uint8 table to every band."""
  return pil.point(np.tile(table, len(pil.getbands())).tolist())


def _posterize(pil: Image.Image, bits: int) -> Image.Image:
  """Keeps the top ``bits`` bits; 0 or fewer bits gives black (Pillow >= 11 refuses bits=0)."""
  if bits >= 8:
    return pil
  return _lut(pil, np.arange(256) & (0xFF << (8 - bits)) & 0xFF)


def _solarize_add(pil: Image.Image, add: int, threshold: int = 128) -> Image.Image:
  """Adds ``add`` to pixels below ``threshold``, clipped to 255."""
  p = np.arange(256)
  return _lut(pil, np.where(p < threshold, np.minimum(p + add, 255), p))


def _affine(pil: Image.Image, coeffs: tuple[float, ...], fill, resample) -> Image.Image:
  """Pillow affine: output pixel (x, y) samples input (a x + b y + c, d x + e y + f)."""
  return pil.transform(pil.size, Image.AFFINE, coeffs, resample=resample, fillcolor=fill)


def _apply(pil: Image.Image, name: str, arg: float | None, resample) -> Image.Image:
  """One op on a Pillow image ("RGB" or "L")."""
  fill = FILL if pil.mode == "RGB" else round(sum(FILL) / 3)
  if name == "AutoContrast":
    return ImageOps.autocontrast(pil)
  if name == "Equalize":
    return ImageOps.equalize(pil)
  if name == "Invert":
    return ImageOps.invert(pil)
  if name == "Rotate":
    return pil.rotate(arg, resample=resample, fillcolor=fill)
  if name == "PosterizeIncreasing":
    return _posterize(pil, int(arg))
  if name == "SolarizeIncreasing":
    return ImageOps.solarize(pil, int(arg))
  if name == "SolarizeAdd":
    return _solarize_add(pil, int(arg))
  if name in _ENHANCERS:
    return _ENHANCERS[name](pil).enhance(arg)
  if name == "ShearX":
    return _affine(pil, (1, arg, 0, 0, 1, 0), fill, resample)
  if name == "ShearY":
    return _affine(pil, (1, 0, 0, arg, 1, 0), fill, resample)
  if name == "TranslateXRel":
    return _affine(pil, (1, 0, arg * pil.size[0], 0, 1, 0), fill, resample)
  if name == "TranslateYRel":
    return _affine(pil, (1, 0, 0, 0, 1, arg * pil.size[1]), fill, resample)
  raise ValueError(f"unknown RandAugment op {name!r}; choose one of {OPS}.")


def _to_pil(image_HxWxC: np.ndarray) -> Image.Image:
  if image_HxWxC.ndim != 3 or image_HxWxC.shape[-1] not in (1, 3):
    raise ValueError(f"RandAugment wants an HxWxC image with C in (1, 3), got "
                     f"{image_HxWxC.shape}.")
  image = image_HxWxC.astype(np.uint8, copy=False)
  return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def _from_pil(pil: Image.Image) -> np.ndarray:
  out = np.asarray(pil)
  return out[..., None] if out.ndim == 2 else out


def apply_op(image_HxWxC: np.ndarray, name: str, arg: float | None,
             resample=RESAMPLE) -> np.ndarray:
  """One named op with its mapped argument (see ``op_arg``); uint8 HxWxC in and out."""
  return _from_pil(_apply(_to_pil(image_HxWxC), name, arg, resample))


def draw_ops(rng: np.random.Generator, num_ops: int = 2, magnitude: float = 9.0,
             magnitude_std: float = 0.5, max_magnitude: float = 10.0,
             prob: float = 0.5) -> list[tuple[str, bool, float, bool]]:
  """``num_ops`` draws of (op name, applies, clipped magnitude, negate), drawn in that order."""
  drawn = []
  for _ in range(num_ops):
    index = rng.integers(len(OPS))
    applies = rng.random() < prob
    m = float(np.clip(magnitude + magnitude_std * rng.standard_normal(), 0.0, max_magnitude))
    negate = rng.random() < 0.5
    drawn.append((OPS[index], bool(applies), m, bool(negate)))
  return drawn


def randaugment(image_HxWxC: np.ndarray, rng: np.random.Generator, num_ops: int = 2,
                magnitude: float = 9.0, magnitude_std: float = 0.5,
                max_magnitude: float = 10.0, prob: float = 0.5,
                resample=RESAMPLE) -> np.ndarray:
  """timm's RandAugment (increasing ops) on a uint8 HxWxC image (C in 1, 3); uint8 out."""
  pil = _to_pil(image_HxWxC)
  for name, applies, m, negate in draw_ops(rng, num_ops, magnitude, magnitude_std,
                                           max_magnitude, prob):
    if applies:
      pil = _apply(pil, name, op_arg(name, m / LEVEL_DENOM, negate), resample)
  return _from_pil(pil)


def erase_box(rng: np.random.Generator, height: int, width: int, min_area: float = 0.02,
              max_area: float = 1 / 3, min_aspect: float = 0.3) -> tuple[int, int, int, int] | None:
  """timm's erasing rectangle (top, left, h, w): area fraction U(min_area, max_area), log-uniform
  aspect in [min_aspect, 1 / min_aspect]; None when 10 tries all fail to fit strictly inside."""
  log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
  for _ in range(10):
    target = rng.uniform(min_area, max_area) * height * width
    aspect = math.exp(rng.uniform(*log_aspect))
    h = int(round(math.sqrt(target * aspect)))
    w = int(round(math.sqrt(target / aspect)))
    if w < width and h < height:
      return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
  return None


def random_erasing(image_HxWxC: np.ndarray, rng: np.random.Generator, prob: float = 0.25,
                   min_area: float = 0.02, max_area: float = 1 / 3,
                   min_aspect: float = 0.3) -> np.ndarray:
  """With probability ``prob``, fills one rectangle of the normalized float image with
  per-pixel standard-normal noise (timm's 'pixel' mode). Never writes to the input."""
  if rng.random() >= prob:
    return image_HxWxC
  box = erase_box(rng, *image_HxWxC.shape[:2], min_area, max_area, min_aspect)
  if box is None:
    return image_HxWxC
  top, left, h, w = box
  out = np.array(image_HxWxC, copy=True)
  out[top:top + h, left:left + w] = rng.standard_normal((h, w, out.shape[-1]), dtype=np.float32)
  return out

"""MoCo v3's asymmetric two-view augmentation, host side (numpy + Pillow).

Per view: random resized crop, color jitter (p=0.8), grayscale (p=0.2), Gaussian blur and
solarize (per-view probabilities), horizontal flip (p=0.5). Every random number of a view is drawn
up front in a fixed order, whether or not its op then applies, so one seed gives the same crop,
factors and coin flips under any probabilities: switching an op on or off changes only that op.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from bf_jax.data import augment, randaugment

LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, as PIL's convert("L")
# ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1): factor ranges, in op order.
JITTER_LOW = np.array([0.6, 0.6, 0.8, -0.1])
JITTER_HIGH = np.array([1.4, 1.4, 1.2, 0.1])
# DomainBed's ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.3), in op order.
DOMAINBED_JITTER_LOW = np.array([0.7, 0.7, 0.7, -0.3])
DOMAINBED_JITTER_HIGH = np.array([1.3, 1.3, 1.3, 0.3])
DOMAINBED_CROP_SCALE = (0.7, 1.0)
DOMAINBED_GRAY_PROB = 0.1


def _put_where_equal(h: np.ndarray, t: np.ndarray, v: np.ndarray, channel: np.ndarray,
                     mask: np.ndarray) -> None:
  """h = t where v == channel, in place (clobbers t, mask). Blends with a 0/1 float mask: masked
  copies (np.copyto(where=), np.where) measured ~20x slower on random masks."""
  np.equal(v, channel, out=mask)
  t -= h
  t *= mask
  h += t


def _hue(x_3xHxW: np.ndarray, shift: float) -> None:
  """Rotates the HSV hue of float RGB planes by ``shift`` of a full turn at fixed S and V, in place.

  Vectorized float HSV rather than PIL's "HSV" mode: PIL quantizes hue to 256 steps, so even a
  zero shift moves pixels by up to 7 levels; this round trip is exact to float rounding. Written
  with ``out=`` buffers: fresh 224x224 temporaries cost more in page faults than in arithmetic.
  """
  r, g, b = x_3xHxW
  v, c, inv, h, t, mask = np.empty((6,) + r.shape, np.float32)  # one allocation: fewer faults
  np.maximum(r, g, out=v)
  np.maximum(v, b, out=v)
  np.minimum(r, g, out=c)  # chroma = max - min; where it is 0 (gray) the hue is moot, output = v
  np.minimum(c, b, out=c)
  np.subtract(v, c, out=c)
  np.maximum(c, np.float32(1e-6), out=inv)
  np.divide(np.float32(1), inv, out=inv)
  np.subtract(r, g, out=h)  # hue in sixths of a turn, from whichever channel is the max: b,
  h *= inv
  h += np.float32(4)
  np.subtract(b, r, out=t)  # then g,
  t *= inv
  t += np.float32(2)
  _put_where_equal(h, t, v, g, mask)
  np.subtract(g, b, out=t)  # then r
  t *= inv
  _put_where_equal(h, t, v, r, mask)
  h += np.float32(6 * (shift % 1.0) + 6)  # > 0, so floor() below is a modulo
  for plane, n in zip(x_3xHxW, (5, 3, 1)):  # channel = v - c * clip(min(k, 4 - k), 0, 1)
    np.add(h, np.float32(n), out=t)  # k = (h + n) mod 6
    np.multiply(t, np.float32(1 / 6), out=inv)
    np.floor(inv, out=inv)
    inv *= np.float32(6)
    t -= inv
    np.subtract(np.float32(4), t, out=inv)
    np.minimum(t, inv, out=t)
    np.clip(t, 0, 1, out=t)
    t *= c
    np.subtract(v, t, out=plane)


def _color_jitter(image_HxWxC: np.ndarray, order: np.ndarray, factors: np.ndarray) -> np.ndarray:
  """torchvision ColorJitter semantics with given draws: ``order`` permutes ops 0..3 (brightness,
  contrast, saturation, hue), ``factors[op]`` is that op's factor. Clips after each op as
  torchvision does; saturation and hue are skipped for 1-channel images. uint8 in and out.

  Works on contiguous float channel planes: reductions and arithmetic over the interleaved
  HxWx3 layout measured several times slower.
  """
  h, w, channels = image_HxWxC.shape
  x_CxHxW = np.moveaxis(image_HxWxC, -1, 0).astype(np.float32, order="C")  # K would keep HWC
  x_Cxn = x_CxHxW.reshape(channels, -1)
  rgb = channels == 3
  for op in order:
    f = np.float32(factors[op])
    if op == 0:  # brightness: blend with black
      x_CxHxW *= f
    elif op == 1:  # contrast: blend with the mean of the grayscale image
      m = LUMA @ x_Cxn.mean(1) if rgb else x_Cxn.mean()
      x_CxHxW *= f
      x_CxHxW += np.float32((1 - f) * m)
    elif op == 2 and rgb:  # saturation: blend with the grayscale image
      gray_HxW = (LUMA @ x_Cxn).reshape(h, w)
      gray_HxW *= np.float32(1) - f
      x_CxHxW *= f
      x_CxHxW += gray_HxW
    elif op == 3 and rgb:
      _hue(x_CxHxW, float(f))
    np.clip(x_CxHxW, 0, 255, out=x_CxHxW)
  x_CxHxW += np.float32(0.5)  # in [0.5, 255.5]: truncation rounds half up
  return np.moveaxis(x_CxHxW, 0, -1).astype(np.uint8, order="C")


def _grayscale(image_HxWx3: np.ndarray) -> np.ndarray:
  """ITU-R 601-2 luma, kept 3 channels (PIL's C conversion, rounded)."""
  return np.asarray(Image.fromarray(image_HxWx3).convert("L").convert("RGB"))


def _blur(image_HxWxC: np.ndarray, sigma: float) -> np.ndarray:
  """Gaussian blur with standard deviation ``sigma`` pixels (Pillow, as MoCo v3 does)."""
  gray = image_HxWxC.shape[-1] == 1
  pil = Image.fromarray(image_HxWxC[..., 0] if gray else image_HxWxC)
  out = np.asarray(pil.filter(ImageFilter.GaussianBlur(radius=sigma)))
  return out[..., None] if gray else out


def _solarize(image_HxWxC: np.ndarray) -> np.ndarray:
  """Inverts pixels >= 128 (255 - p), uint8. ``min(p, 255 - p)`` is that, and faster than where."""
  return np.minimum(image_HxWxC, 255 - image_HxWxC)


def _view(image_HxWxC: np.ndarray, rng: np.random.Generator, size: int, crop_min: float,
          blur_prob: float, solarize_prob: float) -> np.ndarray:
  """One view; all draws happen before any op, in the same order for any probabilities."""
  x = augment.random_resized_crop(image_HxWxC, rng, size, scale=(crop_min, 1.0))
  jitter_u, gray_u, blur_u, solarize_u, flip_u = rng.random(5)
  order = rng.permutation(4)
  factors = rng.uniform(JITTER_LOW, JITTER_HIGH)
  sigma = rng.uniform(0.1, 2.0)
  rgb = x.shape[-1] == 3
  if jitter_u < 0.8:
    x = _color_jitter(x, order, factors)
  if rgb and gray_u < 0.2:
    x = _grayscale(x)
  if blur_u < blur_prob:
    x = _blur(x, sigma)
  if solarize_u < solarize_prob:
    x = _solarize(x)
  return x[:, ::-1] if flip_u < 0.5 else x


def _check_image(image_HxWxC: np.ndarray, who: str) -> np.ndarray:
  """The image as uint8 HxWxC; ValueError unless it has 1 or 3 channels."""
  if image_HxWxC.ndim != 3 or image_HxWxC.shape[-1] not in (1, 3):
    raise ValueError(f"{who} wants an HxWxC image with C in (1, 3), got {image_HxWxC.shape}.")
  return np.asarray(image_HxWxC, np.uint8)


def domainbed_view(image_HxWxC: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
  """-> uint8 [size, size, C]: DomainBed's training augmentation (torchvision semantics).

  RandomResizedCrop(scale=(0.7, 1)), horizontal flip (p=0.5), ColorJitter(0.3, 0.3, 0.3, 0.3)
  always, grayscale (p=0.1, RGB only). All draws precede the ops, in a fixed order, so a seed
  pins the crop, coins and factors whatever the image.
  """
  image_HxWxC = _check_image(image_HxWxC, "domainbed_view")
  x = augment.random_resized_crop(image_HxWxC, rng, size, scale=DOMAINBED_CROP_SCALE)
  flip_u = rng.random()
  order = rng.permutation(4)
  factors = rng.uniform(DOMAINBED_JITTER_LOW, DOMAINBED_JITTER_HIGH)
  gray_u = rng.random()
  if flip_u < 0.5:
    x = x[:, ::-1]
  x = _color_jitter(x, order, factors)
  if x.shape[-1] == 3 and gray_u < DOMAINBED_GRAY_PROB:
    x = _grayscale(x)
  return x


def two_views(image_HxWxC: np.ndarray, rng: np.random.Generator, size: int, crop_min: float = 0.08,
              blur_probs: tuple[float, float] = (1.0, 0.1),
              solarize_probs: tuple[float, float] = (0.0, 0.2)) -> np.ndarray:
  """-> uint8 [2, size, size, C]: view 1 and view 2 of MoCo v3's asymmetric augmentation."""
  image_HxWxC = _check_image(image_HxWxC, "two_views")
  return np.stack([_view(image_HxWxC, rng, size, crop_min, blur_probs[i], solarize_probs[i])
                   for i in range(2)])


def _cutout(image_HxWxC: np.ndarray, rng: np.random.Generator, length: int) -> np.ndarray:
  """One ``length`` x ``length`` square of zeros centred at a uniform pixel, clipped at the
  borders (DeVries & Taylor 2017, as PaCo's CIFAR query view)."""
  h, w = image_HxWxC.shape[:2]
  cy, cx = int(rng.integers(h)), int(rng.integers(w))
  out = np.array(image_HxWxC, copy=True)
  out[max(cy - length // 2, 0):cy + length // 2, max(cx - length // 2, 0):cx + length // 2] = 0
  return out


def _shift(image_HxWxC: np.ndarray, dy: int, dx: int) -> np.ndarray:
  """The image moved by (dy, dx) pixels, zeros shifted in (a pad-and-crop without the pad)."""
  h, w = image_HxWxC.shape[:2]
  out = np.zeros_like(image_HxWxC)
  out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
      image_HxWxC[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
  return out


def _small_views(image_HxWxC: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """PaCo's ``"small"`` pair: the query as it is (the classifier trains on what the Balanced
  Softmax digits baseline sees: an MLP on 8x8 pixels has no shift invariance, and a shifted
  query cost 3 points of accuracy); the key shifted by up to a pixel, then brightness and
  contrast scaled by U(0.6, 1.4) (ColorJitter's 0.4). One draw of four numbers per image: the
  per-call overhead of numpy's generator is most of the cost at 8x8."""
  u = rng.random(4)
  dy, dx = (np.floor(u[:2] * 3) - 1).astype(int)
  bright, contrast = 0.6 + 0.8 * u[2], 0.6 + 0.8 * u[3]
  key = _shift(image_HxWxC, dy, dx).astype(np.float32) * bright
  key = (key - key.mean()) * contrast + key.mean()
  key = np.clip(key + 0.5, 0, 255).astype(np.uint8)
  return np.stack([image_HxWxC, key])


def paco_views(image_HxWxC: np.ndarray, rng: np.random.Generator, size: int, crop_min: float,
               recipe: str) -> np.ndarray:
  """-> uint8 [2, size, size, C]: PaCo's query view (strong) and key view (SimCLR's).

  ``recipe="cifar"``: query = pad-and-crop, flip, RandAugment (n=2, m=10) standing in for
  AutoAugment's CIFAR policy, Cutout of half the side; ``"imagenet"``: query = random resized
  crop, flip, color jitter (0.4, 0.4, 0.4), RandAugment (n=2, m=10). Key, both: random resized
  crop from ``crop_min``, jitter (p=0.8), grayscale (p=0.2), blur (p=0.5), flip. The pad (4 at
  32 px) and Cutout (16 at 32 px) scale with the image. ``"small"`` (8x8 digits, where flips
  and RandAugment erase the class): ``_small_views``.
  """
  image_HxWxC = _check_image(image_HxWxC, "paco_views")
  if recipe == "cifar":
    query = augment.crop_flip(image_HxWxC, rng, pad=max(1, image_HxWxC.shape[0] // 8))
    query = randaugment.randaugment(query, rng, magnitude=10.0)
    query = _cutout(query, rng, max(1, query.shape[0] // 2))
  elif recipe == "imagenet":
    query = augment.flip(augment.random_resized_crop(image_HxWxC, rng, size,
                                                     scale=(crop_min, 1.0)), rng)
    query = augment.color_jitter(query, rng).astype(np.uint8)
    query = randaugment.randaugment(query, rng, magnitude=10.0)
  elif recipe == "small":  # tiny grayscale glyphs: shifts and jitter only, no flips
    return _small_views(image_HxWxC, rng)
  else:
    raise ValueError(f"paco_views recipe={recipe!r} is unknown; choose 'cifar', 'imagenet' or "
                     f"'small'.")
  key = _view(image_HxWxC, rng, size, crop_min, blur_prob=0.5, solarize_prob=0.0)
  return np.stack([query, key])

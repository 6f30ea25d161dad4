"""Decoding encoded images on the host: libjpeg-turbo (simplejpeg) for JPEG, Pillow otherwise.

simplejpeg releases the GIL while it decodes, so grain's threads decode in parallel, and it can
decode at a reduced DCT scale: a random resized crop only needs the crop's region at (at least)
the output size, so many crops decode at 1/2, 1/4 or 1/8 scale for a fraction of the time (and
the resize after it reads fewer pixels). Only those power-of-two scales are used: libjpeg-turbo's
other n/8 scales measured slower here than a full decode. docs/performance.md compares the
scaled result with a full decode.

A file that cannot be decoded fails with its name: skipping it would change which examples form
a batch, so the batch at step s would depend on what is on disk.
"""

from __future__ import annotations

import io
import math

import numpy as np
import simplejpeg

_JPEG_MAGIC = b"\xff\xd8"


def _fail(what: str, e: Exception) -> ValueError:
  return ValueError(f"cannot decode image {what} ({type(e).__name__}: {e}); replace or remove the "
                    f"file (a corrupt or truncated image stops the run rather than change which "
                    f"examples form a batch).")


def size(data: bytes, what: str) -> tuple[int, int]:
  """(height, width) of an encoded image, from its header alone."""
  try:
    if data[:2] == _JPEG_MAGIC:
      h, w, _, _ = simplejpeg.decode_jpeg_header(data)
      return h, w
    from PIL import Image
    with Image.open(io.BytesIO(data)) as im:
      return im.height, im.width
  except Exception as e:  # both libraries raise several types for bad data
    raise _fail(what, e) from e


def decode(data: bytes, what: str, min_hw: tuple[int, int] = (0, 0)) -> np.ndarray:
  """HxWx3 uint8 pixels of an encoded image. For a JPEG, ``min_hw`` (height, width) lets
  libjpeg-turbo decode at the smallest DCT scale whose result is at least that large."""
  try:
    if data[:2] == _JPEG_MAGIC:
      return simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=int(min_hw[0]),
                                    min_width=int(min_hw[1]))
    from PIL import Image
    with Image.open(io.BytesIO(data)) as im:
      return np.array(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)
  except Exception as e:
    raise _fail(what, e) from e


def decode_region(data: bytes, what: str, box: tuple[int, int, int, int], out_hw: tuple[int, int],
                  hw: tuple[int, int] | None = None
                  ) -> tuple[np.ndarray, tuple[float, float, float, float]]:
  """Pixels to crop ``box`` (left, top, right, bottom, in full-size pixels) from and resize to
  ``out_hw``: the image decoded at the smallest DCT scale that keeps the box at least ``out_hw``,
  and the box in that image's pixels. ``hw``: the full size, when the caller read the header."""
  h, w = hw or size(data, what)
  left, top, right, bottom = box
  need_h = math.ceil(h * out_hw[0] / max(1, bottom - top))
  need_w = math.ceil(w * out_hw[1] / max(1, right - left))
  scaled = (0, 0)
  for k in (8, 4, 2):  # the smallest power-of-two scale that keeps the box large enough
    if math.ceil(h / k) >= need_h and math.ceil(w / k) >= need_w:
      scaled = (math.ceil(h / k), math.ceil(w / k))
      break
  image = decode(data, what, scaled)
  sy, sx = image.shape[0] / h, image.shape[1] / w
  return image, (left * sx, top * sy, right * sx, bottom * sy)

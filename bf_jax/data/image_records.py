"""Prepared image sets as array_record files: the record format and its random-access reader.

Shared by every task whose images ship as loose files (domain generalization's domain folders,
CZSL's image folders): each part (a domain, a split) is converted once into
``<part>.array_record`` + ``<part>.labels.npy``, with ``meta.json`` written last.

A record is ``label`` (int64, little endian), the length of the file's relative path (uint16,
little endian), that path (UTF-8), then the image encoded as PNG (lossless) or JPEG (quality 95,
no chroma subsampling). Files are written with ``group_size:1`` and no extra compression (the
images are compressed already), so reading one record reads only it.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import struct
from typing import Any, Sequence

import numpy as np

FORMAT_VERSION = 1
IMAGE_FORMATS = ("png", "jpeg")
JPEG_QUALITY = 95
HEADER = struct.Struct("<qH")  # label, length of the relative path
WRITER_OPTIONS = "group_size:1,uncompressed"  # random access; images are compressed already


def load_image(path: pathlib.Path, image_size: int | None):
  """Pillow RGB image of ``path``; with ``image_size``, bicubic-resized so the shorter side is it."""
  from PIL import Image

  try:
    with Image.open(path) as im:
      image = im.convert("RGB")  # reads the pixels, so truncated files fail here
  except Exception as e:  # Pillow raises OSError, ValueError, DecompressionBombError, ...
    raise ValueError(f"cannot read image {path} ({type(e).__name__}: {e}); delete or replace "
                     f"the file (hidden files are skipped; everything else must be an image).") \
        from e
  if image_size is not None:
    w, h = image.size
    if w <= h:
      size = (image_size, max(1, round(h * image_size / w)))
    else:
      size = (max(1, round(w * image_size / h)), image_size)
    if size != image.size:
      image = image.resize(size, Image.Resampling.BICUBIC)
  return image


def encode_image(image, image_format: str) -> bytes:
  """PNG or JPEG (quality ``JPEG_QUALITY``, 4:4:4) bytes of a Pillow image."""
  buf = io.BytesIO()
  if image_format == "png":
    image.save(buf, format="PNG")
  else:
    image.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)  # 4:4:4: keep color
  return buf.getvalue()


def encode_record(label: int, rel_path: str, image_bytes: bytes) -> bytes:
  """One record: ``<qH`` (label, path length), the relative path (UTF-8), the encoded image."""
  path = rel_path.encode("utf-8")
  if len(path) > 0xFFFF:
    raise ValueError(f"file path {rel_path[:80]!r}... is longer than 65535 bytes.")
  return HEADER.pack(label, len(path)) + path + image_bytes


def decode_header(record: bytes) -> tuple[int, str, int]:
  """(label, relative path, offset of the image bytes) of a record, without decoding pixels."""
  label, n = HEADER.unpack_from(record)
  start = HEADER.size
  return label, record[start:start + n].decode("utf-8"), start + n


def decode_record(record: bytes) -> dict[str, Any]:
  """``{'image': HxWx3 uint8, 'label': int}`` of a record."""
  from PIL import Image

  label, _, offset = decode_header(record)
  with Image.open(io.BytesIO(record[offset:])) as im:
    image = np.array(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)
  return {"image": image, "label": label}


def read_meta(name: str, data_dir: str | os.PathLike, known: Sequence[str], kind: str,
              prepare: str) -> dict[str, Any]:
  """``<data_dir>/<name>/meta.json`` of a prepared set (format FORMAT_VERSION); loud errors that
  print ``prepare`` (the commands) when it is absent or stale. ``known``: the registry's names."""
  path = pathlib.Path(data_dir).expanduser() / name / "meta.json"
  if not path.is_file():
    if name not in known and not path.parent.is_dir():
      raise FileNotFoundError(f"{kind} {name!r} is unknown and not prepared under {data_dir}; "
                              f"choose one of {sorted(known)}.")
    raise FileNotFoundError(f"{name} is not prepared under {data_dir} (no {path}). Prepare it "
                            f"once with:\n  {prepare}")
  meta = json.loads(path.read_text())
  if meta.get("format_version") != FORMAT_VERSION:
    raise ValueError(f"{path} has format version {meta.get('format_version')!r} but this code "
                     f"reads version {FORMAT_VERSION}; prepare it again:\n  {prepare}")
  return meta


class RecordFile:
  """Random-access records ``{'image', 'label'}`` of one prepared part (a domain, a split):
  ``<folder>/<part>.array_record`` and ``<part>.labels.npy``, checked against the count that
  ``meta.json`` gives. Picklable (grain worker processes reopen the file lazily); ``labels``
  (int64) needs no decode."""

  def __init__(self, folder: pathlib.Path, part: str, expected: int, what: str, fix: str):
    from grain.sources import ArrayRecordDataSource

    self.what = what
    self.labels = np.load(folder / f"{part}.labels.npy").astype(np.int64)
    self._records = ArrayRecordDataSource(str(folder / f"{part}.array_record"))
    if not (len(self._records) == len(self.labels) == expected):
      raise ValueError(f"{folder}/{part}.* disagree: {len(self._records)} records, "
                       f"{len(self.labels)} labels, {expected} in meta.json; the files are "
                       f"damaged or mixed: prepare again:\n  {fix}")

  def __len__(self) -> int:
    return len(self.labels)

  def _index(self, i: int) -> int:
    i = int(i)
    if not -len(self) <= i < len(self):
      raise IndexError(f"index {i} out of range for {self.what} of {len(self)}.")
    return i % len(self)

  def __getitem__(self, i: int) -> dict[str, Any]:
    return decode_record(self._records[self._index(i)])

  def file_name(self, i: int) -> str:
    """The relative path stored with record ``i`` (no pixel decode)."""
    return decode_header(self._records[self._index(i)])[1]

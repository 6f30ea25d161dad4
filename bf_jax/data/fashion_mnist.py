"""Fashion-MNIST (70,000 real 28x28 grayscale photos of clothing, 10 classes) from its four
standard IDX files, long-tailed like CIFAR-LT.

The four files are read from ``data.data_dir``, by default Debian's ``dataset-fashion-mnist``
package's folder; a ``data_dir`` holding TFDS's ``fashion_mnist`` prepared in array_record (or,
with no data_dir and no Debian files, TFDS's default folder) is read through
``tfds.data_source`` instead. Class i keeps ``int(6000 * imbalance^(-i/9))`` of its training
images (for imbalance 100: 6000 down to 60, 14,886 in all), which images a choice fixed by
``split_seed`` among the class's images in a canonical order (``canonical``), the same on both
roads; the test set is the standard 10,000.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import pathlib
import struct

import numpy as np

from bf_jax.data import long_tail
from bf_jax.data.sources import ArraySource, in_memory, tfds_source

NUM_CLASSES, PER_CLASS = 10, 6000
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"  # apt-get install dataset-fashion-mnist
TFDS_NAME = "fashion_mnist"  # TFDS's builder of the same images (prepared in array_record)
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | pathlib.Path) -> np.ndarray:
  """The array an IDX file holds (gzip-compressed when its name ends in .gz)."""
  path = pathlib.Path(path)
  with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
    data = f.read()
  if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_TYPES:
    raise ValueError(f"{path} is not an IDX file (it should start with two zero bytes and a "
                     f"type code); download it again.")
  ndim = data[3]
  shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
  dtype = np.dtype(_IDX_TYPES[data[2]])
  need = 4 + 4 * ndim + math.prod(shape) * dtype.itemsize
  if len(data) != need:
    raise ValueError(f"{path} holds {len(data)} bytes but its header says {need} "
                     f"({'x'.join(map(str, shape))}); the file is cut short or damaged: download "
                     f"it again.")
  return np.frombuffer(data, dtype, offset=4 + 4 * ndim).reshape(shape)


def _find(folder: pathlib.Path, stem: str) -> pathlib.Path:
  for name in (f"{stem}.gz", stem):
    if (folder / name).is_file():
      return folder / name
  raise FileNotFoundError(
      f"{folder} has no {stem}[.gz] (nor a TFDS preparation, {folder}/{TFDS_NAME}/). "
      f"Fashion-MNIST's four files ({', '.join(n + '.gz' for pair in FILES.values() for n in pair)}"
      f") come with Debian's package (apt-get install dataset-fashion-mnist, into {DEBIAN_DIR}) "
      f"or from the dataset's repository (zalandoresearch/fashion-mnist on GitHub); put them in "
      f"one folder and set --config.data.data_dir to it. Or prepare TFDS's {TFDS_NAME} "
      f"(docs/fashion_mnist.md) and set data_dir to the TFDS data folder.")


def _tfds_prepared(data_dir: pathlib.Path) -> bool:
  """Whether ``data_dir`` holds a TFDS preparation of the dataset (any version)."""
  return any((data_dir / TFDS_NAME).glob("*/dataset_info.json"))


def locate(data_dir: str) -> tuple[str, str]:
  """(road, folder): ``("idx", folder)`` for the four IDX files, ``("tfds", data_dir)`` for a
  TFDS preparation. An empty ``data_dir`` tries Debian's folder, then TFDS's default one."""
  if data_dir:
    folder = pathlib.Path(data_dir).expanduser()
    return ("tfds" if _tfds_prepared(folder) else "idx"), str(folder)
  if (pathlib.Path(DEBIAN_DIR) / f"{FILES['train'][0]}.gz").is_file():
    return "idx", DEBIAN_DIR
  tfds_dir = pathlib.Path(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")).expanduser()
  if _tfds_prepared(tfds_dir):
    return "tfds", str(tfds_dir)
  return "idx", DEBIAN_DIR  # its error names both roads


def read_split(data_dir: str | pathlib.Path, split: str) -> ArraySource:
  """``split`` ('train' or 'test') as uint8 images [N, 28, 28, 1] and labels, from the IDX
  files or a TFDS preparation in ``data_dir`` (``locate``)."""
  road, where = locate(str(data_dir or ""))
  if road == "tfds":
    source = tfds_source(TFDS_NAME, split, where)  # array_record, read without TensorFlow
    return in_memory(source, np.arange(len(source)))
  folder = pathlib.Path(where)
  images_file, labels_file = (_find(folder, stem) for stem in FILES[split])
  images, labels = read_idx(images_file), read_idx(labels_file)
  if images.ndim != 3 or images.dtype != np.uint8 or labels.shape != images.shape[:1]:
    raise ValueError(f"{images_file} ({images.dtype} {images.shape}) and {labels_file} "
                     f"({labels.shape}) are not an image and label file of one split.")
  return ArraySource(images[..., None], labels.astype(np.int64))


def canonical(source: ArraySource) -> ArraySource:
  """The examples sorted by label, then by a hash of their pixels: an order that depends only on
  which images a split holds, not on the order a file stores them in, so the IDX files and a
  TFDS preparation (which shuffles them) give the same long-tailed set in the same order."""
  digests = b"".join(hashlib.blake2b(image.tobytes(), digest_size=8).digest()
                     for image in source.images)
  order = np.lexsort((np.frombuffer(digests, ">u8"), source.labels))
  return ArraySource(source.images[order], source.labels[order])


def load_lt(data_dir: str, imbalance: float, split_seed: int = 0, profile: str = "exp",
            n_max: int = 0) -> tuple[ArraySource, ArraySource, list[int]]:
  """(long-tailed train, the standard test set, train class counts); ``n_max`` images of the
  head class (0: all ``PER_CLASS``)."""
  train, test = canonical(read_split(data_dir, "train")), read_split(data_dir, "test")
  counts = long_tail.class_counts(NUM_CLASSES, n_max or PER_CLASS, imbalance, profile)
  keep = long_tail.long_tail_indices(train.labels, counts, split_seed)
  return ArraySource(train.images[keep], train.labels[keep]), test, counts

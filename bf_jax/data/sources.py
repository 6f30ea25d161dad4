"""Random-access data sources: in-memory arrays, or TFDS array_record read without TensorFlow."""

from __future__ import annotations

from typing import Any

import numpy as np


IN_MEMORY_MAX_BYTES = 256 * 2**20  # a set read into memory (and kept on each device): uint8 bytes


class ArraySource:
  """A random-access source over in-memory arrays; records are ``{'image', 'label'}`` dicts."""

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    if len(images) != len(labels):
      raise ValueError(f"{len(images)} images but {len(labels)} labels.")
    self.images, self.labels = images, np.asarray(labels, np.int64)

  def __len__(self) -> int:
    return len(self.labels)

  def __getitem__(self, i: int) -> dict[str, Any]:
    return {"image": self.images[i], "label": self.labels[i]}


def tfds_source(name: str, split: str, data_dir: str | None = None, decoders=None):
  """``tfds.data_source`` (array_record, no TensorFlow) with a clear message when data is missing."""
  import tensorflow_datasets as tfds
  from etils import epath

  if data_dir and not epath.Path(data_dir).exists():
    raise FileNotFoundError(f"config.data.data_dir={data_dir!r} does not exist; point "
                            f"--config.data.data_dir to the folder that holds {name}/ "
                            f"(prepared with: tfds build {name} --file_format=array_record).")
  try:  # never download or prepare here: most builders need TensorFlow, ImageNet's manual data
    return tfds.data_source(name, split=split, data_dir=data_dir, decoders=decoders,
                            download=False)
  except Exception as e:  # tfds raises several types for "not prepared"; all mean the same here
    where = data_dir or "~/tensorflow_datasets (or $TFDS_DATA_DIR)"
    raise FileNotFoundError(
        f"TFDS dataset {name!r} split {split!r} is not prepared in array_record format under "
        f"{where}. Prepare it once on a machine with internet (needs tensorflow there only):\n"
        f"  pip install tensorflow tensorflow-datasets && tfds build {name} "
        f"--file_format=array_record" + (f" --data_dir={data_dir}" if data_dir else "") +
        f"\nthen copy the folder here or point config.data.data_dir to it. ({type(e).__name__}: "
        f"{e})") from e


def read_labels(source, num_classes: int, what: str) -> np.ndarray:
  """All labels of a source, checked to lie in [0, num_classes)."""
  labels = getattr(source, "labels", None)
  if labels is None:
    labels = np.array([int(source[i]["label"]) for i in range(len(source))], np.int64)
  labels = np.asarray(labels, np.int64)
  bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
  if len(bad):
    raise ValueError(f"{what}: label {labels[bad[0]]} at example {bad[0]} is outside "
                     f"[0, {num_classes}) ({len(bad)} such examples); set data.num_classes to "
                     f"the dataset's class count or fix the labels.")
  return labels


def in_memory(source, indices: np.ndarray) -> ArraySource | None:
  """The records ``indices`` of a source of uint8 images of one shape, read once into an
  ``ArraySource`` (position i holds example ``indices[i]``), or None when they are not such
  images or would take more than ``IN_MEMORY_MAX_BYTES``."""
  first = np.asarray(source[int(indices[0])]["image"])
  if first.dtype != np.uint8 or first.nbytes * len(indices) > IN_MEMORY_MAX_BYTES:
    return None
  images = np.empty((len(indices), *first.shape), np.uint8)
  labels = np.empty(len(indices), np.int64)
  for row, i in enumerate(indices):
    record = source[int(i)]
    image = np.asarray(record["image"])
    if image.shape != first.shape:
      return None  # images of several sizes stay where they are
    images[row], labels[row] = image, int(record["label"])
  return ArraySource(images, labels)

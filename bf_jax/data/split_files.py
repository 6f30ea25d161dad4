"""Standard long-tail split files (``path label`` per line) applied to a TFDS source by file name.

ImageNet-LT and Places-LT are defined by such lists over the images of ImageNet-2012 and
Places365; the lists select an index subset of the data source, so no image is copied.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np


class Subset:
  """A random-access view of ``source`` restricted to ``indices``."""

  def __init__(self, source, indices: np.ndarray, labels: np.ndarray | None = None):
    self.source, self.indices = source, np.asarray(indices)
    if labels is not None:
      self.labels = np.asarray(labels, np.int64)

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, i: int) -> dict[str, Any]:
    return self.source[int(self.indices[i])]


def read_split_file(path: str) -> tuple[list[str], np.ndarray]:
  """(file base names, labels) from a ``relative/path/name.JPEG label`` list."""
  p = pathlib.Path(path).expanduser()
  if not p.is_file():
    what = "is a directory, not a list" if p.is_dir() else "does not exist"
    raise FileNotFoundError(f"split file {str(p)!r} {what}; download the standard list "
                            f"(see docs/classify.md, 'Preparing the datasets') and set the "
                            f"config's data.*_list to its path.")
  try:
    text = p.read_text()
  except (OSError, UnicodeDecodeError) as e:
    raise ValueError(f"split file {p} cannot be read as a text list ({type(e).__name__}: {e}); "
                     f"is it the plain 'path label' list, fully downloaded?") from e
  names, labels = [], []
  for n, line in enumerate(text.splitlines(), 1):
    if not line.strip():
      continue
    parts = line.split()
    if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
      raise ValueError(f"line {n} of {p} is {line!r}; expected 'path label' (e.g. "
                       f"'train/n01440764/n01440764_10026.JPEG 0').")
    names.append(pathlib.PurePosixPath(parts[0]).name)
    labels.append(int(parts[1]))
  if not names:
    raise ValueError(f"split file {p} holds no entries.")
  return names, np.asarray(labels, np.int64)


def _name(value: Any) -> str:
  if isinstance(value, bytes):
    value = value.decode()
  return pathlib.PurePosixPath(str(value)).name


def select(source, names_source, file_feature: str, list_path: str, num_classes: int) -> Subset:
  """The subset of ``source`` that a split file lists, with the file's labels.

  ``names_source`` is the same data with images left undecoded (only file names are read).
  Labels must agree with the dataset's own, which catches a list meant for another class order.
  """
  names, labels = read_split_file(list_path)
  bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
  if len(bad):
    raise ValueError(f"{list_path}: label {labels[bad[0]]} on entry {bad[0] + 1} is outside "
                     f"[0, {num_classes}).")
  where = {_name(names_source[i][file_feature]): i for i in range(len(names_source))}
  missing = [n for n in names if n not in where]
  if missing:
    raise ValueError(f"{len(missing)} of the {len(names)} images listed in {list_path} are not in "
                     f"the dataset (first: {missing[:3]}); is the list for this dataset and split?")
  indices = np.asarray([where[n] for n in names])
  for j in range(min(len(indices), 20)):  # spot-check the class order
    theirs = int(names_source[int(indices[j])]["label"])
    if theirs != labels[j]:
      raise ValueError(f"{list_path}: {names[j]} has label {labels[j]} in the list but "
                       f"{theirs} in the dataset; the class orders differ.")
  return Subset(source, indices, labels)

"""A folder of image files as a random-access source of encoded images.

``root/<class>/<file>`` (torchvision's ImageFolder layout; classes in sorted order) or, with no
class folders, ``root/<file>`` as one class. Records are ``{'image': bytes, 'label', 'file'}``:
decoding is the preprocessing's job (``jpeg.py``), in whichever worker loads the example.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

SUFFIXES = (".jpg", ".jpeg", ".png")


class ImageFolderSource:
  """Picklable (paths only), so grain's worker processes open the files themselves."""

  def __init__(self, root: str | pathlib.Path):
    root = pathlib.Path(root).expanduser()
    if not root.is_dir():
      raise FileNotFoundError(f"image folder {root} does not exist; give a folder of "
                              f"{'/'.join(SUFFIXES)} files (or of class folders holding them).")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    folders = [root / c for c in classes] or [root]
    self.classes = classes or [root.name]
    self.files, labels = [], []
    for label, folder in enumerate(folders):
      names = sorted(p for p in folder.iterdir()
                     if p.suffix.lower() in SUFFIXES and not p.name.startswith("."))
      self.files += names
      labels += [label] * len(names)
    if not self.files:
      raise FileNotFoundError(f"no {'/'.join(SUFFIXES)} files in {root} or its class folders.")
    self.labels = np.asarray(labels, np.int64)

  def __len__(self) -> int:
    return len(self.files)

  def __getitem__(self, i: int) -> dict[str, Any]:
    path = self.files[int(i)]
    return {"image": path.read_bytes(), "label": self.labels[int(i)], "file": str(path)}

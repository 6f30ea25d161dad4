"""A domain-generalization set made from the embedded digits, so DG runs on any CPU.

RotatedMNIST's idea (Ghifary et al. 2015, a DomainBed dataset) on scikit-learn's 1,797 8x8
digits: the digits are shuffled once (seed 0) and dealt into four disjoint domains, each
rotated by its angle (0, 30, 60, 90 degrees) after upscaling to 16x16. Written as image folders,
then converted by the same ``prepare`` as PACS & co:

  python -m bf_jax.tasks.dg.digits --out ~/dg_data     # writes and prepares ~/dg_data/rotated_digits
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
from typing import Sequence

import numpy as np
from PIL import Image

from bf_jax.tasks.dg.domains import DG_DATASETS, prepare

NAME = "rotated_digits"
SIZE = 16


def write_folders(root: str | pathlib.Path) -> dict[str, int]:
  """``root/rot<angle>/<digit>/<i>.png``; returns the images per domain."""
  from sklearn.datasets import load_digits

  digits = load_digits()
  domains = DG_DATASETS[NAME].domains
  order = np.random.default_rng(0).permutation(len(digits.target))
  counts = {}
  for d, domain in enumerate(domains):
    angle = int(domain.removeprefix("rot"))
    members = order[d::len(domains)]
    counts[domain] = len(members)
    for i in members:
      pixels = np.round(digits.images[i] * (255.0 / 16.0)).astype(np.uint8)
      image = Image.fromarray(pixels).resize((SIZE, SIZE), Image.BILINEAR)
      image = image.rotate(angle, resample=Image.BILINEAR)  # counter-clockwise, black corners
      folder = pathlib.Path(root) / domain / str(digits.target[i])
      folder.mkdir(parents=True, exist_ok=True)
      image.save(folder / f"{i}.png")
  return counts


def main(argv: Sequence[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(prog="python -m bf_jax.tasks.dg.digits", description=__doc__)
  parser.add_argument("--out", required=True, help="writes <out>/rotated_digits/")
  args = parser.parse_args(argv)
  with tempfile.TemporaryDirectory() as raw:
    write_folders(raw)
    meta = prepare(NAME, raw, args.out)
  print(f"{NAME}: {meta['counts']} images per domain, written to "
        f"{pathlib.Path(args.out).expanduser() / NAME}")
  return meta


if __name__ == "__main__":
  main(sys.argv[1:])

"""A compositional set made from the embedded digits, so CZSL runs on any CPU.

Attribute = a colour, object = the digit: 4 colours x 10 digits = 40 pairs. 28 pairs are seen
(training); 6 more are unseen in val and 6 others unseen in test (fixed by seed 0, every colour
and every digit seen in training). The 1,797 digits are shuffled once and dealt 60/20/20 into
train/val/test; each image gets a colour that makes its pair one of its split's pairs (train:
seen pairs; val/test: that split's seen and unseen pairs), and is written as a 16x16 RGB image
in the czsl layout, then converted by the same ``prepare`` as MIT-States & co:

  python -m bf_jax.tasks.czsl.digits --out ~/czsl_data   # writes and prepares ~/czsl_data/colored_digits
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
from typing import Sequence

import numpy as np
from PIL import Image

from bf_jax.tasks.czsl.data import DEFAULT_SPLIT, prepare

NAME = "colored_digits"
COLORS = {"red": (1.0, 0.15, 0.1), "green": (0.1, 0.9, 0.2), "blue": (0.15, 0.3, 1.0),
          "yellow": (1.0, 0.9, 0.1)}
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SIZE = 16


def split_pairs(seed: int = 0) -> dict[str, list[tuple[str, str]]]:
  """train / val / test pair lists: 28 seen; 6 unseen each for val and test; val and test also
  hold 10 seen pairs each (the closed-world evaluation mixes both)."""
  rng = np.random.default_rng(seed)
  colors = list(COLORS)
  # Digits zero to five each lose two colours (shifted by the digit), so every colour and every
  # digit still occurs in a seen pair.
  unseen = [(colors[(d + k) % 4], DIGITS[d]) for d in range(10) for k in (0, 1)][:12]
  order = rng.permutation(len(unseen))
  val_unseen = [unseen[i] for i in order[:6]]
  test_unseen = [unseen[i] for i in order[6:]]
  seen = [(c, o) for o in DIGITS for c in colors if (c, o) not in unseen]
  pick = rng.permutation(len(seen))
  return {"train": seen, "val": [seen[i] for i in pick[:10]] + val_unseen,
          "test": [seen[i] for i in pick[10:20]] + test_unseen}


def _colored(image_8x8: np.ndarray, color: tuple[float, float, float]) -> Image.Image:
  gray = Image.fromarray(np.round(image_8x8 * (255.0 / 16.0)).astype(np.uint8))
  gray = np.asarray(gray.resize((SIZE, SIZE), Image.BILINEAR), np.float32)[..., None]
  return Image.fromarray(np.round(gray * np.asarray(color, np.float32)).astype(np.uint8))


def write_folders(root: str | pathlib.Path, seed: int = 0) -> dict[str, int]:
  """The czsl layout under ``root``; returns the images per split."""
  from sklearn.datasets import load_digits

  digits = load_digits()
  root = pathlib.Path(root)
  pairs = split_pairs(seed)
  (root / DEFAULT_SPLIT).mkdir(parents=True, exist_ok=True)
  for split, ps in pairs.items():
    (root / DEFAULT_SPLIT / f"{split}_pairs.txt").write_text("".join(f"{a} {o}\n" for a, o in ps))
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(digits.target))
  n = len(order)
  dealt = {"train": order[:int(0.6 * n)], "val": order[int(0.6 * n):int(0.8 * n)],
           "test": order[int(0.8 * n):]}
  records, counts = [], {}
  for split, members in dealt.items():
    counts[split] = 0
    for i in members:
      obj = DIGITS[digits.target[i]]
      colors = [a for a, o in pairs[split] if o == obj]
      if not colors:  # this digit has no pair in this split
        continue
      attr = colors[rng.integers(len(colors))]
      rel = f"{attr}_{obj}/{i}.png"
      (root / "images" / f"{attr}_{obj}").mkdir(parents=True, exist_ok=True)
      _colored(digits.images[i], COLORS[attr]).save(root / "images" / rel)
      records.append({"image": rel, "attr": attr, "obj": obj, "set": split})
      counts[split] += 1
  (root / f"metadata_{DEFAULT_SPLIT}.json").write_text(json.dumps(records))
  return counts


def main(argv: Sequence[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(prog="python -m bf_jax.tasks.czsl.digits", description=__doc__)
  parser.add_argument("--out", required=True, help="writes <out>/colored_digits/")
  args = parser.parse_args(argv)
  with tempfile.TemporaryDirectory() as raw:
    write_folders(raw)
    meta = prepare(NAME, raw, args.out, image_format="png")
  print(f"{NAME}: {meta['counts']} images per split, written to "
        f"{pathlib.Path(args.out).expanduser() / NAME}")
  return meta


if __name__ == "__main__":
  main(sys.argv[1:])

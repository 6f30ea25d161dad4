"""Long-tailed subsets and the many/medium/few protocol of the long-tail literature."""

from __future__ import annotations

import numpy as np

PROFILES = ("exp", "step")
# The long-tail literature's groups (docs/classify.md): many > 100, medium 20..100, few < 20
# training images per class.
MANY_ABOVE, FEW_BELOW = 100, 20


def class_counts(num_classes: int, n_max: int, imbalance: float, profile: str = "exp") -> list[int]:
  """Training images per class; class 0 is the head.

  ``exp``: ``n_i = int(n_max * (1/imbalance)^(i/(C-1)))`` (CIFAR-LT). ``step``: the first half of
  the classes keep ``n_max``, the rest ``int(n_max / imbalance)`` (LDAM's step profile).
  """
  if profile not in PROFILES:
    raise ValueError(f"long-tail profile={profile!r} is not one of {PROFILES}.")
  if num_classes < 2 or n_max < 1 or imbalance < 1:
    raise ValueError(f"class_counts needs num_classes >= 2, n_max >= 1 and imbalance >= 1; got "
                     f"num_classes={num_classes}, n_max={n_max}, imbalance={imbalance}.")
  if profile == "exp":
    return [int(n_max * (1.0 / imbalance) ** (i / (num_classes - 1))) for i in range(num_classes)]
  return [n_max if i < num_classes // 2 else int(n_max / imbalance) for i in range(num_classes)]


def long_tail_indices(labels: np.ndarray, counts: list[int], seed: int) -> np.ndarray:
  """A seeded random subset holding ``counts[c]`` examples of each class c (sorted indices)."""
  rng = np.random.default_rng(seed)
  chosen = []
  for c, n in enumerate(counts):
    pool = np.flatnonzero(labels == c)
    if len(pool) < n:
      raise ValueError(f"class {c} has {len(pool)} examples but the long-tail profile asks for "
                       f"{n}; lower n_max or the imbalance factor.")
    chosen.append(rng.choice(pool, size=n, replace=False))
  return np.sort(np.concatenate(chosen))


def class_groups(train_counts: np.ndarray) -> dict[str, np.ndarray]:
  """Boolean class masks for the many/medium/few groups from training-set class sizes."""
  counts = np.asarray(train_counts)
  return {"many": counts > MANY_ABOVE,
          "medium": (counts >= FEW_BELOW) & (counts <= MANY_ABOVE),
          "few": counts < FEW_BELOW}

"""Long-tailed subsets, and the class groups results are reported by (the long-tail literature's
many/medium/few, or head/mid/tail by rank)."""

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


def group_names(rule: str = "shots") -> tuple[str, str, str]:
  """The three group names of a ``data.class_groups`` rule (``check_groups`` has checked it)."""
  return ("many", "medium", "few") if rule == "shots" else ("head", "mid", "tail")


def check_groups(rule: str, num_classes: int) -> tuple[int, int] | None:
  """``data.class_groups``: ``"shots"`` (None), or ``"rank:H,M"`` -> (H, M): the H largest classes
  are the head, the next M - H the middle, the rest the tail (0 < H < M < num_classes)."""
  if rule == "shots":
    return None
  try:
    kind, _, bounds = rule.partition(":")
    head, mid = (int(b) for b in bounds.split(","))
    if kind != "rank" or not 0 < head < mid < num_classes:
      raise ValueError
  except ValueError:
    raise ValueError(
        f"data.class_groups={rule!r} is not 'shots' (many > {MANY_ABOVE}, few < {FEW_BELOW} "
        f"training images) or 'rank:H,M' with 0 < H < M < {num_classes} classes (the H largest "
        f"classes are the head, the next M-H the middle, the rest the tail), e.g. 'rank:3,7'."
    ) from None
  return head, mid


def class_groups(train_counts: np.ndarray, rule: str = "shots") -> dict[str, np.ndarray]:
  """Boolean class masks of the three groups, from training-set class sizes.

  ``rule``: ``"shots"`` is the long-tail literature's many/medium/few; ``"rank:H,M"`` ranks the
  classes by size (ties by class index) into head/mid/tail, for sets where the shot thresholds
  leave a group empty (Fashion-MNIST-LT: 8/2/0 classes at imbalance 100).
  """
  counts = np.asarray(train_counts)
  bounds = check_groups(rule, len(counts))
  if bounds is None:
    return {"many": counts > MANY_ABOVE,
            "medium": (counts >= FEW_BELOW) & (counts <= MANY_ABOVE),
            "few": counts < FEW_BELOW}
  rank = np.empty(len(counts), int)
  rank[np.argsort(-counts, kind="stable")] = np.arange(len(counts))
  head, mid = bounds
  return {"head": rank < head, "mid": (rank >= head) & (rank < mid), "tail": rank >= mid}

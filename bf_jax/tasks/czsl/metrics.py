"""Closed-world CZSL evaluation, computed as the reference czsl codebase (Mancini et al., Naeem et
al.) does for MIT-States, UT-Zappos and C-GQA.

Scores of pairs outside the closed set are -inf; a bias b is added to the unseen pairs (closed and
not seen). The biases swept are the (just below) margins by which each correctly-classifiable unseen
image loses to the seen pairs, subsampled to about ``bins`` values, plus an end point at b = 1e3.
AUC is the trapezoidal area of seen accuracy over unseen accuracy along that curve. Accuracies are
fractions in [0, 1] (papers print x100).
"""

from __future__ import annotations

import dataclasses

import numpy as np

BIG_BIAS = 1e3  # at this bias every unseen pair outranks every seen pair
GAP_MARGIN = 1e-4  # subtracted from each gap, as in the reference codebase


def _check_scores_masks(scores_NxP, seen_mask_P, closed_mask_P):
  s = np.asarray(scores_NxP, np.float64)
  if s.ndim != 2:
    raise ValueError(f"scores_NxP must be 2-D [N images, P pairs], got shape {s.shape}")
  if not np.isfinite(s).all():
    raise ValueError("scores_NxP must be finite (mask pairs with closed_mask_P, not with -inf/nan)")
  masks = []
  for name, m in (("seen_mask_P", seen_mask_P), ("closed_mask_P", closed_mask_P)):
    m = np.asarray(m)
    if m.shape != (s.shape[1],) or m.dtype != bool:
      raise ValueError(f"{name} must be a bool array of shape ({s.shape[1]},) (P from scores_NxP), "
                       f"got dtype {m.dtype} shape {m.shape}")
    masks.append(m)
  return s, masks[0], masks[1]


def _biased(s_NxP, seen_P, closed_P, bias: float) -> np.ndarray:
  out = np.where(closed_P, s_NxP, -np.inf)
  return out + np.where(closed_P & ~seen_P, bias, 0.0)


def _topk(s_NxP, topk: int) -> np.ndarray:
  return np.argsort(-s_NxP, axis=1, kind="stable")[:, :topk]  # ties: lowest pair index first


def predict(scores_NxP, seen_mask_P, closed_mask_P, bias: float, topk: int = 1) -> np.ndarray:
  """Top-k predicted pair indices [N, topk] (best first) at ``bias`` added to unseen closed pairs.

  Pairs outside ``closed_mask_P`` are never predicted.
  """
  s, seen, closed = _check_scores_masks(scores_NxP, seen_mask_P, closed_mask_P)
  if not 1 <= topk <= int(closed.sum()):
    raise ValueError(f"topk must be in [1, number of closed pairs = {int(closed.sum())}], got {topk}")
  return _topk(_biased(s, seen, closed, bias), topk)


def _hm(seen: np.ndarray, unseen: np.ndarray) -> np.ndarray:
  den = seen + unseen
  return np.divide(2 * seen * unseen, den, out=np.zeros_like(den), where=(seen > 0) & (unseen > 0))


def closed_world_metrics(scores_NxP, true_pair_N, pair_attr_P, pair_obj_P, seen_mask_P,
                         closed_mask_P, topk: int = 1, bins: int = 20) -> dict:
  """AUC, best HM (and its seen/unseen/bias), best seen, best unseen, attr/obj accuracy, and the curve.

  attr_acc / obj_acc: over all images, the top-1 prediction at bias 1e3 has the true attribute /
  object. If no unseen image is right at bias 1e3 the bias list is empty, the curve is the end point
  alone and AUC is 0 (one point has no area).
  """
  s, seen, closed = _check_scores_masks(scores_NxP, seen_mask_P, closed_mask_P)
  N, P = s.shape
  true = np.asarray(true_pair_N)
  if true.shape != (N,) or not np.issubdtype(true.dtype, np.integer):
    raise ValueError(f"true_pair_N must be integers of shape ({N},), got {true.dtype} {true.shape}")
  if N and (true.min() < 0 or true.max() >= P):
    raise ValueError(f"true_pair_N must lie in [0, {P}), got values in [{true.min()}, {true.max()}]")
  if not closed[true].all():
    raise ValueError(f"true_pair_N has pairs outside closed_mask_P (e.g. {true[~closed[true]][0]}); "
                     "the closed set must contain the pairs of the evaluated images")
  for name, v in (("pair_attr_P", pair_attr_P), ("pair_obj_P", pair_obj_P)):
    if np.shape(v) != (P,):
      raise ValueError(f"{name} must have shape ({P},), got {np.shape(v)}")
  attr, obj = np.asarray(pair_attr_P), np.asarray(pair_obj_P)
  n_seen_pairs = int((seen & closed).sum())
  if not 1 <= topk <= n_seen_pairs:
    raise ValueError(f"topk must be in [1, number of seen closed pairs = {n_seen_pairs}], got {topk}")
  if bins < 1:
    raise ValueError(f"bins must be >= 1, got {bins}")
  img_seen = seen[true]
  if not (~img_seen).any():
    raise ValueError("no unseen images in the evaluated set: a split without unseen pairs cannot give "
                     "a zero-shot curve; evaluate a val/test split that contains unseen pairs")
  if not img_seen.any():
    raise ValueError("no seen images in the evaluated set: the curve needs seen accuracy; evaluate a "
                     "split that also contains images of seen (training) pairs")

  def accuracies(bias: float):
    pred = _topk(_biased(s, seen, closed, bias), topk)
    hit = (pred == true[:, None]).any(axis=1)
    return float(hit[img_seen].mean()), float(hit[~img_seen].mean()), hit, pred

  seen_max, unseen_max, hit_max, pred_max = accuracies(BIG_BIAS)
  attr_acc = float((attr[pred_max[:, 0]] == attr[true]).mean())
  obj_acc = float((obj[pred_max[:, 0]] == obj[true]).mean())

  # Gap of each unseen image: k-th best seen-pair score minus its true pair's score.
  seen_scores = np.where(seen & closed, s, -np.inf)
  kth_seen_N = -np.sort(-seen_scores, axis=1)[:, topk - 1]
  un = ~img_seen
  gaps = kth_seen_N[un] - s[un, true[un]]
  gaps = np.sort(gaps[hit_max[un]] - GAP_MARGIN)
  biases = gaps[::max(len(gaps) // bins, 1)]

  seen_curve, unseen_curve = [], []
  for b in biases:
    sa, ua, _, _ = accuracies(float(b))
    seen_curve.append(sa)
    unseen_curve.append(ua)
  seen_curve.append(seen_max)
  unseen_curve.append(unseen_max)
  seen_arr, unseen_arr = np.array(seen_curve), np.array(unseen_curve)
  auc = float(np.trapezoid(seen_arr, unseen_arr)) if len(seen_arr) > 1 else 0.0
  hm = _hm(seen_arr, unseen_arr)
  i = int(np.argmax(hm))
  return {
      "AUC": auc, "best_hm": float(hm[i]), "best_seen": float(seen_arr.max()),
      "best_unseen": float(unseen_arr.max()), "hm_seen": float(seen_arr[i]),
      "hm_unseen": float(unseen_arr[i]),
      "bias_at_best_hm": float(biases[i]) if i < len(biases) else BIG_BIAS,
      "attr_acc": attr_acc, "obj_acc": obj_acc, "seen_acc_curve": seen_curve,
      "unseen_acc_curve": unseen_curve, "biases": [float(b) for b in biases],
  }


@dataclasses.dataclass
class Pairs:
  """Attribute/object/pair vocabularies of a CZSL dataset, sorted by name as the reference codebase.

  ``split_pairs`` maps "train"/"val"/"test" to that split's set of (attr, obj) pairs.
  """
  attrs: list[str]
  objs: list[str]
  pairs: list[tuple[str, str]]
  split_pairs: dict[str, frozenset]

  @classmethod
  def from_splits(cls, train, val, test, require_seen_primitives: bool = True) -> Pairs:
    """From lists of (attr, obj) name tuples. With ``require_seen_primitives`` every attribute and
    object of a val/test pair must occur in some training pair (the CZSL assumption)."""
    splits = {"train": [tuple(p) for p in train], "val": [tuple(p) for p in val],
              "test": [tuple(p) for p in test]}
    for name, ps in splits.items():
      bad = [p for p in ps if len(p) != 2]
      if bad:
        raise ValueError(f"{name} pairs must be (attr, obj) tuples, got {bad[0]!r}")
    train_attrs = {a for a, _ in splits["train"]}
    train_objs = {o for _, o in splits["train"]}
    if require_seen_primitives:
      for name in ("val", "test"):
        for a, o in splits[name]:
          if a not in train_attrs or o not in train_objs:
            which = f"attribute {a!r}" if a not in train_attrs else f"object {o!r}"
            raise ValueError(f"{name} pair ({a!r}, {o!r}): {which} never appears in a training "
                             "pair; CZSL needs every primitive seen in training (or pass "
                             "require_seen_primitives=False)")
    everything = [p for ps in splits.values() for p in ps]
    return cls(attrs=sorted({a for a, _ in everything}), objs=sorted({o for _, o in everything}),
               pairs=sorted(set(everything)),
               split_pairs={k: frozenset(v) for k, v in splits.items()})

  def index(self, pairs) -> np.ndarray:
    """Pair indices of (attr, obj) name tuples."""
    lookup = {p: i for i, p in enumerate(self.pairs)}
    missing = [tuple(p) for p in pairs if tuple(p) not in lookup]
    if missing:
      raise ValueError(f"unknown pair {missing[0]!r}: not in any of train/val/test")
    return np.array([lookup[tuple(p)] for p in pairs], dtype=np.int64)

  @property
  def pair_attr(self) -> np.ndarray:
    return np.array([self.attrs.index(a) for a, _ in self.pairs], dtype=np.int64)

  @property
  def pair_obj(self) -> np.ndarray:
    return np.array([self.objs.index(o) for _, o in self.pairs], dtype=np.int64)

  @property
  def seen_mask(self) -> np.ndarray:
    return np.array([p in self.split_pairs["train"] for p in self.pairs])

  def closed_mask(self, split: str) -> np.ndarray:
    """The pairs a closed-world evaluation of ``split`` may predict: its pairs and the train pairs."""
    if split not in self.split_pairs:
      raise ValueError(f"split must be one of {sorted(self.split_pairs)}, got {split!r}")
    allowed = self.split_pairs[split] | self.split_pairs["train"]
    return np.array([p in allowed for p in self.pairs])

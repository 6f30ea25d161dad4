"""Closed-world CZSL evaluation (bf_jax.tasks.czsl.metrics) against a hand-worked curve and invariants."""

from __future__ import annotations

import numpy as np
import pytest

from bf_jax.tasks.czsl import metrics
from bf_jax.tasks.czsl.metrics import Pairs, closed_world_metrics, predict

# Pairs 0=(a0,o0) seen, 1=(a1,o1) seen, 2=(a0,o1) unseen, 3=(a1,o0) unseen; all in the closed set.
ATTR = np.array([0, 1, 0, 1])
OBJ = np.array([0, 1, 1, 0])
SEEN = np.array([True, True, False, False])
CLOSED = np.ones(4, bool)

# Hand-worked example. Per image (true pair) and when it is right at bias b (top-1):
#   i0 (0, seen):   best seen 0.9 (pair 0), best unseen 0.5+b  -> right iff b < 0.4
#   i1 (1, seen):   best seen 0.6 (pair 1), best unseen 0.4+b  -> right iff b < 0.2
#   i2 (0, seen):   pair 1 (0.8) beats pair 0 (0.3)            -> never right
#   i3 (2, unseen): gap 0.7-0.4 = 0.3, beats pair 3 at 1e3     -> right iff b > 0.3
#   i4 (3, unseen): gap 0.3-0.2 = 0.1, beats pair 2 at 1e3     -> right iff b > 0.1
#   i5 (2, unseen): pair 3 (0.6) beats pair 2 (0.1) at 1e3     -> never right, gap not used
#   i6 (3, unseen): gap 0.9-0.4 = 0.5, beats pair 2 at 1e3     -> right iff b > 0.5
# Bias 1e3: seen 0/3, unseen 3/4 (i3, i4, i6). Gaps of those - 1e-4, sorted: 0.0999, 0.2999,
# 0.4999; 3 // 20 = 0 -> skip 1, all kept.
#   b=0.0999: seen i0, i1 = 2/3; unseen none = 0
#   b=0.2999: seen i0 = 1/3;     unseen i4 = 1/4
#   b=0.4999: seen none = 0;     unseen i4, i3 = 2/4
#   end 1e3:  seen 0;            unseen 3/4
# AUC = 1/4*(2/3+1/3)/2 + 1/4*(1/3+0)/2 + 1/4*(0+0)/2 = 1/8 + 1/24 = 1/6.
# HM: 0, 2*(1/3)(1/4)/(1/3+1/4) = 2/7, 0, 0 -> best 2/7 at b=0.2999 (seen 1/3, unseen 1/4).
# Top-1 at 1e3 (argmax over pairs 2, 3): i0->2, i1->3, i2->2, i3->2, i4->3, i5->3, i6->3.
#   attr right: i0 (a0=a0), i1 (a1=a1), i2, i3, i4, i6; i5 wrong -> 6/7
#   obj right: i3, i4, i6 only -> 3/7
HAND_SCORES = np.array([
    [0.9, 0.1, 0.5, 0.2],
    [0.2, 0.6, 0.1, 0.4],
    [0.3, 0.8, 0.05, 0.0],
    [0.7, 0.2, 0.4, 0.1],
    [0.1, 0.3, 0.0, 0.2],
    [0.5, 0.0, 0.1, 0.6],
    [0.2, 0.9, 0.3, 0.4],
])
HAND_TRUE = np.array([0, 1, 0, 2, 3, 2, 3])


def _hand(**kw):
  return closed_world_metrics(HAND_SCORES, HAND_TRUE, ATTR, OBJ, SEEN, CLOSED, **kw)


def test_hand_worked_curve():
  m = _hand()
  np.testing.assert_allclose(m["biases"], [0.0999, 0.2999, 0.4999], atol=1e-12)
  np.testing.assert_allclose(m["seen_acc_curve"], [2 / 3, 1 / 3, 0, 0])
  np.testing.assert_allclose(m["unseen_acc_curve"], [0, 1 / 4, 1 / 2, 3 / 4])
  assert m["AUC"] == pytest.approx(1 / 6)
  assert m["best_hm"] == pytest.approx(2 / 7)
  assert m["hm_seen"] == pytest.approx(1 / 3) and m["hm_unseen"] == pytest.approx(1 / 4)
  assert m["bias_at_best_hm"] == pytest.approx(0.2999)
  assert m["best_seen"] == pytest.approx(2 / 3) and m["best_unseen"] == pytest.approx(3 / 4)
  assert m["attr_acc"] == pytest.approx(6 / 7) and m["obj_acc"] == pytest.approx(3 / 7)


def test_hand_worked_bins_subsample_biases():
  # 3 gaps, bins=1 -> skip 3 -> only the smallest bias; curve (2/3, 0) then (0, 3/4).
  m = _hand(bins=1)
  np.testing.assert_allclose(m["biases"], [0.0999], atol=1e-12)
  assert m["AUC"] == pytest.approx(3 / 4 * (2 / 3) / 2)
  assert m["best_hm"] == 0.0 and m["bias_at_best_hm"] == pytest.approx(0.0999)


def test_bias_semantics_and_closed_mask():
  rng = np.random.default_rng(0)
  P = 10
  seen = np.arange(P) < 5
  closed = np.ones(P, bool)
  closed[[3, 8]] = False  # one seen, one unseen pair left out
  scores = rng.normal(size=(50, P))
  scores[:, [3, 8]] = 1e6  # would win everything if they were allowed
  for bias in (-1e3, -1.0, 0.0, 1.0, 1e3):
    pred = predict(scores, seen, closed, bias, topk=3)
    assert pred.shape == (50, 3)
    assert closed[pred].all(), bias
  assert seen[predict(scores, seen, closed, -1e3, topk=3)].all()  # unseen images never right
  assert (~seen[predict(scores, seen, closed, 1e3, topk=3)]).all()  # seen images never right
  true = rng.choice(np.flatnonzero(closed), size=50)
  m = closed_world_metrics(scores, true, np.arange(P), np.arange(P), seen, closed)
  assert m["seen_acc_curve"][-1] == 0.0
  # End point: an unseen image is right iff its pair has the best score of the allowed unseen pairs.
  allowed_unseen = closed & ~seen
  best_unseen = np.where(allowed_unseen, scores, -np.inf).argmax(1)
  img_unseen = ~seen[true]
  assert m["unseen_acc_curve"][-1] == (best_unseen == true)[img_unseen].mean()


def test_topk2_counts_second_place():
  # Seen image true 0: [0.5, 0.9, 0.1, 0.0]; unseen image true 3: [0.1, 0.2, 0.9, 0.5].
  scores = np.array([[0.5, 0.9, 0.1, 0.0], [0.1, 0.2, 0.9, 0.5]])
  true = np.array([0, 3])
  np.testing.assert_array_equal(predict(scores, SEEN, CLOSED, 0.0, topk=2), [[1, 0], [2, 3]])
  # topk=1: the unseen image loses to pair 2 even at 1e3 -> no bias, curve = end point (0, 0).
  m1 = closed_world_metrics(scores, true, ATTR, OBJ, SEEN, CLOSED, topk=1)
  assert m1["biases"] == [] and m1["seen_acc_curve"] == [0.0] and m1["unseen_acc_curve"] == [0.0]
  assert m1["AUC"] == 0.0 and m1["best_hm"] == 0.0 and m1["bias_at_best_hm"] == 1e3
  # topk=2: at 1e3 the unseen image's top-2 is [2, 3] -> hit. Gap = 2nd best seen score (0.1)
  # - 0.5 = -0.4 -> bias -0.4001: unseen scores 0.4999, 0.0999 -> order 2, 1, 0, 3: unseen miss;
  # seen image top-2 [1, 0] -> hit. Curve (1, 0) -> (0, 1): AUC 1/2, HM 0.
  m2 = closed_world_metrics(scores, true, ATTR, OBJ, SEEN, CLOSED, topk=2)
  np.testing.assert_allclose(m2["biases"], [-0.4001], atol=1e-12)
  assert m2["seen_acc_curve"] == [1.0, 0.0] and m2["unseen_acc_curve"] == [0.0, 1.0]
  assert m2["AUC"] == pytest.approx(0.5)
  # attr/obj accuracy stay top-1 at 1e3: both images predict pair 2 = (a0, o1); true (a0, o0)
  # shares the attribute, true (a1, o0) shares nothing -> attr 1/2, obj 0.
  assert m2["attr_acc"] == 0.5 and m2["obj_acc"] == 0.0


def test_attr_obj_accuracy_right_object_wrong_attribute():
  # Pairs 0=(a0,o0) seen, 1=(a1,o1) seen, 2=(a1,o0) unseen, 3=(a0,o1) unseen.
  attr, obj = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 1])
  scores = np.array([[0.9, 0.0, 0.5, 0.1],   # true 0 -> predicts 2 at 1e3: object right, attr wrong
                     [0.0, 0.1, 0.8, 0.2]])  # true 2 -> predicts 2: both right
  m = closed_world_metrics(scores, np.array([0, 2]), attr, obj, SEEN, CLOSED)
  assert m["attr_acc"] == 0.5
  assert m["obj_acc"] == 1.0


@pytest.mark.parametrize("topk", [1, 2])
def test_curve_monotone_on_random_scores(topk):
  rng = np.random.default_rng(1234)
  N, P = 400, 40
  seen = rng.random(P) < 0.5
  closed = seen | (rng.random(P) < 0.7)
  true = rng.choice(np.flatnonzero(closed), size=N)
  scores = rng.normal(size=(N, P)) + 1.5 * np.eye(P)[true]  # informative but imperfect
  m = closed_world_metrics(scores, true, rng.integers(0, 5, P), rng.integers(0, 7, P), seen, closed,
                           topk=topk)
  s, u, b = map(np.array, (m["seen_acc_curve"], m["unseen_acc_curve"], m["biases"]))
  assert len(s) == len(u) == len(b) + 1 and len(b) > 10
  assert (np.diff(b) >= 0).all()
  assert (np.diff(s) <= 0).all() and (np.diff(u) >= 0).all()
  assert 0 < m["AUC"] <= 1 and m["best_hm"] > 0
  # Each listed bias leaves one more correct unseen image just wrong: the points match predict().
  img_seen = seen[true]
  for bias, sa, ua in zip(b[:3], s, u):
    hit = (predict(scores, seen, closed, bias, topk) == true[:, None]).any(1)
    assert (sa, ua) == (hit[img_seen].mean(), hit[~img_seen].mean())
  # skip = n_correct // 20, so the list holds ceil(n_correct / skip) biases.
  hit_max = (predict(scores, seen, closed, 1e3, topk) == true[:, None]).any(1)
  n_correct = int(hit_max[~img_seen].sum())
  assert len(b) == -(-n_correct // max(n_correct // 20, 1))


def _call(scores=HAND_SCORES, true=HAND_TRUE, attr=ATTR, obj=OBJ, seen=SEEN, closed=CLOSED, **kw):
  return closed_world_metrics(scores, true, attr, obj, seen, closed, **kw)


@pytest.mark.parametrize("kwargs, match", [
    (dict(scores=HAND_SCORES[0]), "scores_NxP must be 2-D"),
    (dict(scores=np.where(HAND_SCORES > 0.8, np.nan, HAND_SCORES)), "scores_NxP must be finite"),
    (dict(seen=SEEN[:3]), "seen_mask_P must be a bool array of shape \\(4,\\)"),
    (dict(closed=CLOSED.astype(int)), "closed_mask_P must be a bool array"),
    (dict(true=HAND_TRUE[:5]), "true_pair_N must be integers of shape \\(7,\\)"),
    (dict(true=np.array([0, 1, 0, 2, 3, 2, 4])), "true_pair_N must lie in \\[0, 4\\)"),
    (dict(true=np.array([0, 1, 0, 2, 3, 2, -1])), "true_pair_N must lie in"),
    (dict(closed=np.array([True, True, True, False])), "outside closed_mask_P"),
    (dict(attr=ATTR[:3]), "pair_attr_P must have shape"),
    (dict(true=np.array([0, 1, 0, 1, 1, 0, 1])), "no unseen images.*zero-shot curve"),
    (dict(true=np.array([2, 3, 2, 2, 3, 2, 3])), "no seen images"),
    (dict(topk=0), "topk must be in"),
    (dict(topk=3), "topk must be in \\[1, number of seen closed pairs = 2\\]"),
    (dict(bins=0), "bins must be >= 1"),
])
def test_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    _call(**kwargs)


def test_pairs_bookkeeping():
  train = [("red", "car"), ("old", "house"), ("old", "car")]
  val = [("red", "house"), ("old", "car")]
  test = [("red", "house"), ("red", "car"), ("new", "car")]
  with pytest.raises(ValueError, match="test pair \\('new', 'car'\\): attribute 'new' never appears"):
    Pairs.from_splits(train, val, test)
  p = Pairs.from_splits(train, val, test[:2] + [("old", "bike")], require_seen_primitives=False)
  assert p.attrs == ["old", "red"] and p.objs == ["bike", "car", "house"]
  assert p.pairs == [("old", "bike"), ("old", "car"), ("old", "house"), ("red", "car"),
                     ("red", "house")]
  np.testing.assert_array_equal(p.pair_attr, [0, 0, 0, 1, 1])
  np.testing.assert_array_equal(p.pair_obj, [0, 1, 2, 1, 2])
  np.testing.assert_array_equal(p.seen_mask, [False, True, True, True, False])
  np.testing.assert_array_equal(p.closed_mask("val"), [False, True, True, True, True])
  np.testing.assert_array_equal(p.closed_mask("test"), [True, True, True, True, True])
  np.testing.assert_array_equal(p.index([("red", "house"), ("old", "car")]), [4, 1])
  with pytest.raises(ValueError, match="unknown pair"):
    p.index([("red", "bike")])
  with pytest.raises(ValueError, match="split must be one of"):
    p.closed_mask("dev")


def test_constants_match_reference_codebase():
  assert metrics.BIG_BIAS == 1e3 and metrics.GAP_MARGIN == 1e-4

"""Weighted kNN monitor against hand-computed votes and a brute-force numpy reference."""

from __future__ import annotations

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from bf_jax.tasks.moco import knn


def _reference_scores(query_NxC: np.ndarray, bank_MxC: np.ndarray, bank_labels_M: np.ndarray,
                      num_classes: int, k: int, temperature: float) -> np.ndarray:
  """Weighted kNN in float64 by a full sort, one query at a time: no top_k, no chunking."""
  q = query_NxC / np.linalg.norm(query_NxC, axis=1, keepdims=True)
  b = bank_MxC / np.linalg.norm(bank_MxC, axis=1, keepdims=True)
  out = np.zeros((len(q), num_classes))
  for i, row in enumerate(q):
    sims_M = b @ row
    for j in np.argsort(-sims_M)[:min(k, len(b))]:
      out[i, bank_labels_M[j]] += np.exp(sims_M[j] / temperature)
  return out


def _clusters(rng: np.random.Generator, num_classes: int, per_class: int, dim: int = 16):
  """Class c sits around 10 * e_c: angularly far apart, so cosine kNN must get every query right."""
  labels = np.repeat(np.arange(num_classes), per_class)
  feats = 10.0 * np.eye(dim)[labels] + rng.normal(size=(len(labels), dim))
  return feats.astype(np.float32), labels.astype(np.int32)


# A tiny 2-d bank on the unit circle (scaled by arbitrary norms): the query at angle 0 is nearest to
# a lone label-1 row, but the next two neighbours are label 0.
ANGLES = np.array([0.1, 0.3, 0.35, 2.0, 3.0])
NORMS = np.array([1.0, 3.0, 0.5, 2.0, 7.0])
TINY_LABELS = np.array([1, 0, 0, 1, 2])
TINY_BANK = (NORMS[:, None] * np.stack([np.cos(ANGLES), np.sin(ANGLES)], 1)).astype(np.float32)
TINY_QUERY = np.array([[2.5, 0.0]], np.float32)


@pytest.mark.parametrize("temperature,winner", [(0.1, 0), (0.02, 1)])
def test_tiny_bank_vote_by_hand(temperature, winner):
  # cos(angle to the query) is cos(angle); the 3 nearest are rows 0, 1, 2 (angles 0.1, 0.3, 0.35).
  want = np.zeros(3)
  want[1] = np.exp(np.cos(0.1) / temperature)
  want[0] = np.exp(np.cos(0.3) / temperature) + np.exp(np.cos(0.35) / temperature)
  assert np.argmax(want) == winner  # the test itself: T decides majority vs nearest neighbour
  got = knn.knn_predict(TINY_QUERY, TINY_BANK, TINY_LABELS, num_classes=3, k=3,
                        temperature=temperature)
  chex.assert_shape(got, (1, 3))
  np.testing.assert_allclose(np.asarray(got)[0], want, rtol=2e-5)
  assert int(jnp.argmax(got[0])) == winner
  nearest_only = knn.knn_predict(TINY_QUERY, TINY_BANK, TINY_LABELS, 3, k=1,
                                 temperature=temperature)
  np.testing.assert_allclose(np.asarray(nearest_only)[0],
                             [0.0, np.exp(np.cos(0.1) / temperature), 0.0], rtol=2e-5)


def test_matches_bruteforce_reference_on_random_data():
  rng = np.random.default_rng(0)
  query, bank = rng.normal(size=(37, 8)), rng.normal(size=(50, 8))
  labels = rng.integers(0, 5, size=50)
  got = knn.knn_predict(query.astype(np.float32), bank.astype(np.float32), labels, 5, k=7,
                        temperature=0.2, chunk=16)
  np.testing.assert_allclose(np.asarray(got), _reference_scores(query, bank, labels, 5, 7, 0.2),
                             rtol=1e-4)


def test_separated_clusters_are_classified_perfectly():
  rng = np.random.default_rng(1)
  bank, bank_labels = _clusters(rng, num_classes=10, per_class=20)
  query, query_labels = _clusters(rng, num_classes=10, per_class=6)
  for k in (1, 20, 200):  # 200 == M: every bank row votes, the exp weight still decides
    assert knn.knn_accuracy(query, query_labels, bank, bank_labels, 10, k=k) == 1.0
  # The labels matter: shifted query labels are all wrong.
  assert knn.knn_accuracy(query, (query_labels + 1) % 10, bank, bank_labels, 10, k=20) == 0.0


def test_accuracy_counts_mistakes():
  # Two of four queries carry the wrong label: accuracy is exactly one half.
  rng = np.random.default_rng(2)
  bank, bank_labels = _clusters(rng, num_classes=4, per_class=5)
  query, query_labels = _clusters(rng, num_classes=4, per_class=1)
  query_labels[:2] = query_labels[[1, 0]]
  acc = knn.knn_accuracy(query, query_labels, bank, bank_labels, 4, k=5)
  assert isinstance(acc, float) and acc == 0.5


def test_k_larger_than_bank_is_clamped():
  got = knn.knn_predict(TINY_QUERY, TINY_BANK, TINY_LABELS, 3, k=50, temperature=0.5)
  want = _reference_scores(TINY_QUERY, TINY_BANK, TINY_LABELS, 3, k=5, temperature=0.5)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
  assert np.all(np.asarray(got) > 0)  # all five rows voted, so every class got weight


def test_chunking_matches_one_big_chunk_and_compiles_once():
  rng = np.random.default_rng(3)
  query = rng.normal(size=(37, 5)).astype(np.float32)  # 37 = 4 * 8 + 5: the last chunk is padded
  bank, labels = rng.normal(size=(11, 5)).astype(np.float32), rng.integers(0, 3, size=11)
  one = knn.knn_predict(query, bank, labels, 3, k=4, chunk=1024)
  if hasattr(knn._chunk_scores, "_cache_size"):
    before = knn._chunk_scores._cache_size()
    chunked = knn.knn_predict(query, bank, labels, 3, k=4, chunk=8)
    assert knn._chunk_scores._cache_size() == before + 1, "padded last chunk should not recompile"
  else:
    chunked = knn.knn_predict(query, bank, labels, 3, k=4, chunk=8)
  chex.assert_shape(chunked, (37, 3))
  np.testing.assert_allclose(np.asarray(chunked), np.asarray(one), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(chunked), _reference_scores(query, bank, labels, 3, 4, 0.1),
                             rtol=1e-4)


def test_scaling_inputs_does_not_change_scores():
  rng = np.random.default_rng(4)
  query, bank = rng.normal(size=(9, 6)), rng.normal(size=(20, 6))
  labels = rng.integers(0, 4, size=20)
  base = knn.knn_predict(query.astype(np.float32), bank.astype(np.float32), labels, 4, k=6)
  q_scale, b_scale = rng.uniform(0.01, 100.0, size=(9, 1)), rng.uniform(0.01, 100.0, size=(20, 1))
  scaled = knn.knn_predict((query * q_scale).astype(np.float32),
                           (bank * b_scale).astype(np.float32), labels, 4, k=6)
  np.testing.assert_allclose(np.asarray(scaled), np.asarray(base), rtol=1e-4)


def test_bf16_features_are_scored_in_float32():
  got = knn.knn_predict(jnp.asarray(TINY_QUERY, jnp.bfloat16), jnp.asarray(TINY_BANK, jnp.bfloat16),
                        TINY_LABELS, 3, k=3)
  assert got.dtype == jnp.float32
  assert int(jnp.argmax(got[0])) == 0


_Q, _B, _L = np.ones((4, 8), np.float32), np.ones((6, 8), np.float32), np.zeros(6, np.int32)


@pytest.mark.parametrize("kwargs,match", [
    (dict(query=np.ones((4, 16), np.float32)), r"query feature dim 16 != bank feature dim 8"),
    (dict(labels=np.zeros(5, np.int32)), r"bank_labels has shape \(5,\) but the bank has 6 rows"),
    (dict(labels=np.array([0, 1, 2, -1, 0, 0])), r"bank label -1 lies outside \[0, num_classes=3"),
    (dict(labels=np.array([0, 1, 3, 0, 0, 0])), r"bank label 3 lies outside \[0, num_classes=3\)"),
    (dict(labels=np.zeros(6, np.float32)), r"bank_labels has dtype float32"),
    (dict(k=0), r"k=0 must be an int >= 1"),
    (dict(temperature=0.0), r"temperature=0\.0 must be > 0"),
    (dict(temperature=-0.5), r"temperature=-0\.5 must be > 0"),
    (dict(num_classes=0), r"num_classes=0 must be an int >= 1"),
    (dict(chunk=0), r"chunk=0 must be an int >= 1"),
    (dict(query=np.ones(8, np.float32)), r"query has shape \(8,\) .* must be 2-D"),
    (dict(bank=np.ones((0, 8), np.float32), labels=np.zeros(0, np.int32)), r"bank has 0 rows"),
])
def test_bad_input_raises_naming_the_value(kwargs, match):
  args = dict(query=_Q, bank=_B, labels=_L, num_classes=3, k=3, temperature=0.1, chunk=4)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    knn.knn_predict(args["query"], args["bank"], args["labels"], args["num_classes"], k=args["k"],
                    temperature=args["temperature"], chunk=args["chunk"])


def test_accuracy_rejects_mismatched_query_labels():
  with pytest.raises(ValueError, match=r"query_labels has shape \(3,\) but there are 4 queries"):
    knn.knn_accuracy(_Q, np.zeros(3, np.int32), _B, _L, 3)
  with pytest.raises(ValueError, match=r"accuracy of 0 queries"):
    knn.knn_accuracy(np.ones((0, 8), np.float32), np.zeros(0, np.int32), _B, _L, 3)

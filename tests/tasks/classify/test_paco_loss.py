"""PaCo's loss against hand computations, and the queue's order and wrap-around."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from bf_jax.tasks.classify.paco import queue
from bf_jax.tasks.classify.paco.loss import paco_rows, unit

W = dict(alpha=0.5, beta=1.0, gamma=1.0, temperature=0.5, base_temperature=0.5, supt=1.0)


def _rows(q, centers, labels, contrast, contrast_labels, self_col, prior, **kw):
  return np.asarray(paco_rows(jnp.asarray(q, jnp.float32), jnp.asarray(centers, jnp.float32),
                              jnp.asarray(labels), jnp.asarray(contrast, jnp.float32),
                              jnp.asarray(contrast_labels), jnp.asarray(self_col),
                              jnp.log(jnp.asarray(prior, jnp.float32)), **{**W, **kw}))


def test_one_anchor_by_hand():
  """Anchor q = e0 (label 0) against [itself, a same-class key e0, an other-class key e1].

  Centers: logits 0 plus log prior (0.75, 0.25); sims / T = (self left out), 2, 0.
  Denominator 0.75 + 0.25 + gamma (e^2 + e^0); positives: center 0 (beta) and key 1 (alpha).
  """
  q, contrast = [[1.0, 0.0]], [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
  for gamma in (1.0, 0.5):
    d = 1.0 + gamma * (math.e ** 2 + 1.0)
    want = -(1.0 * (math.log(0.75) - math.log(d)) + 0.5 * (2.0 - math.log(d))) / 1.5
    got = _rows(q, [[0.0, 0.0]], [0], contrast, [0, 0, 1], [0], [0.75, 0.25], gamma=gamma)
    np.testing.assert_allclose(got, [want], rtol=1e-6)


def test_weights_temperatures_and_supt_by_hand():
  """beta 2, alpha 0.25, supt 2, T 0.25 with base T 0.5 (the T / T_base factor is 0.5)."""
  q, contrast = [[0.6, 0.8]], [[0.0, 1.0], [1.0, 0.0]]
  got = _rows(q, [[1.0, 3.0]], [1], contrast, [1, 0], [-1], [0.5, 0.5], alpha=0.25, beta=2.0,
              supt=2.0, temperature=0.25)
  a = [(1.0 + math.log(0.5)) / 2, (3.0 + math.log(0.5)) / 2]  # centers
  s = [0.8 / 0.25, 0.6 / 0.25]  # nothing is the anchor itself: both contrast columns count
  d = math.exp(a[0]) + math.exp(a[1]) + math.exp(s[0]) + math.exp(s[1])
  want = -0.5 * (2.0 * (a[1] - math.log(d)) + 0.25 * (s[0] - math.log(d))) / 2.25
  np.testing.assert_allclose(got, [want], rtol=1e-6)


def _reference(q, centers, labels, contrast, contrast_labels, self_col, log_prior, w):
  """PaCo's formula, one anchor and one column at a time."""
  out = []
  for i in range(len(q)):
    a = [(centers[i][j] + log_prior[j]) / w["supt"] for j in range(len(log_prior))]
    cols = [n for n in range(len(contrast)) if n != self_col[i]]
    s = {n: float(np.dot(q[i], contrast[n])) / w["temperature"] for n in cols}
    d = sum(math.exp(x) for x in a) + w["gamma"] * sum(math.exp(x) for x in s.values())
    pos = [n for n in cols if contrast_labels[n] == labels[i]]
    num = w["beta"] * (a[labels[i]] - math.log(d)) + w["alpha"] * sum(s[n] - math.log(d)
                                                                        for n in pos)
    scale = w["temperature"] / w["base_temperature"]
    out.append(-scale * num / (w["beta"] + w["alpha"] * len(pos)))
  return np.array(out)


def test_random_case_matches_the_formula_column_by_column():
  rng = np.random.default_rng(0)
  q = np.asarray(unit(jnp.asarray(rng.standard_normal((5, 4)))))
  contrast = np.array(unit(jnp.asarray(rng.standard_normal((9, 4)))))
  contrast[:5] = q  # the batch's queries come first in the contrast set, as in the step
  labels, contrast_labels = rng.integers(0, 3, 5), rng.integers(0, 3, 9)
  contrast_labels[:5] = labels
  centers, prior = rng.standard_normal((5, 3)), np.array([0.6, 0.3, 0.1])
  w = {**W, "alpha": 0.05, "gamma": 0.7, "supt": 1.5}
  got = _rows(q, centers, labels, contrast, contrast_labels, np.arange(5), prior, **w)
  want = _reference(q, centers, labels, contrast, contrast_labels, np.arange(5), np.log(prior), w)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_an_empty_contrast_set_leaves_the_balanced_softmax():
  centers, prior = np.array([[0.3, -1.0, 2.0]]), np.array([0.7, 0.2, 0.1])
  got = _rows(np.zeros((1, 0)), centers, [2], np.zeros((0, 0)), np.zeros((0,), np.int32), [-1],
              prior)
  z = centers[0] + np.log(prior)
  np.testing.assert_allclose(got, [-(z[2] - np.log(np.exp(z).sum()))], rtol=1e-6)


def test_enqueue_writes_in_order_and_wraps_around():
  state = {k: jnp.asarray(v) for k, v in queue.init(5, 2, 3, seed=0).items()}
  np.testing.assert_allclose(np.linalg.norm(state["keys"], axis=1), 1.0, rtol=1e-6)
  first = jnp.arange(6.0).reshape(3, 2)
  state = queue.enqueue(state, first, jnp.asarray([0, 1, 2]))
  assert int(state["ptr"]) == 3
  np.testing.assert_array_equal(state["keys"][:3], first)
  second = 10 + jnp.arange(6.0).reshape(3, 2)
  before = np.asarray(state["keys"])
  state = queue.enqueue(state, second, jnp.asarray([2, 2, 1]))
  assert int(state["ptr"]) == 1  # rows 3, 4, then 0: the oldest key goes first
  np.testing.assert_array_equal(state["keys"][3:], second[:2])
  np.testing.assert_array_equal(state["keys"][0], second[2])
  np.testing.assert_array_equal(state["keys"][1:3], before[1:3])
  np.testing.assert_array_equal(state["labels"], [1, 1, 2, 2, 2])


@pytest.mark.parametrize("seed", [0, 1])
def test_queue_init_is_seeded(seed):
  a, b = queue.init(8, 4, 10, seed), queue.init(8, 4, 10, seed)
  np.testing.assert_array_equal(a["keys"], b["keys"])
  assert a["labels"].min() >= 0 and a["labels"].max() < 10

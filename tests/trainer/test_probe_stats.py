"""The probe's tables on cases computed by hand: attention forced by construction, gradients of
a known row mixing, and the layer's scope cutting gradients between groups."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bf_jax.layer import BatchFormer, attention_maps
from bf_jax.layer.attention_maps import on_whole_batch
from bf_jax.trainer import probe_stats as probe

# One-hot features whose forced attention is 3/8 (same one-hot) and 1/8 (other) globally, 3/4
# and 1/4 within groups of 2 (tests/layer/test_attention_maps.py works it out).
X_BxC = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
LABELS_B = np.array([0, 1, 0, 1])  # the one-hot is the class
GROUP_B = np.array([0, 0, 2, 2])  # rows 0, 1 many-shot; 2, 3 few-shot; no medium


def _forced(group_size=None):
  bf = BatchFormer(2, num_heads=1, group_size=group_size, rngs=nnx.Rngs(0))
  s = math.sqrt(math.log(3.0) * math.sqrt(2.0))
  kernel = np.zeros((2, 6), np.float32)
  kernel[:, :2] = kernel[:, 2:4] = s * np.eye(2)
  kernel[:, 4:] = np.eye(2)
  bf.layers[0].in_proj.kernel[...] = jnp.asarray(kernel)
  return bf


def test_attention_tables_of_the_forced_case():
  tables = probe.attention_tables(attention_maps(_forced(), X_BxC)[0], LABELS_B, GROUP_B)
  # A many query: 3/8 + 1/8 on the two many keys, the same on the two few keys.
  assert tables["group_to_group"][0] == pytest.approx([0.5, 0.0, 0.5])
  assert tables["group_to_group"][1] is None
  assert tables["group_to_group"][2] == pytest.approx([0.5, 0.0, 0.5])
  # Self 3/8, the other sample of its class 3/8, the two of the other class 1/8 each.
  assert (tables["self"], tables["same_class"], tables["other_class"]) == pytest.approx(
      (3 / 8, 3 / 8, 2 / 8))
  grouped = probe.attention_tables(attention_maps(_forced(2), X_BxC)[0], LABELS_B, GROUP_B)
  assert grouped["group_to_group"][0] == pytest.approx([1.0, 0.0, 0.0])
  assert grouped["group_to_group"][2] == pytest.approx([0.0, 0.0, 1.0])
  # In groups of 2 a sample sees itself (3/4) and one sample of the other class (1/4).
  assert (grouped["self"], grouped["same_class"], grouped["other_class"]) == pytest.approx(
      (0.75, 0.0, 0.25))


def test_uniform_attention_is_the_chance_level():
  visible = probe.visible_keys(4, 2)
  np.testing.assert_array_equal(visible[0], [True, True, False, False])
  tables = probe.attention_tables(probe.uniform_attention(visible), LABELS_B, GROUP_B)
  assert tables["group_to_group"][0] == pytest.approx([1.0, 0.0, 0.0])
  assert tables["self"] == pytest.approx(0.5) and tables["same_class"] == pytest.approx(0.0)
  glob = probe.attention_tables(probe.uniform_attention(probe.visible_keys(4, None)), LABELS_B,
                                GROUP_B)
  assert (glob["self"], glob["same_class"]) == pytest.approx((0.25, 0.25))


def test_gradient_share_of_a_known_mixing():
  """loss_i = sum_c (M f)_ic: d loss_g / d f_j = sum_{i in g} M_ij (every c), so the share of
  group h is sum_{j in h} |sum_{i in g} M_ij| over the row's total."""
  m_BxB = jnp.array([[2.0, 1.0, 1.0, 0.0], [0.0, 3.0, 1.0, 0.0], [1.0, 1.0, 2.0, 0.0],
                     [1.0, -3.0, 0.0, 4.0]])
  feats = jax.random.normal(jax.random.key(0), (4, 5))
  share = probe.gradient_share(lambda f: (m_BxB @ f).sum(-1), feats, jnp.array([0, 1, 2, 2]))
  # Group 2 = rows 2, 3: column sums 2, -2, 2, 4 -> |.| 2, 2, 2, 4 over groups {0}, {1}, {2, 3}.
  want = [[0.5, 0.25, 0.25], [0.0, 0.75, 0.25], [0.2, 0.2, 0.6]]
  np.testing.assert_allclose(share, want, rtol=1e-6)
  absent = probe.gradient_share(lambda f: (m_BxB @ f).sum(-1), feats, jnp.array([0, 0, 2, 2]))
  assert np.isnan(absent[1]).all() and np.allclose(absent[0].sum(), 1.0)


def test_group_scope_cuts_the_gradient_between_groups():
  bf = BatchFormer(8, num_heads=2, group_size=2, rngs=nnx.Rngs(1))
  feats = jax.random.normal(jax.random.key(1), (4, 8))
  rows_loss = lambda f: jnp.sum(on_whole_batch(bf, f) ** 2, -1)
  share = np.asarray(probe.gradient_share(rows_loss, feats, jnp.array([0, 0, 2, 2])))
  np.testing.assert_allclose(share[[0, 2]][:, [0, 2]], np.eye(2), atol=1e-7)
  bf.group_size = None  # global scope: the few rows' loss reaches the many rows' features
  share = np.asarray(probe.gradient_share(rows_loss, feats, jnp.array([0, 0, 2, 2])))
  assert share[2, 0] > 0.01 and share[0, 2] > 0.01


def test_records_average_write_and_print(tmp_path):
  maps = attention_maps(_forced(), X_BxC)
  share = np.array([[0.8, np.nan, 0.2], [np.nan] * 3, [0.1, np.nan, 0.9]])
  rec = probe.summarize(maps, share, LABELS_B, GROUP_B, probe.visible_keys(4, None))
  assert rec["batch_fraction"] == [0.5, 0.0, 0.5]
  assert rec["gradient_share"][1] == [None, None, None]
  rec2 = probe.summarize(maps, share * 0 + np.array([[0.6, np.nan, 0.4], [np.nan] * 3,
                                                    [0.3, np.nan, 0.7]]),
                         LABELS_B, GROUP_B, probe.visible_keys(4, None))
  mean = probe.mean_records([rec, rec2])
  assert mean["probe_batches"] == 2
  assert mean["gradient_share"][0] == pytest.approx([0.7, None, 0.3])
  scalars = probe.scalars(mean)
  assert scalars["grad/few_to_many"] == pytest.approx(0.2)
  assert scalars["attn/few_to_many"] == pytest.approx(0.5)
  assert "attn/medium_to_many" not in scalars
  probe.write(tmp_path, 10, mean)
  probe.write(tmp_path, 20, mean)
  assert list(json.loads((tmp_path / probe.FILE).read_text())) == ["10", "20"]
  text = probe.markdown(mean)
  assert "| few | 0.500 | 0.500 |" in text and "medium" not in text.split("\n")[0]

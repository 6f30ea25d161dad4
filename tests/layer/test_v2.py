"""BatchFormerV2 insertion (bf_jax/layer/v2.py): first point doubles, later points touch the second half
only, eval is the plain network, shared vs separate layers, per-position semantics vs PyTorch."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bf_jax import BatchFormer, load_torch_state_dict
from bf_jax.layer import v2

GOLDEN = np.load(pathlib.Path(__file__).parents[1] / "golden" / "torch_encoder_layer.npz")


class Block(nnx.Module):
  """A toy token block: a per-token linear map and a ReLU."""

  def __init__(self, dim: int, rngs: nnx.Rngs):
    self.linear = nnx.Linear(dim, dim, rngs=rngs)

  def __call__(self, x):
    return jax.nn.relu(self.linear(x)) + x


def _stack(dim=16, depth=4, insert_after=(1, 3), shared=False, dropout=0.0):
  rngs = nnx.Rngs(0)
  blocks = [Block(dim, rngs) for _ in range(depth)]
  bfs = v2.make_batchformers(dim, insert_after, shared=shared, dropout=dropout, rngs=rngs)
  return blocks, bfs


def _x(b=6, l=5, c=16, seed=1):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(b, l, c)), jnp.float32)


def test_first_point_doubles_and_later_points_leave_the_first_half_alone():
  blocks, bfs = _stack()
  x = _x()
  out = v2.run_blocks(blocks, x, v2.by_index(bfs), train=True)
  assert out.shape == (12, 5, 16)
  # The original stream never meets a BatchFormer: it is the plain network's output.
  plain = v2.run_blocks(blocks, x, {}, train=True)
  np.testing.assert_allclose(out[:6], plain, rtol=1e-6, atol=1e-6)
  # The second half: BF after block 1 (the first point), blocks 2-3, BF after block 3.
  h = blocks[1](blocks[0](x))
  h = bfs["1"](h, deterministic=True)
  h = blocks[3](blocks[2](h))
  np.testing.assert_allclose(out[6:], bfs["3"](h, deterministic=True), rtol=1e-5, atol=1e-5)


def test_eval_is_the_network_without_batchformer():
  blocks, bfs = _stack()
  x = _x()
  h = x
  for block in blocks:
    h = block(h)
  np.testing.assert_array_equal(v2.run_blocks(blocks, x, v2.by_index(bfs), train=False), h)


def test_later_point_splits_halves_and_rejects_odd_rows():
  _, bfs = _stack()
  x = _x(b=6)
  out = v2.insert(x, bfs["3"], first=False, deterministic=True)
  np.testing.assert_array_equal(out[:3], x[:3])
  np.testing.assert_allclose(out[3:], bfs["3"](x[3:], deterministic=True), rtol=1e-6)
  with pytest.raises(ValueError, match="even rows"):
    v2.insert(_x(b=5), bfs["3"], first=False, deterministic=True)


def test_shared_layers_are_one_set_of_weights():
  count = lambda m: sum(p.size for p in jax.tree.leaves(nnx.state(m, nnx.Param)))
  _, shared = _stack(insert_after=(0, 1, 2, 3), shared=True)
  _, separate = _stack(insert_after=(0, 1, 2, 3), shared=False)
  one = 6 * 16 * 16 + 10 * 16  # the paper's 6C^2 + 10C
  assert count(shared) == one and count(separate) == 4 * one
  assert shared["0"] is shared["3"]


def test_bad_insertion_points_are_named():
  blocks, _ = _stack()
  with pytest.raises(ValueError, match=r"\[7\]"):
    v2.run_blocks(blocks, _x(), {7: None}, train=True)
  with pytest.raises(ValueError, match="repeats"):
    v2.make_batchformers(16, (1, 1), shared=True, rngs=nnx.Rngs(0))


def test_duplicate_targets():
  y = {"label": jnp.arange(3), "soft": jnp.eye(3)}
  out = v2.duplicate(y)
  np.testing.assert_array_equal(out["label"], [0, 1, 2, 0, 1, 2])
  assert out["soft"].shape == (6, 3)


def test_dropout_differs_between_insertion_points_and_is_seeded():
  blocks, bfs = _stack(insert_after=(0, 1), shared=True, dropout=0.5)
  x = _x()
  key = jax.random.key(0)
  a = v2.run_blocks(blocks, x, v2.by_index(bfs), train=True, key=key)
  b = v2.run_blocks(blocks, x, v2.by_index(bfs), train=True, key=key)
  c = v2.run_blocks(blocks, x, v2.by_index(bfs), train=True, key=jax.random.key(1))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a[6:], c[6:])


def test_each_position_attends_across_the_batch_as_pytorch():
  """The first point's BatchFormer stream on [B, L, C] tokens equals PyTorch's
  TransformerEncoderLayer fed the batch as the sequence, per token position (golden data)."""
  dim = 64
  bf = BatchFormer(dim, num_heads=4, dropout=0.5, rngs=nnx.Rngs(1))
  sd = {k.split("/param/")[1]: GOLDEN[k] for k in GOLDEN.files if k.startswith("c64/param/")}
  load_torch_state_dict(bf, sd)
  x = jnp.asarray(GOLDEN["c64/v2/x"])
  out = v2.insert(x, bf, first=True, deterministic=True)
  np.testing.assert_array_equal(out[:6], x)
  np.testing.assert_allclose(out[6:], GOLDEN["c64/v2/y"], atol=1e-5, rtol=1e-5)

"""Public API: init, parameter count, two_stream, and clear errors for bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bf_jax import BatchFormer, two_stream


@pytest.mark.parametrize("dim", [48, 64, 256])
def test_parameter_count_is_6c2_plus_10c(dim):
  bf = BatchFormer(dim, rngs=nnx.Rngs(0))
  n = sum(p.size for p in jax.tree.leaves(nnx.state(bf, nnx.Param)))
  assert n == 6 * dim * dim + 10 * dim
  bf3 = BatchFormer(dim, num_layers=3, ffn_dim=2 * dim, rngs=nnx.Rngs(0))
  n3 = sum(p.size for p in jax.tree.leaves(nnx.state(bf3, nnx.Param)))
  f = 2 * dim  # per layer: in_proj 3C^2+3C, out_proj C^2+C, FFN 2CF+F+C, norms 4C
  assert n3 == 3 * (4 * dim * dim + 2 * dim * f + f + 9 * dim)


def test_default_init_follows_pytorch():
  c = 256
  layer = BatchFormer(c, rngs=nnx.Rngs(0)).layers[0]
  xavier = np.sqrt(6.0 / (c + 3 * c))
  linear = 1.0 / np.sqrt(c)
  for arr, bound in [(layer.in_proj.kernel, xavier), (layer.out_proj.kernel, linear),
                     (layer.linear1.kernel, linear), (layer.linear1.bias, linear),
                     (layer.linear2.kernel, linear), (layer.linear2.bias, linear)]:
    a = np.asarray(arr[...])
    assert np.abs(a).max() <= bound
    assert np.abs(a).max() > 0.95 * bound  # uniform over the full range, not a narrower one
    assert abs(a.std() - bound / np.sqrt(3)) < 0.1 * bound  # U(-b, b) has std b/sqrt(3)
  for zero in [layer.in_proj.bias, layer.out_proj.bias, layer.norm1.bias, layer.norm2.bias]:
    np.testing.assert_array_equal(zero[...], 0.0)
  for one in [layer.norm1.scale, layer.norm2.scale]:
    np.testing.assert_array_equal(one[...], 1.0)


def test_params_depend_only_on_dims_and_seed():
  a = nnx.state(BatchFormer(32, rngs=nnx.Rngs(4)), nnx.Param)
  b = nnx.state(BatchFormer(32, axis_name="data", group_size=8, rngs=nnx.Rngs(4)), nnx.Param)
  c = nnx.state(BatchFormer(32, rngs=nnx.Rngs(5)), nnx.Param)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert not np.allclose(a["layers"][0]["linear1"]["kernel"][...],
                         c["layers"][0]["linear1"]["kernel"][...])


def test_samples_attend_to_each_other_and_positions_do_not():
  bf = BatchFormer(16, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (6, 3, 16))
  # d(output of sample 0 at position 0) / d(every input): [C_out, B, L, C_in]
  jac = jax.jacobian(lambda x: bf(x, deterministic=True)[0, 0])(x)
  assert np.abs(jac[:, 1:, 0]).max() > 1e-3  # other samples at the same position matter
  np.testing.assert_array_equal(jac[:, :, 1:], 0.0)  # other positions never do (V2 semantics)


def test_two_stream_modes():
  bf = BatchFormer(8, rngs=nnx.Rngs(0))
  x, y = jax.random.normal(jax.random.key(0), (4, 8)), jnp.arange(4)
  key = jax.random.key(1)
  feats, labels = two_stream(x, y, bf, "shared", rngs=key)
  assert feats.shape == (8, 8)
  np.testing.assert_array_equal(feats[:4], x)  # stream 1: the original features, untouched
  np.testing.assert_array_equal(feats[4:], bf(x, deterministic=False, rngs=key))
  np.testing.assert_array_equal(labels, [0, 1, 2, 3, 0, 1, 2, 3])
  feats, labels = two_stream(x, y, bf, "bf_only", rngs=key)
  np.testing.assert_array_equal(feats, bf(x, deterministic=False, rngs=key))
  np.testing.assert_array_equal(labels, y)
  _, pair = two_stream(x, {"attr": y, "obj": y + 10}, bf)  # label pytrees are duplicated too
  np.testing.assert_array_equal(pair["obj"], np.concatenate([y, y]) + 10)


@pytest.mark.parametrize("kwargs,match", [
    (dict(dim=30, num_heads=4), "dim=30 is not divisible by num_heads=4"),
    (dict(dim=0), "dim=0"),
    (dict(dim=8, num_layers=0), "num_layers=0"),
    (dict(dim=8, group_size=0), "group_size=0"),
    (dict(dim=8, dropout=1.5), "dropout=1.5"),
    (dict(dim=8, num_heads=2.0), "num_heads=2.0"),
])
def test_bad_construction_is_a_clear_value_error(kwargs, match):
  with pytest.raises(ValueError, match=match):
    BatchFormer(**kwargs, rngs=nnx.Rngs(0))


def test_bad_calls_are_clear_value_errors():
  bf = BatchFormer(8, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"dim=8\) got features with last dim 6"):
    bf(jnp.ones((4, 6)), deterministic=True)
  with pytest.raises(ValueError, match="rank 4"):
    bf(jnp.ones((4, 2, 2, 8)), deterministic=True)
  with pytest.raises(ValueError, match="rank 1"):
    bf(jnp.ones((8,)), deterministic=True)
  with pytest.raises(ValueError, match="mode='both'"):
    two_stream(jnp.ones((4, 8)), jnp.arange(4), bf, mode="both")
  with pytest.raises(ValueError, match="group_size=3 does not divide the global batch of 4"):
    BatchFormer(8, group_size=3, rngs=nnx.Rngs(0))(jnp.ones((4, 8)), deterministic=True)
  with pytest.raises(ValueError, match="deterministic"):
    bf(jnp.ones((4, 8)))
  with pytest.raises(ValueError, match="dropout randomness"):
    BatchFormer(8, rngs=nnx.Rngs(params=0))(jnp.ones((4, 8)), deterministic=False)


def test_group_size_not_dividing_global_batch_across_devices():
  from jax.sharding import PartitionSpec as P
  mesh = jax.make_mesh((8,), ("data",))
  bf = BatchFormer(8, axis_name="data", group_size=3, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(bf)
  fn = jax.shard_map(lambda s, x: nnx.merge(graphdef, s)(x, deterministic=True), mesh=mesh,
                     in_specs=(P(), P("data")), out_specs=P("data"))
  x = jax.device_put(jnp.ones((16, 8)), jax.NamedSharding(mesh, P("data")))
  with pytest.raises(ValueError, match=r"group_size=3 does not divide the global batch of 16 "
                                       r"\(2 per device x 8 devices\)"):
    jax.jit(fn)(state, x)

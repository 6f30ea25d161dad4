"""attention_maps on a case forced by construction, computed by hand, and against the layer."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bf_jax.layer import BatchFormer, attention_maps


def _forced(group_size=None, num_layers=1):
  """Queries and keys are the features scaled by s, with s^2 / sqrt(C) = ln 3: for one-hot
  features a sample's logit is ln 3 on keys of its own one-hot and 0 on the others."""
  bf = BatchFormer(2, num_heads=1, num_layers=num_layers, group_size=group_size,
                   rngs=nnx.Rngs(0))
  s = math.sqrt(math.log(3.0) * math.sqrt(2.0))
  for layer in bf.layers:
    kernel = np.zeros((2, 6), np.float32)
    kernel[:, :2] = kernel[:, 2:4] = s * np.eye(2)
    kernel[:, 4:] = np.eye(2)
    layer.in_proj.kernel[...] = jnp.asarray(kernel)
  return bf


X_BxC = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])


def test_forced_attention_is_the_hand_computation():
  # Global: each row has 2 same-one-hot keys (e^ln3 = 3) and 2 others (1): 3/8 and 1/8.
  maps = attention_maps(_forced(), X_BxC)
  same = 3.0 / 8.0
  want = np.array([[same, 1 / 8, same, 1 / 8], [1 / 8, same, 1 / 8, same]] * 2)
  np.testing.assert_allclose(maps[0], want, rtol=1e-6)
  # Groups of 2 ({0, 1}, {2, 3}): one same key (3) and one other (1): 3/4 and 1/4, 0 outside.
  maps = attention_maps(_forced(group_size=2), X_BxC)
  want = np.array([[0.75, 0.25, 0, 0], [0.25, 0.75, 0, 0], [0, 0, 0.75, 0.25],
                   [0, 0, 0.25, 0.75]])
  np.testing.assert_allclose(maps[0], want, rtol=1e-6, atol=1e-7)


def test_maps_follow_the_layers_and_positions_average():
  bf = BatchFormer(8, num_heads=2, num_layers=2, rngs=nnx.Rngs(1))
  x = jax.random.normal(jax.random.key(0), (6, 8))
  maps = attention_maps(bf, x)
  assert maps.shape == (2, 6, 6)
  np.testing.assert_allclose(maps.sum(-1), 1.0, rtol=1e-5)
  # Layer 2's map is layer 1's on the first layer's output.
  first = BatchFormer(8, num_heads=2, num_layers=1, rngs=nnx.Rngs(9))
  nnx.update(first.layers[0], nnx.state(bf.layers[1]))
  h = bf.layers[0](x[None, :, None, :], None, None, None)[0][:, 0, :]
  np.testing.assert_allclose(maps[1], attention_maps(first, h)[0], rtol=1e-5)
  # V2 tokens [B, L, C]: the mean over positions of each position's map.
  tokens = jax.random.normal(jax.random.key(1), (6, 3, 8))
  per_pos = [attention_maps(bf, tokens[:, p]) for p in range(3)]
  np.testing.assert_allclose(attention_maps(bf, tokens)[0], np.mean([m[0] for m in per_pos], 0),
                             rtol=1e-5)


def test_a_group_that_does_not_divide_the_batch_is_named():
  with pytest.raises(ValueError, match="group_size=4 does not divide the batch of 6"):
    attention_maps(BatchFormer(8, num_heads=2, group_size=4, rngs=nnx.Rngs(0)),
                   jnp.zeros((6, 8)))


@pytest.mark.parametrize("group_size", [None, 8, 2])
def test_whole_batch_output_is_the_sharded_layer(group_size):
  """on_whole_batch on the gathered batch == the layer inside shard_map on 8 devices (global
  scope, groups straddling devices, groups within a device)."""
  from jax.sharding import PartitionSpec as P

  from bf_jax.layer.attention_maps import on_whole_batch
  mesh = jax.make_mesh((8,), ("data",))
  bf = BatchFormer(8, num_heads=2, axis_name="data", group_size=group_size, rngs=nnx.Rngs(2))
  graphdef, state = nnx.split(bf)
  x = jax.random.normal(jax.random.key(3), (32, 8))

  def local(state, x):
    return nnx.merge(graphdef, state)(x, deterministic=True)

  sharded = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P("data")),
                                  out_specs=P("data")))(
      state, jax.device_put(x, jax.sharding.NamedSharding(mesh, P("data"))))
  np.testing.assert_allclose(on_whole_batch(bf, x), sharded, rtol=1e-5, atol=1e-6)

"""Chunked attention under remat: the same layer, forward and gradients, in bounded memory."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bf_jax import BatchFormer
from bf_jax.layer import attention

C, N_DEV = 16, 8
MESH = jax.make_mesh((N_DEV,), ("data",))
KEY = jax.random.key(42)


def _data(shape, seed=0):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return jax.random.normal(k1, shape), jax.random.normal(k2, shape)


def _objective(graphdef, rest, dy, key):
  def objective(params, x):
    kw = {} if key is None else {"rngs": key}
    y = nnx.merge(graphdef, params, rest)(x, deterministic=key is None, **kw)
    return jnp.sum(y * dy), y
  return objective


def _grads(bf, x, dy, key=KEY):
  """(y, d params, d x) of <BF(x), dy> on one device, dropout drawn from ``key``."""
  graphdef, params, rest = nnx.split(bf, nnx.Param, ...)
  fn = lambda params, x, dy: jax.value_and_grad(_objective(graphdef, rest, dy, key),
                                                argnums=(0, 1), has_aux=True)(params, x)
  (_, y), (dp, dx) = jax.jit(fn)(params, x, dy)
  return y, dp, dx


def _sharded_grads(bf, x, dy, key=KEY):
  graphdef, params, rest = nnx.split(bf, nnx.Param, ...)

  def local(params, x_loc, dy_loc):
    (_, y), (dp, dx) = jax.value_and_grad(_objective(graphdef, rest, dy_loc, key),
                                          argnums=(0, 1), has_aux=True)(params, x_loc)
    return y, dp, dx

  shard = lambda a: jax.device_put(a, NamedSharding(MESH, P("data")))
  fn = jax.jit(jax.shard_map(local, mesh=MESH, in_specs=(P(), P("data"), P("data")),
                             out_specs=(P("data"), P(), P("data"))))
  return jax.device_get(fn(params, shard(x), shard(dy)))


def test_chunk_rows():
  big = 2 * attention.MIN_CHUNKED_ENTRIES
  # DeiT-S global on 8 devices: 128 queries, 4 heads x 1024 keys per query against C 384.
  assert attention.chunk_rows(128, 4, 1024, 384, big, None) == 8
  assert attention.chunk_rows(128, 4, 1024, 384, attention.MIN_CHUNKED_ENTRIES, None) == 128
  assert attention.chunk_rows(128, 4, 1024, 384, big, 0) == 128
  assert attention.chunk_rows(12, 4, 64, 16, 1, 5) == 4  # the largest divisor of 12 <= 5
  assert attention.chunk_rows(7, 4, 1 << 20, 16, big, None) == 1
  assert attention.chunk_rows(8, 1, 4, 64, big, None) == 8  # attention already small


def test_chunk_rows_under_remat_keeps_the_whole_attention_up_to_its_bound():
  big = 2 * attention.MIN_CHUNKED_ENTRIES
  up_to = attention.REMAT_WHOLE_UP_TO
  # DeiT-S's layer (4 heads, C 384) at global batch 1024 on 8 devices: 4 x 1024 / 384 = 10.7.
  assert attention.chunk_rows(128, 4, 1024, 384, big, None, remat=True) == 128
  assert attention.chunk_rows(128, 4, 1024, 384, big, None, remat=False) == 8
  # At the bound the whole attention stays; one key more and it is chunked as without remat.
  assert attention.chunk_rows(64, 4, 16 * up_to, 64, big, None, remat=True) == 64
  assert attention.chunk_rows(64, 4, 16 * up_to + 1, 64, big, None, remat=True) == \
      attention.chunk_rows(64, 4, 16 * up_to + 1, 64, big, None, remat=False) < 64
  # Batch 4096 on 8 devices: 42.7 > the bound; at most 12 queries (512 x 384 / 16384), so 8.
  assert attention.chunk_rows(512, 4, 4096, 384, big, None, remat=True) == 8
  assert attention.chunk_rows(128, 4, 1024, 384, big, 0, remat=True) == 128
  assert attention.chunk_rows(128, 4, 1024, 384, big, 4, remat=True) == 4  # a cap still holds


def _loops(bf, x) -> int:
  """While loops in the lowered gradient program (chunked attention adds its lax.map's)."""
  graphdef, params, rest = nnx.split(bf, nnx.Param, ...)
  fn = jax.jit(jax.grad(lambda p, x: _objective(graphdef, rest, jnp.ones_like(x), KEY)(p, x)[0]))
  return fn.lower(params, x).as_text().count("stablehlo.while")


def test_auto_rule_runs_whole_attention_under_remat_until_the_bound():
  """Tokens [64, 80, 16], 4 heads: 1.3M attention entries, H x G / C = 16 <= the bound, so V2
  (remat by default) runs the whole attention and the same call without remat chunks it;
  [512, 2, 16] is 128 and chunked either way."""
  assert 4 * 64 / C <= attention.REMAT_WHOLE_UP_TO < 4 * 512 / C
  loops = lambda x, **kw: _loops(BatchFormer(C, rngs=nnx.Rngs(0), **kw), x)
  x = jnp.ones((64, 80, C))
  assert loops(x) == loops(x, query_chunk=0)
  assert loops(x, remat=False) > loops(x, remat=False, query_chunk=0)
  wide = jnp.ones((512, 2, C))
  assert loops(wide) > loops(wide, query_chunk=0)


@pytest.mark.parametrize("shape, group_size", [((8, 3, C), None), ((8, 3, C), 4), ((8, C), None)])
def test_chunks_and_remat_equal_the_whole_attention(shape, group_size):
  x, dy = _data(shape)
  whole = BatchFormer(C, group_size=group_size, remat=False, query_chunk=0, rngs=nnx.Rngs(1))
  chunked = BatchFormer(C, group_size=group_size, remat=True, query_chunk=2, rngs=nnx.Rngs(1))
  want = _grads(whole, x, dy)
  assert not np.allclose(want[0], _grads(whole, x, dy, key=None)[0])  # dropout really on
  chex.assert_trees_all_close(_grads(chunked, x, dy), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("b_local, group_size", [(4, None), (4, 8), (6, 4)])
def test_chunks_on_8_devices_equal_one_device_whole(b_local, group_size):
  """Global, a group of two devices, groups straddling devices (masked): chunks of one query
  under remat on 8 devices reproduce the unchunked layer on the whole batch, dropout on."""
  x, dy = _data((N_DEV * b_local, 3, C))
  whole = BatchFormer(C, group_size=group_size, remat=False, query_chunk=0, rngs=nnx.Rngs(2))
  sharded = BatchFormer(C, axis_name="data", group_size=group_size, query_chunk=1,
                        rngs=nnx.Rngs(2))
  chex.assert_trees_all_close(_sharded_grads(sharded, x, dy), _grads(whole, x, dy),
                              atol=1e-5, rtol=1e-5)


def _temp_bytes(bf, x, dy):
  graphdef, params, rest = nnx.split(bf, nnx.Param, ...)
  fn = jax.jit(jax.grad(lambda p, x: _objective(graphdef, rest, dy, KEY)(p, x)[0]))
  return fn.lower(params, x).compile().memory_analysis().temp_size_in_bytes


def test_chunks_under_remat_bound_the_compiled_memory():
  """64 samples x 16 positions: the whole attention [16, 4, 64, 64] (float32, with its dropout
  mask and backward) is several times the layer's own activations; chunks of 4 queries hold
  a sixteenth of it at a time."""
  x, dy = _data((64, 16, C))
  whole = _temp_bytes(BatchFormer(C, remat=False, query_chunk=0, rngs=nnx.Rngs(0)), x, dy)
  chunked = _temp_bytes(BatchFormer(C, query_chunk=4, rngs=nnx.Rngs(0)), x, dy)
  attention_bytes = 16 * 4 * 64 * 64 * 4
  assert whole > 2 * attention_bytes
  assert chunked < whole / 3, (chunked, whole)


def test_without_attention_dropout_is_softmax_attention():
  """Deterministic calls (and dropout 0) go through jax.nn.dot_product_attention: the same
  probabilities times values as the explicit path."""
  x, _ = _data((6, 3, C))
  bf = BatchFormer(C, dropout=0.0, rngs=nnx.Rngs(0))
  layer = bf.layers[0]
  probs_NxPxHxQxG, v_NxGxPxHxD = layer.attention_probs(x[None], None, None)
  explicit = jnp.einsum("nphqg,ngphd->nqphd", probs_NxPxHxQxG, v_NxGxPxHxD)
  q, k, v = layer._project(x[None], None)
  fused = attention.attend(q, k, v, None, 0.5, None, None)
  np.testing.assert_allclose(fused, explicit, atol=1e-6)
  np.testing.assert_allclose(bf(x, deterministic=False), bf(x, deterministic=True), atol=1e-6)


@pytest.mark.parametrize("remat, gathers", [(False, 1), (True, 2)])
def test_remat_gathers_the_keys_again_in_the_backward_pass(remat, gathers):
  """Under remat the backward pass re-gathers the keys instead of keeping G rows per device."""
  bf = BatchFormer(C, axis_name="data", remat=remat, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(bf, nnx.Param, ...)

  def train(params, x_loc):
    loss = lambda p, x: jnp.sum(nnx.merge(graphdef, p, rest)(x, deterministic=False,
                                                              rngs=KEY) ** 2)
    return jax.grad(loss, argnums=(0, 1))(params, x_loc)

  x = jax.device_put(jnp.ones((N_DEV * 4, 3, C)), NamedSharding(MESH, P("data")))
  text = jax.jit(jax.shard_map(train, mesh=MESH, in_specs=(P(), P("data")),
                               out_specs=(P(), P("data")))).lower(params, x).as_text()
  assert len(re.findall(r"stablehlo\.all_gather", text)) == gathers
  assert len(re.findall(r"stablehlo\.reduce_scatter", text)) == 1


def test_remat_is_on_for_tokens_only_by_default():
  x, dy = _data((8, 3, C))
  bf = BatchFormer(C, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(bf, nnx.Param, ...)
  jaxpr = lambda x, dy: str(jax.make_jaxpr(jax.grad(
      lambda p: _objective(graphdef, rest, dy, KEY)(p, x)[0]))(params))
  assert "checkpoint" in jaxpr(x, dy) or "remat" in jaxpr(x, dy)
  v1 = jaxpr(x[:, 0], dy[:, 0])
  assert "checkpoint" not in v1 and "remat" not in v1


@pytest.mark.parametrize("kw, words", [
    (dict(query_chunk=-1), "query_chunk=-1"), (dict(query_chunk=2.5), "query_chunk=2.5"),
    (dict(attention_impl="flash"), "attention_impl='flash'")])
def test_bad_memory_options_are_named(kw, words):
  with pytest.raises(ValueError, match=re.escape(words)):
    BatchFormer(C, rngs=nnx.Rngs(0), **kw)

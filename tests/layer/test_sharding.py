"""Attention scope across devices: global (all-gathered), group_size, and per-device."""

import functools
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

C, B_LOCAL, N_DEV = 16, 4, 8
MESH = jax.make_mesh((N_DEV,), ("data",))


def _data(shape, seed=0):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return jax.random.normal(k1, shape), jax.random.normal(k2, shape)


def _shard(x):
  return jax.device_put(x, NamedSharding(MESH, P("data")))


def _grads(bf, x, dy, deterministic=True, key=None):
  """Loss <BF(x), dy> and its gradients wrt params and x; single device view."""
  graphdef, params, rest = nnx.split(bf, nnx.Param, ...)
  return _jit_grads(graphdef, params, rest, x, dy, deterministic, key)


# Jitted once per layer structure and shape: op by op, every test compiled each op afresh.
@functools.partial(jax.jit, static_argnums=(0, 5))
def _jit_grads(graphdef, params, rest, x, dy, deterministic, key):
  def objective(params, x):
    rngs = {} if key is None else {"rngs": key}
    y = nnx.merge(graphdef, params, rest)(x, deterministic=deterministic, **rngs)
    return jnp.sum(y * dy), y

  (_, y), (dp, dx) = jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)(params, x)
  return y, dp, dx


def _sharded_grads(bf, x, dy, deterministic=True):
  """The same, with x and dy split over the 8-device mesh inside jax.shard_map."""
  graphdef, params, rest = nnx.split(bf, nnx.Param, ...)

  def local(params, x_loc, dy_loc):
    def objective(params, x_loc):
      y = nnx.merge(graphdef, params, rest)(x_loc, deterministic=deterministic)
      return jnp.sum(y * dy_loc), y
    (_, y), (dp, dx) = jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)(params, x_loc)
    return y, dp, dx  # dp of replicated params arrives already summed over 'data'

  fn = jax.jit(jax.shard_map(local, mesh=MESH, in_specs=(P(), P("data"), P("data")),
                             out_specs=(P("data"), P(), P("data"))))
  return fn(params, _shard(x), _shard(dy))


@pytest.mark.parametrize("shape", [(N_DEV * B_LOCAL, C), (N_DEV * B_LOCAL, 3, C)])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_global_scope_equals_full_batch_on_one_device(shape, num_layers):
  x, dy = _data(shape)
  plain = BatchFormer(C, num_layers=num_layers, rngs=nnx.Rngs(3))
  sharded = BatchFormer(C, num_layers=num_layers, axis_name="data", rngs=nnx.Rngs(3))
  chex.assert_trees_all_equal(nnx.state(plain, nnx.Param), nnx.state(sharded, nnx.Param))
  want = _grads(plain, x, dy)
  got = _sharded_grads(sharded, x, dy)
  chex.assert_trees_all_close(jax.device_get(got), jax.device_get(want), atol=1e-5, rtol=1e-5)


def test_global_scope_under_pmap():
  x, dy = _data((N_DEV * B_LOCAL, C))
  plain = BatchFormer(C, rngs=nnx.Rngs(5))
  sharded = BatchFormer(C, axis_name="data", rngs=nnx.Rngs(5))
  y_want, dp_want, dx_want = _grads(plain, x, dy)
  graphdef, params, rest = nnx.split(sharded, nnx.Param, ...)

  @functools.partial(jax.pmap, axis_name="data", in_axes=(None, 0, 0))
  def step(params, x_loc, dy_loc):
    def objective(params, x_loc):
      y = nnx.merge(graphdef, params, rest)(x_loc, deterministic=True)
      return jnp.sum(y * dy_loc), y
    (_, y), (dp, dx) = jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)(params, x_loc)
    return y, jax.lax.psum(dp, "data"), dx  # pmap does not sum replicated-param grads for us

  split = lambda a: a.reshape(N_DEV, B_LOCAL, C)
  y, dp, dx = step(params, split(x), split(dy))
  np.testing.assert_allclose(np.asarray(y).reshape(-1, C), y_want, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(dx).reshape(-1, C), dx_want, atol=1e-5, rtol=1e-5)
  chex.assert_trees_all_close(jax.tree.map(lambda a: np.asarray(a)[0], dp), dp_want, atol=1e-5,
                              rtol=1e-5)


@pytest.mark.parametrize("b_local,k", [(4, 2), (4, 4), (4, 8), (4, 16), (6, 4)])
def test_group_size_equals_layer_on_each_group(b_local, k):
  """k < b, k == b, k spanning 2 and 4 devices, and groups straddling devices unevenly."""
  x, dy = _data((N_DEV * b_local, 2, C), seed=k)
  plain = BatchFormer(C, rngs=nnx.Rngs(7))
  grouped = BatchFormer(C, axis_name="data", group_size=k, rngs=nnx.Rngs(7))
  y, dp, dx = jax.device_get(_sharded_grads(grouped, x, dy))
  y_want, dx_want, dp_want = [], [], []
  for g in range(x.shape[0] // k):
    rows = slice(g * k, (g + 1) * k)
    yg, dpg, dxg = _grads(plain, x[rows], dy[rows])
    y_want.append(yg), dx_want.append(dxg), dp_want.append(dpg)
  np.testing.assert_allclose(y, np.concatenate(y_want), atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(dx, np.concatenate(dx_want), atol=1e-5, rtol=1e-5)
  dp_sum = jax.tree.map(lambda *a: sum(a), *dp_want)
  chex.assert_trees_all_close(dp, dp_sum, atol=1e-4, rtol=1e-5)
  # Without an axis, group_size splits the batch the call sees the same way.
  local = BatchFormer(C, group_size=k, rngs=nnx.Rngs(7))
  if x.shape[0] % k == 0:
    np.testing.assert_allclose(_grads(local, x, dy)[0], np.concatenate(y_want), atol=1e-5)


def test_no_axis_inside_shard_map_is_per_device():
  x, dy = _data((N_DEV * B_LOCAL, C))
  bf = BatchFormer(C, rngs=nnx.Rngs(9))
  y, _, dx = jax.device_get(_sharded_grads(bf, x, dy))
  for d in range(N_DEV):
    rows = slice(d * B_LOCAL, (d + 1) * B_LOCAL)
    y_d, _, dx_d = _grads(bf, x[rows], dy[rows])
    np.testing.assert_allclose(y[rows], y_d, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(dx[rows], dx_d, atol=1e-5, rtol=1e-5)


def _forward(bf, x, deterministic):
  graphdef, state = nnx.split(bf)

  def local(state, x_loc):
    m = nnx.merge(graphdef, state)
    return m(x_loc, deterministic=deterministic)

  fn = jax.jit(jax.shard_map(local, mesh=MESH, in_specs=(P(), P("data")), out_specs=P("data")))
  return np.asarray(fn(state, _shard(x)))


def test_train_dropout_is_active_differs_per_device_and_is_reproducible():
  # Every device holds the same local rows, so any difference between devices is the mask.
  x = jnp.tile(jax.random.normal(jax.random.key(0), (B_LOCAL, C)), (N_DEV, 1))
  bf = BatchFormer(C, axis_name="data", group_size=B_LOCAL, rngs=nnx.Rngs(11))
  per_device = _forward(bf, x, deterministic=False).reshape(N_DEV, B_LOCAL, C)
  for d in range(1, N_DEV):
    assert not np.allclose(per_device[0], per_device[d]), f"device {d} reused device 0's mask"
  again = _forward(BatchFormer(C, axis_name="data", group_size=B_LOCAL, rngs=nnx.Rngs(11)), x,
                   deterministic=False)
  np.testing.assert_array_equal(per_device.reshape(-1, C), again)
  evals = _forward(bf, x, deterministic=True).reshape(N_DEV, B_LOCAL, C)
  assert not np.allclose(evals[0], per_device[0])
  for d in range(N_DEV):
    np.testing.assert_allclose(evals[d], evals[0], atol=1e-6)


def test_train_dropout_key_advances_between_calls():
  bf = BatchFormer(C, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (8, C))
  assert not np.allclose(bf(x, deterministic=False), bf(x, deterministic=False))
  np.testing.assert_array_equal(bf(x, deterministic=True), bf(x, deterministic=True))
  key = jax.random.key(3)
  np.testing.assert_array_equal(bf(x, deterministic=False, rngs=key),
                                bf(x, deterministic=False, rngs=key))


def _count(op, text):
  return len(re.findall(op, text))


@pytest.mark.parametrize("num_layers", [1, 2])
def test_global_scope_communicates_once_per_layer(num_layers):
  """One all-gather per layer forward (and one reduce-scatter backward), nothing more."""
  bf = BatchFormer(C, num_layers=num_layers, axis_name="data", rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(bf, nnx.Param, ...)
  x = _shard(jnp.ones((N_DEV * B_LOCAL, C)))

  key = jax.random.key(0)  # an explicit key: no RngCount mutation inside jax.grad

  def forward(params, rest, x_loc):
    return nnx.merge(graphdef, params, rest)(x_loc, deterministic=False, rngs=key)

  def train(params, rest, x_loc):
    loss = lambda p, x_loc: jnp.sum(forward(p, rest, x_loc) ** 2)
    return jax.grad(loss, argnums=(0, 1))(params, x_loc)

  specs = (P(), P(), P("data"))
  fwd = jax.jit(jax.shard_map(forward, mesh=MESH, in_specs=specs, out_specs=P("data")))
  fwd_text = fwd.lower(params, rest, x).as_text()
  assert _count(r"stablehlo\.all_gather", fwd_text) == num_layers
  grad = jax.jit(jax.shard_map(train, mesh=MESH, in_specs=specs, out_specs=(P(), P("data"))))
  grad_text = grad.lower(params, rest, x).as_text()
  assert _count(r"stablehlo\.all_gather", grad_text) == num_layers
  assert _count(r"stablehlo\.reduce_scatter", grad_text) == num_layers


def test_bfloat16_compute_stays_close_to_float32():
  x, dy = _data((N_DEV * B_LOCAL, C))
  want = _grads(BatchFormer(C, rngs=nnx.Rngs(2)), x, dy)[0]
  bf16 = BatchFormer(C, axis_name="data", dtype=jnp.bfloat16, rngs=nnx.Rngs(2))
  y = _sharded_grads(bf16, x, dy)[0]
  assert y.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(y, np.float32), want, atol=0.1)
  assert bf16.layers[0].in_proj.kernel[...].dtype == jnp.float32  # params stay float32


@pytest.mark.parametrize("b_local, group_size, tokens", [
    (B_LOCAL, None, 0), (B_LOCAL, 4, 0), (B_LOCAL, 8, 0),  # global; groups on / spanning devices
    (6, 4, 0), (6, 16, 0), (10, 4, 0),  # groups straddling devices unevenly (the masked path)
    (6, 4, 3),  # the same with V2 tokens
])
def test_train_mode_with_dropout_is_device_count_invariant(b_local, group_size, tokens):
  """Masks are keyed by global sample index (and a key's position in its group), so 8 devices
  reproduce 1 device with dropout on, whichever path the scope takes on each."""
  x, dy = _data((N_DEV * b_local, tokens, C) if tokens else (N_DEV * b_local, C))
  key = jax.random.key(42)
  plain = BatchFormer(C, group_size=group_size, rngs=nnx.Rngs(1))
  sharded = BatchFormer(C, axis_name="data", group_size=group_size, rngs=nnx.Rngs(1))
  graphdef, params, rest = nnx.split(sharded, nnx.Param, ...)

  def local(params, x_loc, dy_loc):
    def objective(params, x_loc):
      y = nnx.merge(graphdef, params, rest)(x_loc, deterministic=False, rngs=key)
      return jnp.sum(y * dy_loc), y
    (_, y), (dp, dx) = jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)(params, x_loc)
    return y, dp, dx

  got = jax.jit(jax.shard_map(local, mesh=MESH, in_specs=(P(), P("data"), P("data")),
                              out_specs=(P("data"), P(), P("data"))))(params, _shard(x), _shard(dy))
  y, dp, dx = _grads(plain, x, dy, deterministic=False, key=key)
  assert not np.allclose(y, _grads(plain, x, dy)[0])  # dropout really on
  chex.assert_trees_all_close(jax.device_get(got), (y, dp, dx), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("group_size, rows", [(None, N_DEV * B_LOCAL), (8, 8), (16, 16)])
def test_group_scope_gathers_only_the_group(group_size, rows):
  """A group of whole device batches all-gathers within its k / b devices: k rows arrive on
  each device, not the global batch (forward and backward)."""
  bf = BatchFormer(C, axis_name="data", group_size=group_size, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(bf, nnx.Param, ...)
  x = _shard(jnp.ones((N_DEV * B_LOCAL, C)))

  def train(params, x_loc):
    loss = lambda p, x_loc: jnp.sum(nnx.merge(graphdef, p, rest)(x_loc, deterministic=True) ** 2)
    return jax.grad(loss, argnums=(0, 1))(params, x_loc)

  text = jax.jit(jax.shard_map(train, mesh=MESH, in_specs=(P(), P("data")),
                               out_specs=(P(), P("data")))).lower(params, x).as_text()
  gathers = re.findall(r"stablehlo\.all_gather.*?-> tensor<(\d+)x", text, re.S)
  assert gathers == [str(rows)]
  if group_size:
    per = group_size // B_LOCAL
    groups = [list(range(g * per, (g + 1) * per)) for g in range(N_DEV // per)]
    assert f"replica_groups = dense<{groups}>".replace(" ", "") in text.replace(" ", "")


def test_group_scope_under_pmap_equals_shard_map():
  """The within-group gather (axis_index_groups) also runs under pmap."""
  x, dy = _data((N_DEV * B_LOCAL, C), seed=3)
  grouped = BatchFormer(C, axis_name="data", group_size=2 * B_LOCAL, rngs=nnx.Rngs(5))
  y_want, _, dx_want = jax.device_get(_sharded_grads(grouped, x, dy))
  graphdef, params, rest = nnx.split(grouped, nnx.Param, ...)

  @functools.partial(jax.pmap, axis_name="data", in_axes=(None, 0, 0))
  def step(params, x_loc, dy_loc):
    forward = lambda x_loc: nnx.merge(graphdef, params, rest)(x_loc, deterministic=True)
    return forward(x_loc), jax.grad(lambda x_loc: jnp.sum(forward(x_loc) * dy_loc))(x_loc)

  split = lambda a: a.reshape(N_DEV, B_LOCAL, C)
  y, dx = step(params, split(x), split(dy))
  np.testing.assert_allclose(np.asarray(y).reshape(-1, C), y_want, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(dx).reshape(-1, C), dx_want, atol=1e-5, rtol=1e-5)

"""The layer inside other people's code: NNX modes (train/eval/view), jax.jit, Linen param trees
and checkpoints."""

import jax
import numpy as np
import pytest
from flax import nnx, traverse_util
from flax.errors import TraceContextError

from bf_jax import BatchFormer, two_stream
from bf_jax import linen as bf_linen

C = 8


class Net(nnx.Module):
  """A BatchFormer beside the layers that train()/eval()/nnx.view are made for."""

  def __init__(self, rngs: nnx.Rngs):
    self.linear = nnx.Linear(C, C, rngs=rngs)
    self.drop = nnx.Dropout(0.5, rngs=rngs)
    self.bf = BatchFormer(C, num_heads=2, rngs=rngs)

  def __call__(self, x):
    return self.bf(self.drop(self.linear(x)))


def _x(b=6):
  return jax.random.normal(jax.random.key(0), (b, C))


# nnx modes: the attribute that train()/eval()/nnx.view set, as on nnx.Dropout.

def test_nnx_view_reaches_the_layer():
  x = _x()
  net = Net(nnx.Rngs(0))
  view = nnx.view(net, deterministic=True)
  assert view.bf.deterministic is True and view.drop.deterministic is True
  np.testing.assert_array_equal(view(x), view(x))
  np.testing.assert_array_equal(view(x), net.bf(net.linear(x), deterministic=True))
  alone = nnx.view(BatchFormer(C, num_heads=2, rngs=nnx.Rngs(0)), deterministic=False)
  assert alone.deterministic is False
  assert not np.allclose(alone(x), alone(x))  # dropout on, the stream advancing
  assert "BatchFormer" in nnx.view_info(net)


def test_train_and_eval_switch_the_layer_and_the_call_argument_wins():
  x = _x()
  net = Net(nnx.Rngs(0))
  want = net.bf(net.linear(x), deterministic=True)
  net.eval()
  np.testing.assert_array_equal(net(x), want)
  assert not np.allclose(net.bf(net.linear(x), deterministic=False), want)
  feats, _ = two_stream(x, None, net.bf)  # the training helper follows the layer's mode too
  np.testing.assert_array_equal(feats[6:], net.bf(x, deterministic=True))
  net.train()
  assert net.bf.deterministic is False
  assert not np.allclose(net(x), net(x))
  np.testing.assert_array_equal(net.bf(net.linear(x), deterministic=True), want)
  feats, _ = two_stream(x, None, net.bf, deterministic=True)
  np.testing.assert_array_equal(feats[6:], net.bf(x, deterministic=True))


def test_mode_errors_point_to_what_works():
  x = _x()
  bf = BatchFormer(C, num_heads=2, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"nnx\.view\(model, deterministic=\.\.\.\)") as e:
    bf(x)
  assert "model.eval()" in str(e.value)
  assert nnx.view(bf, deterministic=True)(x).shape == x.shape  # what the message says works
  no_stream = nnx.view(BatchFormer(C, num_heads=2, rngs=nnx.Rngs(params=0)), deterministic=False)
  with pytest.raises(ValueError, match="dropout randomness.*pass rngs= at the call"):
    no_stream(x)
  assert no_stream(x, rngs=jax.random.key(1)).shape == x.shape


# jax.jit: a closure cannot advance the layer's own stream; a key argument or nnx.jit can.

def test_jit_closure_names_the_fix():
  bf = BatchFormer(C, num_heads=2, rngs=nnx.Rngs(0))
  with pytest.raises(TraceContextError, match=r"nnx\.jit.*rngs=key"):
    jax.jit(lambda x: bf(x, deterministic=False))(_x())
  with pytest.raises(TraceContextError, match=r"rngs=key"):
    jax.grad(lambda x: bf(x, deterministic=False).sum())(_x())


def test_the_documented_jit_patterns_draw_masks_from_the_key():
  x = _x()
  bf = BatchFormer(C, num_heads=2, rngs=nnx.Rngs(0))
  own_stream = nnx.jit(lambda bf, x: bf(x, deterministic=False))  # the module's stream advances
  assert not np.allclose(own_stream(bf, x), own_stream(bf, x))
  graphdef, state = nnx.split(bf)
  run = lambda state, x, key: nnx.merge(graphdef, state)(x, deterministic=False, rngs=key)
  step = jax.jit(run)
  a, b = step(state, x, jax.random.key(1)), step(state, x, jax.random.key(2))
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(a, step(state, x, jax.random.key(1)))
  np.testing.assert_allclose(a, bf(x, deterministic=False, rngs=jax.random.key(1)), atol=1e-6)
  gd, params, rest = nnx.split(bf, nnx.Param, ...)  # grad wants the float leaves only
  loss = lambda p, x, key: nnx.merge(gd, p, rest)(x, deterministic=False, rngs=key).sum()
  grad = jax.jit(jax.grad(loss))
  g1, g2 = grad(params, x, jax.random.key(1)), grad(params, x, jax.random.key(2))
  k1, k2 = (g["layers"][0]["linear1"]["kernel"][...] for g in (g1, g2))
  assert not np.allclose(k1, k2)
  bf.layers[0].linear1.kernel[...] *= 3.0  # traced weights, not the first trace's constants
  np.testing.assert_allclose(step(nnx.state(bf), x, jax.random.key(1)),
                             bf(x, deterministic=False, rngs=jax.random.key(1)), atol=1e-6)


# Linen: string keys in the params tree, old integer-keyed trees still read.

def _linen(x, **kw):
  model = bf_linen.BatchFormer(dim=C, num_heads=2, **kw)
  variables = model.init({"params": jax.random.key(1), "dropout": jax.random.key(2)}, x,
                         deterministic=False)
  run = lambda v: model.apply(v, x, deterministic=False, rngs={"dropout": jax.random.key(3)})
  return variables, run


def _int_keys(variables):
  """The layout of the wrapper before string keys: ``layers/{0: ...}``."""
  nnx_params = variables["params"]["nnx"]
  layers = {int(k): v for k, v in nnx_params["layers"].items()}
  return {"params": {"nnx": {**nnx_params, "layers": layers}}}


def test_linen_params_flatten_with_a_separator():
  variables, _ = _linen(_x(), num_layers=2)
  flat = traverse_util.flatten_dict(variables["params"], sep="/")
  assert "nnx/layers/1/linear1/kernel" in flat
  assert all(isinstance(k, str) for k in flat)


def _orbax_roundtrip(tree, path):
  ocp = pytest.importorskip("orbax.checkpoint")
  ckptr = ocp.StandardCheckpointer()
  ckptr.save(path, tree)
  ckptr.wait_until_finished()
  return ckptr.restore(path)  # no target: what a reader without the model gets


def test_linen_untargeted_orbax_restore_applies(tmp_path):
  x = _x()
  variables, run = _linen(x)
  restored = _orbax_roundtrip(variables, tmp_path / "new")
  np.testing.assert_array_equal(run(restored), run(variables))


def test_linen_old_integer_keyed_params_still_apply(tmp_path):
  from bf_jax.layer.linen import string_keys
  x = _x()
  variables, run = _linen(x, num_layers=2)
  old = _int_keys(variables)
  np.testing.assert_array_equal(run(old), run(variables))
  restored = _orbax_roundtrip(old, tmp_path / "old")  # an old checkpoint, read without target
  np.testing.assert_array_equal(run(restored), run(variables))
  assert jax.tree.structure(string_keys(old)) == jax.tree.structure(variables)
  traverse_util.flatten_dict(string_keys(old), sep="/")


def test_linen_keeps_the_nnx_state_layout():
  """Only the Linen tree changes: NNX checkpoints keep their integer layer keys."""
  state = nnx.to_pure_dict(nnx.state(BatchFormer(C, num_heads=2, rngs=nnx.Rngs(0)), nnx.Param))
  assert list(state["layers"]) == [0]

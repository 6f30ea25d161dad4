"""The layer inside other people's code: NNX modes (train/eval/view), jax.jit, Linen param trees
and checkpoints, and torch weights out of a whole model's state dict."""

import logging

import jax
import numpy as np
import pytest
from flax import nnx, traverse_util
from flax.errors import TraceContextError

from bf_jax import BatchFormer, load_torch_state_dict, two_stream
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


# Torch weights from a whole model's state dict.

def _encoder_sd(prefix: str, num_layers: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  shapes = {"self_attn.in_proj_weight": (3 * C, C), "self_attn.in_proj_bias": (3 * C,),
            "self_attn.out_proj.weight": (C, C), "self_attn.out_proj.bias": (C,),
            "linear1.weight": (C, C), "linear1.bias": (C,), "linear2.weight": (C, C),
            "linear2.bias": (C,), "norm1.weight": (C,), "norm1.bias": (C,),
            "norm2.weight": (C,), "norm2.bias": (C,)}
  return {f"{prefix}layers.{i}.{name}": rng.normal(size=shape).astype(np.float32)
          for i in range(num_layers) for name, shape in shapes.items()}


OTHER_MODULES = {"backbone.conv.weight": np.zeros((4, 3, 3, 3), np.float32),
                 "fc.weight": np.zeros((10, C), np.float32), "fc.bias": np.zeros(10, np.float32)}


def test_prefix_picks_the_encoder_out_of_a_whole_model(caplog):
  sd = {**OTHER_MODULES, **_encoder_sd("encoder.", 2)}
  bf = BatchFormer(C, num_heads=2, num_layers=2, rngs=nnx.Rngs(0))
  with caplog.at_level(logging.DEBUG, logger="bf_jax"):
    load_torch_state_dict(bf, sd, prefix="encoder.")
  np.testing.assert_array_equal(bf.layers[1].linear1.kernel[...],
                                sd["encoder.layers.1.linear1.weight"].T)
  np.testing.assert_array_equal(bf.layers[0].norm2.scale[...], sd["encoder.layers.0.norm2.weight"])
  (record,) = [r for r in caplog.records if "ignored" in r.getMessage()]
  assert record.levelno == logging.DEBUG and record.name.startswith("bf_jax")
  for name in OTHER_MODULES:
    assert name in record.getMessage()


def test_keys_inside_the_prefix_must_all_be_the_layers():
  bf = BatchFormer(C, num_heads=2, rngs=nnx.Rngs(0))
  sd = {**OTHER_MODULES, **_encoder_sd("encoder.", 1)}
  with pytest.raises(ValueError, match=r"Unexpected keys.*\['encoder\.norm\.weight'\]"):
    load_torch_state_dict(bf, {**sd, "encoder.norm.weight": np.ones(C)}, prefix="encoder.")
  with pytest.raises(ValueError, match=r"Unexpected keys.*'backbone\.conv\.weight'"):
    load_torch_state_dict(bf, {**OTHER_MODULES, **_encoder_sd("", 1)})  # no prefix: all count

"""The Linen wrapper computes what the NNX layer computes, inside a Linen model."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx

from bf_jax import BatchFormer, two_stream
from bf_jax.layer import linen as bf_linen

C, K, B = 16, 5, 8


class LinenNet(nn.Module):
  """Backbone -> BatchFormer two-stream -> shared head, the way a Linen user writes it."""

  @nn.compact
  def __call__(self, x, labels, train: bool, bf_deterministic: bool = False):
    feats = nn.Dense(C, name="backbone")(x)
    if train:
      bf = bf_linen.BatchFormer(dim=C, name="bf")
      feats, labels = two_stream(feats, labels, bf, deterministic=bf_deterministic)
    return nn.Dense(K, name="head")(feats), labels


class NNXNet(nnx.Module):
  def __init__(self, rngs):
    self.backbone = nnx.Linear(3, C, rngs=rngs)
    self.bf = BatchFormer(C, rngs=rngs)
    self.head = nnx.Linear(C, K, rngs=rngs)

  def __call__(self, x, labels):
    feats, labels = two_stream(self.backbone(x), labels, self.bf, deterministic=True)
    return self.head(feats), labels


def _loss(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _linen_to_nnx(params) -> NNXNet:
  net = NNXNet(nnx.Rngs(123))  # different seed: every weight must come from the Linen params
  for name in ("backbone", "head"):
    getattr(net, name).kernel[...] = params[name]["kernel"]
    getattr(net, name).bias[...] = params[name]["bias"]
  bf = params["bf"]["nnx"]  # Linen keys layers by string, the NNX state by int
  nnx.update(net.bf, {"layers": {int(i): layer for i, layer in bf["layers"].items()}})
  return net


def test_linen_wrapper_matches_nnx_through_one_training_step():
  x = jax.random.normal(jax.random.key(0), (B, 3))
  y = jnp.arange(B) % K
  model = LinenNet()
  params = model.init({"params": jax.random.key(1), "dropout": jax.random.key(2)}, x, y,
                      train=True)["params"]
  net = _linen_to_nnx(params)

  def linen_loss(params):
    return _loss(*model.apply({"params": params}, x, y, train=True, bf_deterministic=True))

  def nnx_loss(net):
    return _loss(*net(x, y))

  np.testing.assert_allclose(linen_loss(params), nnx_loss(net), rtol=1e-6)
  g_linen = jax.grad(linen_loss)(params)
  g_nnx = nnx.grad(nnx_loss)(net)
  np.testing.assert_allclose(g_linen["bf"]["nnx"]["layers"]["0"]["linear1"]["kernel"],
                             g_nnx.bf.layers[0].linear1.kernel[...], atol=1e-6)
  np.testing.assert_allclose(g_linen["backbone"]["kernel"], g_nnx.backbone.kernel[...], atol=1e-6)

  new_params = jax.tree.map(lambda p, g: p - 0.1 * g, params, g_linen)
  nnx.update(net, jax.tree.map(lambda p, g: p - 0.1 * g, nnx.state(net, nnx.Param), g_nnx))
  np.testing.assert_allclose(linen_loss(new_params), nnx_loss(net), rtol=1e-5)
  assert linen_loss(new_params) < linen_loss(params)
  # The eval path (train=False) never touches the layer: same logits with or without it.
  no_bf = {k: v for k, v in new_params.items() if k != "bf"}
  logits, _ = model.apply({"params": no_bf}, x, y, train=False)
  np.testing.assert_allclose(logits, net.head(net.backbone(x)), atol=1e-5)


def test_linen_train_mode_uses_the_dropout_rng():
  x = jax.random.normal(jax.random.key(0), (B, C))
  bf = bf_linen.BatchFormer(dim=C)
  variables = bf.init({"params": jax.random.key(1), "dropout": jax.random.key(2)}, x,
                      deterministic=False)
  run = lambda k: bf.apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(k)})
  np.testing.assert_array_equal(run(3), run(3))
  assert not np.allclose(run(3), run(4))
  with pytest.raises(ValueError, match="rngs=.*'dropout'"):
    bf.apply(variables, x, deterministic=False)

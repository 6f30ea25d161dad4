"""The Linen wrapper computes what the NNX layer computes, inside a Linen model."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx

from bf_jax import BatchFormer, two_stream
from bf_jax.layer import batchformer
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


# The wrapper takes every argument of the NNX layer, with its defaults, and forwards it.

# NNX arguments the wrapper has no use for, and why; anything else must be a wrapper argument.
NOT_IN_LINEN = {"__init__": {"self": "the module itself",
                             "rngs": "Linen draws init keys from init(rngs={'params': ...})"},
                "__call__": {"self": "the module itself",
                             "rngs": "Module.apply owns the name: apply(rngs={'dropout': key})"}}
LINEN_ONLY = {"__init__": {"self", "parent", "name"}, "__call__": {"self"}}


def _params(fn, skip) -> dict[str, object]:
  return {name: p.default for name, p in inspect.signature(fn).parameters.items()
          if name not in skip}


@pytest.mark.parametrize("method", ["__init__", "__call__"])
def test_linen_takes_every_nnx_argument_with_its_default(method):
  nnx_args = _params(getattr(BatchFormer, method), NOT_IN_LINEN[method])
  linen_args = _params(getattr(bf_linen.BatchFormer, method), LINEN_ONLY[method])
  assert set(nnx_args) == set(linen_args), "wrapper lacks or adds arguments"
  assert linen_args == nnx_args, "defaults differ"


def test_linen_forwards_every_constructor_argument(monkeypatch):
  """Each field reaches the NNX constructor: a field the wrapper drops fails here."""
  values = dict(dim=8, num_heads=2, ffn_dim=12, dropout=0.25, num_layers=2, axis_name="data",
                group_size=4, dtype=jnp.bfloat16, deterministic=True, remat=True,
                query_chunk=2, attention_impl="xla")
  nnx_args = _params(BatchFormer.__init__, NOT_IN_LINEN["__init__"])
  assert set(values) == set(nnx_args), "give the new argument a non-default value here"
  assert all(values[k] != v for k, v in nnx_args.items())
  seen = {}

  class Seen(Exception):
    pass

  class Recorder(BatchFormer):
    def __init__(self, *args, **kwargs):
      seen.update(inspect.signature(BatchFormer.__init__).bind(self, *args, **kwargs).arguments)
      raise Seen  # stop before building: the values only need to arrive

  monkeypatch.setattr(batchformer, "BatchFormer", Recorder)
  with pytest.raises(Seen):
    bf_linen.BatchFormer(**values).init(jax.random.key(0), jnp.ones((B, 8)))
  assert {k: seen[k] for k in values} == values


def _pair(x, **kw):
  """The wrapper's variables and the NNX layer with the same kwargs and the same weights."""
  variables = bf_linen.BatchFormer(dim=C, num_heads=2, **kw).init(
      {"params": jax.random.key(1), "dropout": jax.random.key(2)}, x, deterministic=True)
  bf = BatchFormer(C, num_heads=2, **kw, rngs=nnx.Rngs(7))  # other seed: weights come from Linen
  layers = variables["params"]["nnx"]["layers"]
  nnx.update(bf, {"layers": {int(i): layer for i, layer in layers.items()}})
  return variables, bf


def test_linen_deterministic_field_matches_nnx_eval_mode():
  x = jax.random.normal(jax.random.key(0), (B, C))
  variables, bf = _pair(x, dropout=0.5, deterministic=True)
  want = bf(x)  # the NNX layer's own mode: no dropout
  np.testing.assert_array_equal(want, bf(x, deterministic=True))
  linen = bf_linen.BatchFormer(dim=C, num_heads=2, dropout=0.5, deterministic=True)
  np.testing.assert_allclose(linen.apply(variables, x), want, atol=1e-6)  # no dropout key needed
  train = linen.clone(deterministic=False)
  np.testing.assert_allclose(train.apply(variables, x, deterministic=True), want, atol=1e-6)
  with_dropout = train.apply(variables, x, rngs={"dropout": jax.random.key(3)})
  assert not np.allclose(with_dropout, want)  # dropout 0.5 is live outside eval mode
  # two_stream reads the field too (deterministic=None there: the layer's own mode).
  both = linen.apply(variables, x, method=lambda m, x: two_stream(x, None, m)[0])
  np.testing.assert_allclose(both, jnp.concatenate([x, want]), atol=1e-6)
  with pytest.raises(ValueError, match="deterministic=True/False"):
    bf_linen.BatchFormer(dim=C, num_heads=2).apply(variables, x)


def _primitives(jaxpr) -> set[str]:
  """Primitive names in a jaxpr and every jaxpr nested in its equations."""
  names = set()
  for eqn in jaxpr.eqns:
    names.add(eqn.primitive.name)
    for v in eqn.params.values():
      for sub in v if isinstance(v, (tuple, list)) else (v,):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          names |= _primitives(inner)
  return names


@pytest.mark.parametrize("shape", [(B, C), (B, 3, C)])
@pytest.mark.parametrize("query_chunk,remat", [(2, False), (4, True), (0, True), (None, None)])
def test_linen_query_chunk_and_remat_match_nnx(shape, query_chunk, remat):
  x = jax.random.normal(jax.random.key(0), shape)
  kw = dict(dropout=0.3, num_layers=2, query_chunk=query_chunk, remat=remat)
  variables, bf = _pair(x, **kw)
  linen = bf_linen.BatchFormer(dim=C, num_heads=2, **kw)
  run_linen = lambda x: linen.apply(variables, x, deterministic=True)
  run_nnx = lambda x: bf(x, deterministic=True)
  np.testing.assert_allclose(run_linen(x), run_nnx(x), atol=1e-5)
  loss = lambda run: lambda x: jnp.sum(run(x) ** 2)
  np.testing.assert_allclose(jax.grad(loss(run_linen))(x), jax.grad(loss(run_nnx))(x),
                             atol=1e-4)
  # Chunks and remat give the same numbers as without, so check the settings took effect.
  train = lambda m: jax.make_jaxpr(lambda x: m.apply(variables, x, deterministic=False,
                                                     rngs={"dropout": jax.random.key(5)}))
  prims = _primitives(train(linen)(x).jaxpr)
  chunked = bool(query_chunk) and query_chunk < B  # None: no chunks at these small sizes
  assert ("scan" in prims) == chunked
  remat_on = remat if remat is not None else len(shape) == 3
  checkpointed = bool(prims & {"remat2", "remat", "checkpoint"})
  assert checkpointed == (remat_on or chunked)  # every chunk runs under checkpoint
  # With dropout: the same masks as the plain layout (masks follow rows, not chunks).
  plain = linen.clone(query_chunk=0, remat=False)
  assert not _primitives(train(plain)(x).jaxpr) & {"scan", "remat2", "remat", "checkpoint"}
  run = lambda m: m.apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(5)})
  np.testing.assert_allclose(run(linen), run(plain), atol=1e-5)
  assert not np.allclose(run(linen), run_linen(x))


def test_linen_attention_impl_reaches_the_nnx_layer():
  x = jax.random.normal(jax.random.key(0), (B, C))
  variables, bf = _pair(x, attention_impl="xla")
  linen = bf_linen.BatchFormer(dim=C, num_heads=2, attention_impl="xla")
  np.testing.assert_allclose(linen.apply(variables, x, deterministic=True),
                             bf(x, deterministic=True), atol=1e-6)
  with pytest.raises(ValueError, match="attention_impl='flash' must be"):
    bf_linen.BatchFormer(dim=C, num_heads=2, attention_impl="flash").init(
        jax.random.key(0), x, deterministic=True)

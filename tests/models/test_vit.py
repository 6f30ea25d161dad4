"""ViT/DeiT with BatchFormerV2 (bf_jax/models/vit.py), its config checks and AdamW's decay mask."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from bf_jax import tasks
from bf_jax.models.classifier import build_model
from bf_jax.models.vit import VIT_ARCHS, ViT, drop_path
from bf_jax.trainer import optim
from bf_jax.tasks import base_config
from bf_jax.trainer.supervised import cross_entropy


def _vit(insert_after=(0, 2), drop=0.0, shared=True):
  from bf_jax.layer import v2
  rngs = nnx.Rngs(0)
  bfs = v2.make_batchformers(32, insert_after, shared=shared, dropout=0.0, rngs=rngs)
  return ViT(16, 4, 3, 5, 32, 3, 4, drop_path=drop, bfs=bfs, rngs=rngs)


def _images(b=4):
  return jnp.asarray(np.random.default_rng(0).normal(size=(b, 16, 16, 3)), jnp.float32)


# Jitted: op by op, each ViT call compiles every op of its shapes afresh.
_train_logits = nnx.jit(lambda m, x, y: m.train_logits(x, y, jax.random.key(0)))
_eval_logits = nnx.jit(lambda m, x: m.eval_logits(x))


def test_original_stream_is_the_plain_vit_and_eval_skips_batchformer():
  model = _vit()
  images, labels = _images(), jnp.arange(4)
  logits, targets = _train_logits(model, images, labels)
  assert logits.shape == (8, 5)
  np.testing.assert_array_equal(targets, jnp.concatenate([labels, labels]))
  plain = _eval_logits(model, images)
  np.testing.assert_allclose(logits[:4], plain, rtol=1e-5, atol=1e-5)  # no drop path here
  assert not np.allclose(logits[4:], plain, atol=1e-3)  # the BatchFormer stream differs
  # Eval never reads the BatchFormer: scrambling its weights changes nothing.
  for _, p in nnx.iter_graph(model.bfs):
    if isinstance(p, nnx.Param):
      p[...] = p[...] * 3.0 + 1.0
  np.testing.assert_array_equal(_eval_logits(model, images), plain)


def test_without_insertion_points_the_batch_is_not_doubled():
  model = _vit(insert_after=())
  logits, targets = _train_logits(model, _images(), jnp.arange(4))
  assert logits.shape == (4, 5) and targets.shape == (4,)


def test_drop_path_drops_whole_samples_and_rescales():
  x = jnp.ones((1000, 2, 3))
  out = drop_path(x, 0.25, jax.random.key(0))
  per_sample = np.asarray(out[:, 0, 0])
  assert np.all(np.isclose(per_sample, 0.0) | np.isclose(per_sample, 1 / 0.75))
  assert 0.2 < (per_sample == 0).mean() < 0.3
  np.testing.assert_array_equal(drop_path(x, 0.25, None), x)


def test_build_model_makes_a_deit_with_v2_from_the_config():
  c = base_config()
  c.model.update(name="deit_tiny", patch=4, drop_path=0.1)
  c.bf.update(enabled=True, insert_after=(3, 7), shared_layers=False)
  model = build_model(c.model, c.bf, 10, (16, 16, 3), 8, seed=0)
  assert len(model.blocks) == VIT_ARCHS["deit_tiny"][1]
  assert sorted(model.bfs) == ["3", "7"] and model.bfs["3"] is not model.bfs["7"]
  assert model.blocks[-1].drop_path_rate == pytest.approx(0.1)


@pytest.mark.parametrize("change, match", [
    (dict(insert_after=()), "must name the blocks"),
    (dict(insert_after=(12,)), "0..11"),
    (dict(name="resnet18"), "places BatchFormerV2 inside a ViT"),
    (dict(mode="bf_only"), "bf.mode"),
])
def test_vit_config_checks(change, match):
  c = base_config()
  c.model.update(name=change.get("name", "deit_tiny"))
  c.bf.update(enabled=True, insert_after=change.get("insert_after", (8,)),
              mode=change.get("mode", "shared"))
  with pytest.raises(ValueError, match=match):
    tasks.validate(c)


def test_adamw_decays_kernels_but_not_biases_norms_or_embeddings():
  c = base_config()
  c.optim.update(name="adamw", lr=1.0, weight_decay=0.5, schedule="constant")
  tx, _ = optim.build_optimizer(c.optim, c.bf, 10)
  params = {"default": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2),
                        "pos_embed": jnp.ones((1, 3, 2)), "cls_token": jnp.ones((1, 1, 2))}}
  params = {"blocks": params["default"]}
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  np.testing.assert_allclose(updates["blocks"]["kernel"], -0.5)  # lr x wd x w
  for name in ("bias", "pos_embed", "cls_token"):
    np.testing.assert_array_equal(updates["blocks"][name], 0.0)


def test_cross_entropy_takes_soft_targets():
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)), jnp.float32)
  labels = jnp.array([0, 3, 1])
  np.testing.assert_allclose(cross_entropy(logits, jax.nn.one_hot(labels, 4)),
                             cross_entropy(logits, labels), rtol=1e-6)
  soft = jnp.full((3, 4), 0.25)
  np.testing.assert_allclose(cross_entropy(logits, soft),
                             optax.softmax_cross_entropy(logits, soft), rtol=1e-6)


def test_v2_step_is_the_same_on_one_and_eight_devices():
  """Global scope: each device's BatchFormer streams attend across the global batch, dropout
  and drop path keyed by global row, so 8 devices take the step 1 device takes."""
  import optax as _optax

  from bf_jax.layer import v2
  from bf_jax.trainer import sharding, supervised, train_state

  def build(axis_name):
    rngs = nnx.Rngs(0)
    bfs = v2.make_batchformers(32, (0, 2), shared=False, dropout=0.5, axis_name=axis_name,
                               rngs=rngs)
    return ViT(16, 4, 3, 5, 32, 3, 4, drop_path=0.3, bfs=bfs, axis_name=axis_name, rngs=rngs)

  rng = np.random.default_rng(0)
  batch = {"image": rng.normal(size=(16, 16, 16, 3)).astype(np.float32),
           "label": rng.integers(0, 5, 16).astype(np.int32)}
  tx = _optax.sgd(0.5)  # updates proportional to gradients (Adam would amplify float noise)
  loss_fn = supervised.build_loss(base_config().loss, np.ones(5))
  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = sharding.make_mesh(devices)
    graphdef, params, stats, other = train_state.split_model(build("data"))
    state = sharding.replicate({"params": params, "stats": stats, "opt_state": tx.init(params)},
                               mesh)
    step = supervised.make_train_step(graphdef, other, tx, loss_fn, mesh, seed=3)
    state, metrics = step(state, sharding.put_batch(batch, mesh), np.int32(0))
    results.append((jax.device_get(state["params"]), float(metrics["loss"])))
  (p1, l1), (p8, l8) = results
  assert l1 == pytest.approx(l8, rel=1e-5)
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_the_vit_batchformers_get_the_batchformer_lr():
  c = base_config()
  c.optim.update(name="sgd", lr=1.0, momentum=0.0, weight_decay=0.0, schedule="constant")
  c.bf.lr_mult = 0.1
  tx, _ = optim.build_optimizer(c.optim, c.bf, 10)
  params = {"bfs": jnp.ones(2), "blocks": jnp.ones(2)}
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  np.testing.assert_allclose(updates["bfs"], -0.1)
  np.testing.assert_allclose(updates["blocks"], -1.0)


def _loss_and_grads(remat, images, labels):
  """The V2 stream loss and its gradients, dropout and drop path on, blocks 1-3 on two streams."""
  from bf_jax.layer import v2
  rngs = nnx.Rngs(0)
  bfs = v2.make_batchformers(32, (0, 2), shared=False, dropout=0.5, rngs=rngs)
  model = ViT(16, 4, 3, 5, 32, 4, 4, drop_path=0.3, bfs=bfs, remat=remat, rngs=rngs)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def loss(params):
    logits, targets = nnx.merge(graphdef, params, rest).train_logits(images, labels,
                                                                      jax.random.key(1))
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

  fn = jax.jit(jax.value_and_grad(loss))
  return fn(params), fn.lower(params).compile().memory_analysis().temp_size_in_bytes


def test_remat_recomputes_the_two_streams_without_changing_the_step():
  images = _images(16)
  labels = jnp.arange(16) % 5
  (want, grads), plain = _loss_and_grads("none", images, labels)
  assert jax.tree.reduce(lambda n, g: n + int(jnp.any(g != 0)), grads, 0) > 0
  temps = {}
  for remat in ("streams", "all"):
    (loss, got), temps[remat] = _loss_and_grads(remat, images, labels)
    assert float(loss) == pytest.approx(float(want), rel=1e-6)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(grads)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert temps["all"] < temps["streams"] < plain, (temps, plain)


def test_remat_is_checked():
  with pytest.raises(ValueError, match="model.remat='blocks'"):
    ViT(16, 4, 3, 5, 32, 1, 4, remat="blocks", rngs=nnx.Rngs(0))
  c = base_config()
  c.model.update(name="deit_tiny", remat="every")
  c.bf.update(enabled=True, insert_after=(8,))
  with pytest.raises(ValueError, match="model.remat"):
    tasks.validate(c)
  c.model.update(name="resnet18", remat="streams")
  c.bf.update(insert_after=())
  with pytest.raises(ValueError, match="model.remat='streams' is built for the ViTs"):
    tasks.validate(c)


@pytest.mark.parametrize("name", ["cifar100_deit_tiny_v2", "imagenet_deit_small_v2"])
def test_v2_configs_pass_remat_to_the_vit(name):
  from helpers import load_config
  c = load_config(name, "smoke,remat=streams")
  tasks.validate(c)
  model = build_model(c.model, c.bf, c.data.num_classes, (32, 32, 3), 4, seed=0)
  assert model.remat == "streams"
  with pytest.raises(ValueError, match="model.remat='fast'"):
    tasks.validate(load_config(name, "smoke,remat=fast"))

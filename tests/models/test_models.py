"""Backbones: the published parameter counts, feature dims, bf16 compute, the cosine head."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bf_jax.layer.batchformer import BatchFormer
from bf_jax.models.classifier import build_model
from bf_jax.models.heads import CosineHead
from bf_jax.models.resnet import build_resnet
from bf_jax.trainer import supervised
from bf_jax.tasks import base_config

# torchvision / LDAM-DRW counts without the classifier (BatchNorm scale+bias included).
PUBLISHED = {"resnet32": (463_504, 64), "resnet50": (23_508_032, 2048),
             "resnext50": (22_979_904, 2048), "resnet152": (58_143_808, 2048),
             "resnet10": (4_905_792, 512), "resnet18": (11_176_512, 512),
             "resnet18_cifar": (11_168_832, 512)}  # 11,173,962 with its usual 10-class head


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_and_feature_dims(name):
  model = nnx.eval_shape(lambda: build_resnet(name, 3, axis_name=None, rngs=nnx.Rngs(0)))
  n = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  assert (n, model.feat_dim) == PUBLISHED[name]


def test_ride_reduced_widths():
  for name, mult, dim in [("resnet32", 0.75, 48), ("resnet50", 0.75, 1536), ("resnet10", 0.75, 384)]:
    model = nnx.eval_shape(lambda: build_resnet(name, 3, width_mult=mult, axis_name=None,
                                                rngs=nnx.Rngs(0)))
    assert model.feat_dim == dim


def test_resnet_forward_train_and_eval_and_bf16():
  model = build_resnet("resnet32", 3, axis_name=None, rngs=nnx.Rngs(0))
  bf16 = build_resnet("resnet32", 3, axis_name=None, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
  # Jitted: op by op, a ResNet-32 call compiles every op of its shapes afresh.
  call = nnx.jit(lambda m, x, train: m(x, train=train), static_argnums=2)
  eval_feats = call(model, x, False)  # before any train call changes the running statistics
  np.testing.assert_allclose(call(bf16, x, False), eval_feats, rtol=0.05, atol=0.05 * float(
      jnp.abs(eval_feats).max()))
  train_feats = call(model, x, True)
  assert train_feats.shape == (4, 64) and bool(jnp.isfinite(train_feats).all())
  assert not np.allclose(call(model, x, False), eval_feats)  # train updated BatchNorm stats
  assert bf16.stages.blocks[0].conv1.kernel[...].dtype == jnp.float32


def test_cosine_head_is_scaled_cosine():
  head = CosineHead(8, 3, 30.0, rngs=nnx.Rngs(0))
  f = jax.random.normal(jax.random.key(1), (5, 8))
  out = head(f * 7.0)  # invariant to the feature norm
  np.testing.assert_allclose(out, head(f), rtol=1e-5, atol=1e-5)
  assert float(jnp.abs(out).max()) <= 30.0 + 1e-4


def test_classifier_eval_never_touches_batchformer():
  cfg = base_config()
  cfg.model.update(name="resnet32")
  model = build_model(cfg.model, cfg.bf, 10, (32, 32, 3), local_batch=4, seed=0, axis_name=None)
  x = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
  eval_logits = nnx.jit(lambda m: m.eval_logits(x))
  before = eval_logits(model)
  layer = model.bf.layers[0]
  layer.linear1.kernel[...] = jnp.full_like(layer.linear1.kernel[...], jnp.nan)
  np.testing.assert_array_equal(eval_logits(model), before)
  logits, labels = nnx.jit(lambda m: m.train_logits(x, jnp.arange(4), jax.random.key(0)))(model)
  assert logits.shape == (8, 10) and labels.shape == (8,)


def _ride_cfg(mode="shared"):
  cfg = base_config()
  cfg.model.update(name="resnet32", experts=3, width_mult=0.75)
  cfg.bf.update(mode=mode, num_heads=1)
  return cfg


@pytest.mark.parametrize("mode,rows", [("shared", 8), ("bf_only", 4)])
def test_ride_shapes_and_one_shared_batchformer(mode, rows):
  cfg = _ride_cfg(mode)
  model = build_model(cfg.model, cfg.bf, 10, (32, 32, 3), local_batch=4, seed=0, axis_name=None)
  assert model.feat_dim == 48  # RIDE's reduced ResNet-32 width
  layers = [m for _, m in nnx.iter_graph(model) if isinstance(m, BatchFormer)]
  assert len(layers) == 1  # one layer for all experts
  x = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
  # One compiled program each: op by op, a ResNet-32 forward and backward compiles hundreds.
  logits, labels = nnx.jit(lambda m: m.train_logits(x, jnp.arange(4), jax.random.key(1)))(model)
  assert logits.shape == (rows, 3, 10) and labels.shape == (rows,)
  assert nnx.jit(lambda m: m.eval_logits(x))(model).shape == (4, 10)

  @nnx.jit
  def grad_max_per_expert(m):
    graphdef, params, rest = nnx.split(m, nnx.Param, ...)
    params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)

    def expert_sums(params, rest):  # (experts,): each expert's logits summed
      logits = nnx.merge(graphdef, params, rest).train_logits(x, jnp.arange(4),
                                                              jax.random.key(1))[0]
      return logits.sum(axis=(0, 2))
    # One reverse pass for all experts (vmapped cotangents) instead of one per expert.
    kernel_E = jax.jacrev(expert_sums)(params, rest)["bf"]["layers"][0]["linear1"]["kernel"][...]
    return jnp.abs(kernel_E).reshape(3, -1).max(axis=1)

  # Every expert's output depends on the shared layer's weights.
  for e, g in enumerate(grad_max_per_expert(model)):
    assert float(g) > 0, e


def test_ride_loss_sums_experts_and_rewards_diversity():
  cfg = base_config().loss
  cfg.update(name="ce", diversity_factor=-0.2, diversity_temperature=1.0)
  fn = supervised.build_loss(cfg, np.array([5, 5, 5]), experts=2)
  same = jnp.array([[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])  # experts agree: no diversity term
  ce = float(supervised.cross_entropy(same[:, 0], jnp.array([0]))[0])
  np.testing.assert_allclose(fn(same, jnp.array([0]), 0), [2 * ce], rtol=1e-5)
  apart = jnp.array([[[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
  plain = sum(float(supervised.cross_entropy(apart[:, e], jnp.array([0]))[0]) for e in range(2))
  assert float(fn(apart, jnp.array([0]), 0)[0]) < plain  # disagreement lowers the loss


def test_cpu_matmul_path_of_1x1_convs_equals_the_convolution():
  from bf_jax.models.resnet import Conv
  x = jax.random.normal(jax.random.key(0), (2, 9, 9, 8))
  for stride in (1, 2):
    conv = Conv(8, 16, (1, 1), strides=stride, padding=0, use_bias=False, rngs=nnx.Rngs(0))
    ref = nnx.Conv.__call__(conv, x)  # the library's convolution
    np.testing.assert_allclose(conv(x), ref, rtol=1e-6, atol=1e-6)
    # Gradients too: the matmul path is what the weight gradient goes through on CPU.
    graphdef, params = nnx.split(conv)
    loss = lambda f: lambda p, x: (f(nnx.merge(graphdef, p), x) ** 2).sum()
    ours = jax.grad(loss(lambda m, x: m(x)), argnums=(0, 1))(params, x)
    theirs = jax.grad(loss(lambda m, x: nnx.Conv.__call__(m, x)), argnums=(0, 1))(params, x)
    chex.assert_trees_all_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_convnet_keeps_where_features_are_and_checks_its_depth():
  from bf_jax.models.backbones import ConvNet
  net = ConvNet((28, 28, 1), width=8, depth=2, axis_name=None, rngs=nnx.Rngs(0))
  images = jax.random.normal(jax.random.key(0), (3, 28, 28, 1))
  feats = net(images, train=False)
  assert feats.shape == (3, 64) and net.feat_dim == 64 and bool((feats >= 0).all())
  assert net.fc.in_features == 7 * 7 * 16  # flattened, not pooled away
  with pytest.raises(ValueError, match=r"model.depth=3 halves 28x28 images 3 times, which needs "
                                       r"sides divisible by 8"):
    ConvNet((28, 28, 1), width=8, depth=3, axis_name=None, rngs=nnx.Rngs(0))

"""model.scan_layers for the ResNets and RIDE: each stage's repeated blocks as one scan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bf_jax.models import scan_blocks
from bf_jax.models.resnet import build_resnet, stage_runs
from bf_jax.models.ride import RIDE
from bf_jax.trainer import train_state


def test_a_stages_runs_leave_out_its_first_block():
  assert stage_runs([5, 5, 5]) == [(1, 5), (6, 10), (11, 15)]
  assert stage_runs([3, 4, 6, 3]) == [(1, 3), (4, 7), (8, 13), (14, 16)]
  assert stage_runs([1, 1, 1, 1]) == []  # ResNet-10: nothing repeats
  assert scan_blocks.singles(16, stage_runs([3, 4, 6, 3])) == [0, 3, 7, 13]


def _trees(model):
  _, params, stats, _ = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
  return nnx.to_pure_dict(params), nnx.to_pure_dict(stats)


def _train(model, images):
  """Features and gradients of a training call, and the BatchNorm statistics it leaves."""
  graphdef, params, stats, other = train_state.split_model(model)  # as the train step does

  def loss(params):
    m = nnx.merge(graphdef, params, stats, other)
    feats = m(images, train=True)
    return jnp.mean(feats ** 2), (feats, nnx.to_pure_dict(nnx.state(m, nnx.BatchStat)))

  (_, (feats, stats)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  return feats, grads, stats


@pytest.mark.parametrize("name", ["resnet32", "resnet18_cifar"])
def test_the_scanned_resnet_is_the_unrolled_one(name):
  plain = build_resnet(name, 3, axis_name=None, rngs=nnx.Rngs(0))
  scan = build_resnet(name, 3, axis_name=None, rngs=nnx.Rngs(0), scan_layers=True)
  runs = scan.stages.runs
  # Built from the same values, and the layouts convert exactly both ways.
  for (a, b) in zip(_trees(plain), _trees(scan)):
    converted = {**a, "stages": scan_blocks.scanned_tree(a["stages"], runs)}
    jax.tree.map(np.testing.assert_array_equal, converted, b)
    back = {**b, "stages": scan_blocks.unrolled_tree(b["stages"], runs)}
    jax.tree.map(np.testing.assert_array_equal, back, a)
  images = jnp.asarray(np.random.default_rng(0).normal(size=(4, 32, 32, 3)), jnp.float32)
  want, grads, stats = _train(plain, images)
  got, scan_grads, scan_stats = _train(scan, images)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  unroll = lambda t: {**t, "stages": scan_blocks.unrolled_tree(t["stages"], runs)}
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               unroll(scan_grads), grads)
  # The running statistics each block's BatchNorm updated, carried out of the scan.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               unroll(scan_stats), stats)
  assert not np.allclose(stats["stages"]["blocks"][3]["bn1"]["mean"], 0.0)
  np.testing.assert_allclose(nnx.jit(lambda m: m(images, train=False))(scan),
                             nnx.jit(lambda m: m(images, train=False))(plain), rtol=1e-5,
                             atol=1e-6)


def test_ride_scans_its_shared_and_expert_stages():
  kw = dict(width_mult=0.75, head_scale=30.0, bf_mode="shared", axis_name=None, dtype=None)
  plain = RIDE("resnet32", 2, 3, 10, rngs=nnx.Rngs(0), **kw)
  scan = RIDE("resnet32", 2, 3, 10, rngs=nnx.Rngs(0), scan_layers=True, **kw)
  assert len(scan.shared.block_stacks) == 1 and len(scan.experts[0].block_stacks) == 2
  images = jnp.asarray(np.random.default_rng(0).normal(size=(4, 32, 32, 3)), jnp.float32)
  labels = jnp.arange(4)
  logits = [nnx.jit(lambda m: m.train_logits(images, labels, jax.random.key(0))[0])(m)
            for m in (plain, scan)]
  np.testing.assert_allclose(logits[1], logits[0], rtol=1e-5, atol=1e-5)

"""model.scan_layers for the ViTs: runs of blocks as scans, the same step as unrolled."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from bf_jax import tasks
from bf_jax.layer import v2
from bf_jax.models.scan_blocks import scanned_tree, unrolled_tree
from bf_jax.models.vit import ViT, segments
from bf_jax.tasks import base_config
from bf_jax.trainer import optim

RUNS = [(0, 1), (1, 3), (3, 4)]  # 4 blocks, BatchFormers after blocks 0 and 2


def _model(scan, remat="none"):
  rngs = nnx.Rngs(0)
  bfs = v2.make_batchformers(32, (0, 2), shared=False, dropout=0.5, rngs=rngs)
  return ViT(16, 4, 3, 5, 32, 4, 4, drop_path=0.3, bfs=bfs, remat=remat, scan_layers=scan,
             rngs=rngs)


def _split(model):
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return graphdef, nnx.to_pure_dict(params), rest


def _loss_and_grads(model, params, images, labels):
  graphdef, state, rest = nnx.split(model, nnx.Param, ...)

  def loss(pure):
    nnx.replace_by_pure_dict(state, pure)
    logits, targets = nnx.merge(graphdef, state, rest).train_logits(images, labels,
                                                                     jax.random.key(1))
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

  return jax.jit(jax.value_and_grad(loss))(params)


def test_the_runs_end_at_the_insertion_points():
  assert segments(4, (0, 2)) == RUNS
  assert segments(12, ()) == [(0, 12)]
  assert segments(12, (11,)) == [(0, 12)]  # after the last block: nothing to split
  assert segments(12, (8, 8)) == [(0, 9), (9, 12)]


def test_scanned_blocks_start_as_the_unrolled_ones_and_convert_both_ways():
  _, unrolled, _ = _split(_model(False))
  _, scanned, _ = _split(_model(True))
  assert set(scanned) - set(unrolled) == {"block_stacks"} and len(scanned["block_stacks"]) == 3
  assert jax.tree.map(np.shape, scanned_tree(unrolled, RUNS)) == jax.tree.map(np.shape, scanned)
  jax.tree.map(np.testing.assert_array_equal, scanned_tree(unrolled, RUNS), scanned)
  jax.tree.map(np.testing.assert_array_equal, unrolled_tree(scanned, RUNS), unrolled)


@pytest.mark.parametrize("remat", ["none", "streams", "all"])
def test_the_scanned_step_is_the_unrolled_step(remat):
  """Dropout and drop path on: the same keys reach the same blocks in both layouts."""
  images = jnp.asarray(np.random.default_rng(0).normal(size=(8, 16, 16, 3)), jnp.float32)
  labels = jnp.arange(8) % 5
  plain, scan = _model(False, remat), _model(True, remat)
  _, unrolled, _ = _split(plain)
  want, grads = _loss_and_grads(plain, unrolled, images, labels)
  # The unrolled weights, converted: the scanned model computes the same loss and gradients.
  loss, got = _loss_and_grads(scan, scanned_tree(unrolled, RUNS), images, labels)
  assert float(loss) == pytest.approx(float(want), rel=1e-6)
  assert jax.tree.reduce(lambda n, g: n + int(jnp.any(g != 0)), grads, 0) > 0
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               unrolled_tree(got, RUNS), grads)
  np.testing.assert_allclose(nnx.jit(lambda m: m.eval_logits(images))(scan),
                             nnx.jit(lambda m: m.eval_logits(images))(plain), rtol=1e-5,
                             atol=1e-6)


def test_adamw_decays_a_stacks_kernels_but_not_its_biases_and_norms():
  c = base_config()
  c.optim.update(name="adamw", lr=1.0, weight_decay=0.5, schedule="constant")
  tx, _ = optim.build_optimizer(c.optim, c.bf, 10)
  params = {"block_stacks": {0: {"kernel": jnp.ones((3, 2, 2)), "bias": jnp.ones((3, 2)),
                                 "scale": jnp.ones((3, 2))}}}
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  np.testing.assert_allclose(updates["block_stacks"][0]["kernel"], -0.5)
  for name in ("bias", "scale"):
    np.testing.assert_array_equal(updates["block_stacks"][0][name], 0.0)


@pytest.mark.parametrize("change, match", [
    (dict(name="mlp"), r"model.scan_layers=True scans the repeated blocks of the ViTs and "
                       r"ResNets; model.name='mlp' has none"),
    (dict(optim="lars"), r"model.scan_layers=True stacks .* LARS's trust ratio"),
])
def test_scan_layers_is_checked(change, match):
  c = base_config()
  c.model.update(name=change.get("name", "deit_tiny"), scan_layers=True)
  c.optim.name = change.get("optim", "adamw")
  vit = c.model.name == "deit_tiny"  # the MLP takes no insertion points
  c.bf.update(enabled=vit, insert_after=(8,) if vit else ())
  with pytest.raises(ValueError, match=match):
    tasks.validate(c)

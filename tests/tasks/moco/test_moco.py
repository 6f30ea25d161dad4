"""MoCo v3 + BatchFormer: loss, EMA, LARS, the step, and pre-training -> linear evaluation end to
end."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds
from helpers import load_config, read_metrics

from bf_jax import tasks
from bf_jax.tasks.moco import contrastive
from bf_jax.tasks.moco import train as moco_train
from bf_jax.tasks.moco import steps as moco_steps
from bf_jax.trainer import optim, sharding
from bf_jax.trainer.train_state import momentum_update


def _np_info_nce(q, k, first, t):
  q = q / np.linalg.norm(q, axis=1, keepdims=True)
  k = k / np.linalg.norm(k, axis=1, keepdims=True)
  logits = q @ k.T / t
  logits = logits - logits.max(1, keepdims=True)
  logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  return -2 * t * logp[np.arange(len(q)), first + np.arange(len(q))]


def test_info_nce_on_a_tiny_batch_matches_the_hand_computation():
  # Two unit queries, three keys; query 0's positive is key 1 (first_row=1).
  q = np.array([[1.0, 0.0], [0.0, 2.0]])
  k = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 3.0]])
  t = 0.5
  # By hand: q0 . unit keys = [1, 1/sqrt2, 0] -> /T = [2, 1.414, 0]; positive index 1.
  l0 = -np.log(np.exp(2 / np.sqrt(2)) / (np.exp(2) + np.exp(2 / np.sqrt(2)) + 1.0))
  # q1 . unit keys = [0, 1/sqrt2, 1] -> /T = [0, 1.414, 2]; positive index 2.
  l1 = -np.log(np.exp(2) / (1.0 + np.exp(2 / np.sqrt(2)) + np.exp(2)))
  got = contrastive.info_nce(jnp.asarray(q), jnp.asarray(k), 1, t)
  np.testing.assert_allclose(got, 2 * t * np.array([l0, l1]), rtol=1e-5)


@pytest.mark.parametrize("pairing", ["matched", "orig_keys", "all"])
def test_moco_loss_averages_the_pairings_terms_over_both_view_orders(pairing):
  rng = np.random.default_rng(0)
  q1, q2 = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))  # S=2 streams, b=3 rows
  k1, k2 = rng.normal(size=(2, 6, 4)), rng.normal(size=(2, 6, 4))  # T=2 key streams, G=6
  expected = {"matched": [(0, 0), (1, 1)], "orig_keys": [(0, 0), (1, 0)],
              "all": [(0, 0), (0, 1), (1, 0), (1, 1)]}[pairing]
  want = sum(_np_info_nce(q1[s], k2[t], 3, 0.2) + _np_info_nce(q2[s], k1[t], 3, 0.2)
             for s, t in expected) / len(expected)
  got = contrastive.moco_loss_rows(*map(jnp.asarray, (q1, q2, k1, k2)), 3, pairing, 0.2)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # One stream (no BatchFormer): MoCo v3's own symmetric loss, whatever the pairing.
  one = contrastive.moco_loss_rows(*(jnp.asarray(x[:1]) for x in (q1, q2, k1, k2)), 3, pairing,
                                   0.2)
  np.testing.assert_allclose(one, _np_info_nce(q1[0], k2[0], 3, 0.2)
                             + _np_info_nce(q2[0], k1[0], 3, 0.2), rtol=1e-5)


def test_pairing_that_needs_bf_keys_without_a_momentum_bf_is_refused():
  with pytest.raises(ValueError, match="momentum_bf='none'.*pairing=orig_keys"):
    contrastive.terms("matched", 2, 1)
  config = load_config("moco_v3_cifar10", "smoke")
  config.moco.momentum_bf = "none"
  with pytest.raises(ValueError, match="momentum_bf"):
    tasks.validate(config)
  config.moco.pairing = "orig_keys"
  tasks.validate(config)
  config.data.augment = "crop_flip"
  with pytest.raises(ValueError, match="data.augment='crop_flip'.*two views"):
    tasks.validate(config)


def test_momentum_schedule_and_ema_math():
  m_at = moco_steps.momentum_schedule(0.99, 100, cosine=True)
  np.testing.assert_allclose([m_at(0), m_at(50), m_at(100)], [0.99, 0.995, 1.0], atol=1e-6)
  assert float(moco_steps.momentum_schedule(0.99, 100, cosine=False)(70)) == pytest.approx(0.99)
  online = {"a": {"w": jnp.array([1.0, 2.0])}, "b": jnp.array(5.0), "predictor": jnp.array(9.0)}
  momentum = {"a": {"w": jnp.array([3.0, -2.0])}, "b": jnp.array(1.0)}
  got = momentum_update(online, momentum, jnp.float32(0.75))
  chex.assert_trees_all_close(got, {"a": {"w": jnp.array([2.5, -1.0])}, "b": jnp.array(2.0)})


def test_lars_skips_biases_and_scales_kernels_by_the_trust_ratio():
  cfg = load_config("moco_v3_cifar10", "smoke")
  cfg.optim.update(lr=0.5, weight_decay=0.1, momentum=0.9, schedule="constant", warmup_steps=0)
  tx, _ = optim.build_optimizer(cfg.optim, cfg.bf, 10)
  params = {"kernel": jnp.array([[3.0, 4.0]]), "bias": jnp.array([1.0, 1.0])}
  grads = {"kernel": jnp.array([[1.0, 0.0]]), "bias": jnp.array([0.5, -0.5])}
  updates, _ = tx.update(grads, tx.init(params), params)
  # kernel: g + wd w = [1.3, 0.4]; trust = 0.001 |w| / |g + wd w| = 0.005 / 1.36015
  d = np.array([1.3, 0.4])
  np.testing.assert_allclose(updates["kernel"][0], -0.5 * 0.001 * 5.0 / np.linalg.norm(d) * d,
                             rtol=1e-5)
  np.testing.assert_allclose(updates["bias"], -0.5 * np.array([0.5, -0.5]), rtol=1e-6)


def _tiny_config(**moco):
  config = load_config("moco_v3_cifar10", "smoke")
  # One schedule for every step test, so they share one compiled program per device count.
  config.total_steps = 10
  config.model.update(name="cnn", width=8, depth=2)
  config.moco.update(dim=8, mlp_dim=16, **moco)
  config.bf.num_heads = 2
  return config


def _step_parts(config, devices, image_shape=(8, 8, 3)):
  mesh = sharding.make_mesh(devices)
  state, step, _, _ = moco_train.build(config, image_shape, mesh)
  images = np.random.default_rng(0).normal(size=(config.batch_size, 2, *image_shape))
  batch = sharding.put_batch({"image": images.astype(np.float32)}, mesh)
  return state, step, batch


def test_step_trains_the_batchformer_and_moves_its_momentum_copy_by_ema():
  config = _tiny_config()
  state, step, batch = _step_parts(config, jax.devices()[:1])
  bf0 = jax.device_get(state["params"]["bf"])
  assert "bf" in state["momentum"]["params"]  # its own copy, equal to the online layer at start
  chex.assert_trees_all_close(jax.device_get(state["momentum"]["params"]["bf"]), bf0)
  state, metrics = step(state, batch, np.int32(0))
  bf1 = jax.device_get(state["params"]["bf"])
  changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.any(a != b)), bf0, bf1))
  assert all(changed), "every trainable BatchFormer parameter should move after a step"
  # The momentum update precedes the gradient step: after step 0 the copy still equals bf0.
  chex.assert_trees_all_close(jax.device_get(state["momentum"]["params"]["bf"]), bf0)
  state, metrics = step(state, batch, np.int32(1))
  m = float(metrics["momentum"])
  assert 0.99 < m < 1.0  # cosine: above the base after step 0
  want = jax.tree.map(lambda old, new: m * old + (1 - m) * new, bf0, bf1)
  chex.assert_trees_all_close(jax.device_get(state["momentum"]["params"]["bf"]), want, rtol=1e-6)


def test_momentum_model_without_batchformer():
  config = _tiny_config(momentum_bf="none", pairing="orig_keys")
  state, step, batch = _step_parts(config, jax.devices()[:1])
  assert "bf" not in state["momentum"]["params"] and "predictor" not in state["momentum"]["params"]
  state, metrics = step(state, batch, np.int32(0))
  assert np.isfinite(float(metrics["loss"]))


def test_step_is_the_same_on_one_and_eight_devices():
  """Keys from the whole global batch, synced BN, global BatchFormer: device count is invisible."""
  config = _tiny_config()
  out = []
  for n in (1, 8):
    state, step, batch = _step_parts(config, jax.devices()[:n])
    state, metrics = step(state, batch, np.int32(0))
    out.append((float(metrics["loss"]), jax.device_get(state["params"])))
  assert out[0][0] == pytest.approx(out[1][0], rel=1e-5)
  chex.assert_trees_all_close(out[0][1], out[1][1], rtol=2e-4, atol=1e-6)


def _run(config, workdir, **kw):
  with tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE):
    return tasks.run(config, workdir, **kw)


def _latest_state(workdir):
  manager = ocp.CheckpointManager(workdir / "checkpoints", item_handlers={
      "state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()})
  state = manager.restore(manager.latest_step(),
                          args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
  manager.close()
  return state


def test_pretrain_resumes_and_the_probe_starts_from_its_backbone(tmp_path):
  config = _tiny_config()
  config.total_steps, config.ckpt.every_steps, config.eval_every_steps = 3, 1, 2
  straight = _run(config, tmp_path / "straight")
  assert straight["step"] == 3 and 0.0 <= straight["knn_acc"] <= 1.0
  knn_steps = [m["step"] for m in read_metrics(tmp_path / "straight") if "eval/knn_acc" in m]
  assert knn_steps == [0, 2, 3]  # at initialization, every eval_every_steps, at the end
  assert (tmp_path / "straight" / "knn_acc.png").stat().st_size > 0
  stopped = _run(config, tmp_path / "resumed", stop_at=1)
  assert stopped["preempted"] and stopped["step"] == 1
  resumed = _run(config, tmp_path / "resumed")
  assert resumed["step"] == 3
  a, b = _latest_state(tmp_path / "straight"), _latest_state(tmp_path / "resumed")
  chex.assert_trees_all_close(a["params"], b["params"], rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(a["momentum"], b["momentum"], rtol=1e-5, atol=1e-6)

  probe = load_config("moco_linear_eval", "dataset=cifar10,smoke")
  probe.model.update(name="cnn", width=8, depth=2)
  probe.init.from_workdir = str(tmp_path / "straight")
  result = _run(probe, tmp_path / "probe")
  assert result["step"] == 2 and 0.0 <= result["acc"] <= 1.0
  after = _latest_state(tmp_path / "probe")
  # Frozen: the probe's backbone is the pre-trained one, bit for bit, after its steps.
  chex.assert_trees_all_equal(after["params"]["backbone"], a["params"]["backbone"])
  chex.assert_trees_all_equal(after["stats"]["backbone"], a["stats"]["backbone"])
  assert set(after["params"]) == {"backbone", "head"}

"""PaCo's train step and runs: the queue's place in the step, 1 vs 8 devices, kill -9 and resume,
and the config errors."""


import chex
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx
from helpers import kill_9_and_resume, load_config, train_losses
from jax.sharding import PartitionSpec as P

from bf_jax import tasks
from bf_jax.data import pipeline
from bf_jax.tasks.classify import model
from bf_jax.tasks.classify.paco import steps as paco_steps
from bf_jax.tasks.classify.paco.loss import paco_rows
from bf_jax.trainer import feed, sharding
from bf_jax.trainer.sharding import AXIS


def _state(workdir):
  mngr = ocp.CheckpointManager(workdir / "checkpoints")
  return mngr.restore(mngr.latest_step(),
                      args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]


def test_one_step_contrasts_against_the_old_queue_then_enqueues_the_new_keys():
  config = load_config("digits_lt_paco", "smoke,bf=off")
  mesh, dataset = feed.prepare(config, jax.devices()[:1])
  parts = model.build(config, mesh, dataset)
  (m_graphdef, m_other), cfg = parts.momentum, config.paco
  step_fn = paco_steps.make_train_step(parts.graphdef, parts.other, m_graphdef, m_other,
                                      parts.tx, mesh, config.seed, cfg, parts.log_prior)
  batch = next(pipeline.train_batches(dataset.train_source, dataset.train_indices,
                                      config.batch_size, dataset.preprocess, 10, 0, 0, 0, 1))
  before = jax.tree.map(np.array, parts.state)
  placed = sharding.put_batch(batch, mesh)
  b = config.batch_size
  weights = dict(alpha=cfg.alpha, beta=cfg.beta, gamma=cfg.gamma, temperature=cfg.temperature,
                 base_temperature=cfg.temperature, supt=cfg.supt)

  def expected(params, stats, m_params, m_stats, queue, images, labels):
    model = nnx.merge(parts.graphdef, params, stats, parts.other)
    keys_bxD = nnx.merge(m_graphdef, m_params, m_stats, m_other)(images[:, 1])
    z, logits = model.train_outputs(images[:, 0], jax.random.key(0))
    contrast = jnp.concatenate([z[0], keys_bxD, queue["keys"]])
    contrast_labels = jnp.concatenate([labels, labels, queue["labels"]])
    rows = paco_rows(z[0], logits[0], labels, contrast, contrast_labels, jnp.arange(b),
                     parts.log_prior, **weights)
    return rows.mean(), keys_bxD

  want_loss, want_keys = jax.jit(jax.shard_map(
      expected, mesh=mesh, in_specs=(P(),) * 5 + (P(AXIS), P(AXIS)), out_specs=(P(), P(AXIS)),
      check_vma=False))(before["params"], before["stats"], before["momentum"]["params"],
                        before["momentum"]["stats"], before["queue"], placed["image"],
                        placed["label"])
  state, metrics = step_fn(parts.state, placed, jnp.asarray(0))
  np.testing.assert_allclose(metrics["loss"], want_loss, rtol=1e-5)
  queue = jax.device_get(state["queue"])
  np.testing.assert_allclose(queue["keys"][:b], want_keys, atol=1e-5)
  np.testing.assert_array_equal(queue["labels"][:b], batch["label"])
  np.testing.assert_array_equal(queue["keys"][b:], before["queue"]["keys"][b:])
  assert int(queue["ptr"]) == b
  # The key encoder moved toward the online weights before the step, not after the update.
  chex.assert_trees_all_close(jax.device_get(state["momentum"]["params"]),
                              {k: before["params"][k] for k in paco_steps.MOMENTUM_GROUPS},
                              atol=1e-6)


def test_same_run_on_one_and_eight_devices(tmp_path):
  """Synced BatchNorm, BatchFormer dropout on, both branches contrasted, queue wrapping."""
  config = load_config("digits_lt_paco", "smoke,branches=both")
  config.model.name, config.model.width = "cnn", 8
  config.total_steps, config.log_every_steps, config.eval_every_steps = 6, 1, 0
  config.ckpt.every_steps = 0
  config.paco.queue = 96  # 6 steps of 64 keys wrap around it
  assert config.bf.dropout > 0
  one = tasks.run(config, tmp_path / "one", devices=jax.devices()[:1])
  eight = tasks.run(config, tmp_path / "eight", devices=jax.devices())
  np.testing.assert_allclose(train_losses(tmp_path / "eight"), train_losses(tmp_path / "one"),
                             rtol=1e-4, atol=1e-5)
  assert eight["acc"] == pytest.approx(one["acc"], abs=1e-6)
  a, b = _state(tmp_path / "one"), _state(tmp_path / "eight")
  assert int(a["queue"]["ptr"]) == 6 * 64 % 96
  chex.assert_trees_all_close(b["queue"], a["queue"], atol=1e-4)
  chex.assert_trees_all_close(b["params"], a["params"], atol=1e-4, rtol=1e-4)


def test_kill_9_then_resume_ends_with_the_straight_runs_parameters_and_queue(tmp_path):
  kill_9_and_resume("configs/digits_lt_paco.py", tmp_path / "killed", "--config.total_steps=120",
                    "--config.eval_every_steps=0", "--config.ckpt.every_steps=10")
  config = load_config("digits_lt_paco")
  config.total_steps, config.eval_every_steps = 120, 0
  tasks.run(config, tmp_path / "straight", devices=jax.devices()[:1])
  killed, straight = _state(tmp_path / "killed"), _state(tmp_path / "straight")
  assert int(killed["queue"]["ptr"]) == 120 * 64 % 256
  chex.assert_trees_all_close(killed["queue"], straight["queue"], atol=1e-5)
  chex.assert_trees_all_close(killed, straight, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("field, value, match", [
    ("paco.queue", 32, r"paco\.queue=32 must hold at least one global batch.*batch_size=64"),
    ("paco.temperature", 0.0, r"paco\.temperature=0\.0 must be a finite number > 0"),
    ("paco.bf_branches", "all", r"paco\.bf_branches='all' must be one of \('centers', 'both'\)"),
    ("paco.alpha", -1.0, r"paco\.alpha=-1\.0 must be a finite number >= 0"),
    ("paco.momentum", 1.5, r"paco\.momentum=1\.5 must be a finite number >= 0"),
    ("data.augment", "two_view", r"data\.augment='two_view' must be one of \('paco_cifar'"),
    ("data.augment", "none", r"data\.augment='none' must be one of \("),
    ("loss.name", "balanced_softmax", r"loss\.name='balanced_softmax' is not taken with paco"),
    ("probe.enabled", True, r"probe\.enabled=True is not taken with paco\.enabled"),
    ("optim.ema_decay", 0.999, r"optim\.ema_decay=0\.999 is not taken with paco"),
    ("init.from_workdir", "runs/x", r"init\.from_workdir='runs/x' is not taken with paco"),
    ("bf.mode", "bf_only", r"bf\.mode='bf_only' must be 'shared' with paco\.enabled"),
])
def test_bad_paco_config_values_are_named_with_the_fix(field, value, match):
  config = load_config("digits_lt_paco")
  group, name = field.split(".")
  config[group][name] = value
  with pytest.raises(ValueError, match=match):
    tasks.validate(config)


def test_two_views_without_paco_are_refused():
  config = load_config("digits_lt")
  config.data.augment = "paco_small"
  with pytest.raises(ValueError, match=r"data\.augment='paco_small' makes two views"):
    tasks.validate(config)

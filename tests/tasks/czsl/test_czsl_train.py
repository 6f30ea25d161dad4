"""task="czsl": the seen-pairs loss, the backbone lr group, end-to-end runs of CGE and CompCos on
a tiny generated compositional dataset, and resume."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import make_czsl_toy, read_metrics

from bf_jax import tasks
from bf_jax.tasks.czsl import data as czsl_data
from bf_jax.tasks.czsl.train import seen_pairs_loss
from bf_jax.trainer import optim
from bf_jax.tasks import base_config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> pathlib.Path:
  tmp = tmp_path_factory.mktemp("czsl_toy")
  make_czsl_toy(tmp / "raw")
  czsl_data.prepare("mit_states", tmp / "raw", tmp / "data", image_format="png")
  return tmp / "data"


def toy_config(data_dir, model: str):
  c = base_config()
  c.task = "czsl"
  c.data.update(name="mit_states", data_dir=str(data_dir), image_size=12, augment="none")
  c.model.update(name="cnn", width=16, depth=2)
  c.bf.update(enabled=True, dropout=0.1)
  c.czsl.update(model=model, emb_dim=16, hidden=32, temperature=0.1)
  c.batch_size, c.eval_batch_size = 16, 32
  c.total_steps, c.eval_every_steps, c.log_every_steps = 40, 20, 10
  c.ckpt.every_steps = 0
  c.optim.update(name="adamw", lr=3e-3, weight_decay=0.0, schedule="constant",
                 backbone_lr_mult=0.5)
  return c


def test_seen_pairs_loss_is_cross_entropy_over_seen_pairs_only():
  seen = np.array([True, False, True, True, False])
  loss = seen_pairs_loss(seen)
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5)), jnp.float32)
  labels = jnp.array([0, 2, 3])
  expected = optax.softmax_cross_entropy_with_integer_labels(logits[:, seen], jnp.array([0, 1, 2]))
  np.testing.assert_allclose(loss(logits, labels, 0), expected, rtol=1e-6)
  moved = logits.at[:, 1].add(50.0).at[:, 4].add(-7.0)  # unseen logits change nothing
  np.testing.assert_allclose(loss(moved, labels, 0), expected, rtol=1e-6)


def test_backbone_lr_mult_scales_only_the_backbone_update():
  c = base_config()
  c.optim.update(name="sgd", lr=0.1, momentum=0.0, weight_decay=0.0, schedule="constant",
                 backbone_lr_mult=0.1)
  tx, _ = optim.build_optimizer(c.optim, c.bf, total_steps=10)
  params = {"backbone": jnp.ones(3), "head": jnp.ones(3), "bf": jnp.ones(3)}
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["head"], -0.1)
  np.testing.assert_allclose(updates["bf"], -0.1)
  np.testing.assert_allclose(updates["backbone"], -0.01)


@pytest.mark.parametrize("model", ["cge", "compcos"])
def test_czsl_trains_and_reports_the_best_val_auc_evaluation(data_dir, tmp_path, model):
  config = toy_config(data_dir, model)
  result = tasks.run(config, tmp_path)
  assert result["step"] == 40 and not result["preempted"]
  saved = json.loads((tmp_path / "czsl_result.json").read_text())
  assert [h["step"] for h in saved["history"]] == [20, 40]
  best = max(saved["history"], key=lambda h: h["val"]["AUC"])
  assert result["selected_step"] == best["step"] and result["AUC"] == best["test"]["AUC"]
  for key in ("AUC", "best_hm", "best_seen", "best_unseen", "attr_acc", "obj_acc"):
    assert 0.0 <= result[key] <= 1.0, key
  # The colour/pattern toy composes: with the unseen pairs favoured (the curve's end), the two
  # unseen test pairs are told apart (chance 0.5) by attribute and object learned separately.
  assert result["best_unseen"] >= 0.75, result
  assert [m for m in read_metrics(tmp_path) if "train/train_acc" in m][-1]["train/train_acc"] >= 0.9
  assert pathlib.Path(tmp_path, "seen_unseen.png").stat().st_size > 0


def test_czsl_resumes_to_the_uninterrupted_result(data_dir, tmp_path):
  config = toy_config(data_dir, "compcos")
  config.total_steps, config.eval_every_steps = 20, 5
  whole = tasks.run(config, tmp_path / "whole")
  stopped = tasks.run(config, tmp_path / "split", stop_at=12)
  assert stopped["step"] == 12 and stopped["preempted"]
  resumed = tasks.run(config, tmp_path / "split")
  history = json.loads((tmp_path / "split" / "czsl_result.json").read_text())["history"]
  assert [h["step"] for h in history] == [5, 10, 15, 20]  # the evaluations before 12 kept
  for key in ("AUC", "best_hm", "selected_step"):
    assert resumed[key] == pytest.approx(whole[key], rel=1e-4), key

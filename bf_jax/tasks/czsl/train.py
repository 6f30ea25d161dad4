"""run(config, workdir): closed-world compositional zero-shot learning (+ BatchFormer).

A ResNet image encoder (fine-tuned, its own lr via ``optim.backbone_lr_mult``), BatchFormer on
the pooled image feature (two streams, pair labels duplicated: features and labels both, unlike
upstream's CGE command), then a compatibility head (CGE or CompCos,
``bf_jax/tasks/czsl/model.py``) scoring every pair. Training sees only images of seen
(training) pairs and a cross-entropy over the seen pairs: unseen pairs' logits are masked out of
the softmax. Every ``eval_every_steps``
the val and test splits are scored over all pairs and evaluated closed-world
(``bf_jax/tasks/czsl/metrics.py``: bias sweep, AUC, best HM, ...); the reported test metrics are
those of the evaluation with the best val AUC (the czsl codebase's model selection).
"""

from __future__ import annotations

import json
import logging
import pathlib
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bf_jax.data import IMAGENET_MEAN, IMAGENET_STD, pipeline
from bf_jax.models.classifier import Classifier, build_backbone, build_batchformer
from bf_jax.tasks.czsl import checks
from bf_jax.tasks.czsl import steps as czsl_steps
from bf_jax.tasks.czsl.data import CZSLData, load_czsl
from bf_jax.tasks.czsl.metrics import closed_world_metrics
from bf_jax.tasks.czsl.model import build_czsl_head
from bf_jax.trainer import feed, plots, sharding, supervised, train_state
from bf_jax.trainer.run import Run

log = logging.getLogger("bf_jax")
REPORTED = ("AUC", "best_hm", "best_seen", "best_unseen", "attr_acc", "obj_acc")


def seen_pairs_loss(seen_mask_P: np.ndarray) -> supervised.LossFn:
  """Cross-entropy over the seen pairs only: the other logits leave the softmax."""
  keep_P = jnp.asarray(seen_mask_P)

  def loss(logits_NxP: jax.Array, labels_N: jax.Array, step: jax.Array) -> jax.Array:
    masked = jnp.where(keep_P, logits_NxP.astype(jnp.float32), -1e30)
    return supervised.cross_entropy(masked, labels_N)

  return loss


def build_czsl_model(config, data: CZSLData, image_shape: tuple[int, ...], local_batch: int,
                     seed: int) -> Classifier:
  """Backbone + BatchFormer + the compatibility head; parameters depend on config and seed."""
  rngs = nnx.Rngs(seed)
  backbone = build_backbone(config.model, image_shape, rngs)
  bf = build_batchformer(config.bf, backbone.feat_dim, local_batch, rngs)
  cfg = config.czsl
  head = build_czsl_head(cfg.model, backbone.feat_dim, data.pairs, emb_dim=cfg.emb_dim,
                         hidden=cfg.hidden, img_layers=cfg.img_layers,
                         word_vectors_path=cfg.word_vectors, temperature=cfg.temperature,
                         rngs=rngs)
  return Classifier(backbone, head, bf, config.bf.mode, freeze_bn=config.model.freeze_bn)


def _scores(logits_step, state, source, preprocess, num_pairs: int, config, mesh
            ) -> tuple[np.ndarray, np.ndarray]:
  """Scores over all pairs [N, P] and true pairs [N] of every image of ``source``."""
  scores, labels = [], []
  for batch in feed.eval_batches(source, config.eval_batch_size, preprocess, num_pairs, mesh):
    logits, y, mask = logits_step(state, batch)
    keep = np.asarray(mask) > 0
    scores.append(np.asarray(logits)[keep])
    labels.append(np.asarray(y)[keep])
  return np.concatenate(scores), np.concatenate(labels)


def evaluate_splits(logits_step, state, data: CZSLData, preprocess, config, mesh
                    ) -> dict[str, dict[str, Any]]:
  """Closed-world metrics of the val and test splits."""
  pairs = data.pairs
  out = {}
  for split in ("val", "test"):
    scores, labels = _scores(logits_step, state, data.sources[split], preprocess,
                             len(pairs.pairs), config, mesh)
    out[split] = closed_world_metrics(scores, labels, pairs.pair_attr, pairs.pair_obj,
                                      pairs.seen_mask, pairs.closed_mask(split))
  return out


def run(config, workdir: str | pathlib.Path, devices: Sequence[jax.Device] | None = None,
        stop_at: int | None = None) -> dict[str, Any]:
  """Trains the config in ``workdir`` (resuming if it holds a checkpoint); returns the test
  metrics of the best-val-AUC evaluation."""
  # ---------------------------------------------------------------- config, mesh, data
  checks.validate(config)
  mesh = sharding.make_mesh(devices, config)
  data = load_czsl(config.data.name, config.data.data_dir)
  train_source = data.sources["train"]
  if len(train_source) < config.batch_size:
    raise ValueError(f"{config.data.name} has {len(train_source)} training images, fewer than "
                     f"one global batch (batch_size={config.batch_size}); lower batch_size.")
  if config.czsl.epochs:  # the recipe counts epochs; the loop counts steps
    config = config.copy_and_resolve_references()
    per_epoch = max(len(train_source) // config.batch_size, 1)
    config.total_steps = config.czsl.epochs * per_epoch
    config.eval_every_steps = config.czsl.eval_every_epochs * per_epoch
    log.info("czsl.epochs=%d: %d steps of %d images (%d per epoch), evaluation every %d steps",
             config.czsl.epochs, config.total_steps, config.batch_size, per_epoch,
             config.eval_every_steps)
  size = config.data.image_size
  preprocess = pipeline.Preprocess(IMAGENET_MEAN, IMAGENET_STD, 255.0, config.data.augment, size,
                                   config.data.crop_min)
  num_pairs, seen = len(data.pairs.pairs), data.pairs.seen_mask
  log.info("czsl %s: %d attrs, %d objs, %d pairs (%d seen); images train %d / val %d / test %d",
           config.data.name, len(data.pairs.attrs), len(data.pairs.objs), num_pairs, seen.sum(),
           len(train_source), len(data.sources["val"]), len(data.sources["test"]))

  # ---------------------------------------------------------------- model, optimizer, steps
  local_batch = config.batch_size // mesh.devices.size
  model = build_czsl_model(config, data, (size, size, 3), local_batch, config.seed)
  built = train_state.init(config, model, mesh)
  train_step = supervised.make_train_step(
      built.graphdef, built.other, built.tx, seen_pairs_loss(seen), mesh, config.seed,
      skip_nonfinite=config.optim.skip_nonfinite > 0)
  logits_step = czsl_steps.make_logits_step(built.graphdef, built.other, mesh)

  # ---------------------------------------------------------------- train loop (resumes if it can)
  history: list[dict] = []
  with Run(config, workdir, mesh, built.state, extras=lambda: ({"history": history}, {}),
           extras_target=lambda info: {}) as run:
    if run.restored_extras is not None:
      history[:] = run.restored_extras[0]["history"]

    def evaluate(state, step: int, selected) -> dict:
      if history and history[-1]["step"] == step:
        return max(history, key=lambda h: h["val"]["AUC"])  # a finished run, resumed
      metrics = evaluate_splits(logits_step, state, data, preprocess, config, mesh)
      history.append({"step": step, **metrics})
      for split, m in metrics.items():
        run.writer.write(step, {k: m[k] for k in REPORTED}, prefix=f"{split}/")
        log.info("eval step %d %s: AUC %.2f, best HM %.2f, seen %.2f, unseen %.2f, attr %.2f, "
                 "obj %.2f", step, split, *(100 * m[k] for k in REPORTED))
      return max(history, key=lambda h: h["val"]["AUC"])  # the first of equals

    batches = run.train_batches(train_source, np.arange(len(train_source)), preprocess,
                                num_pairs)
    state, step, selected = run.train(batches, train_step, evaluate, built.schedule, stop_at)

  # ---------------------------------------------------------------- wrap up
  result: dict[str, Any] = {"step": step, "preempted": step < config.total_steps}
  if selected is None:
    return result
  result.update({k: selected["test"][k] for k in REPORTED}, selected_step=selected["step"],
                val_AUC=selected["val"]["AUC"])
  if run.finish(result) and jax.process_index() == 0:
    (run.workdir / "czsl_result.json").write_text(json.dumps({**result, "history": history},
                                                             indent=1))
    test = selected["test"]
    plots.plot_curves({"test, selected step": (test["unseen_acc_curve"],
                                               test["seen_acc_curve"])},
                      run.workdir / "seen_unseen.png", ylabel="seen accuracy (%)",
                      title=f"{config.data.name}: seen vs unseen accuracy over the bias sweep "
                            f"(AUC {100 * test['AUC']:.2f})", xlabel="unseen accuracy (%)",
                      x_scale=100.0)
  return result

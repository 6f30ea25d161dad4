"""run(config, workdir): MoCo v3 (+ BatchFormer) self-supervised pre-training.

The same loop as supervised training (logging, NaN guard, Orbax checkpoints, preemption), with
a kNN monitor as its evaluation. The linear evaluation that follows is a classifier run on the
frozen backbone: ``configs/moco_linear_eval.py`` with ``--config.init.from_workdir`` set to this
run.
"""

from __future__ import annotations

import json
import logging
import pathlib
from typing import Any, Sequence

import jax
import numpy as np
from etils import epath

from bf_jax.data import Data
from bf_jax.data.split_files import Subset
from bf_jax.models.classifier import build_backbone, build_batchformer
from bf_jax.tasks.moco import checks, knn
from bf_jax.tasks.moco import steps as moco_steps
from bf_jax.tasks.moco.model import build_moco, momentum_params
from bf_jax.trainer import feed, plots, train_state
from bf_jax.trainer.run import Run

log = logging.getLogger("bf_jax")


def _features(feature_step, state, source, dataset: Data, config, mesh
              ) -> tuple[np.ndarray, np.ndarray]:
  """Unit backbone features and labels of every example of ``source`` (eval transform)."""
  feats, labels = [], []
  for batch in feed.eval_batches(source, config.eval_batch_size, dataset.preprocess,
                                 dataset.num_classes, mesh):
    f, y, mask = feature_step(state, batch)
    keep = np.asarray(mask) > 0
    feats.append(np.asarray(f)[keep])
    labels.append(np.asarray(y)[keep])
  return np.concatenate(feats), np.concatenate(labels)


def _subset(source, indices: np.ndarray, limit: int, seed: int):
  """``limit`` of ``indices`` drawn without replacement (all of them when limit is 0)."""
  if limit and limit < len(indices):
    indices = np.sort(np.random.default_rng(seed).choice(indices, limit, replace=False))
  return Subset(source, indices)


def knn_monitor(feature_step, state, dataset: Data, config, mesh) -> float:
  """Top-1 of a weighted kNN classifier: bank from the training set, queries from the test set."""
  cfg = config.moco
  bank = _subset(dataset.train_source, dataset.train_indices, cfg.knn_bank, config.seed)
  queries = _subset(dataset.eval_source, np.arange(len(dataset.eval_source)), cfg.knn_queries,
                    config.seed)
  bank_MxC, bank_labels_M = _features(feature_step, state, bank, dataset, config, mesh)
  query_NxC, query_labels_N = _features(feature_step, state, queries, dataset, config, mesh)
  return knn.knn_accuracy(query_NxC, query_labels_N, bank_MxC, bank_labels_M,
                          dataset.num_classes, k=cfg.knn_k, temperature=cfg.knn_temperature)


def build(config, image_shape: tuple[int, ...], mesh: jax.sharding.Mesh):
  """(state, train_step, feature_step, schedule): the online and momentum models, the optimizer
  and the jitted steps, with the momentum parameters starting as a copy of the online ones."""
  local_batch = config.batch_size // mesh.devices.size
  online, momentum = build_moco(
      config.moco,
      lambda rngs: build_backbone(config.model, image_shape, rngs),
      lambda dim, rngs: build_batchformer(config.bf, dim, local_batch, rngs),
      config.seed)
  m_graphdef, m_params, m_stats, m_other = train_state.split_model(momentum)
  built = train_state.init(config, online, mesh, extra=lambda params, stats: {
      "momentum": {"params": momentum_params(params, m_params), "stats": m_stats}})
  train_step = moco_steps.make_pretrain_step(
      built.graphdef, built.other, m_graphdef, m_other, built.tx, mesh, config.seed, config.moco,
      config.total_steps, skip_nonfinite=config.optim.skip_nonfinite > 0)
  feature_step = moco_steps.make_feature_step(built.graphdef, built.other, mesh)
  return built.state, train_step, feature_step, built.schedule


def run(config, workdir: str | pathlib.Path, devices: Sequence[jax.Device] | None = None,
        stop_at: int | None = None) -> dict[str, Any]:
  """Pre-trains the config in ``workdir`` (resuming if it holds a checkpoint).

  Returns the step reached and the last kNN monitor accuracy (``knn_acc``).
  """
  # ---------------------------------------------------------------- config, mesh, data
  checks.validate(config)
  mesh, dataset = feed.prepare(config, devices)

  # ---------------------------------------------------------------- models, optimizer, steps
  state, train_step, feature_step, schedule = build(config, dataset.image_shape, mesh)
  log.info("MoCo v3 %s + %s: %d trainable parameters on %d devices", config.model.name,
           "BatchFormer" if config.bf.enabled else "no BatchFormer",
           sum(x.size for x in jax.tree.leaves(state["params"])), mesh.devices.size)

  # ---------------------------------------------------------------- train loop (resumes if it can)
  with Run(config, workdir, mesh, state) as run:
    batches = run.train_batches(dataset.train_source, dataset.train_indices, dataset.preprocess,
                                dataset.num_classes)

    def evaluate(state, step: int, last: dict | None) -> dict:
      acc = knn_monitor(feature_step, state, dataset, config, mesh)
      log.info("eval step %d: kNN (k=%d) top-1 %.2f", step, config.moco.knn_k, 100 * acc)
      run.writer.write(step, {"knn_acc": acc}, prefix="eval/")
      return {"knn_acc": acc, "step": step}

    if run.start_step == 0 and config.eval_every_steps:  # the curve's start: random init
      evaluate(run.state, 0, None)
    state, step, last = run.train(batches, train_step, evaluate, schedule, stop_at)
  result = {"step": step, "preempted": step < config.total_steps}
  if last is not None:
    result["knn_acc"] = last["knn_acc"]
  if run.finish(result) and jax.process_index() == 0:
    _plot_knn(run.workdir, "BatchFormer" if config.bf.enabled else "no BatchFormer")
  return result


def _plot_knn(workdir: epath.Path, label: str) -> None:
  """``knn_acc.png``: the monitor over the whole run (resumed parts included, from the log)."""
  points = {}
  for line in (workdir / "metrics.jsonl").read_text().splitlines():
    row = json.loads(line)
    if "eval/knn_acc" in row:
      points[row["step"]] = row["eval/knn_acc"]  # a resumed run may repeat a step: keep the last
  steps_ = sorted(points)
  plots.plot_curves({label: (steps_, [points[s] for s in steps_])}, workdir / "knn_acc.png",
                    "kNN top-1 (%)", "kNN monitor of the backbone feature")

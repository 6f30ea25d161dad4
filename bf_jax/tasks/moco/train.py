"""run(config, workdir): MoCo v3 (+ BatchFormer) self-supervised pre-training.

The same loop as supervised training (logging, NaN guard, Orbax checkpoints, preemption), with
a kNN monitor as its evaluation. The linear probe that follows is a classifier run on the frozen
backbone: ``configs/moco_linear_probe.py`` with ``--config.init.from_workdir`` set to this run.
"""

from __future__ import annotations

import json
import logging
import pathlib
from typing import Any, Sequence

import jax
import numpy as np
from etils import epath

from bf_jax.data import Data, pipeline
from bf_jax.data.split_files import Subset
from bf_jax.models.classifier import build_backbone, build_batchformer
from bf_jax.tasks.moco import checks, knn
from bf_jax.tasks.moco import steps as moco_steps
from bf_jax.tasks.moco.model import build_moco, momentum_params
from bf_jax.trainer import (checkpointing, loop, optim, pairing, plots, run_record, setup, sharding,
                            steps, writers)

log = logging.getLogger("bf_jax")


def _features(feature_step, state, source, dataset: Data, config, mesh
              ) -> tuple[np.ndarray, np.ndarray]:
  """Unit backbone features and labels of every example of ``source`` (eval transform)."""
  feats, labels = [], []
  for batch in pipeline.eval_batches(source, config.eval_batch_size, dataset.preprocess,
                                     dataset.num_classes, jax.process_index(),
                                     jax.process_count()):
    f, y, mask = feature_step(state, sharding.put_batch(batch, mesh))
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
  graphdef, params, stats, other = steps.split_model(online)
  m_graphdef, m_params, m_stats, m_other = steps.split_model(momentum)
  tx, schedule = optim.build_optimizer(config.optim, config.bf, config.total_steps)
  state = sharding.replicate(
      {"params": params, "stats": stats, "opt_state": tx.init(params),
       "momentum": {"params": momentum_params(params, m_params), "stats": m_stats}}, mesh)
  train_step = moco_steps.make_pretrain_step(
      graphdef, other, m_graphdef, m_other, tx, mesh, config.seed, config.moco,
      config.total_steps, skip_nonfinite=config.optim.skip_nonfinite > 0)
  return state, train_step, moco_steps.make_feature_step(graphdef, other, mesh), schedule


def run(config, workdir: str | pathlib.Path, devices: Sequence[jax.Device] | None = None,
        stop_at: int | None = None) -> dict[str, Any]:
  """Pre-trains the config in ``workdir`` (resuming if it holds a checkpoint).

  Returns the step reached and the last kNN monitor accuracy (``knn_acc``).
  """
  # ---------------------------------------------------------------- config, mesh, data
  checks.validate(config)
  mesh, dataset = setup.prepare(config, devices)
  workdir = epath.Path(workdir)

  # ---------------------------------------------------------------- models, optimizer, steps
  state, train_step, feature_step, schedule = build(config, dataset.image_shape, mesh)
  log.info("MoCo v3 %s + %s: %d trainable parameters on %d devices", config.model.name,
           "BatchFormer" if config.bf.enabled else "no BatchFormer",
           sum(x.size for x in jax.tree.leaves(state["params"])), mesh.devices.size)

  # ---------------------------------------------------------------- checkpoint: resume if any
  diffs = run_record.check(config, workdir)  # before anything is written
  ckpt = checkpointing.Checkpointer(workdir, config.ckpt.every_steps, config.ckpt.keep)
  start_step, state = ckpt.restore_latest(state)
  if start_step:
    log.info("resumed from the checkpoint at step %d in %s", start_step, ckpt.directory)
  run_record.record(config, workdir, start_step, diffs, ckpt)
  if start_step == 0:
    pairing.record_init(workdir, pairing.fingerprints(state["params"]))
  writer = writers.MetricWriter(workdir)

  # ---------------------------------------------------------------- train loop
  batches = pipeline.train_batches(
      dataset.train_source, dataset.train_indices, config.batch_size, dataset.preprocess,
      dataset.num_classes, config.seed, start_step, jax.process_index(), jax.process_count())

  def evaluate(state, step: int, last: dict | None) -> dict:
    acc = knn_monitor(feature_step, state, dataset, config, mesh)
    log.info("eval step %d: kNN (k=%d) top-1 %.2f", step, config.moco.knn_k, 100 * acc)
    writer.write(step, {"knn_acc": acc}, prefix="eval/")
    return {"knn_acc": acc, "step": step}

  try:
    if start_step == 0 and config.eval_every_steps:  # the curve's starting point: random init
      evaluate(state, 0, None)
    state, step, last = loop.run(config, mesh, state, start_step, stop_at, batches, train_step,
                                 evaluate, schedule, ckpt, writer)
  finally:  # flush logs and finish async saves even when a step fails
    ckpt.close()
    writer.close()
  result = {"step": step, "preempted": step < config.total_steps}
  if last is not None:
    result["knn_acc"] = last["knn_acc"]
  if step == config.total_steps:
    pairing.write_result(workdir, result)
  if step == config.total_steps and jax.process_index() == 0:
    _plot_knn(workdir, "BatchFormer" if config.bf.enabled else "no BatchFormer")
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

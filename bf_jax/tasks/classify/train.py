"""run(config, workdir): supervised training with BatchFormer (the classifier task)."""

from __future__ import annotations

import functools
import json
import logging
import pathlib
from typing import Any, Sequence

import jax
import numpy as np
from etils import epath

from bf_jax import data
from bf_jax.data import mixup, pipeline
from bf_jax.data.mixup import MixConfig
from bf_jax.tasks.classify import build, checks, metrics, probe
from bf_jax.tasks.classify.paco import step as paco_step
from bf_jax.trainer import (checkpointing, loop, pairing, plots, run_record, setup,
                            sharding, steps, writers)
from bf_jax.trainer import prober as prober_lib

log = logging.getLogger("bf_jax")


def _evaluate(eval_step, state, dataset: data.Data, config, mesh,
              source=None) -> tuple[np.ndarray, np.ndarray]:
  """Per-class (correct, total) over ``source`` (default: the test set), every example once."""
  correct_K = np.zeros(dataset.num_classes)
  total_K = np.zeros(dataset.num_classes)
  source = dataset.eval_source if source is None else source
  batches = pipeline.eval_batches(source, config.eval_batch_size, dataset.preprocess,
                                  dataset.num_classes, jax.process_index(), jax.process_count())
  for batch in batches:
    c, t, _ = eval_step(state, sharding.put_batch(batch, mesh))
    correct_K += np.asarray(jax.device_get(c))
    total_K += np.asarray(jax.device_get(t))
  return correct_K, total_K


def _eval_and_select(eval_step, state, dataset: data.Data, config, mesh, step: int,
                     writer: writers.MetricWriter, selected: dict | None) -> dict:
  """Evaluates the test set (and val set, if any); returns the selected evaluation so far.

  With a val set the selection is the best val accuracy (the long-tail protocol); without,
  the latest evaluation.
  """
  correct_K, total_K = _evaluate(eval_step, state, dataset, config, mesh)
  accs = metrics.group_accuracy(correct_K, total_K, dataset.train_class_counts)
  log.info("eval step %d: %s", step, " ".join(f"{k} {100 * v:.2f}" for k, v in accs.items()))
  writer.write(step, accs, prefix="eval/")
  current = {"correct": correct_K, "total": total_K, "step": step, "val_acc": None}
  if "ema" in state:  # the weights' EMA, evaluated alongside (DeiT's model_ema)
    ema_c, ema_t = _evaluate(eval_step, {**state, "params": state["ema"]}, dataset, config, mesh)
    current["ema_acc"] = float(ema_c.sum() / max(ema_t.sum(), 1.0))
    log.info("eval step %d: EMA weights acc %.2f", step, 100 * current["ema_acc"])
    writer.write(step, {"acc": current["ema_acc"]}, prefix="eval_ema/")
  if dataset.val_source is None:
    return current
  vc, vt = _evaluate(eval_step, state, dataset, config, mesh, dataset.val_source)
  current["val_acc"] = float(vc.sum() / max(vt.sum(), 1.0))
  log.info("val step %d: acc %.2f", step, 100 * current["val_acc"])
  writer.write(step, {"acc": current["val_acc"]}, prefix="val/")
  return current if selected is None or current["val_acc"] > selected["val_acc"] else selected


def _train_loop(config, mesh, dataset: data.Data, state, start_step: int, stop_at: int | None,
                train_step, eval_step, schedule, ckpt: checkpointing.Checkpointer,
                writer: writers.MetricWriter, prober: prober_lib.Prober | None):
  """The classifier's batches and evaluation, through the shared loop."""
  batches = pipeline.train_batches(
      dataset.train_source, dataset.train_indices, config.batch_size, dataset.preprocess,
      dataset.num_classes, config.seed, start_step, jax.process_index(), jax.process_count(),
      sampler=config.data.sampler, labels=dataset.train_labels)

  def evaluate(state, step: int, selected: dict | None) -> dict:
    if prober is not None:  # what the layer attends to, at this point of training
      prober.record(state, step, writer)
    return _eval_and_select(eval_step, state, dataset, config, mesh, step, writer, selected)

  return loop.run(config, mesh, state, start_step, stop_at, batches, train_step, evaluate,
                  schedule, ckpt, writer)


def run(config, workdir: str | pathlib.Path, devices: Sequence[jax.Device] | None = None,
        stop_at: int | None = None) -> dict[str, Any]:
  """Trains the config in ``workdir`` (resuming if it holds a checkpoint); returns final metrics.

  ``devices`` restricts the mesh (tests use it to compare 1 and 8 devices). ``stop_at`` ends the
  run early at that step with a checkpoint, as a preemption would (rerun to resume).
  """
  # ---------------------------------------------------------------- config, mesh, data
  checks.validate(config)
  mesh, dataset = setup.prepare(config, devices)
  workdir = epath.Path(workdir)

  # ---------------------------------------------------------------- model, optimizer, steps
  parts = build.build(config, mesh, dataset)
  state, graphdef, other, loss_fn = parts.state, parts.graphdef, parts.other, parts.loss_fn
  mix = MixConfig(config.data.mixup, config.data.cutmix, config.data.mix_switch_prob,
                  config.data.label_smoothing, dataset.num_classes)
  if config.paco.enabled:  # PaCo's own step: key encoder, queue, its loss
    train_step = paco_step.make_train_step(
        graphdef, other, *parts.momentum, parts.tx, mesh, config.seed, config.paco,
        parts.log_prior, skip_nonfinite=config.optim.skip_nonfinite > 0)
  else:
    train_step = steps.make_train_step(
        graphdef, other, parts.tx, loss_fn, mesh, config.seed,
        skip_nonfinite=config.optim.skip_nonfinite > 0,
        mix_fn=functools.partial(mixup.mix, cfg=mix) if mix.active else None,
        ema_decay=config.optim.ema_decay)
  eval_step = steps.make_eval_step(graphdef, other, dataset.num_classes, mesh)
  n_params = sum(x.size for x in jax.tree.leaves(state["params"]))
  log.info("model %s%s + %s: %d parameters on %d devices", config.model.name,
           " (PaCo)" if config.paco.enabled else "",
           "BatchFormer" if config.bf.enabled else "no BatchFormer", n_params, mesh.devices.size)
  wanted = prober_lib.wanted(config)
  prober = probe.make_prober(config, dataset, parts, mesh, workdir) if wanted else None

  # ---------------------------------------------------------------- checkpoint: resume if any
  diffs = run_record.check(config, workdir)  # before anything is written
  ckpt = checkpointing.Checkpointer(workdir, config.ckpt.every_steps, config.ckpt.keep)
  start_step, state = ckpt.restore_latest(state)
  if start_step:
    log.info("resumed from the checkpoint at step %d in %s", start_step, ckpt.directory)
  elif config.init.from_workdir:  # a second stage starts from the first stage's weights
    state = checkpointing.load_parts(config.init.from_workdir, tuple(config.init.parts), state)
    log.info("initialized %s from %s", list(config.init.parts), config.init.from_workdir)
  elif config.init.freeze_backbone:
    log.warning("init.freeze_backbone without init.from_workdir: the frozen backbone is its random "
                "initialization (a random-feature baseline); set --config.init.from_workdir to the "
                "run that trained it.")
  run_record.record(config, workdir, start_step, diffs, ckpt)
  if start_step == 0:  # after init.from_workdir: a second stage starts from the first's weights
    pairing.record_init(workdir, pairing.fingerprints(state["params"]))
  writer = writers.MetricWriter(workdir)

  # ---------------------------------------------------------------- train loop
  try:
    state, step, selected = _train_loop(
        config, mesh, dataset, state, start_step, stop_at, train_step, eval_step, parts.schedule,
        ckpt, writer, prober)
  finally:  # flush logs and finish async saves even when a step fails
    ckpt.close()
    writer.close()

  # ---------------------------------------------------------------- wrap up
  result = {"step": step, "preempted": step < config.total_steps}
  if selected is not None:
    correct_K, total_K = selected["correct"], selected["total"]
    result.update(metrics.group_accuracy(correct_K, total_K, dataset.train_class_counts),
                  selected_step=selected["step"])
    if selected["val_acc"] is not None:
      result["val_acc"] = selected["val_acc"]
    if "ema_acc" in selected:
      result["ema_acc"] = selected["ema_acc"]
  if step == config.total_steps:
    pairing.write_result(workdir, result)
  if step == config.total_steps and jax.process_index() == 0:
    acc_K = metrics.per_class_accuracy(correct_K, total_K)
    counts = dataset.train_class_counts
    (workdir / "per_class.json").write_text(json.dumps(
        {"train_counts": counts.tolist(), "test_acc": acc_K.tolist(), **result}, indent=1))
    plots.plot_per_class({"this run": (counts, acc_K)}, workdir / "per_class_accuracy.png")
  return result

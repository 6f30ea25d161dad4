"""run(config, workdir): supervised training with BatchFormer (the classifier task)."""

from __future__ import annotations

import functools
import json
import logging
import pathlib
from typing import Any, Sequence

import jax
import numpy as np

from bf_jax import data
from bf_jax.data import mixup
from bf_jax.data.mixup import MixConfig
from bf_jax.tasks.classify import checks, metrics, model, probe
from bf_jax.tasks.classify.paco import steps as paco_steps
from bf_jax.trainer import feed, plots, supervised
from bf_jax.trainer.run import Run

log = logging.getLogger("bf_jax")


def _evaluate(eval_step, state, dataset: data.Data, config, mesh,
              source=None) -> tuple[np.ndarray, np.ndarray]:
  """Per-class (correct, total) over ``source`` (default: the test set), every example once."""
  correct_K = np.zeros(dataset.num_classes)
  total_K = np.zeros(dataset.num_classes)
  source = dataset.eval_source if source is None else source
  for batch in feed.eval_batches(source, config.eval_batch_size, dataset.preprocess,
                                 dataset.num_classes, mesh):
    c, t, _ = eval_step(state, batch)
    correct_K += np.asarray(jax.device_get(c))
    total_K += np.asarray(jax.device_get(t))
  return correct_K, total_K


def _eval_and_select(eval_step, state, dataset: data.Data, config, mesh, step: int,
                     writer, selected: dict | None) -> dict:
  """Evaluates the test set (and val set, if any); returns the selected evaluation so far.

  With a val set the selection is the best val accuracy (the long-tail protocol); without,
  the latest evaluation.
  """
  correct_K, total_K = _evaluate(eval_step, state, dataset, config, mesh)
  accs = metrics.group_accuracy(correct_K, total_K, dataset.train_class_counts,
                                config.data.class_groups)
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


def run(config, workdir: str | pathlib.Path, devices: Sequence[jax.Device] | None = None,
        stop_at: int | None = None) -> dict[str, Any]:
  """Trains the config in ``workdir`` (resuming if it holds a checkpoint); returns final metrics.

  ``devices`` restricts the mesh (tests use it to compare 1 and 8 devices). ``stop_at`` ends the
  run early at that step with a checkpoint, as a preemption would (rerun to resume).
  """
  # ---------------------------------------------------------------- config, mesh, data
  checks.validate(config)
  mesh, dataset = feed.prepare(config, devices)

  # ---------------------------------------------------------------- model, optimizer, steps
  parts = model.build(config, mesh, dataset)
  mix = MixConfig(config.data.mixup, config.data.cutmix, config.data.mix_switch_prob,
                  config.data.label_smoothing, dataset.num_classes)
  if config.paco.enabled:  # PaCo's own step: key encoder, queue, its loss
    train_step = paco_steps.make_train_step(
        parts.graphdef, parts.other, *parts.momentum, parts.tx, mesh, config.seed, config.paco,
        parts.log_prior, skip_nonfinite=config.optim.skip_nonfinite > 0)
  else:
    train_step = supervised.make_train_step(
        parts.graphdef, parts.other, parts.tx, parts.loss_fn, mesh, config.seed,
        skip_nonfinite=config.optim.skip_nonfinite > 0,
        mix_fn=functools.partial(mixup.mix, cfg=mix) if mix.active else None,
        ema_decay=config.optim.ema_decay)
  eval_step = supervised.make_eval_step(parts.graphdef, parts.other, dataset.num_classes, mesh)
  n_params = sum(x.size for x in jax.tree.leaves(parts.state["params"]))
  log.info("model %s%s + %s: %d parameters on %d devices", config.model.name,
           " (PaCo)" if config.paco.enabled else "",
           "BatchFormer" if config.bf.enabled else "no BatchFormer", n_params, mesh.devices.size)

  # ---------------------------------------------------------------- train loop (resumes if it can)
  with Run(config, workdir, mesh, parts.state) as run:
    run.probe(probe.stream(config, dataset), dataset.train_class_counts, parts.graphdef,
              parts.other, parts.loss_fn, config.data.name)
    batches = run.train_batches(dataset.train_source, dataset.train_indices, dataset.preprocess,
                                dataset.num_classes, sampler=config.data.sampler,
                                labels=dataset.train_labels)

    def evaluate(state, step: int, selected: dict | None) -> dict:
      return _eval_and_select(eval_step, state, dataset, config, mesh, step, run.writer,
                              selected)

    state, step, selected = run.train(batches, train_step, evaluate, parts.schedule, stop_at)

  # ---------------------------------------------------------------- wrap up
  result = {"step": step, "preempted": step < config.total_steps}
  if selected is not None:
    correct_K, total_K = selected["correct"], selected["total"]
    result.update(metrics.group_accuracy(correct_K, total_K, dataset.train_class_counts,
                                         config.data.class_groups),
                  selected_step=selected["step"])
    if selected["val_acc"] is not None:
      result["val_acc"] = selected["val_acc"]
    if "ema_acc" in selected:
      result["ema_acc"] = selected["ema_acc"]
  if run.finish(result) and jax.process_index() == 0:
    acc_K = metrics.per_class_accuracy(correct_K, total_K)
    counts = dataset.train_class_counts
    (run.workdir / "per_class.json").write_text(json.dumps(
        {"train_counts": counts.tolist(), "test_acc": acc_K.tolist(), **result}, indent=1))
    plots.plot_per_class({"this run": (counts, acc_K)}, run.workdir / "per_class_accuracy.png")
  return result

"""train_and_evaluate(config, workdir): the training loop every task runs on."""

from __future__ import annotations

import json
import logging
import pathlib
import signal
from typing import Any, Sequence

import jax
import numpy as np

from bf_jax import checkpointing, config_check, data, losses, metrics, optim, plots, sharding
from bf_jax import steps, writers
from bf_jax.data import pipeline
from bf_jax.models.classifier import build_model, scope_to_group_size

log = logging.getLogger("bf_jax")


class _Preemption:
  """Turns SIGTERM into a flag the loop checks at step boundaries."""

  def __init__(self):
    self.requested = False
    self._old = None

  def __enter__(self):
    try:
      self._old = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: rely on Orbax's preemption check alone
      self._old = None
    return self

  def _handle(self, signum, frame):
    log.warning("SIGTERM: saving a checkpoint at the next step boundary, then exiting.")
    self.requested = True

  def __exit__(self, *exc):
    if self._old is not None:
      signal.signal(signal.SIGTERM, self._old)


def _evaluate(eval_step, state, dataset: data.Data, config, mesh,
              source=None) -> tuple[np.ndarray, np.ndarray]:
  """Per-class (correct, total) over ``source`` (default: the test set), every example once."""
  correct_K = np.zeros(dataset.num_classes)
  total_K = np.zeros(dataset.num_classes)
  source = dataset.eval_source if source is None else source
  batches = pipeline.eval_batches(source, config.eval_batch_size, dataset.preprocess,
                                  dataset.num_classes, jax.process_index(), jax.process_count())
  for batch in batches:
    c, t = eval_step(state, sharding.put_batch(batch, mesh))
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
  if dataset.val_source is None:
    return current
  vc, vt = _evaluate(eval_step, state, dataset, config, mesh, dataset.val_source)
  current["val_acc"] = float(vc.sum() / max(vt.sum(), 1.0))
  log.info("val step %d: acc %.2f", step, 100 * current["val_acc"])
  writer.write(step, {"acc": current["val_acc"]}, prefix="val/")
  return current if selected is None or current["val_acc"] > selected["val_acc"] else selected


def _check_finite(window: list[dict], first_step: int) -> None:
  losses_ = [float(m["loss"]) for m in window]
  bad = [first_step + i for i, v in enumerate(losses_) if not np.isfinite(v)]
  if bad:
    raise FloatingPointError(f"loss became {losses_[bad[0] - first_step]} at step {bad[0]}; "
                             f"lower optim.lr, set optim.grad_clip, or check the data. The last "
                             f"checkpoint before it is kept in the workdir.")


def _train_loop(config, mesh, dataset: data.Data, state, start_step: int, stop_at: int | None,
                train_step, eval_step, schedule, ckpt: checkpointing.Checkpointer,
                writer: writers.MetricWriter):
  """Steps from start_step to the end (or a preemption); returns the state and last eval."""
  batches = pipeline.train_batches(
      dataset.train_source, dataset.train_indices, config.batch_size, dataset.preprocess,
      dataset.num_classes, config.seed, start_step, jax.process_index(), jax.process_count(),
      sampler=config.data.sampler, labels=dataset.train_labels)
  progress = writers.Progress(config.total_steps, config.batch_size, start_step)
  window, window_start = [], start_step
  step, selected = start_step, None
  with _Preemption() as preemption:
    while step < config.total_steps:
      batch = sharding.put_batch(next(batches), mesh)
      state, step_metrics = train_step(state, batch, np.int32(step))
      window.append(step_metrics)
      step += 1
      if step % config.log_every_steps == 0 or step == config.total_steps:
        window = jax.device_get(window)
        _check_finite(window, window_start)
        scalars = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
        scalars["lr"] = float(schedule(step - 1))
        log.info(progress.line(step, scalars))
        writer.write(step, scalars, prefix="train/")
        window, window_start = [], step
      if (config.eval_every_steps and step % config.eval_every_steps == 0) \
          or step == config.total_steps:
        selected = _eval_and_select(eval_step, state, dataset, config, mesh, step, writer, selected)
      ckpt.save(step, state, force=step == config.total_steps)
      if preemption.requested or ckpt.reached_preemption(step) or step == stop_at:
        ckpt.save(step, state, force=True)
        log.warning("preempted: saved step %d; rerun the same command to resume.", step)
        break
  if step == config.total_steps and selected is None:  # resumed a finished run
    selected = _eval_and_select(eval_step, state, dataset, config, mesh, step, writer, None)
  return state, step, selected


def train_and_evaluate(config, workdir: str | pathlib.Path,
                       devices: Sequence[jax.Device] | None = None,
                       stop_at: int | None = None) -> dict[str, Any]:
  """Trains the config in ``workdir`` (resuming if it holds a checkpoint); returns final metrics.

  ``devices`` restricts the mesh (tests use it to compare 1 and 8 devices). ``stop_at`` ends the
  run early at that step with a checkpoint, as a preemption would (rerun to resume).
  """
  # ---------------------------------------------------------------- config, mesh, data
  config_check.validate(config)
  workdir = pathlib.Path(workdir)
  mesh = sharding.make_mesh(devices)
  sharding.check_batch("batch_size", config.batch_size, mesh)
  sharding.check_batch("eval_batch_size", config.eval_batch_size, mesh)
  group = scope_to_group_size(config.bf.scope, config.batch_size // mesh.devices.size)
  if config.bf.enabled and group and config.batch_size % group:
    raise ValueError(f"bf.scope={config.bf.scope!r}: group_size={group} does not divide the "
                     f"global batch of {config.batch_size}; set --config.bf.scope to a divisor.")
  dataset = data.load(config.data)
  if len(dataset.train_indices) < config.batch_size:
    raise ValueError(f"The training set has {len(dataset.train_indices)} examples, fewer than "
                     f"one global batch (batch_size={config.batch_size}); lower batch_size.")
  log.info("data %s: %d train / %d eval examples, class counts %s", config.data.name,
           len(dataset.train_indices), len(dataset.eval_source), dataset.train_class_counts.tolist())

  # ---------------------------------------------------------------- model, optimizer, steps
  local_batch = config.batch_size // mesh.devices.size
  model = build_model(config.model, config.bf, dataset.num_classes, dataset.image_shape,
                      local_batch, config.seed, freeze_backbone=config.init.freeze_backbone)
  graphdef, params, stats, other = steps.split_model(model)
  frozen = ("backbone",) if config.init.freeze_backbone else ()
  tx, schedule = optim.build_optimizer(config.optim, config.bf, config.total_steps, frozen)
  loss_fn = losses.build_loss(config.loss, dataset.train_class_counts, config.model.experts)
  state = sharding.replicate({"params": params, "stats": stats, "opt_state": tx.init(params)}, mesh)
  train_step = steps.make_train_step(graphdef, other, tx, loss_fn, mesh, config.seed)
  eval_step = steps.make_eval_step(graphdef, other, dataset.num_classes, mesh)
  n_params = sum(x.size for x in jax.tree.leaves(params))
  log.info("model %s + %s: %d parameters on %d devices", config.model.name,
           "BatchFormer" if config.bf.enabled else "no BatchFormer", n_params, mesh.devices.size)

  # ---------------------------------------------------------------- checkpoint: resume if any
  ckpt = checkpointing.Checkpointer(workdir, config.ckpt.every_steps, config.ckpt.keep)
  start_step = ckpt.latest_step() or 0
  if start_step:
    state = ckpt.restore(start_step, state)
    log.info("resumed from the checkpoint at step %d in %s", start_step, ckpt.directory)
  elif config.init.from_workdir:  # a second stage starts from the first stage's weights
    state = checkpointing.load_parts(config.init.from_workdir, tuple(config.init.parts), state)
    log.info("initialized %s from %s", list(config.init.parts), config.init.from_workdir)
  writer = writers.MetricWriter(workdir, config.to_json_best_effort(indent=2))

  # ---------------------------------------------------------------- train loop
  try:
    state, step, selected = _train_loop(
        config, mesh, dataset, state, start_step, stop_at, train_step, eval_step, schedule,
        ckpt, writer)
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
  if step == config.total_steps and jax.process_index() == 0:
    acc_K = metrics.per_class_accuracy(correct_K, total_K)
    counts = dataset.train_class_counts
    (workdir / "per_class.json").write_text(json.dumps(
        {"train_counts": counts.tolist(), "test_acc": acc_K.tolist(), **result}, indent=1))
    plots.plot_per_class({"this run": (counts, acc_K)}, workdir / "per_class_accuracy.png")
  return result

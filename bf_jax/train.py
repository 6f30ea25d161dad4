"""train_and_evaluate(config, workdir): the training loop every task runs on."""

from __future__ import annotations

import json
import logging
import pathlib
import signal
from typing import Any, Sequence

import jax
import numpy as np
from etils import epath

from bf_jax import checkpointing, config_check, data, losses, metrics, optim, plots, sharding
from bf_jax import steps, writers
from bf_jax.data import pipeline
from bf_jax.models.classifier import build_model, scope_to_group_size

log = logging.getLogger("bf_jax")


class _Preemption:
  """Turns SIGTERM into a flag the loop checks at step boundaries (single-process runs).

  With several processes SIGTERM is left to JAX's preemption notifier: it tells the coordinator,
  and Orbax's ``reached_preemption`` then names one step at which every process saves. Our own
  handler would replace the notifier's and let one process stop alone while the rest hang.
  """

  def __init__(self):
    self.requested = False
    self._old = None

  def __enter__(self):
    if jax.process_count() > 1:
      return self
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


class _FiniteGuard:
  """Checks each step's loss on the host before anything is saved or logged.

  ``max_skips`` 0: the first non-finite loss stops the run, so no checkpoint ever holds the state
  after it. ``max_skips`` N: the step already left the state unchanged (``skipped``); the run
  stops only after N such steps in a row.
  """

  def __init__(self, max_skips: int, ckpt: checkpointing.Checkpointer):
    self.max_skips, self.ckpt, self.in_a_row = max_skips, ckpt, 0

  def check(self, window: list[dict], first_step: int) -> None:
    for i, m in enumerate(window):
      loss, step = float(m["loss"]), first_step + i
      if self.max_skips and float(m["skipped"]):
        self.in_a_row += 1
        log.warning("step %d: loss %s, skipped (parameters unchanged; %d in a row).",
                    step, loss, self.in_a_row)
        if self.in_a_row > self.max_skips:
          self._stop(loss, step, f"after {self.in_a_row} skipped steps in a row "
                                 f"(optim.skip_nonfinite={self.max_skips})")
      elif not np.isfinite(loss):
        self._stop(loss, step, "")
      else:
        self.in_a_row = 0

  def _stop(self, loss: float, step: int, why: str) -> None:
    kept = self.ckpt.latest_step()
    kept = (f"the newest checkpoint, step {kept}, saved before it, is kept in "
            f"{self.ckpt.directory}" if kept is not None else "no checkpoint was saved before it")
    raise FloatingPointError(
        f"loss became {loss} at step {step}{' ' + why if why else ''}; {kept}. Lower optim.lr, "
        f"set optim.grad_clip, check the data, or set optim.skip_nonfinite=N to skip up to N "
        f"such steps in a row.")


def _window_scalars(window: list[dict]) -> dict[str, float]:
  """Means over the window's steps, leaving out skipped ones."""
  kept = [m for m in window if not float(m.get("skipped", 0.0))] or window
  scalars = {k: float(np.mean([m[k] for m in kept])) for k in window[0] if k != "skipped"}
  if "skipped" in window[0]:
    scalars["skipped"] = float(np.sum([m["skipped"] for m in window]))
  return scalars


def _train_loop(config, mesh, dataset: data.Data, state, start_step: int, stop_at: int | None,
                train_step, eval_step, schedule, ckpt: checkpointing.Checkpointer,
                writer: writers.MetricWriter):
  """Steps from start_step to the end (or a preemption); returns the state and last eval."""
  batches = pipeline.train_batches(
      dataset.train_source, dataset.train_indices, config.batch_size, dataset.preprocess,
      dataset.num_classes, config.seed, start_step, jax.process_index(), jax.process_count(),
      sampler=config.data.sampler, labels=dataset.train_labels)
  progress = writers.Progress(config.total_steps, config.batch_size, start_step)
  guard = _FiniteGuard(config.optim.skip_nonfinite, ckpt)
  window, checked = [], 0  # this log window's step metrics; how many the guard has seen
  step, selected = start_step, None
  with _Preemption() as preemption:
    while step < config.total_steps:
      batch = sharding.put_batch(next(batches), mesh)
      state, step_metrics = train_step(state, batch, np.int32(step))
      window.append(step_metrics)
      step += 1
      final = step == config.total_steps
      # Every process asks every step: agreeing on the step to save is a collective.
      preempted = ckpt.reached_preemption(step) or preemption.requested or step == stop_at
      save = ckpt.due(step, final) or preempted
      if save or step % config.log_every_steps == 0 or final:
        window = jax.device_get(window)  # waits for the step; only at log and save steps
        guard.check(window[checked:], step - len(window) + checked)
        checked = len(window)
      if step % config.log_every_steps == 0 or final:
        scalars = _window_scalars(window)
        scalars["lr"] = float(schedule(step - 1))
        log.info(progress.line(step, scalars))
        writer.write(step, scalars, prefix="train/")
        window, checked = [], 0
      if (config.eval_every_steps and step % config.eval_every_steps == 0) or final:
        selected = _eval_and_select(eval_step, state, dataset, config, mesh, step, writer, selected)
      if save:
        ckpt.save(step, state)
      if preempted and not final:
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
  workdir = epath.Path(workdir)
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
  train_step = steps.make_train_step(graphdef, other, tx, loss_fn, mesh, config.seed,
                                     skip_nonfinite=config.optim.skip_nonfinite > 0)
  eval_step = steps.make_eval_step(graphdef, other, dataset.num_classes, mesh)
  n_params = sum(x.size for x in jax.tree.leaves(params))
  log.info("model %s + %s: %d parameters on %d devices", config.model.name,
           "BatchFormer" if config.bf.enabled else "no BatchFormer", n_params, mesh.devices.size)

  # ---------------------------------------------------------------- checkpoint: resume if any
  ckpt = checkpointing.Checkpointer(workdir, config.ckpt.every_steps, config.ckpt.keep)
  start_step, state = ckpt.restore_latest(state)
  if start_step:
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

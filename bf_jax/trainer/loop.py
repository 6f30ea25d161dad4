"""The step loop every task shares: logging, NaN guard, evaluation, checkpoints, preemption."""

from __future__ import annotations

import logging
import signal
from typing import Any, Callable, Iterator

import jax
import numpy as np

from bf_jax.trainer import checkpointing, sharding, writers

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


def run(config, mesh, state, start_step: int, stop_at: int | None, batches: Iterator,
        train_step: Callable, evaluate: Callable, schedule, ckpt: checkpointing.Checkpointer,
        writer: writers.MetricWriter, on_step: Callable[[Any], None] | None = None
        ) -> tuple[Any, int, Any]:
  """Steps from start_step to the end (or a preemption); returns the state, step, last eval.

  ``evaluate(state, step, selected) -> selected`` runs every ``config.eval_every_steps`` and at
  the end; what it returns is passed back to it next time (model selection) and returned here.
  ``on_step(state)`` sees the state after every step, before that step's evaluation and save
  (SWAD's dense averaging).
  """
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
      if on_step is not None:
        on_step(state)
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
        selected = evaluate(state, step, selected)
      if save:
        ckpt.save(step, state)
      if preempted and not final:
        log.warning("preempted: saved step %d; rerun the same command to resume.", step)
        break
  if step == config.total_steps and selected is None:  # resumed a finished run
    selected = evaluate(state, step, None)
  return state, step, selected

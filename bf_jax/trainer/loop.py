"""The step loop every task shares: logging, NaN guard, evaluation, checkpoints, preemption."""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any, Callable, Iterator

import jax
import numpy as np

from bf_jax.trainer import checkpointing, dispatch, writers

log = logging.getLogger("bf_jax")


class Interrupted(KeyboardInterrupt):
  """Ctrl-C ended the run after saving a checkpoint (the same command resumes)."""


class _Signals:
  """SIGTERM and a first Ctrl-C become a flag the loop checks at step boundaries: it saves and
  stops. A second Ctrl-C aborts at once (Python's KeyboardInterrupt).

  With several processes SIGTERM is left to JAX's preemption notifier: it tells the coordinator,
  and Orbax's ``reached_preemption`` then names one step at which every process saves. Our own
  SIGTERM handler would replace the notifier's and let one process stop alone while the rest
  hang, so there a Ctrl-C is passed on as a SIGTERM to this process, taking the same road.
  """

  def __init__(self):
    self.requested = False  # single process: save and stop at the next step boundary
    self.interrupted = False  # a Ctrl-C asked for it (the run then ends with Interrupted)
    self._old: dict[int, Any] = {}

  def __enter__(self):
    wanted = {signal.SIGINT: self._on_sigint}
    if jax.process_count() == 1:
      wanted[signal.SIGTERM] = self._on_sigterm
    try:
      for signum, handler in wanted.items():
        self._old[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread: rely on Orbax's preemption check alone
      self.__exit__()
    return self

  def _on_sigterm(self, signum, frame):
    log.warning("SIGTERM: saving a checkpoint at the next step boundary, then exiting.")
    self.requested = True

  def _on_sigint(self, signum, frame):
    if self.interrupted:
      raise KeyboardInterrupt  # the second Ctrl-C
    if jax.process_count() > 1 and not jax.config.jax_enable_preemption_service:
      raise KeyboardInterrupt  # no notifier to agree on a step: a SIGTERM would just kill us
    self.interrupted = True
    log.warning("Ctrl-C: saving a checkpoint at the next step boundary, then exiting; press "
                "Ctrl-C again to abort without saving.")
    if jax.process_count() > 1:
      os.kill(os.getpid(), signal.SIGTERM)  # JAX's notifier agrees on a step with the others
    else:
      self.requested = True

  def __exit__(self, *exc):
    for signum, old in self._old.items():
      signal.signal(signum, old)
    self._old = {}


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


def run(run, batches: Iterator, train_step: Callable, evaluate: Callable, schedule,
        stop_at: int | None = None, on_step: Callable[[Any], None] | None = None
        ) -> tuple[Any, int, Any]:
  """Steps from the run's restored step to the end (or a preemption, or ``stop_at``); returns
  the state, step and last evaluation. ``run`` holds the config, mesh, state, checkpointer and
  metric writer (``bf_jax.trainer.run.Run``).

  ``evaluate(state, step, selected) -> selected`` runs every ``config.eval_every_steps`` and at
  the end; what it returns is passed back to it next time (model selection) and returned here.
  ``on_step(state)`` sees the state after every step, before that step's evaluation and save
  (e.g. a weight average taken over every step).
  """
  config, mesh, state, ckpt, writer = run.config, run.mesh, run.state, run.ckpt, run.writer
  start_step, k = run.start_step, config.steps_per_dispatch
  if k > 1:
    if on_step is not None:
      raise ValueError(f"config.steps_per_dispatch={k}: this task looks at the state after "
                       f"every step; set --config.steps_per_dispatch=1.")
    if start_step % k:
      raise ValueError(f"the run resumes at step {start_step}, not a multiple of "
                       f"config.steps_per_dispatch={k}; resume with a value that divides it "
                       f"(--config.steps_per_dispatch=1 always does).")
    train_step = dispatch.scanned(train_step, k)
  progress = writers.Progress(config.total_steps, config.batch_size, start_step)
  guard = _FiniteGuard(config.optim.skip_nonfinite, ckpt)
  window, checked = [], 0  # this log window's step metrics; how many the guard has seen
  step, selected = start_step, None
  with _Signals() as signals:
    while step < config.total_steps:
      ckpt.check_saved()  # an async save that failed stops the run here
      waiting = time.perf_counter()  # the host pipeline and the copy to the devices
      batch = dispatch.next_batches(batches, k, mesh)
      progress.waited(time.perf_counter() - waiting)
      state, step_metrics = train_step(state, batch, np.int32(step))
      window.append(step_metrics)
      step += k
      if on_step is not None:
        on_step(state)
      final = step == config.total_steps
      # Every process asks every dispatch: agreeing on the step to save is a collective.
      preempted = ckpt.reached_preemption(step) or signals.requested or (
          stop_at is not None and step >= stop_at)
      save = ckpt.due(step, final) or preempted
      if save or step % config.log_every_steps == 0 or final:
        window = dispatch.per_step(jax.device_get(window), k)  # waits; only at log and save
        guard.check(window[checked:], step - len(window) + checked)
        checked = len(window)
      if step % config.log_every_steps == 0 or final:
        scalars = _window_scalars(window)
        scalars["lr"] = float(schedule(step - 1))
        scalars["input_wait"] = progress.input_share()  # of this window's wall time
        log.info(progress.line(step, scalars))
        writer.write(step, scalars, prefix="train/")
        window, checked = [], 0
      if (config.eval_every_steps and step % config.eval_every_steps == 0) or final:
        selected = evaluate(state, step, selected)
      if save:
        ckpt.save(step, state)
      if preempted and not final:
        if signals.interrupted:
          raise Interrupted(f"interrupted: saved step {step}; rerun the same command to resume.")
        log.warning("preempted: saved step %d; rerun the same command to resume.", step)
        break
  if step == config.total_steps and selected is None:  # resumed a finished run
    selected = evaluate(state, step, None)
  return state, step, selected

"""One run's lifecycle in its workdir, the same for every task.

  with Run(config, workdir, mesh, built.state) as run:   # refuses a changed config, restores
    batches = run.train_batches(source, indices, preprocess, num_classes)
    state, step, selected = run.train(batches, train_step, evaluate, built.schedule, stop_at)
  run.finish(result)                                      # result.json, once total_steps is reached

Entering checks ``config.json`` against the config (``run_record``), takes the workdir's lock,
restores the newest checkpoint (or starts from ``init.from_workdir``), appends this start to the
history, records the initial parameters' fingerprints and opens the metric writer. Leaving closes
the checkpointer (finishing async saves) and the writer and releases the lock on every exit
path. A task builds its state, step and
evaluation and hands them over; ``ckpt.*`` and the process layout never reach it.
"""

from __future__ import annotations

import json
import logging
import pathlib
from typing import Any, Callable, Iterator

import jax
import numpy as np
from etils import epath

from bf_jax.data import pipeline
from bf_jax.trainer import checkpointing, feed, loop, prober, run_record, workdir_lock, writers

log = logging.getLogger("bf_jax")


class Run:
  """``extras() -> (json_info, arrays)``: more run state saved with every checkpoint;
  ``extras_target(info)`` the arrays' restore target. After entering, ``restored_extras`` holds
  what the restored checkpoint saved with it (None on a fresh start)."""

  def __init__(self, config, workdir: str | pathlib.Path, mesh: jax.sharding.Mesh, state: dict,
               extras: Callable[[], tuple[dict, dict]] | None = None,
               extras_target: Callable[[dict], dict] | None = None):
    self.config, self.mesh, self.workdir = config, mesh, epath.Path(workdir)
    self._workdir_arg = workdir
    self.state, self.start_step, self.step = state, 0, 0
    self.restored_extras: tuple[dict, dict] | None = None
    self._extras, self._extras_target = extras, extras_target
    self.ckpt: checkpointing.Checkpointer | None = None
    self.writer: writers.MetricWriter | None = None
    self.prober: prober.Prober | None = None
    self.lock = workdir_lock.WorkdirLock(self.workdir)

  def __enter__(self) -> Run:
    config, workdir = self.config, self.workdir
    if not str(self._workdir_arg).strip():  # Path("") would be the current directory
      raise ValueError(f"workdir={self._workdir_arg!r} is empty; give the run's folder ('.' for "
                       f"the current one).")
    # Before anything is written: a changed config, another run in the workdir.
    diffs = run_record.check(config, workdir, self.mesh.devices.size)
    self.lock.acquire()
    try:
      self.ckpt = checkpointing.Checkpointer(workdir, config.ckpt.every_steps, config.ckpt.keep,
                                             self._extras)
      self._restore(diffs)
      run_record.record(config, workdir, self.start_step, diffs, self.ckpt,
                        self.mesh.devices.size)
      if self.start_step == 0:  # after init.from_workdir: a second stage starts from its weights
        run_record.record_init(workdir, run_record.fingerprints(self.state["params"]))
      elif self.start_step < config.total_steps:
        self._set_result_aside()
      self.writer = writers.MetricWriter(workdir, self.start_step or None)
    except BaseException:
      if self.ckpt is not None:
        self.ckpt.close(raise_errors=False)
      self.lock.release()
      raise
    return self

  def _restore(self, diffs: dict) -> None:
    config = self.config
    try:
      self.start_step, self.state = self.ckpt.restore_latest(self.state, self._extras_target)
    except checkpointing.IncompatibleCheckpoint as e:
      changed = sorted(set(diffs) - set(run_record.MATH_FREE))
      if not changed or isinstance(e, checkpointing.OtherLayout):  # it names its own fix
        raise
      raise checkpointing.IncompatibleCheckpoint(
          f"--config.resume_changes lets {changed} change, but the saved state does not "
          f"fit the state this config builds, so the run cannot go on from it ({e}). A field "
          f"that changes the optimizer's (or the model's) state, such as optim.name, cannot "
          f"change mid-run: drop it from the overrides, or start a new --workdir (with "
          f"--config.init.from_workdir={self.workdir} to take the weights alone).") from None
    self.step = self.start_step
    if self.start_step > config.total_steps:
      raise ValueError(f"the newest checkpoint in {self.ckpt.directory} is at step "
                       f"{self.start_step}, past total_steps={config.total_steps}: nothing to "
                       f"train. Give --config.total_steps={self.start_step} or more (with "
                       f"--config.resume_changes=total_steps), or another --workdir.")
    if self.start_step:
      self.restored_extras = self.ckpt.restored_extras
      log.info("resumed from the checkpoint at step %d in %s", self.start_step,
               self.ckpt.directory)
    else:
      self._start_from(config.init)

  def _set_result_aside(self) -> None:
    """A run that goes on past its ``result.json`` (``resume_changes=total_steps``) moves it
    aside, so no result claims a config the run no longer has; the end writes a new one."""
    path = self.workdir / run_record.RESULT_FILE
    if jax.process_index() == 0 and path.exists():
      step = json.loads(path.read_text()).get("step")
      aside = self.workdir / f"result_at_step{step}.json"
      path.replace(aside)
      log.warning("the run goes on past its result at step %s: moved it to %s", step, aside)

  def _start_from(self, init) -> None:
    if init.from_workdir:  # a second stage starts from the first stage's weights
      self.state = checkpointing.load_parts(init.from_workdir, tuple(init.parts), self.state)
      log.info("initialized %s from %s", list(init.parts), init.from_workdir)
    elif init.freeze_backbone:
      log.warning("init.freeze_backbone without init.from_workdir: the frozen backbone is its "
                  "random initialization (a random-feature baseline); set "
                  "--config.init.from_workdir to the run that trained it.")

  def __exit__(self, exc_type, *exc) -> None:
    try:  # flush logs and finish async saves even when a step failed (without hiding its error)
      self.ckpt.close(raise_errors=exc_type is None)
    finally:
      try:
        if self.writer is not None:
          self.writer.close()
      finally:
        self.lock.release()

  def train_batches(self, source, indices: np.ndarray, preprocess: pipeline.Preprocess,
                    num_classes: int, seed: int | None = None, **options
                    ) -> Iterator[dict[str, np.ndarray]]:
    """The training stream from where this run resumes (``seed`` defaults to config.seed)."""
    seed = self.config.seed if seed is None else seed
    options.setdefault("workers", feed.workers(self.config.data.workers, source))
    return feed.train_batches(source, indices, self.config.batch_size, preprocess, num_classes,
                              seed, self.start_step, self.mesh, **options)

  def probe(self, stream: Callable[[int], Iterator[dict[str, np.ndarray]]],
            train_counts_K: np.ndarray, graphdef, other: dict, loss_fn: Callable,
            name: str) -> None:
    """With ``probe.enabled`` (and a BatchFormer), the probe runs at every evaluation, before
    it, on the first ``probe.batches`` batches of ``stream(probe.seed)``: a task's training
    stream drawn from the probe's seed, so paired arms probe the same samples."""
    if prober.wanted(self.config):
      batches = feed.first_batches(stream(self.config.probe.seed), self.config.probe.batches)
      self.prober = prober.Prober(self.config, batches, train_counts_K, graphdef, other, loss_fn,
                                  self.mesh, self.workdir, name)

  def train(self, batches: Iterator, train_step: Callable, evaluate: Callable, schedule,
            stop_at: int | None = None, on_step: Callable[[Any], None] | None = None
            ) -> tuple[Any, int, Any]:
    """The shared step loop (``loop.run``) from the restored step; returns the state, the step
    reached and what ``evaluate`` returned last."""
    if self.prober is not None:  # what the layer attends to, at this point of training
      task_evaluate = evaluate

      def evaluate(state, step: int, selected):
        self.prober.record(state, step, self.writer)
        return task_evaluate(state, step, selected)

    try:
      self.state, self.step, selected = loop.run(self, batches, train_step, evaluate, schedule,
                                                 stop_at, on_step)
    finally:  # worker processes and threads end with the run, not at garbage collection
      close = getattr(batches, "close", None)
      if close is not None:
        close()
    return self.state, self.step, selected

  @property
  def finished(self) -> bool:
    return self.step == self.config.total_steps

  def finish(self, result: dict[str, Any]) -> bool:
    """Writes ``result.json`` when the run reached ``total_steps`` (a preempted run writes none);
    returns whether it did."""
    if self.finished:
      # A resume that changed total_steps to where it already was trains nothing and saves
      # nothing: its config.json is written now, so the result matches the config it claims.
      self.ckpt.run_pending()
      run_record.write_result(self.workdir, result)
    return self.finished


def check_config(config, workdir: str | pathlib.Path) -> dict[str, tuple[Any, Any]]:
  """Raises when ``workdir`` records another config (``run_record.check``), before anything is
  written: a sweep checks every run's workdir before it starts the first. Returns the recorded
  differences it let through (all of them when the workdir holds no checkpoint)."""
  return run_record.check(config, workdir)


def finished_result(workdir: str | pathlib.Path) -> dict[str, Any] | None:
  """The ``result.json`` of a finished run in ``workdir``, or None."""
  path = epath.Path(workdir) / run_record.RESULT_FILE
  return json.loads(path.read_text()) if path.exists() else None


def restore_newest(config, workdir: str | pathlib.Path, state: dict) -> tuple[int, dict]:
  """(step, state) of a workdir's newest readable checkpoint, read only (step 0: none)."""
  ckpt = checkpointing.Checkpointer(workdir, 0, config.ckpt.keep)
  try:
    return ckpt.restore_latest(state)
  finally:
    ckpt.close()

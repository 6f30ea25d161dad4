"""Orbax checkpoints in ``workdir/checkpoints``: async saves, keep N, automatic resume.

The saved state is everything a resumed run needs besides the config: params, BatchNorm
statistics, optimizer state and the step. RNG keys and the data position are functions of
(seed, step), so restoring the step restores them too.
"""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
import time
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from bf_jax.models import scan_blocks

log = logging.getLogger("bf_jax")


def _path_name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def _leaves_by_path(tree: Any) -> dict[str, Any]:
  """Leaves keyed by a 'a/b/0/c' path; a restore without target turns int keys into strings,
  so paths are compared as text."""
  leaves = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: hasattr(x, "shape") or x is None)[0]
  return {_path_name(path): leaf for path, leaf in leaves if leaf is not None}


def _shapes_by_path(tree: Any) -> dict[str, tuple[int, ...]]:
  return {name: tuple(leaf.shape) for name, leaf in _leaves_by_path(tree).items()}


class IncompatibleCheckpoint(ValueError):
  """A readable checkpoint whose arrays do not fit this run (written by another config)."""


class OtherLayout(IncompatibleCheckpoint):
  """A checkpoint whose blocks are stored in the other model.scan_layers layout."""


def _saved_layout(ours: dict, theirs: dict) -> bool | None:
  """The saved tree's model.scan_layers where it differs from ours (paths by name), else None."""
  def scanned(names):
    return any(scan_blocks.STACKS in name.split("/") for name in names)

  return scanned(theirs) if scanned(ours) != scanned(theirs) else None


def _how(scanned: bool, short: bool = False) -> str:
  how = "stacked (block_stacks)" if scanned else "one by one (blocks)"
  return how.split(" (")[0] if short else how


class NoReadableCheckpoint(RuntimeError):
  """Every checkpoint of the workdir failed to restore (nothing was moved or deleted)."""


class SaveFailed(OSError):
  """A checkpoint could not be written (a full disk, say): the run stops there."""


def _free_bytes(directory: epath.Path) -> int | None:
  if "://" in str(directory):
    return None  # object stores: no free space to ask for
  there = pathlib.Path(os.fspath(directory))
  while not there.exists():
    there = there.parent
  return shutil.disk_usage(there).free


def _size_bytes(directory: epath.Path) -> int:
  there = pathlib.Path(os.fspath(directory))
  return sum(p.stat().st_size for p in there.rglob("*") if p.is_file())


def _mib(n: int) -> str:
  return f"{n / 2**20:,.1f} MiB"


def _reason(e: Exception) -> str:
  """The last line of an error (TensorStore's run to many), or its type."""
  text = str(e).strip()
  return text.splitlines()[-1][:300] if text else type(e).__name__


class Checkpointer:
  """Saves when the loop says so (every ``every_steps``, at the end, on preemption), keeps ``keep``.

  Restoring falls back past unreadable checkpoints to the newest readable one; the unreadable
  ones are moved to ``checkpoints_unreadable/`` (nothing is deleted), so Orbax's keep-N
  garbage collection never counts them and never removes the only good checkpoint.
  """

  def __init__(self, workdir: str | pathlib.Path, every_steps: int, keep: int,
               extras: Callable[[], tuple[dict, dict]] | None = None):
    """``extras() -> (json_info, arrays)``: more run state saved with every checkpoint (e.g.
    a weight average); after a restore, ``restored_extras`` holds what was saved with it."""
    self.directory = _absolute(workdir) / "checkpoints"
    self.every_steps = every_steps
    self._keep = keep
    self._extras = extras
    self.restored_extras: tuple[dict, dict] | None = None
    self.on_next_save: list[Callable[[], None]] = []  # run once, after the next save starts
    self._saving: int | None = None  # the step of the newest save started
    self.manager = self._open()

  def _open(self) -> ocp.CheckpointManager:
    # The loop decides when to save (save(force=True)): Orbax's own policy would also save the
    # first step. Handlers are named up front so a fresh manager can read old metadata.
    options = ocp.CheckpointManagerOptions(max_to_keep=self._keep, create=True,
                                           enable_async_checkpointing=True)
    return ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "meta": ocp.JsonCheckpointHandler(),
                       "extra": ocp.StandardCheckpointHandler()})

  def due(self, step: int, final: bool = False) -> bool:
    """Whether the loop saves after ``step``: every ``every_steps`` steps and at the end."""
    return final or (self.every_steps > 0 and step % self.every_steps == 0)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def check_compatible(self, step: int, target: dict) -> None:
    """Refuses a checkpoint whose arrays do not fit this run's state (another config)."""
    saved = _shapes_by_path(self.manager.item_metadata(step)["state"].tree)
    was = _saved_layout(_shapes_by_path({"params": target["params"]}), saved)
    if was is not None:
      raise OtherLayout(
          f"model.scan_layers={not was} stores the blocks {_how(not was)}, but the checkpoints "
          f"in {self.directory} were written with model.scan_layers={was}; a run cannot change "
          f"its layout mid-run. Resume with --config.model.scan_layers={was}, or start a new "
          f"--workdir.")
    # Every part: an optimizer state of another structure (another optim.name) fits no restore.
    for part in ("params", "stats", *sorted(set(target) - {"params", "stats"})):
      ours = _shapes_by_path({part: target[part]})
      theirs = {k: v for k, v in saved.items() if k.split("/")[0] == part}
      diff = sorted(set(ours.items()) ^ set(theirs.items()))
      if diff:
        name = diff[0][0]
        raise IncompatibleCheckpoint(
            f"The checkpoint at {self.directory}/{step} was written by another config: "
            f"{name} is {theirs.get(name, 'absent')} there but {ours.get(name, 'absent')} here "
            f"({len(diff)} differences). Use a fresh --workdir, or the config that wrote it.")

  def restore(self, step: int, target: dict,
              extras_target: Callable[[dict], dict] | None = None) -> dict:
    """Restores onto ``target``'s shapes and shardings after checking they match.

    ``extras_target(json_info)`` gives the arrays' target of what ``extras`` saved (their
    structure may depend on the info); the result lands in ``restored_extras``.
    """
    self.check_compatible(step, target)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    args = {"state": ocp.args.StandardRestore(abstract)}
    info = None
    if extras_target is not None:
      meta = self.manager.restore(step, args=ocp.args.Composite(
          meta=ocp.args.JsonRestore()))["meta"]
      info = meta.get("extras")
      if info is None:
        raise IncompatibleCheckpoint(
            f"The checkpoint at {self.directory}/{step} holds no extra run state (written by "
            f"another kind of run); use a fresh --workdir, or the config that wrote it.")
      if meta.get("extra_arrays"):
        args["extra"] = ocp.args.StandardRestore(
            jax.tree.map(ocp.utils.to_shape_dtype_struct, extras_target(info)))
    restored = self.manager.restore(step, args=ocp.args.Composite(**args))
    if extras_target is not None:
      self.restored_extras = (info, restored["extra"] if "extra" in args else {})
    return restored["state"]

  def restore_latest(self, target: dict, extras_target: Callable[[dict], dict] | None = None
                     ) -> tuple[int, dict]:
    """(step, state) of the newest readable checkpoint, or (0, target) when there is none.

    A checkpoint from another config is refused (IncompatibleCheckpoint), never skipped.
    """
    unreadable: list[tuple[int, str]] = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        state = self.restore(step, target, extras_target)
      except IncompatibleCheckpoint:
        raise
      except Exception as e:  # noqa: BLE001 - Orbax/TensorStore raise many kinds for bad bytes
        reason = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        log.warning("checkpoint step %d in %s is unreadable (%s); trying an older one.",
                    step, self.directory, reason)
        unreadable.append((step, reason))
        continue
      if unreadable:
        self._set_aside([s for s, _ in unreadable])
        log.warning("resuming from step %d, the newest readable checkpoint; unreadable steps %s "
                    "were moved to %s.", step, [s for s, _ in unreadable], self._aside_dir())
      return step, state
    if unreadable:
      raise NoReadableCheckpoint(
          f"No readable checkpoint in {self.directory}: steps {[s for s, _ in unreadable]} all "
          f"failed to restore (newest: {unreadable[0][1]}). Nothing was deleted. To start over, "
          f"move that directory away or use a fresh --workdir.")
    return 0, target

  def _aside_dir(self):
    return self.directory.parent / "checkpoints_unreadable"

  def _set_aside(self, steps: list[int]) -> None:
    self.manager.close()
    if jax.process_index() == 0:
      aside = self._aside_dir()
      aside.mkdir(parents=True, exist_ok=True)
      stamp = time.strftime("%Y%m%d-%H%M%S")
      for step in steps:
        (self.directory / str(step)).rename(aside / f"{step}-{stamp}")
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("bf_jax checkpoints set aside")
    self.manager = self._open()

  def _refuse_save(self, step: int, why: str) -> None:
    newest = self.latest_step()
    kept = (f"the newest complete checkpoint, step {newest}, is kept" if newest is not None
            else "no checkpoint was saved before it")
    raise SaveFailed(f"saving the checkpoint of step {step} into {self.directory} failed: {why}; "
                     f"{kept}. Free space there (or lower --config.ckpt.keep) and rerun the same "
                     f"command to resume.")

  def _failed(self, e: Exception) -> None:
    free = _free_bytes(self.directory)
    self._refuse_save(self._saving, _reason(e) + (f" ({_mib(free)} free)" if free is not None
                                                  else ""))

  def check_saved(self) -> None:
    """Raises at the first step boundary after an async save failed (e.g. a full disk), so the
    run does not train on with nowhere to save."""
    try:
      self.manager.check_for_errors()
    except Exception as e:  # noqa: BLE001 - TensorStore / Orbax raise many kinds
      self._failed(e)

  def save(self, step: int, state: dict) -> bool:
    """Starts an async save of ``state`` as ``step`` (the loop checked it is finite); refuses
    first when the disk has less room than the newest checkpoint took."""
    # Orbax would wait for the save in flight anyway; waiting here makes it the newest one.
    self.manager.wait_until_finished()
    self.check_saved()
    newest, free = self.latest_step(), _free_bytes(self.directory)
    if newest is not None and free is not None:
      need = _size_bytes(self.directory / str(newest))
      if free < need:
        self._refuse_save(step, f"{_mib(free)} free, the newest checkpoint took {_mib(need)}")
    self._saving = step
    items, meta = {"state": ocp.args.StandardSave(state)}, {"step": step}
    if self._extras is not None:
      meta["extras"], arrays = self._extras()
      if arrays:
        items["extra"], meta["extra_arrays"] = ocp.args.StandardSave(arrays), True
    saved = self.manager.save(step, args=ocp.args.Composite(
        meta=ocp.args.JsonSave(meta), **items), force=True)
    self.run_pending()
    return saved

  def run_pending(self) -> None:
    """Runs what waits for the next save now (the config record of a run that saves no more)."""
    for callback in self.on_next_save:
      callback()
    self.on_next_save = []

  def reached_preemption(self, step: int) -> bool:
    """True on the step all processes agreed to save at after a SIGTERM (multi-process)."""
    return self.manager.reached_preemption(step)

  def close(self, raise_errors: bool = True) -> None:
    """Waits for the last async save; one that failed raises ``SaveFailed`` (after closing),
    or is logged when ``raise_errors`` is off (the run already ends on another error)."""
    try:
      self.manager.wait_until_finished()
      self.manager.check_for_errors()
    except Exception as e:  # noqa: BLE001 - TensorStore / Orbax raise many kinds
      self.manager.close()
      if raise_errors:
        self._failed(e)
      log.warning("the last checkpoint save did not complete: %s", _reason(e))
      return
    self.manager.close()


def _absolute(workdir: str | pathlib.Path) -> epath.Path:
  """gs:// paths as they are; local ones absolute (Orbax requires it)."""
  path = epath.Path(workdir)
  return path if "://" in str(workdir) else epath.Path(pathlib.Path(workdir).absolute())


def load_parts(workdir: str | pathlib.Path, parts: tuple[str, ...], target: dict) -> dict:
  """Weights of the top-level groups ``parts`` from another run's latest checkpoint.

  Returns ``target`` (the {"params", "stats", ...} state) with those groups replaced; shapes must
  match, e.g. a stage-1 backbone reused for classifier re-training.
  """
  directory = _absolute(workdir) / "checkpoints"
  manager = ocp.CheckpointManager(directory, item_handlers={
      "state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()})
  step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"init.from_workdir={str(workdir)!r} holds no checkpoint under "
                            f"{directory}; run the first stage there first.")
  saved = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
  manager.close()
  out = {**target, "params": dict(target["params"]), "stats": dict(target["stats"])}
  for kind in ("params", "stats"):
    for part in parts:
      if part not in target[kind]:
        continue
      if part not in saved[kind]:
        raise ValueError(f"init.parts names {part!r} but the checkpoint in {directory} has no "
                         f"such {kind} group (it has {sorted(saved[kind])}).")
      ours, theirs = _shapes_by_path(target[kind][part]), _shapes_by_path(saved[kind][part])
      was = _saved_layout(ours, theirs)
      if was is not None:
        raise OtherLayout(
            f"init.from_workdir={str(workdir)!r} stores its blocks {_how(was, short=True)} "
            f"(model.scan_layers={was}) and this run {_how(not was, short=True)} "
            f"(model.scan_layers={not was}); a checkpoint is read only into its own layout. "
            f"Give --config.model.scan_layers={was}.")
      if ours != theirs:
        bad = sorted(set(ours.items()) ^ set(theirs.items()))[0][0]
        raise ValueError(f"{kind}/{part}/{bad} has shape {theirs.get(bad)} in {directory} but "
                         f"{ours.get(bad)} here; the first stage used another model.")
      loaded = _leaves_by_path(saved[kind][part])
      out[kind][part] = jax.tree_util.tree_map_with_path(
          lambda path, mine: jax.device_put(np.asarray(loaded[_path_name(path)], mine.dtype),
                                            mine.sharding), target[kind][part])
  return out


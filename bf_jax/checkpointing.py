"""Orbax checkpoints in ``workdir/checkpoints``: async saves, keep N, automatic resume.

The saved state is everything a resumed run needs besides the config: params, BatchNorm
statistics, optimizer state and the step. RNG keys and the data position are functions of
(seed, step), so restoring the step restores them too.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


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


class Checkpointer:
  """Saves every ``every_steps`` steps (and when forced), keeps the newest ``keep``."""

  def __init__(self, workdir: str | pathlib.Path, every_steps: int, keep: int):
    self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, save_interval_steps=max(every_steps, 1), create=True,
        enable_async_checkpointing=True)
    self.every_steps = every_steps
    # Handlers named up front, so a fresh manager can read an old checkpoint's metadata.
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "meta": ocp.JsonCheckpointHandler()})

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def check_compatible(self, step: int, target: dict) -> None:
    """Refuses a checkpoint whose arrays do not fit this run's state (another config)."""
    saved = _shapes_by_path(self.manager.item_metadata(step)["state"].tree)
    for part in ("params", "stats"):
      ours = _shapes_by_path({part: target[part]})
      theirs = {k: v for k, v in saved.items() if k.split("/")[0] == part}
      diff = sorted(set(ours.items()) ^ set(theirs.items()))
      if diff:
        name = diff[0][0]
        raise ValueError(
            f"The checkpoint at {self.directory}/{step} was written by another config: "
            f"{name} is {theirs.get(name, 'absent')} there but {ours.get(name, 'absent')} here "
            f"({len(diff)} differences). Use a fresh --workdir, or the config that wrote it.")

  def restore(self, step: int, target: dict) -> dict:
    """Restores onto ``target``'s shapes and shardings after checking they match."""
    self.check_compatible(step, target)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract)))
    return restored["state"]

  def save(self, step: int, state: dict, force: bool = False) -> bool:
    if self.every_steps <= 0 and not force:
      return False
    return self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave({"step": step})), force=force)

  def reached_preemption(self, step: int) -> bool:
    return self.manager.reached_preemption(step)

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def load_parts(workdir: str | pathlib.Path, parts: tuple[str, ...], target: dict) -> dict:
  """Weights of the top-level groups ``parts`` from another run's latest checkpoint.

  Returns ``target`` (the {"params", "stats", ...} state) with those groups replaced; shapes must
  match, e.g. a stage-1 backbone reused for classifier re-training.
  """
  directory = pathlib.Path(workdir).absolute() / "checkpoints"
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
      if ours != theirs:
        bad = sorted(set(ours.items()) ^ set(theirs.items()))[0][0]
        raise ValueError(f"{kind}/{part}/{bad} has shape {theirs.get(bad)} in {directory} but "
                         f"{ours.get(bad)} here; the first stage used another model.")
      loaded = _leaves_by_path(saved[kind][part])
      out[kind][part] = jax.tree_util.tree_map_with_path(
          lambda path, mine: jax.device_put(np.asarray(loaded[_path_name(path)], mine.dtype),
                                            mine.sharding), target[kind][part])
  return out

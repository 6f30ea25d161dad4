"""Orbax checkpoints in ``workdir/checkpoints``: async saves, keep N, automatic resume.

The saved state is everything a resumed run needs besides the config: params, BatchNorm
statistics, optimizer state and the step. RNG keys and the data position are functions of
(seed, step), so restoring the step restores them too.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp


def _shapes_by_path(tree: Any) -> dict[str, tuple[int, ...]]:
  leaves = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: hasattr(x, "shape") or x is None)[0]
  out = {}
  for path, leaf in leaves:
    if leaf is None:
      continue
    name = "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)
    out[name] = tuple(leaf.shape)
  return out


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

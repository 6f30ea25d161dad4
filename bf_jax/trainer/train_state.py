"""The train state every task's step carries, and the update every step ends with.

The model travels as three pure dicts: ``params`` (nnx.Param), ``stats`` (BatchNorm
statistics) and ``other`` (everything else, e.g. RNG streams, never updated by a step). The
state adds ``opt_state`` and whatever a task's step keeps beside them (a momentum model, a queue).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from bf_jax.models import scan_blocks
from bf_jax.models.resnet import arch, stage_runs
from bf_jax.models.torchvision_resnet import load_npz, load_torchvision_resnet
from bf_jax.trainer import optim, sharding

log = logging.getLogger("bf_jax")
State = dict[str, Any]  # {"params", "stats", "opt_state", ...}


@dataclasses.dataclass
class Built:
  """A model split into pure dicts, its optimizer and schedule, and the replicated state."""
  graphdef: nnx.GraphDef
  other: dict
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  state: State


def init(config, model: nnx.Module, mesh: jax.sharding.Mesh, frozen: tuple[str, ...] = (),
         extra: Callable[[dict, dict], dict] | None = None) -> Built:
  """The state a config starts from: ``init.pretrained`` put into the backbone, the optimizer's
  state, ``extra(params, stats)`` (more parts a task's step keeps), all replicated on ``mesh``.
  A resumed run's checkpoint replaces it."""
  graphdef, params, stats, other = split_model(model)
  load_pretrained(config, params, stats)
  tx, schedule = optim.build_optimizer(config.optim, config.bf, config.total_steps, frozen)
  state = {"params": params, "stats": stats, "opt_state": tx.init(params)}
  if extra is not None:
    state.update(extra(params, stats))
  return Built(graphdef, other, tx, schedule, sharding.replicate(state, mesh))


def load_pretrained(config, params: dict, stats: dict) -> None:
  """Puts ``init.pretrained`` (ImageNet weights, a torchvision .npz) into the backbone, if set."""
  if config.init.pretrained:
    backbone = params["backbone"], stats["backbone"]
    if config.model.scan_layers:  # torchvision's names address blocks one by one
      runs = stage_runs(arch(config.model.name)[1])
      backbone = tuple(_in_stages(t, scan_blocks.unrolled_tree, runs) for t in backbone)
    backbone = load_torchvision_resnet(config.model.name, *backbone,
                                       load_npz(config.init.pretrained))
    if config.model.scan_layers:
      backbone = tuple(_in_stages(t, scan_blocks.scanned_tree, runs) for t in backbone)
    params["backbone"], stats["backbone"] = backbone
    log.info("backbone initialized from %s", config.init.pretrained)


def _in_stages(tree: dict, convert: Callable, runs: list) -> dict:
  return {**tree, "stages": convert(tree["stages"], runs)}


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, dict, dict, dict]:
  graphdef, params, stats, other = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
  return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(stats), nnx.to_pure_dict(other)


def apply_update(tx: optax.GradientTransformation, state: State, grads: dict, loss: jax.Array,
                 new_parts: dict, metrics: dict, skip_nonfinite: bool) -> tuple[State, dict]:
  """The optimizer update every task's step ends with: new params and optimizer state, the
  step's other new state parts (``new_parts``), and the metrics every loop logs.

  ``skip_nonfinite``: a non-finite loss or gradient norm returns ``state`` unchanged (all of it)
  and reports ``skipped`` = 1.
  """
  updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  metrics = {"loss": loss, **metrics, "grad_norm": optax.tree.norm(grads),
             "param_norm": optax.tree.norm(params)}
  new_state = {**new_parts, "params": params, "opt_state": opt_state}
  if skip_nonfinite:
    ok = jnp.isfinite(loss) & jnp.isfinite(metrics["grad_norm"])
    new_state = jax.tree.map(lambda new, old: jnp.where(ok, new, old), new_state, state)
    metrics["skipped"] = 1.0 - ok.astype(jnp.float32)
  return new_state, metrics


def momentum_update(online: dict, momentum: dict, m: jax.Array | float) -> dict:
  """``m * momentum + (1 - m) * online`` for every parameter group the momentum model has
  (a key encoder that follows the online model)."""
  return {k: optax.incremental_update(online[k], momentum[k], 1.0 - m) for k in momentum}

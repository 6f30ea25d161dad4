"""The model, optimizer and initial state a classifier config builds (training and the probe
of a checkpoint both start here)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from bf_jax import data
from bf_jax.models.classifier import build_model
from bf_jax.trainer import losses, optim, setup, sharding, steps


@dataclasses.dataclass
class Parts:
  """What a config builds before training: the model split into pure dicts, the optimizer, the
  loss and the initial (replicated) state."""
  graphdef: Any
  other: dict
  tx: Any
  schedule: Any
  loss_fn: Any
  state: dict


def build(config, mesh, dataset: data.Data) -> Parts:
  """The model, optimizer and initial state of ``config`` (pretrained weights put in)."""
  local_batch = config.batch_size // mesh.devices.size
  model = build_model(config.model, config.bf, dataset.num_classes, dataset.image_shape,
                      local_batch, config.seed, freeze_backbone=config.init.freeze_backbone)
  graphdef, params, stats, other = steps.split_model(model)
  setup.load_pretrained(config, params, stats)  # a resumed run's checkpoint replaces them
  frozen = ("backbone",) if config.init.freeze_backbone else ()
  tx, schedule = optim.build_optimizer(config.optim, config.bf, config.total_steps, frozen)
  loss_fn = losses.build_loss(config.loss, dataset.train_class_counts, config.model.experts)
  state = {"params": params, "stats": stats, "opt_state": tx.init(params)}
  if config.optim.ema_decay:
    state["ema"] = jax.tree.map(np.array, params)  # its own buffers: the step donates state
  return Parts(graphdef, other, tx, schedule, loss_fn, sharding.replicate(state, mesh))

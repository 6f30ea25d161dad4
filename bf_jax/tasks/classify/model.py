"""The model, optimizer and initial state a classifier config builds (training and the probe
of a checkpoint both start here)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from bf_jax import data
from bf_jax.models.classifier import build_model
from bf_jax.tasks.classify.paco import queue as paco_queue
from bf_jax.tasks.classify.paco.model import build_paco
from bf_jax.trainer import supervised, train_state


@dataclasses.dataclass
class Parts(train_state.Built):
  """What a config builds before training: the model split into pure dicts, the optimizer, the
  initial (replicated) state, and the loss."""
  loss_fn: Any = None  # None for PaCo: its step holds its own loss
  momentum: tuple | None = None  # PaCo: the key encoder's (graphdef, other)
  log_prior: Any = None  # PaCo: log class prior of the training set [K]


def build(config, mesh, dataset: data.Data) -> Parts:
  """The model, optimizer and initial state of ``config`` (pretrained weights put in)."""
  local_batch = config.batch_size // mesh.devices.size
  if config.paco.enabled:
    return _build_paco(config, mesh, dataset, local_batch)
  model = build_model(config.model, config.bf, dataset.num_classes, dataset.image_shape,
                      local_batch, config.seed, freeze_backbone=config.init.freeze_backbone)
  frozen = ("backbone",) if config.init.freeze_backbone else ()
  # The weights' EMA gets its own buffers: the step donates the state.
  ema = (lambda params, stats: {"ema": jax.tree.map(np.array, params)}) \
      if config.optim.ema_decay else None
  built = train_state.init(config, model, mesh, frozen, ema)
  loss_fn = supervised.build_loss(config.loss, dataset.train_class_counts, config.model.experts)
  return Parts(**vars(built), loss_fn=loss_fn)


def _build_paco(config, mesh, dataset: data.Data, local_batch: int) -> Parts:
  """PaCo's online model, key encoder (starting as a copy of the online parameters) and queue."""
  online, key_encoder = build_paco(config, dataset.num_classes, dataset.image_shape, local_batch)
  m_graphdef, m_params, m_stats, m_other = train_state.split_model(key_encoder)

  def extra(params, stats):
    return {"momentum": {"params": {k: jax.tree.map(np.array, params[k]) for k in m_params},
                         "stats": m_stats},
            "queue": paco_queue.init(config.paco.queue, config.paco.dim, dataset.num_classes,
                                     config.seed)}

  built = train_state.init(config, online, mesh, extra=extra)
  counts = np.maximum(np.asarray(dataset.train_class_counts, np.float64), 1.0)
  log_prior_K = np.log(counts / counts.sum() + 1e-9).astype(np.float32)
  return Parts(**vars(built), momentum=(m_graphdef, m_other), log_prior=log_prior_K)

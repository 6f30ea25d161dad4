"""What every task does before it builds a model: the mesh and the batch checks against it, the
data, and ImageNet-pretrained backbone weights."""

from __future__ import annotations

import logging
from typing import Sequence

import jax

from bf_jax import data
from bf_jax.models.classifier import check_scope
from bf_jax.models.torchvision_resnet import load_npz, load_torchvision_resnet
from bf_jax.trainer import sharding

log = logging.getLogger("bf_jax")


def make_mesh(config, devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """The data-parallel mesh, with loud errors for batch sizes or a BatchFormer scope it cannot
  split evenly."""
  mesh = sharding.make_mesh(devices)
  sharding.check_batch("batch_size", config.batch_size, mesh)
  sharding.check_batch("eval_batch_size", config.eval_batch_size, mesh)
  check_scope(config.bf, config.batch_size, mesh.devices.size)
  return mesh


def prepare(config, devices: Sequence[jax.Device] | None = None
            ) -> tuple[jax.sharding.Mesh, data.Data]:
  """The mesh and the loaded ``config.data`` (a validated config: the task's ``validate``)."""
  mesh = make_mesh(config, devices)
  dataset = data.load(config.data)
  if len(dataset.train_indices) < config.batch_size:
    raise ValueError(f"The training set has {len(dataset.train_indices)} examples, fewer than "
                     f"one global batch (batch_size={config.batch_size}); lower batch_size.")
  log.info("data %s: %d train / %d eval examples, class counts %s", config.data.name,
           len(dataset.train_indices), len(dataset.eval_source), dataset.train_class_counts.tolist())
  return mesh, dataset


def load_pretrained(config, params: dict, stats: dict) -> None:
  """Puts ``init.pretrained`` (ImageNet weights, a torchvision .npz) into the backbone, if set."""
  if config.init.pretrained:
    params["backbone"], stats["backbone"] = load_torchvision_resnet(
        config.model.name, params["backbone"], stats["backbone"], load_npz(config.init.pretrained))
    log.info("backbone initialized from %s", config.init.pretrained)

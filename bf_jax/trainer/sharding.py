"""The device mesh and the placement of host batches onto it."""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bf_jax.models import bf_config

AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None, config=None) -> jax.sharding.Mesh:
  """One ``data`` axis over all devices of all processes (or the given ones). With ``config``:
  loud errors for batch sizes or a BatchFormer scope the mesh cannot split evenly."""
  devices = list(devices) if devices is not None else jax.devices()
  mesh = jax.make_mesh((len(devices),), (AXIS,), devices=devices)
  if config is not None:
    check_batch("batch_size", config.batch_size, mesh)
    check_batch("eval_batch_size", config.eval_batch_size, mesh)
    bf_config.check_scope(config.bf, config.batch_size, mesh.devices.size)
  return mesh


def check_batch(name: str, batch_size: int, mesh: jax.sharding.Mesh) -> None:
  """A global batch must split evenly over processes and devices."""
  n_dev, n_proc = mesh.devices.size, jax.process_count()
  if batch_size % n_dev or batch_size % n_proc:
    lower = batch_size // n_dev * n_dev
    hint = f"{lower} or {lower + n_dev}" if lower else f"{n_dev}"
    raise ValueError(f"{name}={batch_size} is not divisible by the {n_dev} devices "
                     f"({n_proc} processes); set --config.{name} to a multiple of {n_dev}, "
                     f"e.g. {hint}.")


def replicate(tree: Any, mesh: jax.sharding.Mesh) -> Any:
  return jax.device_put(tree, NamedSharding(mesh, P()))


def put_batch(batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """This process's rows -> global arrays split along ``data``."""
  sharding = NamedSharding(mesh, P(AXIS))
  return {k: v if isinstance(v, jax.Array) else  # already global (a device-resident set)
          jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}

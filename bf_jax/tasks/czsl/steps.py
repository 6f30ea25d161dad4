"""CZSL's evaluation step: every pair score of the global batch, for the bias sweep."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec as P

from bf_jax.trainer.sharding import AXIS
from bf_jax.trainer.train_state import State


def make_logits_step(graphdef: nnx.GraphDef, other: dict, mesh: jax.sharding.Mesh) -> Callable:
  """(state, batch) -> eval logits (float32), labels and mask of the global batch as host arrays
  on every process: for metrics that need every score (CZSL's bias sweep), not class counts."""

  def local(params, stats, other, images):
    return nnx.merge(graphdef, params, stats, other).eval_logits(images).astype(jnp.float32)

  sharded = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), P(), P(AXIS)),
                                  out_specs=P(AXIS)))

  def step(state: State, batch: dict):
    logits = sharded(state["params"], state["stats"], other, batch["image"])
    return multihost_utils.process_allgather((logits, batch["label"], batch["mask"]), tiled=True)

  return step

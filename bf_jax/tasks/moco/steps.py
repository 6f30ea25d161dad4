"""Jitted MoCo v3 pre-training step and the feature step of the kNN monitor.

The state is the classifier's (``params``, ``stats``, ``opt_state``) plus ``momentum``: the
momentum model's ``params`` (an EMA of the online ones, never given gradients) and ``stats``.
Per-device work runs inside ``jax.shard_map``; keys are all-gathered for the loss, so every
query is contrasted with the whole global batch's keys, whatever the device count.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec as P

from bf_jax.tasks.moco.contrastive import moco_loss_rows
from bf_jax.trainer.sharding import AXIS
from bf_jax.trainer.train_state import State, apply_update, momentum_update


def momentum_schedule(base: float, total_steps: int, cosine: bool) -> Callable:
  """step -> m: MoCo v3's ``1 - (1 - base) (1 + cos(pi t / T)) / 2`` (base to 1), or constant."""
  if not cosine:
    return lambda step: jnp.asarray(base, jnp.float32)
  return lambda step: 1.0 - (1.0 - base) * 0.5 * (1.0 + jnp.cos(math.pi * step / total_steps))



def make_pretrain_step(graphdef: nnx.GraphDef, other: dict, m_graphdef: nnx.GraphDef,
                       m_other: dict, tx: optax.GradientTransformation, mesh: jax.sharding.Mesh,
                       seed: int, moco_cfg, total_steps: int,
                       skip_nonfinite: bool = False) -> Callable:
  """(state, batch, step) -> (state, metrics); ``batch["image"]`` is [B, 2, H, W, C] (two views).

  As MoCo v3: the momentum model is first moved toward the current online parameters, then
  makes the keys; the loss is normalized by the global batch size.
  """
  base_key = jax.random.key(seed)
  momentum_at = momentum_schedule(moco_cfg.momentum, total_steps, moco_cfg.momentum_cosine)
  pairing, temperature = moco_cfg.pairing, moco_cfg.temperature

  def local(params, stats, m_params, m_stats, other, m_other, images_Bx2xHxWxC, key):
    model = nnx.merge(graphdef, params, stats, other)
    momentum = nnx.merge(m_graphdef, m_params, m_stats, m_other)
    x1, x2 = images_Bx2xHxWxC[:, 0], images_Bx2xHxWxC[:, 1]
    key_q1, key_q2, key_k1, key_k2 = jax.random.split(key, 4)
    gather = lambda k_TxbxD: jax.lax.all_gather(k_TxbxD, AXIS, axis=1, tiled=True)
    k1_TxGxD = gather(jax.lax.stop_gradient(momentum(x1, key_k1)))
    k2_TxGxD = gather(jax.lax.stop_gradient(momentum(x2, key_k2)))
    b = x1.shape[0]
    first_row = jax.lax.axis_index(AXIS) * b
    n_rows = b * jax.lax.axis_size(AXIS)

    def objective(model):
      q1_SxbxD = model.queries(x1, key_q1)
      q2_SxbxD = model.queries(x2, key_q2)
      rows_b = moco_loss_rows(q1_SxbxD, q2_SxbxD, k1_TxGxD, k2_TxGxD, first_row, pairing,
                              temperature)
      return rows_b.sum() / n_rows

    loss, grads = nnx.value_and_grad(objective)(model)
    new_stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    new_m_stats = nnx.to_pure_dict(nnx.state(momentum, nnx.BatchStat))
    # Replicated params' grads arrive summed over devices (shard_map's check_vma): no pmean.
    return jax.lax.psum(loss, AXIS), nnx.to_pure_dict(grads), new_stats, new_m_stats

  sharded = jax.shard_map(local, mesh=mesh,
                          in_specs=(P(), P(), P(), P(), P(), P(), P(AXIS), P()),
                          out_specs=(P(), P(), P(), P()))

  def step(state: State, batch: dict, step: jax.Array) -> tuple[State, dict]:
    key = jax.random.fold_in(base_key, step)
    m = momentum_at(step)
    m_params = momentum_update(state["params"], state["momentum"]["params"], m)
    loss, grads, stats, m_stats = sharded(state["params"], state["stats"], m_params,
                                          state["momentum"]["stats"], other, m_other,
                                          batch["image"], key)
    return apply_update(tx, state, grads, loss,
                        {"stats": stats, "momentum": {"params": m_params, "stats": m_stats}},
                        {"momentum": m}, skip_nonfinite)

  return jax.jit(step, donate_argnums=(0,))


def make_feature_step(graphdef: nnx.GraphDef, other: dict, mesh: jax.sharding.Mesh) -> Callable:
  """(state, batch) -> L2-normalized backbone features, labels and mask of the global batch, as
  host arrays on every process (what the kNN monitor needs)."""

  def local(params, stats, other, images):
    model = nnx.merge(graphdef, params, stats, other)
    feats_bxC = model.features(images).astype(jnp.float32)
    return feats_bxC / jnp.maximum(jnp.linalg.norm(feats_bxC, axis=-1, keepdims=True), 1e-12)

  sharded = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), P(), P(AXIS)),
                                  out_specs=P(AXIS)))

  def step(state: State, batch: dict):
    feats = sharded(state["params"], state["stats"], other, batch["image"])
    return multihost_utils.process_allgather((feats, batch["label"], batch["mask"]), tiled=True)

  return step

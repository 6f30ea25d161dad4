"""PaCo's jitted train step: queries, keys of the momentum encoder, the queue, one update.

As PaCo (a MoCo v2 encoder pair): the momentum encoder moves toward the current online
parameters first, then makes the keys; the loss contrasts against the queue as it was before
this step, and this step's keys are enqueued after. Queries and keys are all-gathered, so every
anchor sees the whole global batch whatever the device count (upstream contrasted against its
GPU's batch and the shared queue); the queries keep their gradient through the gather.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import PartitionSpec as P

from bf_jax.tasks.classify.paco import queue as queue_lib
from bf_jax.tasks.classify.paco.loss import paco_rows
from bf_jax.trainer.sharding import AXIS
from bf_jax.trainer.train_state import State, apply_update, momentum_update

MOMENTUM_GROUPS = ("backbone", "projector")  # the online groups the momentum encoder mirrors



def make_train_step(graphdef: nnx.GraphDef, other: dict, m_graphdef: nnx.GraphDef,
                    m_other: dict, tx: optax.GradientTransformation, mesh: jax.sharding.Mesh,
                    seed: int, paco_cfg, log_prior_K: jax.Array,
                    skip_nonfinite: bool = False) -> Callable:
  """(state, batch, step) -> (state, metrics); ``batch["image"]`` is [B, 2, H, W, C]: the
  query view, then the key view. The loss is the mean over the global batch's rows of every
  stream (2B rows with BatchFormer, as the shared classifier's)."""
  base_key = jax.random.key(seed)
  weights = dict(alpha=paco_cfg.alpha, beta=paco_cfg.beta, gamma=paco_cfg.gamma,
                 temperature=paco_cfg.temperature, base_temperature=paco_cfg.temperature,
                 supt=paco_cfg.supt)

  def local(params, stats, m_params, m_stats, other, m_other, queue, images_bx2xHxWxC,
            labels_b, key):
    model = nnx.merge(graphdef, params, stats, other)
    momentum = nnx.merge(m_graphdef, m_params, m_stats, m_other)
    gather = lambda x: jax.lax.all_gather(x, AXIS, axis=0, tiled=True)
    keys_bxD = jax.lax.stop_gradient(momentum(images_bx2xHxWxC[:, 1]))
    keys_GxD = gather(keys_bxD)
    labels_G = gather(labels_b)
    b = labels_b.shape[0]
    first_row = jax.lax.axis_index(AXIS) * b
    n_global = b * jax.lax.axis_size(AXIS)

    def objective(model):
      z_Sxbxd, logits_SxbxK = model.train_outputs(images_bx2xHxWxC[:, 0], key)
      queries_GxD = gather(z_Sxbxd[0])
      contrast_NxD = jnp.concatenate([queries_GxD, keys_GxD, queue["keys"]])
      contrast_labels_N = jnp.concatenate([labels_G, labels_G, queue["labels"]])
      total = 0.0
      for s in range(logits_SxbxK.shape[0]):
        if s < z_Sxbxd.shape[0]:  # a contrasted stream; only the original one is in the set
          self_col_b = first_row + jnp.arange(b) if s == 0 else jnp.full((b,), -1)
          rows_b = paco_rows(z_Sxbxd[s], logits_SxbxK[s], labels_b, contrast_NxD,
                             contrast_labels_N, self_col_b, log_prior_K, **weights)
        else:  # a BatchFormer row of the center branch alone: PaCo's loss with no contrast
          rows_b = paco_rows(jnp.zeros((b, 0)), logits_SxbxK[s], labels_b, jnp.zeros((0, 0)),
                             labels_G[:0], jnp.full((b,), -1), log_prior_K, **weights)
        total = total + rows_b.sum()
      loss = total / (logits_SxbxK.shape[0] * n_global)
      correct = (jnp.argmax(logits_SxbxK[0], -1) == labels_b).sum()
      return loss, correct / n_global

    (loss, acc), grads = nnx.value_and_grad(objective, has_aux=True)(model)
    new_stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    new_m_stats = nnx.to_pure_dict(nnx.state(momentum, nnx.BatchStat))
    # Replicated params' grads arrive summed over devices (shard_map's check_vma): no pmean.
    return (jax.lax.psum(loss, AXIS), jax.lax.psum(acc, AXIS), nnx.to_pure_dict(grads),
            new_stats, new_m_stats, keys_bxD)

  sharded = jax.shard_map(local, mesh=mesh,
                          in_specs=(P(), P(), P(), P(), P(), P(), P(), P(AXIS), P(AXIS), P()),
                          out_specs=(P(), P(), P(), P(), P(), P(AXIS)))

  def step(state: State, batch: dict, step: jax.Array) -> tuple[State, dict]:
    key = jax.random.fold_in(base_key, step)
    m_params = momentum_update(state["params"], state["momentum"]["params"], paco_cfg.momentum)
    loss, acc, grads, stats, m_stats, keys_GxD = sharded(
        state["params"], state["stats"], m_params, state["momentum"]["stats"], other, m_other,
        state["queue"], batch["image"], batch["label"], key)
    whole = jax.sharding.NamedSharding(mesh, P())
    keys_GxD, labels_G = (jax.sharding.reshard(x, whole) for x in (keys_GxD, batch["label"]))
    queue = queue_lib.enqueue(state["queue"], keys_GxD, labels_G)  # after the loss
    return apply_update(tx, state, grads, loss,
                        {"stats": stats, "momentum": {"params": m_params, "stats": m_stats},
                         "queue": queue}, {"train_acc": acc}, skip_nonfinite)

  return jax.jit(step, donate_argnums=(0,))

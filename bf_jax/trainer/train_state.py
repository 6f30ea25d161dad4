"""Jitted train and eval steps: per-device work inside ``jax.shard_map``, the update outside.

The model state travels as three pure dicts: ``params`` (nnx.Param), ``stats`` (BatchNorm
statistics) and ``other`` (everything else, e.g. RNG streams, never updated here).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import PartitionSpec as P

from bf_jax.trainer.losses import LossFn
from bf_jax.trainer.sharding import AXIS

State = dict[str, Any]  # {"params", "stats", "opt_state"}


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, dict, dict, dict]:
  graphdef, params, stats, other = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
  return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(stats), nnx.to_pure_dict(other)


def make_train_step(graphdef: nnx.GraphDef, other: dict, tx: optax.GradientTransformation,
                    loss_fn: LossFn, mesh: jax.sharding.Mesh, seed: int,
                    skip_nonfinite: bool = False, mix_fn: Callable | None = None,
                    ema_decay: float = 0.0) -> Callable:
  """(state, batch, step) -> (state, metrics); the loss is normalized by the global row count.

  The dropout key is fold_in(key(seed), step): a resumed run draws what it would have drawn.
  ``skip_nonfinite``: a step whose loss or gradient is NaN/Inf returns the state it was given
  (parameters, BatchNorm statistics, optimizer state) and reports ``skipped`` = 1.
  ``mix_fn(images, labels, key) -> (images, soft targets)``: Mixup/CutMix/label smoothing on
  each device's batch (``bf_jax/data/mixup.py``); accuracy then counts the targets' argmax.
  ``ema_decay`` > 0: ``state["ema"]`` follows the params, ``ema = d * ema + (1 - d) * params``
  after every update (a skipped step leaves it too).
  """
  base_key = jax.random.key(seed)

  def local(params, stats, other, images, labels, key, step):
    model = nnx.merge(graphdef, params, stats, other)
    if mix_fn is not None:  # per device: fold in the device index so devices mix differently
      mix_key = jax.random.fold_in(jax.random.fold_in(key, 7), jax.lax.axis_index(AXIS))
      images, labels = mix_fn(images, labels, mix_key)

    def objective(model):
      logits, labels_rows = model.train_logits(images, labels, key)
      n_rows = logits.shape[0] * jax.lax.axis_size(AXIS)
      loss = loss_fn(logits, labels_rows, step).sum() / n_rows
      b = images.shape[0]  # accuracy of the original stream's rows (experts averaged)
      mean_logits = logits.mean(axis=1) if logits.ndim == 3 else logits
      hard = labels_rows if labels_rows.ndim == 1 else jnp.argmax(labels_rows, -1)
      correct = (jnp.argmax(mean_logits[:b], -1) == hard[:b]).sum()
      return loss, correct / (b * jax.lax.axis_size(AXIS))

    (loss, acc), grads = nnx.value_and_grad(objective, has_aux=True)(model)
    new_stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    # Replicated params' grads arrive summed over devices (shard_map's check_vma): no pmean.
    return jax.lax.psum(loss, AXIS), jax.lax.psum(acc, AXIS), nnx.to_pure_dict(grads), new_stats

  sharded = jax.shard_map(local, mesh=mesh,
                          in_specs=(P(), P(), P(), P(AXIS), P(AXIS), P(), P()),
                          out_specs=(P(), P(), P(), P()))

  def step(state: State, batch: dict, step: jax.Array) -> tuple[State, dict]:
    key = jax.random.fold_in(base_key, step)
    loss, acc, grads, stats = sharded(state["params"], state["stats"], other,
                                      batch["image"], batch["label"], key, step)
    new_state, metrics = apply_update(tx, state, grads, loss, {"stats": stats},
                                      {"train_acc": acc}, skip_nonfinite)
    if ema_decay:
      ema = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, state["ema"],
                         new_state["params"])
      if skip_nonfinite:
        ema = jax.tree.map(lambda new, old: jnp.where(metrics["skipped"] > 0, old, new), ema,
                           state["ema"])
      new_state["ema"] = ema
    return new_state, metrics

  return jax.jit(step, donate_argnums=(0,))


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
  (MoCo's and PaCo's key encoders)."""
  return {k: optax.incremental_update(online[k], momentum[k], 1.0 - m) for k in momentum}


def make_eval_step(graphdef: nnx.GraphDef, other: dict, num_classes: int,
                   mesh: jax.sharding.Mesh) -> Callable:
  """(state, batch) -> per-class correct, total and summed cross-entropy over the global batch
  (masked rows count nothing)."""

  def local(params, stats, other, images, labels, mask):
    model = nnx.merge(graphdef, params, stats, other)
    logits = model.eval_logits(images).astype(jnp.float32)
    pred = jnp.argmax(logits, -1)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    sums = [jax.ops.segment_sum(x * mask, labels, num_classes) for x in (pred == labels, 1.0, ce)]
    return tuple(jax.lax.psum(x, AXIS) for x in sums)

  sharded = jax.shard_map(local, mesh=mesh,
                          in_specs=(P(), P(), P(), P(AXIS), P(AXIS), P(AXIS)),
                          out_specs=(P(), P(), P()))

  def step(state: State, batch: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
    return sharded(state["params"], state["stats"], other, batch["image"], batch["label"],
                   batch["mask"])

  return jax.jit(step)

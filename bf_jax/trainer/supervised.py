"""The supervised classifier's objective and steps: per-row classification losses for long-tailed
training, and the jitted train and eval steps (per-device work inside ``jax.shard_map``, the
update outside) of a model with ``train_logits`` and ``eval_logits``.

Each loss is ``fn(logits_NxK, labels_N, step) -> loss_N``; the train step sums the rows and
divides by the global row count, so results do not depend on the device count. ``step`` drives
schedules inside a loss (LDAM's deferred re-weighting).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import PartitionSpec as P

from bf_jax.trainer.sharding import AXIS
from bf_jax.trainer.train_state import State, apply_update

LOSSES = ("ce", "balanced_softmax", "logit_adjusted", "ldam")

LossFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def cross_entropy(logits_NxK: jax.Array, labels_N: jax.Array) -> jax.Array:
  """Per-row cross-entropy; ``labels`` are class indices [N] or soft targets [N, K] (Mixup,
  label smoothing)."""
  if labels_N.ndim == logits_NxK.ndim:
    return optax.softmax_cross_entropy(logits_NxK.astype(jnp.float32), labels_N)
  return optax.softmax_cross_entropy_with_integer_labels(logits_NxK.astype(jnp.float32), labels_N)


def balanced_softmax(logits_NxK: jax.Array, labels_N: jax.Array, log_prior_K: jax.Array) -> jax.Array:
  """Balanced Softmax (Ren et al. 2020): cross-entropy on logits + log class prior."""
  return cross_entropy(logits_NxK + log_prior_K, labels_N)


def logit_adjusted(logits_NxK: jax.Array, labels_N: jax.Array, log_prior_K: jax.Array,
                   tau: float) -> jax.Array:
  """Logit-adjusted cross-entropy (Menon et al. 2021); tau = 1 is Balanced Softmax."""
  return cross_entropy(logits_NxK + tau * log_prior_K, labels_N)


def ldam_margins(counts_K: np.ndarray, max_margin: float) -> np.ndarray:
  """LDAM margins m_j proportional to n_j^(-1/4), the largest equal to max_margin."""
  m = 1.0 / np.sqrt(np.sqrt(np.maximum(counts_K, 1)))
  return m * (max_margin / m.max())


def drw_weights(counts_K: np.ndarray, beta: float) -> np.ndarray:
  """Class-balanced weights (1 - beta) / (1 - beta^n_j), normalized to sum to K."""
  w = (1.0 - beta) / (1.0 - np.power(beta, np.maximum(counts_K, 1)))
  return w * len(counts_K) / w.sum()


def ldam(logits_NxK: jax.Array, labels_N: jax.Array, margins_K: jax.Array, scale: float,
         weights_K: jax.Array) -> jax.Array:
  """LDAM (Cao et al. 2019): cross-entropy after subtracting scale * m_y from the true logit.

  With a cosine head whose logits are ``scale * cos``, this is the paper's s * (cos - m_y).
  Rows are weighted by ``weights_K[y]`` (all ones before deferred re-weighting starts).
  """
  onehot_NxK = jax.nn.one_hot(labels_N, logits_NxK.shape[-1], dtype=jnp.float32)
  shifted = logits_NxK.astype(jnp.float32) - scale * margins_K * onehot_NxK
  return weights_K[labels_N] * cross_entropy(shifted, labels_N)


def ride(base: LossFn, diversity_factor: float, temperature: float) -> LossFn:
  """RIDE's loss on expert logits [N, E, K]: each expert's base loss plus the diversity term

  ``factor * T^2 * KL(softmax(mean/T) || softmax(expert/T))`` per expert; the factor is negative
  (RIDE's -0.2), which rewards experts for disagreeing with their mean.
  """

  def fn(logits_NxExK, labels_N, step):
    mean_NxK = logits_NxExK.mean(axis=1).astype(jnp.float32)
    p_mean = jax.nn.softmax(mean_NxK / temperature)
    total = 0.0
    for e in range(logits_NxExK.shape[1]):
      logits_e = logits_NxExK[:, e].astype(jnp.float32)
      kl = jnp.sum(p_mean * (jnp.log(p_mean + 1e-12) - jax.nn.log_softmax(logits_e / temperature)),
                   axis=-1)
      total = total + base(logits_e, labels_N, step) + diversity_factor * temperature ** 2 * kl
    return total

  return fn


def build_loss(loss_cfg, train_class_counts: np.ndarray, experts: int = 0) -> LossFn:
  """The per-row loss a config names; priors and margins come from the training-set counts.

  With ``experts > 0`` it is applied to every expert inside RIDE's loss.
  """
  base = _base_loss(loss_cfg, train_class_counts)
  if experts:
    return ride(base, loss_cfg.diversity_factor, loss_cfg.diversity_temperature)
  return base


def _base_loss(loss_cfg, train_class_counts: np.ndarray) -> LossFn:
  counts = np.maximum(np.asarray(train_class_counts, np.float64), 1.0)  # empty class: no -inf
  log_prior_K = jnp.asarray(np.log(counts / counts.sum()), jnp.float32)
  name = loss_cfg.name
  if name == "ce":
    return lambda logits, labels, step: cross_entropy(logits, labels)
  if name == "balanced_softmax":
    return lambda logits, labels, step: balanced_softmax(logits, labels, log_prior_K)
  if name == "logit_adjusted":
    return lambda logits, labels, step: logit_adjusted(logits, labels, log_prior_K, loss_cfg.tau)
  if name == "ldam":
    margins_K = jnp.asarray(ldam_margins(counts, loss_cfg.ldam_max_margin), jnp.float32)
    drw_K = jnp.asarray(drw_weights(counts, loss_cfg.drw_beta), jnp.float32)
    start = loss_cfg.drw_start_step  # deferred re-weighting: class-balanced weights from here

    def fn(logits, labels, step):
      weights_K = jnp.where(step >= start, drw_K, jnp.ones_like(drw_K)) if start >= 0 \
          else jnp.ones_like(drw_K)
      return ldam(logits, labels, margins_K, loss_cfg.ldam_scale, weights_K)

    return fn
  raise ValueError(f"loss.name={name!r} is unknown; choose one of {LOSSES}.")


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

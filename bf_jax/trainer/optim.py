"""Optimizer and learning-rate schedule from the config (optax).

BatchFormer parameters (the top-level ``bf`` subtree) get their own learning-rate and
weight-decay multipliers (``bf.lr_mult``, ``bf.wd_mult``; upstream commonly used 0.1x lr); the
``backbone`` subtree its own learning-rate multiplier (``optim.backbone_lr_mult``).
"""

from __future__ import annotations

from typing import Any

import jax
import optax

from bf_jax.models import scan_blocks

OPTIMIZERS = ("sgd", "adamw", "lars")
BF_GROUPS = ("bf", "bfs")  # top-level params of the BatchFormer: V1 "bf", a ViT's V2 "bfs"
SCHEDULES = ("cosine", "step", "constant")


def build_schedule(optim_cfg, total_steps: int, mult: float = 1.0) -> optax.Schedule:
  """Linear warmup from 0, then cosine to 0, step decay, or constant."""
  peak, warmup = optim_cfg.lr * mult, optim_cfg.warmup_steps
  if optim_cfg.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total_steps, warmup + 1))
  if optim_cfg.schedule == "step":
    after = optax.piecewise_constant_schedule(
        peak, {int(f * total_steps) - warmup: optim_cfg.step_factor
               for f in optim_cfg.step_fractions})
  elif optim_cfg.schedule == "constant":
    after = optax.constant_schedule(peak)
  else:
    raise ValueError(f"optim.schedule={optim_cfg.schedule!r} is unknown; choose one of "
                     f"{SCHEDULES}.")
  if warmup == 0:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def _base(optim_cfg, schedule: optax.Schedule, weight_decay: float) -> optax.GradientTransformation:
  if optim_cfg.name == "sgd":  # torch-style coupled decay: wd * w added to the gradient
    return optax.chain(optax.add_decayed_weights(weight_decay),
                       optax.sgd(schedule, momentum=optim_cfg.momentum or None,
                                 nesterov=optim_cfg.nesterov))
  if optim_cfg.name == "adamw":  # DeiT/timm: no decay on biases, norms, pos/cls embeddings
    return optax.adamw(schedule, b1=optim_cfg.b1, b2=optim_cfg.b2, weight_decay=weight_decay,
                       mask=_decayed)
  if optim_cfg.name == "lars":  # self-supervised LARS recipes: biases and norm scales get neither
    return optax.lars(schedule, weight_decay, weight_decay_mask=_matrices,
                      trust_coefficient=optim_cfg.trust_coefficient, trust_ratio_mask=_matrices,
                      momentum=optim_cfg.momentum, nesterov=optim_cfg.nesterov)
  raise ValueError(f"optim.name={optim_cfg.name!r} is unknown; choose one of {OPTIMIZERS}.")


def build_optimizer(optim_cfg, bf_cfg, total_steps: int, frozen: tuple[str, ...] = ()
                    ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """(optimizer over the params dict, the base schedule for logging).

  Top-level groups named in ``frozen`` get no update at all (not even weight decay).
  """
  schedule = build_schedule(optim_cfg, total_steps)
  bf_schedule = build_schedule(optim_cfg, total_steps, bf_cfg.lr_mult)
  txs = {"default": _base(optim_cfg, schedule, optim_cfg.weight_decay),
         "bf": _base(optim_cfg, bf_schedule, optim_cfg.weight_decay * bf_cfg.wd_mult),
         "frozen": optax.set_to_zero()}
  # Only when used: the group is part of the optimizer state, which checkpoints must match.
  backbone_mult = optim_cfg.get("backbone_lr_mult", 1.0)
  if backbone_mult != 1.0:  # a fine-tuned feature extractor (e.g. 5e-6 against 5e-5)
    txs["backbone"] = _base(optim_cfg, build_schedule(optim_cfg, total_steps, backbone_mult),
                            optim_cfg.weight_decay)

  def label(k: str) -> str:
    if k in frozen:
      return "frozen"
    if k == "backbone" and "backbone" in txs:
      return "backbone"
    return "bf" if k in BF_GROUPS else "default"

  def labels(params: dict[str, Any]) -> dict[str, Any]:
    return {k: _fill(v, label(k)) for k, v in params.items()}

  tx = optax.multi_transform(txs, labels)
  if optim_cfg.grad_clip:
    tx = optax.chain(optax.clip_by_global_norm(optim_cfg.grad_clip), tx)
  return tx, schedule


_NO_DECAY = ("pos_embed", "cls_token")


def _layer_ndim(path, p) -> int:
  """A parameter's rank in one layer (a stacked one's without its layer axis)."""
  keys = [str(getattr(k, "key", k)) for k in path]
  return p.ndim - 1 if scan_blocks.STACKS in keys else p.ndim  # stacks: one axis over layers


def _decayed(params: Any) -> Any:
  """Kernels (ndim > 1) except a ViT's position and class embeddings."""
  def keep(path, p) -> bool:
    name = str(getattr(path[-1], "key", path[-1])) if path else ""
    return _layer_ndim(path, p) > 1 and name not in _NO_DECAY
  return jax.tree_util.tree_map_with_path(keep, params)


def _matrices(params: Any) -> Any:
  """True for kernels (ndim > 1), False for biases and BatchNorm/LayerNorm scales and offsets."""
  return jax.tree_util.tree_map_with_path(lambda path, p: _layer_ndim(path, p) > 1, params)


def _fill(tree: Any, label: str) -> Any:
  return jax.tree.map(lambda _: label, tree)

"""Loud checks of the fields every task shares: each error names the value and the fix.

A task's own ``validate`` calls ``validate(cfg, Accepts(...))`` with what it takes, then checks
its own fields; nothing here names a task.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Collection

from bf_jax.data.augment import AUGMENTATIONS, TWO_VIEW
from bf_jax.data.long_tail import PROFILES, check_groups
from bf_jax.data.pipeline import SAMPLERS
from bf_jax.layer.batchformer import MODES
from bf_jax.models.classifier import BACKBONES, HEADS
from bf_jax.models.resnet import ARCHS as RESNETS
from bf_jax.models.vit import REMAT as VIT_REMAT
from bf_jax.models.vit import VIT_ARCHS
from bf_jax.trainer.supervised import LOSSES
from bf_jax.trainer.optim import OPTIMIZERS, SCHEDULES
from bf_jax.trainer.run_record import allowed_changes, flatten


def fail(name: str, value: Any, need: str) -> None:
  raise ValueError(f"config.{name}={value!r} {need}; set it with --config.{name}=...")


def check_int(cfg, name: str, minimum: int, maximum: int | None = None) -> None:
  value = get(cfg, name)
  if not isinstance(value, int) or isinstance(value, bool) or value < minimum or (
      maximum is not None and value > maximum):
    fail(name, value, f"must be an integer >= {minimum}" +
         (f" and <= {maximum}" if maximum is not None else ""))


def check_num(cfg, name: str, low: float, high: float | None = None,
              strict_low: bool = False) -> None:
  value = get(cfg, name)
  ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
  ok = ok and (value > low if strict_low else value >= low) and (high is None or value <= high)
  if not ok:  # inf passes every >= test, so finiteness is checked on its own
    rng = f"{'>' if strict_low else '>='} {low}" + (f" and <= {high}" if high is not None else "")
    fail(name, value, f"must be a finite number {rng}")


def check_choice(cfg, name: str, choices) -> None:
  value = get(cfg, name)
  if value not in choices:
    fail(name, value, f"must be one of {tuple(choices)}")


def get(cfg, dotted: str) -> Any:
  for part in dotted.split("."):
    cfg = getattr(cfg, part)
  return cfg


@dataclasses.dataclass(frozen=True)
class Accepts:
  """What a task takes among the shared fields' options; the shared checks refuse the rest."""

  datasets: Collection[str]  # data.name
  two_view: bool = False  # data.augment makes two views of each image, and the task needs them
  soft_targets: bool = False  # data.mixup, cutmix, label_smoothing (with loss.name='ce')
  vit: bool = False  # a ViT backbone with BatchFormerV2 inside
  ema: bool = False  # optim.ema_decay
  pretrained: bool = True  # init.pretrained: ImageNet weights of a ResNet backbone
  probe: bool = False  # probe.enabled: the BatchFormer probe (single-head V1 classifiers)


def validate(cfg, accepts: Accepts) -> None:
  """Raises ValueError for the first bad shared field of a training config."""
  check_int(cfg, "seed", 0, 2**32 - 1)  # numpy's and the data pipeline's seeds are 32-bit
  check_int(cfg, "batch_size", 1)
  check_int(cfg, "eval_batch_size", 1)
  check_int(cfg, "total_steps", 1)
  check_int(cfg, "eval_every_steps", 0)
  check_int(cfg, "log_every_steps", 1)
  check_int(cfg, "ckpt.every_steps", 0)
  check_int(cfg, "steps_per_dispatch", 1)
  for name in ("total_steps", "log_every_steps", "eval_every_steps", "ckpt.every_steps"):
    if get(cfg, name) % cfg.steps_per_dispatch:
      fail("steps_per_dispatch", cfg.steps_per_dispatch, f"must divide {name}={get(cfg, name)} "
           f"(the loop logs, evaluates and saves between dispatches)")
  check_int(cfg, "ckpt.keep", 1)
  _resume_changes(cfg)
  check_choice(cfg, "data.name", accepts.datasets)
  check_int(cfg, "data.num_classes", 2)
  check_num(cfg, "data.imbalance", 1.0)
  check_groups(cfg.data.class_groups, cfg.data.num_classes)
  check_choice(cfg, "data.profile", PROFILES)
  check_int(cfg, "data.n_max", 0)
  check_choice(cfg, "data.augment", AUGMENTATIONS)
  check_num(cfg, "data.crop_min", 0.0, 1.0, strict_low=True)
  two_view = cfg.data.augment in TWO_VIEW
  if accepts.two_view and not two_view:
    fail("data.augment", cfg.data.augment, f"must be one of {TWO_VIEW} for task={cfg.task!r} "
         f"(the step contrasts two views of each image)")
  if not accepts.two_view and two_view:
    fail("data.augment", cfg.data.augment, f"makes two views, which task={cfg.task!r} does not "
         f"use")
  check_int(cfg, "data.image_size", 0)
  check_choice(cfg, "data.sampler", SAMPLERS)
  check_int(cfg, "data.workers", -1)
  check_choice(cfg, "model.name", BACKBONES)
  check_int(cfg, "model.width", 1)
  check_int(cfg, "model.depth", 1)
  check_num(cfg, "model.width_mult", 0.0, strict_low=True)
  check_choice(cfg, "model.dtype", ("float32", "bfloat16"))
  check_choice(cfg, "model.head", HEADS)
  check_num(cfg, "model.head_scale", 0.0, strict_low=True)
  check_int(cfg, "model.experts", 0)
  check_choice(cfg, "optim.name", OPTIMIZERS)
  check_num(cfg, "optim.lr", 0.0, strict_low=True)
  check_num(cfg, "optim.weight_decay", 0.0)
  check_num(cfg, "optim.momentum", 0.0, 1.0)
  check_choice(cfg, "optim.schedule", SCHEDULES)
  check_int(cfg, "optim.warmup_steps", 0)
  if cfg.optim.warmup_steps >= cfg.total_steps:
    fail("optim.warmup_steps", cfg.optim.warmup_steps,
         f"must be below total_steps={cfg.total_steps}")
  check_num(cfg, "optim.grad_clip", 0.0)
  check_int(cfg, "optim.skip_nonfinite", 0)
  check_choice(cfg, "loss.name", LOSSES)
  check_num(cfg, "loss.tau", 0.0)
  check_num(cfg, "loss.ldam_max_margin", 0.0)
  check_num(cfg, "loss.drw_beta", 0.0, 1.0)
  check_num(cfg, "loss.diversity_temperature", 0.0, strict_low=True)
  if cfg.loss.drw_beta >= 1.0:
    fail("loss.drw_beta", cfg.loss.drw_beta, "must be below 1")
  scope = cfg.bf.scope
  if scope not in ("global", "device") and not (str(scope).isdigit() and int(scope) > 0):
    fail("bf.scope", scope, "must be 'global', 'device', or a group size such as '16'")
  check_choice(cfg, "bf.mode", MODES)
  check_int(cfg, "bf.num_layers", 1)
  check_int(cfg, "bf.num_heads", 1)
  check_num(cfg, "bf.dropout", 0.0, 1.0)
  check_num(cfg, "bf.lr_mult", 0.0)
  check_num(cfg, "bf.wd_mult", 0.0)
  if cfg.init.pretrained and (not accepts.pretrained or cfg.model.experts):
    refused = "" if accepts.pretrained else f", which task={cfg.task!r} does not load"
    fail("init.pretrained", cfg.init.pretrained,
         f"is for a single ResNet backbone (model.experts=0){refused}")
  for name in ("data.mixup", "data.cutmix", "data.label_smoothing"):
    check_num(cfg, name, 0.0)
  check_num(cfg, "data.mix_switch_prob", 0.0, 1.0)
  if cfg.data.label_smoothing >= 1.0:
    fail("data.label_smoothing", cfg.data.label_smoothing, "must be below 1")
  mixing = cfg.data.mixup or cfg.data.cutmix or cfg.data.label_smoothing
  if mixing and (not accepts.soft_targets or cfg.loss.name != "ce"):
    taker = "loss.name='ce' alone" if accepts.soft_targets else f"task={cfg.task!r} never"
    fail("data.mixup", cfg.data.mixup, "(and cutmix, label_smoothing) make soft targets, which "
         f"{taker} takes; set them to 0")
  if cfg.model.name in VIT_ARCHS:
    _vit(cfg, accepts)
  elif tuple(cfg.bf.insert_after):
    fail("bf.insert_after", tuple(cfg.bf.insert_after), "places BatchFormerV2 inside a ViT; "
         f"model.name={cfg.model.name!r} uses the V1 layer on pooled features: set it to ()")
  elif cfg.model.remat != "none":
    fail("model.remat", cfg.model.remat, f"is built for the ViTs' blocks; model.name="
         f"{cfg.model.name!r} runs without it: set it to 'none'")
  if cfg.model.scan_layers and cfg.model.name not in (*VIT_ARCHS, *RESNETS):
    fail("model.scan_layers", cfg.model.scan_layers, f"scans the repeated blocks of the ViTs "
         f"and ResNets; model.name={cfg.model.name!r} has none: set it to False")
  if cfg.model.scan_layers and cfg.optim.name == "lars":
    fail("model.scan_layers", cfg.model.scan_layers, "stacks the blocks' parameters, and LARS's "
         "trust ratio is per parameter array (it would take one over all layers of a stack): "
         "set it to False, or use optim.name='adamw' or 'sgd'")
  check_num(cfg, "optim.backbone_lr_mult", 0.0)
  check_num(cfg, "optim.ema_decay", 0.0, 1.0)
  if cfg.optim.ema_decay >= 1.0 or (cfg.optim.ema_decay and not accepts.ema):
    fail("optim.ema_decay", cfg.optim.ema_decay, f"must be below 1, and task={cfg.task!r} "
         f"{'keeps' if accepts.ema else 'does not keep'} an EMA of the weights")
  _probe(cfg, accepts)


def _probe(cfg, accepts: Accepts) -> None:
  check_int(cfg, "probe.batches", 1)
  check_int(cfg, "probe.seed", 0)
  if not cfg.probe.enabled:
    return
  if not accepts.probe or cfg.model.experts or cfg.model.name in VIT_ARCHS:
    fail("probe.enabled", cfg.probe.enabled, f"is built for single-head classifiers on pooled "
         f"features (model.experts=0, not a ViT) so far; this run is task={cfg.task!r}, "
         f"model.name={cfg.model.name!r}, model.experts={cfg.model.experts}: set it to False")


def _vit(cfg, accepts: Accepts) -> None:
  depth = VIT_ARCHS[cfg.model.name][1]
  check_int(cfg, "model.patch", 1)
  check_num(cfg, "model.drop_path", 0.0, 1.0)
  if cfg.model.drop_path >= 1.0:
    fail("model.drop_path", cfg.model.drop_path, "must be below 1")
  if cfg.model.remat not in VIT_REMAT:
    fail("model.remat", cfg.model.remat, f"must be one of {VIT_REMAT} ('streams': recompute the "
         "blocks that run on both streams in the backward pass)")
  if not accepts.vit or cfg.model.experts:
    fail("model.name", cfg.model.name, f"(a ViT) is not for task={cfg.task!r} or for "
         f"model.experts={cfg.model.experts}; a ViT task takes model.experts=0")
  points = tuple(cfg.bf.insert_after)
  if cfg.bf.enabled and not points:
    fail("bf.insert_after", points, f"must name the blocks (0..{depth - 1}) after which "
         f"BatchFormerV2 acts in {cfg.model.name}, e.g. (8,) or tuple(range({depth})); or set "
         f"bf.enabled=False")
  bad = [i for i in points if not isinstance(i, int) or not 0 <= i < depth]
  if bad or len(set(points)) != len(points):
    fail("bf.insert_after", points, f"must be distinct block indices in 0..{depth - 1}")
  if cfg.bf.enabled and cfg.bf.mode != "shared":
    fail("bf.mode", cfg.bf.mode, "must be 'shared' for a ViT (the V2 streams share the head)")
  if cfg.init.pretrained or cfg.init.freeze_backbone:
    fail("init.pretrained", cfg.init.pretrained, "(and init.freeze_backbone) are for ResNet "
         "backbones, not a ViT")


def _resume_changes(cfg) -> None:
  unknown = sorted(allowed_changes(cfg) - set(flatten(cfg.to_dict())))
  if unknown:
    fail("resume_changes", cfg.resume_changes, f"names {unknown}, which are not config fields; "
         f"give dotted names, comma-separated, e.g. total_steps,eval_every_steps")

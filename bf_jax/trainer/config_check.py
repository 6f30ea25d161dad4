"""Loud checks of a config before anything runs: each error names the value and the fix."""

from __future__ import annotations

from typing import Any

from bf_jax.layer.batchformer import MODES
from bf_jax.contrastive import PAIRINGS, terms
from bf_jax.czsl.data import CZSL_DATASETS
from bf_jax.data import DATASETS
from bf_jax.data.augment import AUGMENTATIONS, TWO_VIEW
from bf_jax.data.domains import DG_DATASETS
from bf_jax.data.long_tail import PROFILES
from bf_jax.data.pipeline import SAMPLERS
from bf_jax.trainer.losses import LOSSES
from bf_jax.models.classifier import BACKBONES, HEADS
from bf_jax.models.vit import VIT_ARCHS
from bf_jax.trainer.optim import OPTIMIZERS, SCHEDULES


def _fail(name: str, value: Any, need: str) -> None:
  raise ValueError(f"config.{name}={value!r} {need}; set it with --config.{name}=...")


def _int(cfg, name: str, minimum: int) -> None:
  value = _get(cfg, name)
  if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
    _fail(name, value, f"must be an integer >= {minimum}")


def _num(cfg, name: str, low: float, high: float | None = None, strict_low: bool = False) -> None:
  value = _get(cfg, name)
  ok = isinstance(value, (int, float)) and not isinstance(value, bool)
  ok = ok and (value > low if strict_low else value >= low) and (high is None or value <= high)
  if not ok:
    rng = f"{'>' if strict_low else '>='} {low}" + (f" and <= {high}" if high is not None else "")
    _fail(name, value, f"must be a number {rng}")


def _choice(cfg, name: str, choices) -> None:
  value = _get(cfg, name)
  if value not in choices:
    _fail(name, value, f"must be one of {tuple(choices)}")


def _get(cfg, dotted: str) -> Any:
  for part in dotted.split("."):
    cfg = getattr(cfg, part)
  return cfg


TASKS = ("classify", "moco", "dg", "czsl")


def validate(cfg) -> None:
  """Raises ValueError for the first bad field of a training config."""
  _choice(cfg, "task", TASKS)
  _int(cfg, "seed", 0)
  _int(cfg, "batch_size", 1)
  _int(cfg, "eval_batch_size", 1)
  _int(cfg, "total_steps", 1)
  _int(cfg, "eval_every_steps", 0)
  _int(cfg, "log_every_steps", 1)
  _int(cfg, "ckpt.every_steps", 0)
  _int(cfg, "ckpt.keep", 1)
  _choice(cfg, "data.name", {"dg": DG_DATASETS, "czsl": CZSL_DATASETS}.get(cfg.task, DATASETS))
  _int(cfg, "data.num_classes", 2)
  _num(cfg, "data.imbalance", 1.0)
  _choice(cfg, "data.profile", PROFILES)
  _int(cfg, "data.n_max", 0)
  _choice(cfg, "data.augment", AUGMENTATIONS)
  _num(cfg, "data.crop_min", 0.0, 1.0, strict_low=True)
  two_view = cfg.data.augment in TWO_VIEW
  if cfg.task == "moco" and not two_view:
    _fail("data.augment", cfg.data.augment, f"must be one of {TWO_VIEW} for task='moco' (the "
          f"step contrasts two views of each image)")
  if cfg.task != "moco" and two_view:
    _fail("data.augment", cfg.data.augment, f"makes two views, which only task='moco' uses")
  _int(cfg, "data.image_size", 0)
  _choice(cfg, "data.sampler", SAMPLERS)
  _choice(cfg, "model.name", BACKBONES)
  _int(cfg, "model.width", 1)
  _int(cfg, "model.depth", 1)
  _num(cfg, "model.width_mult", 0.0, strict_low=True)
  _choice(cfg, "model.dtype", ("float32", "bfloat16"))
  _choice(cfg, "model.head", HEADS)
  _num(cfg, "model.head_scale", 0.0, strict_low=True)
  _int(cfg, "model.experts", 0)
  _choice(cfg, "optim.name", OPTIMIZERS)
  _num(cfg, "optim.lr", 0.0, strict_low=True)
  _num(cfg, "optim.weight_decay", 0.0)
  _num(cfg, "optim.momentum", 0.0, 1.0)
  _choice(cfg, "optim.schedule", SCHEDULES)
  _int(cfg, "optim.warmup_steps", 0)
  if cfg.optim.warmup_steps >= cfg.total_steps:
    _fail("optim.warmup_steps", cfg.optim.warmup_steps,
          f"must be below total_steps={cfg.total_steps}")
  _num(cfg, "optim.grad_clip", 0.0)
  _int(cfg, "optim.skip_nonfinite", 0)
  _choice(cfg, "loss.name", LOSSES)
  _num(cfg, "loss.tau", 0.0)
  _num(cfg, "loss.ldam_max_margin", 0.0)
  _num(cfg, "loss.drw_beta", 0.0, 1.0)
  _num(cfg, "loss.diversity_temperature", 0.0, strict_low=True)
  if cfg.loss.drw_beta >= 1.0:
    _fail("loss.drw_beta", cfg.loss.drw_beta, "must be below 1")
  scope = cfg.bf.scope
  if scope not in ("global", "device") and not (str(scope).isdigit() and int(scope) > 0):
    _fail("bf.scope", scope, "must be 'global', 'device', or a group size such as '16'")
  _choice(cfg, "bf.mode", MODES)
  _int(cfg, "bf.num_layers", 1)
  _int(cfg, "bf.num_heads", 1)
  _num(cfg, "bf.dropout", 0.0, 1.0)
  _num(cfg, "bf.lr_mult", 0.0)
  _num(cfg, "bf.wd_mult", 0.0)
  if cfg.init.pretrained and (cfg.task == "moco" or cfg.model.experts):
    _fail("init.pretrained", cfg.init.pretrained, "is for a single ResNet backbone "
          "(task='classify', 'dg' or 'czsl', model.experts=0)")
  for name in ("data.mixup", "data.cutmix", "data.label_smoothing"):
    _num(cfg, name, 0.0)
  _num(cfg, "data.mix_switch_prob", 0.0, 1.0)
  if cfg.data.label_smoothing >= 1.0:
    _fail("data.label_smoothing", cfg.data.label_smoothing, "must be below 1")
  mixing = cfg.data.mixup or cfg.data.cutmix or cfg.data.label_smoothing
  if mixing and (cfg.task != "classify" or cfg.loss.name != "ce"):
    _fail("data.mixup", cfg.data.mixup, "(and cutmix, label_smoothing) make soft targets, which "
          "only task='classify' with loss.name='ce' takes; set them to 0")
  if cfg.model.name in VIT_ARCHS:
    _vit(cfg)
  elif tuple(cfg.bf.insert_after):
    _fail("bf.insert_after", tuple(cfg.bf.insert_after), "places BatchFormerV2 inside a ViT; "
          f"model.name={cfg.model.name!r} uses the V1 layer on pooled features: set it to ()")
  if cfg.task == "moco":
    _moco(cfg)
  if cfg.task == "dg":
    _dg(cfg)
  if cfg.task == "czsl":
    _czsl(cfg)
  _num(cfg, "optim.backbone_lr_mult", 0.0)
  _num(cfg, "optim.ema_decay", 0.0, 1.0)
  if cfg.optim.ema_decay >= 1.0 or (cfg.optim.ema_decay and cfg.task != "classify"):
    _fail("optim.ema_decay", cfg.optim.ema_decay, "must be below 1, and is for task='classify'")


def _vit(cfg) -> None:
  depth = VIT_ARCHS[cfg.model.name][1]
  _int(cfg, "model.patch", 1)
  _num(cfg, "model.drop_path", 0.0, 1.0)
  if cfg.model.drop_path >= 1.0:
    _fail("model.drop_path", cfg.model.drop_path, "must be below 1")
  if cfg.task != "classify" or cfg.model.experts:
    _fail("model.name", cfg.model.name, "(a ViT) is for task='classify' without experts")
  points = tuple(cfg.bf.insert_after)
  if cfg.bf.enabled and not points:
    _fail("bf.insert_after", points, f"must name the blocks (0..{depth - 1}) after which "
          f"BatchFormerV2 acts in {cfg.model.name}, e.g. (8,) or tuple(range({depth})); or set "
          f"bf.enabled=False")
  bad = [i for i in points if not isinstance(i, int) or not 0 <= i < depth]
  if bad or len(set(points)) != len(points):
    _fail("bf.insert_after", points, f"must be distinct block indices in 0..{depth - 1}")
  if cfg.bf.enabled and cfg.bf.mode != "shared":
    _fail("bf.mode", cfg.bf.mode, "must be 'shared' for a ViT (the V2 streams share the head)")
  if cfg.init.pretrained or cfg.init.freeze_backbone:
    _fail("init.pretrained", cfg.init.pretrained, "(and init.freeze_backbone) are for ResNet "
          "backbones, not a ViT")


def _czsl(cfg) -> None:
  if not cfg.data.data_dir:
    _fail("data.data_dir", cfg.data.data_dir, f"must be the folder {cfg.data.name} was prepared "
          f"in (python -m bf_jax.czsl.data prepare --dataset {cfg.data.name} --root ... --out DIR)")
  _int(cfg, "data.image_size", 1)  # the images differ in size
  _choice(cfg, "czsl.model", ("cge", "compcos"))
  for name in ("emb_dim", "hidden", "img_layers"):
    _int(cfg, f"czsl.{name}", 1)
  _num(cfg, "czsl.temperature", 0.0, strict_low=True)
  _int(cfg, "czsl.epochs", 0)
  _int(cfg, "czsl.eval_every_epochs", 1)
  if cfg.loss.name != "ce":
    _fail("loss.name", cfg.loss.name, "must be 'ce' for task='czsl' (cross-entropy over the seen "
          "pairs)")
  if cfg.model.experts:
    _fail("model.experts", cfg.model.experts, "must be 0 for task='czsl'")


def _dg(cfg) -> None:
  domains = DG_DATASETS[cfg.data.name].domains
  if not cfg.data.data_dir:
    _fail("data.data_dir", cfg.data.data_dir, f"must be the folder {cfg.data.name} was prepared "
          f"in (python -m bf_jax.data.domains prepare --dataset {cfg.data.name} --root ... "
          f"--out DIR)")
  if cfg.data.num_classes != DG_DATASETS[cfg.data.name].num_classes:
    _fail("data.num_classes", cfg.data.num_classes, f"must be "
          f"{DG_DATASETS[cfg.data.name].num_classes} for {cfg.data.name}")
  _int(cfg, "data.image_size", 1)  # the domains' images differ in size
  unknown = [d for d in cfg.dg.test_domains if d not in domains]
  if unknown:
    _fail("dg.test_domains", tuple(cfg.dg.test_domains), f"names {unknown}, not domains of "
          f"{cfg.data.name} {domains}")
  if not cfg.dg.trial_seeds or any(not isinstance(s, int) or s < 0 for s in cfg.dg.trial_seeds):
    _fail("dg.trial_seeds", tuple(cfg.dg.trial_seeds), "must be non-negative integers, e.g. "
          "(0, 1, 2)")
  _num(cfg, "dg.holdout_fraction", 0.0, 1.0, strict_low=True)
  if cfg.dg.holdout_fraction >= 1.0:
    _fail("dg.holdout_fraction", cfg.dg.holdout_fraction, "must be below 1")
  _int(cfg, "dg.batch_per_domain", 1)
  need = cfg.dg.batch_per_domain * (len(domains) - 1)
  if cfg.batch_size != need:
    _fail("batch_size", cfg.batch_size, f"must be dg.batch_per_domain x training domains = "
          f"{cfg.dg.batch_per_domain} x {len(domains) - 1} = {need} (or change "
          f"dg.batch_per_domain)")
  _choice(cfg, "dg.algorithm", ("erm", "swad"))
  if cfg.model.experts:
    _fail("model.experts", cfg.model.experts, "must be 0 for task='dg'")
  _int(cfg, "eval_every_steps", 1)  # model selection and SWAD's window need evaluations
  if cfg.total_steps % cfg.eval_every_steps:
    _fail("eval_every_steps", cfg.eval_every_steps, f"must divide total_steps="
          f"{cfg.total_steps} (SWAD's segments are whole evaluation periods)")
  if cfg.dg.algorithm == "swad":
    _int(cfg, "dg.swad_n_converge", 1)
    _int(cfg, "dg.swad_n_tolerance", 1)
    _num(cfg, "dg.swad_tolerance_ratio", 0.0)
    if not cfg.model.freeze_bn and cfg.model.name != "mlp":
      _fail("model.freeze_bn", cfg.model.freeze_bn, "must be True with dg.algorithm='swad': "
            "averaged weights need BatchNorm statistics of their own, which bf_jax does not "
            "re-estimate; DomainBed/SWAD freeze BatchNorm too")


def _moco(cfg) -> None:
  for name in ("dim", "mlp_dim", "projector_layers", "predictor_layers", "knn_k"):
    _int(cfg, f"moco.{name}", 1)
  _int(cfg, "moco.knn_bank", 0)
  _int(cfg, "moco.knn_queries", 0)
  _num(cfg, "moco.temperature", 0.0, strict_low=True)
  _num(cfg, "moco.knn_temperature", 0.0, strict_low=True)
  _num(cfg, "moco.momentum", 0.0, 1.0)
  _choice(cfg, "moco.pairing", PAIRINGS)
  _choice(cfg, "moco.momentum_bf", ("ema", "none"))
  if cfg.model.experts:
    _fail("model.experts", cfg.model.experts, "must be 0 for task='moco' (RIDE is supervised)")
  if cfg.bf.enabled and cfg.bf.mode != "shared":
    _fail("bf.mode", cfg.bf.mode, "must be 'shared' for task='moco' (both streams are "
          "contrasted)")
  if cfg.bf.enabled:  # the pairing must find the key streams it names
    terms(cfg.moco.pairing, 2, 2 if cfg.moco.momentum_bf == "ema" else 1)

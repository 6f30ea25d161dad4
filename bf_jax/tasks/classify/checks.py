"""The classifier's config checks: the shared ones, with every option a supervised classifier
takes (soft targets, a ViT with BatchFormerV2, an EMA of the weights); with ``paco.enabled``
PaCo's fields and two views, and none of the options its step does not take."""

from __future__ import annotations

import dataclasses

from bf_jax.data import DATASETS
from bf_jax.data.augment import PACO_VIEWS
from bf_jax.tasks.classify.paco.model import BF_BRANCHES
from bf_jax.trainer import config_check
from bf_jax.trainer.config_check import check_choice, check_int, check_num, fail

ACCEPTS = config_check.Accepts(datasets=DATASETS, soft_targets=True, vit=True, ema=True,
                                probe=True)


def validate(cfg) -> None:
  """Raises ValueError for the first bad field of a classifier config."""
  if not cfg.paco.enabled:
    config_check.validate(cfg, ACCEPTS)
    return
  config_check.validate(cfg, dataclasses.replace(ACCEPTS, two_view=True))
  _paco(cfg)


def _paco(cfg) -> None:
  """PaCo's fields, and the classifier options its step does not take."""
  for name in ("alpha", "beta", "gamma"):
    check_num(cfg, f"paco.{name}", 0.0)
  if cfg.paco.alpha + cfg.paco.beta <= 0:
    fail("paco.beta", cfg.paco.beta, "and paco.alpha are both 0, so nothing is a positive; "
         "PaCo uses beta=1")
  check_num(cfg, "paco.temperature", 0.0, strict_low=True)
  check_num(cfg, "paco.supt", 0.0, strict_low=True)
  check_int(cfg, "paco.dim", 1)
  check_int(cfg, "paco.queue", 1)
  if cfg.paco.queue < cfg.batch_size:
    fail("paco.queue", cfg.paco.queue, f"must hold at least one global batch of keys "
         f"(batch_size={cfg.batch_size}); PaCo uses 1024 (CIFAR) and 8192 (ImageNet)")
  check_num(cfg, "paco.momentum", 0.0, 1.0)
  check_choice(cfg, "paco.bf_branches", BF_BRANCHES)
  if cfg.data.augment not in PACO_VIEWS:
    fail("data.augment", cfg.data.augment, f"must be one of {tuple(PACO_VIEWS)} with "
         f"paco.enabled (the query view, then the key view)")
  refused = [("model.experts", cfg.model.experts, 0), ("loss.name", cfg.loss.name, "ce"),
             ("optim.ema_decay", cfg.optim.ema_decay, 0.0), ("probe.enabled", cfg.probe.enabled,
             False), ("init.freeze_backbone", cfg.init.freeze_backbone, False),
             ("model.head", cfg.model.head, "linear"), ("data.mixup", cfg.data.mixup, 0.0),
             ("data.cutmix", cfg.data.cutmix, 0.0),
             ("data.label_smoothing", cfg.data.label_smoothing, 0.0),
             ("init.from_workdir", cfg.init.from_workdir, "")]  # the key encoder would miss it
  for name, value, wanted in refused:
    if value != wanted:
      fail(name, value, f"is not taken with paco.enabled (PaCo trains a linear classifier with "
           f"its own balanced loss, one expert, no EMA or probe yet): set it to {wanted!r}")
  if cfg.bf.enabled and cfg.bf.mode != "shared":
    fail("bf.mode", cfg.bf.mode, "must be 'shared' with paco.enabled (the original stream "
         "trains the classifier and the queries)")

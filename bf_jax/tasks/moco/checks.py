"""MoCo's config checks: the shared ones for a two-view contrastive task, then ``config.moco``."""

from __future__ import annotations

from bf_jax.data import DATASETS
from bf_jax.tasks.moco.contrastive import PAIRINGS, terms
from bf_jax.trainer import config_check
from bf_jax.trainer.config_check import check_choice, check_int, check_num, fail

ACCEPTS = config_check.Accepts(datasets=DATASETS, two_view=True, pretrained=False)


def validate(cfg) -> None:
  """Raises ValueError for the first bad field of a MoCo config."""
  config_check.validate(cfg, ACCEPTS)
  for name in ("dim", "mlp_dim", "projector_layers", "predictor_layers", "knn_k"):
    check_int(cfg, f"moco.{name}", 1)
  check_int(cfg, "moco.knn_bank", 0)
  check_int(cfg, "moco.knn_queries", 0)
  check_num(cfg, "moco.temperature", 0.0, strict_low=True)
  check_num(cfg, "moco.knn_temperature", 0.0, strict_low=True)
  check_num(cfg, "moco.momentum", 0.0, 1.0)
  check_choice(cfg, "moco.pairing", PAIRINGS)
  check_choice(cfg, "moco.momentum_bf", ("ema", "none"))
  if cfg.model.experts:
    fail("model.experts", cfg.model.experts, "must be 0 for task='moco' (RIDE is supervised)")
  if cfg.bf.enabled and cfg.bf.mode != "shared":
    fail("bf.mode", cfg.bf.mode, "must be 'shared' for task='moco' (both streams are "
         "contrasted)")
  if cfg.bf.enabled:  # the pairing must find the key streams it names
    terms(cfg.moco.pairing, 2, 2 if cfg.moco.momentum_bf == "ema" else 1)

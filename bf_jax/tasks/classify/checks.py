"""The classifier's config checks: the shared ones, with every option a supervised classifier
takes (soft targets, a ViT with BatchFormerV2, an EMA of the weights)."""

from __future__ import annotations

from bf_jax.data import DATASETS
from bf_jax.trainer import config_check

ACCEPTS = config_check.Accepts(datasets=DATASETS, soft_targets=True, vit=True, ema=True,
                                probe=True)


def validate(cfg) -> None:
  """Raises ValueError for the first bad field of a classifier config."""
  config_check.validate(cfg, ACCEPTS)

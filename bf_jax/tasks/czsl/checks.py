"""CZSL's config checks: the shared ones, then ``config.czsl`` and the prepared data folder."""

from __future__ import annotations

from bf_jax.tasks.czsl.data import CZSL_DATASETS
from bf_jax.trainer import config_check
from bf_jax.trainer.config_check import check_choice, check_int, check_num, fail

ACCEPTS = config_check.Accepts(datasets=CZSL_DATASETS)


def validate(cfg) -> None:
  """Raises ValueError for the first bad field of a CZSL config."""
  config_check.validate(cfg, ACCEPTS)
  if not cfg.data.data_dir:
    fail("data.data_dir", cfg.data.data_dir, f"must be the folder {cfg.data.name} was prepared "
         f"in (python -m bf_jax.tasks.czsl.data prepare --dataset {cfg.data.name} --root ... "
         f"--out DIR)")
  check_int(cfg, "data.image_size", 1)  # the images differ in size
  check_choice(cfg, "czsl.model", ("cge", "compcos"))
  for name in ("emb_dim", "hidden", "img_layers"):
    check_int(cfg, f"czsl.{name}", 1)
  check_num(cfg, "czsl.temperature", 0.0, strict_low=True)
  check_int(cfg, "czsl.epochs", 0)
  check_int(cfg, "czsl.eval_every_epochs", 1)
  if cfg.loss.name != "ce":
    fail("loss.name", cfg.loss.name, "must be 'ce' for task='czsl' (cross-entropy over the seen "
         "pairs)")
  if cfg.model.experts:
    fail("model.experts", cfg.model.experts, "must be 0 for task='czsl'")

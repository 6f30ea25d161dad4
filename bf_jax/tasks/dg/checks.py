"""Domain generalization's config checks: the shared ones, then ``config.dg`` against the
dataset's domains and SWAD's needs."""

from __future__ import annotations

from bf_jax.tasks.dg.domains import DG_DATASETS
from bf_jax.trainer import config_check
from bf_jax.trainer.config_check import check_choice, check_int, check_num, fail

ACCEPTS = config_check.Accepts(datasets=DG_DATASETS, probe=True)


def validate(cfg) -> None:
  """Raises ValueError for the first bad field of a domain-generalization config."""
  config_check.validate(cfg, ACCEPTS)
  domains = DG_DATASETS[cfg.data.name].domains
  if not cfg.data.data_dir:
    fail("data.data_dir", cfg.data.data_dir, f"must be the folder {cfg.data.name} was prepared "
         f"in (python -m bf_jax.tasks.dg.domains prepare --dataset {cfg.data.name} --root ... "
         f"--out DIR)")
  if cfg.data.num_classes != DG_DATASETS[cfg.data.name].num_classes:
    fail("data.num_classes", cfg.data.num_classes, f"must be "
         f"{DG_DATASETS[cfg.data.name].num_classes} for {cfg.data.name}")
  check_int(cfg, "data.image_size", 1)  # the domains' images differ in size
  unknown = [d for d in cfg.dg.test_domains if d not in domains]
  if unknown:
    fail("dg.test_domains", tuple(cfg.dg.test_domains), f"names {unknown}, not domains of "
         f"{cfg.data.name} {domains}")
  if not cfg.dg.trial_seeds or any(not isinstance(s, int) or s < 0 for s in cfg.dg.trial_seeds):
    fail("dg.trial_seeds", tuple(cfg.dg.trial_seeds), "must be non-negative integers, e.g. "
         "(0, 1, 2)")
  check_num(cfg, "dg.holdout_fraction", 0.0, 1.0, strict_low=True)
  if cfg.dg.holdout_fraction >= 1.0:
    fail("dg.holdout_fraction", cfg.dg.holdout_fraction, "must be below 1")
  check_int(cfg, "dg.batch_per_domain", 1)
  if cfg.dg.algorithm == "swad" and cfg.steps_per_dispatch != 1:
    fail("steps_per_dispatch", cfg.steps_per_dispatch, "must be 1 with dg.algorithm='swad' "
         "(SWAD averages the weights after every step)")
  need = cfg.dg.batch_per_domain * (len(domains) - 1)
  if cfg.batch_size != need:
    fail("batch_size", cfg.batch_size, f"must be dg.batch_per_domain x training domains = "
         f"{cfg.dg.batch_per_domain} x {len(domains) - 1} = {need} (or change "
         f"dg.batch_per_domain)")
  check_choice(cfg, "dg.algorithm", ("erm", "swad"))
  if cfg.model.experts:
    fail("model.experts", cfg.model.experts, "must be 0 for task='dg'")
  check_int(cfg, "eval_every_steps", 1)  # model selection and SWAD's window need evaluations
  if cfg.total_steps % cfg.eval_every_steps:
    fail("eval_every_steps", cfg.eval_every_steps, f"must divide total_steps="
         f"{cfg.total_steps} (SWAD's segments are whole evaluation periods)")
  if cfg.dg.algorithm == "swad":
    check_int(cfg, "dg.swad_n_converge", 1)
    check_int(cfg, "dg.swad_n_tolerance", 1)
    check_num(cfg, "dg.swad_tolerance_ratio", 0.0)
    if not cfg.model.freeze_bn and cfg.model.name != "mlp":
      fail("model.freeze_bn", cfg.model.freeze_bn, "must be True with dg.algorithm='swad': "
           "averaged weights need BatchNorm statistics of their own, which bf_jax does not "
           "re-estimate; DomainBed/SWAD freeze BatchNorm too")

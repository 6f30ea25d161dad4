"""The SWAD (+ BatchFormer) recipe that every ``configs/dg_*.py`` builds on.

SWAD's DomainBed settings as the BatchFormer code ran them: ResNet-18 (ImageNet weights, frozen
BatchNorm statistics, no dropout), 32 images per training domain per step, Adam lr 5e-5 without
weight decay, constant lr, 5,000 steps (DomainNet 15,000), validation every 200 steps (DomainNet
1,000), SWAD with N_s 3, N_e 6, r 1.3; BatchFormer (4 heads, dropout 0.5) on the pooled feature
with the shared classifier (upstream ``--add_bt 16``), its lr scaled by ``bf_lr`` (upstream
``--lr_scale_bt``: 1.0 by default, 0.1 advised for ResNet-50); 3 trial seeds.
"""

from __future__ import annotations

import ml_collections

from bf_jax.tasks.dg.domains import DG_DATASETS
from bf_jax.trainer.config_base import base_config, paper_scope, parse_arg

# Documented args of every configs/dg_*.py, and their defaults.
ARGS = dict(bf=True, smoke=False, arch="resnet18", algorithm="swad", seeds=3, bf_lr=0.0,
            weights="", data_dir="~/dg_data", scope="paper")
# SWAD ran on one GPU: the layer attended over the whole batch of 32 per training domain.
PAPER_SCOPE = "global"
LONG = {"domain_net": (15_000, 1_000)}  # (steps, evaluation period) where not (5,000, 200)


def domainbed_config(dataset: str, arg: str | None) -> ml_collections.ConfigDict:
  """The config of ``configs/dg_<dataset>.py`` for its ``arg`` string (see ARGS)."""
  arg = parse_arg(arg, **ARGS)
  info = DG_DATASETS[dataset]
  c = base_config()
  c.task = "dg"
  c.data.update(name=dataset, num_classes=info.num_classes, data_dir=arg.data_dir,
                image_size=224, augment="domainbed", imbalance=1.0)
  c.model.update(name=arg.arch, freeze_bn=True)
  c.init.pretrained = arg.weights
  # ResNet-50: the BatchFormer code's README advises lr x 0.1 for the BatchFormer.
  bf_lr = arg.bf_lr or (0.1 if arg.arch == "resnet50" else 1.0)
  c.bf.update(enabled=arg.bf, mode="shared", num_heads=4, dropout=0.5, lr_mult=bf_lr)
  c.dg.update(batch_per_domain=32, trial_seeds=tuple(range(arg.seeds)), holdout_fraction=0.2,
              algorithm=arg.algorithm)
  c.batch_size = 32 * (len(info.domains) - 1)
  c.eval_batch_size = 128
  c.total_steps, c.eval_every_steps = LONG.get(dataset, (5_000, 200))
  c.log_every_steps = 100
  c.ckpt.update(every_steps=c.eval_every_steps * 5, keep=1)
  c.optim.update(name="adamw", lr=5e-5, b1=0.9, b2=0.999, weight_decay=0.0,
                 schedule="constant", warmup_steps=0)
  if arg.smoke:  # one short run: the first domain held out, tiny images and batches
    c.dg.update(batch_per_domain=2, trial_seeds=(0,), test_domains=(info.domains[0],))
    c.batch_size = 2 * (len(info.domains) - 1)
    c.data.image_size, c.eval_batch_size = 32, 16
    c.total_steps, c.eval_every_steps, c.log_every_steps, c.ckpt.every_steps = 2, 1, 1, 0
  c.bf.scope = paper_scope(arg.scope, PAPER_SCOPE, c.batch_size)
  return c

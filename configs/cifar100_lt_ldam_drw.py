"""CIFAR-100-LT, ResNet-32 + LDAM with deferred re-weighting (DRW), with or without BatchFormer.

LDAM-DRW recipe: batch 128, 200 epochs (16,940 steps at IF 100), lr 0.1 with 5 warmup epochs and
x0.01 steps at epochs 160 and 180, weight decay 2e-4, cosine classifier (s = 30), margins up to
0.5, class-balanced re-weighting (beta 0.9999) from epoch 160.

  python -m bf_jax.main --config configs/cifar100_lt_ldam_drw.py --workdir runs/c100lt_ldam_bf

Paper: no LDAM-DRW code or CIFAR row in the released repository. No result measured yet.

Args: bf=on|off, imbalance=F, smoke, seed=N, scope=paper|global|device|K.
Attention groups (scope=paper, the default): the whole batch of 128 (upstream has no LDAM-DRW +
BatchFormer code to follow).
"""

from bf_jax.tasks import base_config
from bf_jax.trainer.config_base import paper_scope, parse_arg, shrink_for_smoke

# Documented args and their defaults.
ARGS = dict(bf=True, imbalance=100.0, smoke=False, seed=0, scope="paper")
PAPER_SCOPE = "global"  # the paper's attention groups (docstring)
STEPS_PER_EPOCH = 10847 / 128  # IF 100; other factors keep the same epoch count by steps


def get_config(arg: str | None = None):
  arg = parse_arg(arg, **ARGS)
  c = base_config()
  c.seed = arg.seed
  c.data.update(name="cifar100", num_classes=100, imbalance=arg.imbalance, augment="crop_flip")
  c.model.update(name="resnet32", head="cosine", head_scale=30.0)
  c.loss.update(name="ldam", ldam_max_margin=0.5, ldam_scale=30.0, drw_beta=0.9999,
                drw_start_step=int(160 * STEPS_PER_EPOCH))
  c.bf.update(enabled=arg.bf)
  c.batch_size, c.eval_batch_size = 128, 500
  c.total_steps = int(200 * STEPS_PER_EPOCH)
  c.eval_every_steps, c.log_every_steps, c.ckpt.every_steps = 1000, 100, 1000
  c.optim.update(name="sgd", lr=0.1, momentum=0.9, weight_decay=2e-4, schedule="step",
                 step_fractions=(0.8, 0.9), step_factor=0.01,
                 warmup_steps=int(5 * STEPS_PER_EPOCH))
  if arg.smoke:
    c.data.n_max, c.data.imbalance = 10, 10.0  # a tiny long tail: 10 images down to 1
    shrink_for_smoke(c)
    c.loss.drw_start_step = 1  # exercise the switch
  c.bf.scope = paper_scope(arg.scope, PAPER_SCOPE, c.batch_size)
  return c

"""CIFAR-100-LT, RIDE (3 experts, ResNet-32 with 48-d expert features), with or without BatchFormer.

RIDE recipe: batch 128, 200 epochs, lr 0.1 with 5 warmup epochs and x0.01 steps at epochs 160
and 180, weight decay 5e-4, cosine classifiers (s = 30), LDAM-DRW base loss, diversity factor
-0.2. BatchFormer: one layer (1 head, as upstream uses for C <= 128) shared by the experts in
the two-stream `shared` mode, which upstream found necessary on CIFAR-100-LT (bf_only ~25%).

  python -m bf_jax.main --config configs/cifar100_lt_ride.py --workdir runs/c100lt_ride_bf

Paper: no CIFAR-100-LT RIDE + BatchFormer number in the released README. No result measured yet.

Args: bf=on|off, mode=shared|bf_only, imbalance=F, smoke, seed=N, scope=paper|global|device|K.
Attention groups (scope=paper, the default): the whole batch of 128: RIDE's
config_imbalance_cifar100_ride.json runs n_gpu 1.
"""

from bf_jax.tasks import base_config
from bf_jax.trainer.config_base import paper_scope, parse_arg, shrink_for_smoke

# Documented args and their defaults.
ARGS = dict(bf=True, mode="shared", imbalance=100.0, smoke=False, seed=0, scope="paper")
PAPER_SCOPE = "global"  # the paper's attention groups (docstring)
STEPS_PER_EPOCH = 10847 / 128


def get_config(arg: str | None = None):
  arg = parse_arg(arg, **ARGS)
  c = base_config()
  c.seed = arg.seed
  c.data.update(name="cifar100", num_classes=100, imbalance=arg.imbalance, augment="crop_flip")
  c.model.update(name="resnet32", experts=3, width_mult=0.75, head="cosine", head_scale=30.0)
  c.loss.update(name="ldam", drw_start_step=int(160 * STEPS_PER_EPOCH), diversity_factor=-0.2)
  c.bf.update(enabled=arg.bf, mode=arg.mode, num_heads=1)
  c.batch_size, c.eval_batch_size = 128, 500
  c.total_steps = int(200 * STEPS_PER_EPOCH)
  c.eval_every_steps, c.log_every_steps, c.ckpt.every_steps = 1000, 100, 1000
  c.optim.update(name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="step",
                 step_fractions=(0.8, 0.9), step_factor=0.01,
                 warmup_steps=int(5 * STEPS_PER_EPOCH))
  if arg.smoke:
    c.data.n_max, c.data.imbalance = 10, 10.0  # a tiny long tail: 10 images down to 1
    shrink_for_smoke(c)
  c.bf.scope = paper_scope(arg.scope, PAPER_SCOPE, c.batch_size)
  return c

"""CIFAR-100-LT (imbalance 100), ResNet-32 + PaCo, with or without BatchFormer.

PaCo's CIFAR-100-LT recipe (its sh/CIFAR100_train_imb0.01.sh and paco_cifar.py): batch 128,
400 epochs (84 steps each over 10,847 images: 33,600 steps), SGD lr 0.05, momentum 0.9,
weight decay 5e-4, 10 warmup epochs, lr x0.1 at epoch 320 and x0.01 at 360; alpha 0.01, beta 1,
gamma 1, temperature 0.05, a queue of 1,024 keys, 32-d projections of the 64-d feature, key
momentum 0.999. Query view: pad-crop, flip, RandAugment (standing in for AutoAugment's CIFAR
policy), Cutout 16; key view SimCLR's (crop from 0.2). BatchFormer on the 64-d pooled feature,
its stream through the classifier (paco.bf_branches="centers"; "both" also contrasts it).

  python -m bf_jax.main --config configs/cifar100_lt_paco.py --workdir runs/c100lt_paco_bf
  python -m bf_jax.main --config configs/cifar100_lt_paco.py:bf=off --workdir runs/c100lt_paco

Hardware: one GPU or TPU host (not measured yet). Data: TFDS cifar100 (docs/classify.md).
Published (not measured here): PaCo + BatchFormer 52.4% top-1 (BatchFormer README /
Papers-with-Code, error 47.6). PaCo's README has no CIFAR row; its paper's table is not checked
here, so no PaCo-alone figure is quoted.

Args: bf=on|off, branches=centers|both, smoke, seed=N, scope=paper|global|device|K.
Attention groups (scope=paper, the default): the whole batch of 128 (upstream has no PaCo +
BatchFormer code to follow).
"""

from bf_jax.tasks import base_config
from bf_jax.trainer.config_base import paper_scope, parse_arg, shrink_for_smoke

# Documented args and their defaults.
ARGS = dict(bf=True, branches="centers", smoke=False, seed=0, scope="paper")
PAPER_SCOPE = "global"  # the paper's attention groups (docstring)
STEPS_PER_EPOCH = 10847 // 128  # PaCo's loader drops the last partial batch


def get_config(arg: str | None = None):
  arg = parse_arg(arg, **ARGS)
  c = base_config()
  c.seed = arg.seed
  c.data.update(name="cifar100", num_classes=100, imbalance=100.0, augment="paco_cifar",
                crop_min=0.2)
  c.model.update(name="resnet32")
  c.paco.update(enabled=True, alpha=0.01, beta=1.0, gamma=1.0, temperature=0.05, queue=1024,
                dim=32, momentum=0.999, bf_branches=arg.branches)
  c.bf.update(enabled=arg.bf)
  c.batch_size, c.eval_batch_size = 128, 500
  c.total_steps = 400 * STEPS_PER_EPOCH
  c.eval_every_steps, c.log_every_steps, c.ckpt.every_steps = 10 * STEPS_PER_EPOCH, 100, 2000
  c.optim.update(name="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="step",
                 step_fractions=(0.8, 0.9), step_factor=0.1, warmup_steps=10 * STEPS_PER_EPOCH)
  if arg.smoke:
    c.data.n_max, c.data.imbalance = 10, 10.0  # a tiny long tail: 10 images down to 1
    shrink_for_smoke(c)
    c.paco.queue = 32
  c.bf.scope = paper_scope(arg.scope, PAPER_SCOPE, c.batch_size)
  return c

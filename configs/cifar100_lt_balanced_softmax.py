"""CIFAR-100-LT, ResNet-32 + Balanced Softmax, with or without BatchFormer.

The BalancedSoftmax-codebase recipe the paper builds on: batch 512, 13,000 iterations, cosine
schedule with 800 warmup iterations, SGD momentum 0.9, weight decay 5e-4; BatchFormer on the
64-d pooled feature, two streams into the shared linear head, its learning rate 0.1x.

  python -m bf_jax.main --config configs/cifar100_lt_balanced_softmax.py --workdir runs/c100lt_bs_bf
  python -m bf_jax.main --config configs/cifar100_lt_balanced_softmax.py:bf=off --workdir runs/c100lt_bs

Hardware: one GPU or TPU host (not measured yet). Data: TFDS cifar100 in array_record (docs/classify.md).
Paper: the released README has no Balanced Softmax CIFAR-100-LT row; Papers-with-Code lists
PaCo + BatchFormer at 52.4% top-1 (IF 100). No result measured with this config yet.

Args: bf=on|off, imbalance=100|200 (any float), smoke, seed=N, scope=paper|global|device|K.
Attention groups (scope=paper, the default): the whole batch of 512: the Balanced Softmax fork ran
the layer outside nn.DataParallel (BalancedSoftmax/run_networks.py).
"""

from bf_jax.tasks import base_config
from bf_jax.trainer.config_base import paper_scope, parse_arg, shrink_for_smoke

# Documented args and their defaults.
ARGS = dict(bf=True, imbalance=100.0, smoke=False, seed=0, scope="paper")
PAPER_SCOPE = "global"  # the paper's attention groups (docstring)


def get_config(arg: str | None = None):
  arg = parse_arg(arg, **ARGS)
  c = base_config()
  c.seed = arg.seed
  c.data.update(name="cifar100", num_classes=100, imbalance=arg.imbalance, augment="crop_flip")
  c.model.update(name="resnet32")
  c.loss.name = "balanced_softmax"
  c.bf.update(enabled=arg.bf, lr_mult=0.1)
  c.batch_size, c.eval_batch_size = 512, 500
  c.total_steps, c.eval_every_steps, c.log_every_steps = 13000, 1000, 100
  c.ckpt.every_steps = 1000
  c.optim.update(name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="cosine",
                 warmup_steps=800)
  if arg.smoke:
    c.data.n_max, c.data.imbalance = 10, 10.0  # a tiny long tail: 10 images down to 1
    shrink_for_smoke(c)
  c.bf.scope = paper_scope(arg.scope, PAPER_SCOPE, c.batch_size)
  return c

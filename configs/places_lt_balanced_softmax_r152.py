"""Places-LT, ResNet-152 + Balanced Softmax in two stages, with or without BatchFormer.

Stage 1 fine-tunes an ImageNet-trained ResNet-152 (a bf_jax workdir given as
`--config.init.from_workdir`) on Places-LT with Balanced Softmax. Stage 2 is the decoupled
step: the backbone from stage 1 is frozen (no gradient, running BatchNorm statistics) and the
head (and BatchFormer, two-stream) is re-trained with class-balanced sampling. Batch 128, SGD
momentum 0.9, cosine; 30 epochs per stage over the 62,500 training images. Upstream's head/feature
learning rates 0.02 / 0.01 are simplified to one rate per stage (0.01 / 0.02).

  python -m bf_jax.main --config configs/places_lt_balanced_softmax_r152.py:stage=1 \\
    --workdir runs/places_s1 --config.init.from_workdir=runs/imagenet_r152 \\
    --config.data.train_list=Places_LT_train.txt --config.data.val_list=Places_LT_val.txt \\
    --config.data.test_list=Places_LT_test.txt
  python -m bf_jax.main --config configs/places_lt_balanced_softmax_r152.py:stage=2 \\
    --workdir runs/places_s2 --config.init.from_workdir=runs/places_s1 (same list flags)

Paper: the released README has no Places-LT row. Not run with this config yet.

Args: bf=on|off, stage=1|2, smoke, seed=N, scope=paper|global|device|K.
Attention groups (scope=paper, the default): the whole batch of 128: the Balanced Softmax fork ran
the layer outside nn.DataParallel (BalancedSoftmax/run_networks.py).
"""

from bf_jax.tasks import base_config
from bf_jax.trainer.config_base import paper_scope, parse_arg, shrink_for_smoke

# Documented args and their defaults.
ARGS = dict(bf=True, stage=2, smoke=False, seed=0, scope="paper")
PAPER_SCOPE = "global"  # the paper's attention groups (docstring)
STEPS_PER_EPOCH = 62500 / 128


def get_config(arg: str | None = None):
  arg = parse_arg(arg, **ARGS)
  if arg.stage not in (1, 2):
    raise ValueError(f"stage={arg.stage} must be 1 or 2.")
  c = base_config()
  c.seed = arg.seed
  c.data.update(name="places_lt", num_classes=365, augment="inception_jitter")
  c.model.update(name="resnet152")
  c.loss.name = "balanced_softmax"
  # Upstream's BatchFormer lr is 0.1x its feature model's 0.01 (run_networks.py takes the last
  # network's rate): 0.001 in both stages, so 0.05x stage 2's single rate of 0.02.
  c.bf.update(enabled=arg.bf, lr_mult=0.1 if arg.stage == 1 else 0.05)
  c.batch_size, c.eval_batch_size = 128, 256
  c.total_steps = int(30 * STEPS_PER_EPOCH)
  c.eval_every_steps, c.log_every_steps, c.ckpt.every_steps = 2000, 100, 1000
  c.optim.update(name="sgd", lr=0.01 if arg.stage == 1 else 0.02, momentum=0.9,
                 weight_decay=5e-4, schedule="cosine", warmup_steps=0)
  if arg.stage == 2:
    c.init.update(freeze_backbone=True, parts=("backbone",))
    c.data.sampler = "class_balanced"
  if arg.smoke:
    shrink_for_smoke(c, image_size=32)
  c.bf.scope = paper_scope(arg.scope, PAPER_SCOPE, c.batch_size)
  return c

"""ImageNet-LT, ResNet-50 + Balanced Softmax, with or without BatchFormer.

BalancedSoftmax-codebase recipe: batch 128, 90 epochs (81,450 steps over 115,846 images),
cosine to 0, SGD lr 0.05, momentum 0.9, weight decay 5e-4; BatchFormer on the 2048-d feature,
two streams, learning rate 0.1x. Random resized crop + flip + color jitter at 224; eval
resized centre crop. Best-val selection on ImageNet_LT_val.txt, reported on ImageNet_LT_test.txt.

  python -m bf_jax.main --config configs/imagenet_lt_balanced_softmax_r50.py \\
    --workdir gs://BUCKET/imagenet_lt_bs_bf --config.data.train_list=ImageNet_LT_train.txt \\
    --config.data.val_list=ImageNet_LT_val.txt --config.data.test_list=ImageNet_LT_test.txt

Hardware: a TPU v4-8 / 8-GPU host class; bf16 there (--config.model.dtype=bfloat16). Data: TFDS
imagenet2012 (manual download, docs/classify.md) and the standard split files. Paper: the released README
has no Balanced Softmax ImageNet-LT row (its ImageNet-LT rows are RIDE and PaCo). Not run yet.

Args: bf=on|off, smoke, seed=N, scope=paper|global|device|K.
Attention groups (scope=paper, the default): the whole batch of 128: the Balanced Softmax fork ran
the layer outside nn.DataParallel (BalancedSoftmax/run_networks.py).
"""

from bf_jax.tasks import base_config
from bf_jax.trainer.config_base import paper_scope, parse_arg, shrink_for_smoke

# Documented args and their defaults.
ARGS = dict(bf=True, smoke=False, seed=0, scope="paper")
PAPER_SCOPE = "global"  # the paper's attention groups (docstring)
STEPS_PER_EPOCH = 115846 / 128


def get_config(arg: str | None = None):
  arg = parse_arg(arg, **ARGS)
  c = base_config()
  c.seed = arg.seed
  c.data.update(name="imagenet_lt", num_classes=1000, augment="inception_jitter")
  c.model.update(name="resnet50")
  c.loss.name = "balanced_softmax"
  c.bf.update(enabled=arg.bf, lr_mult=0.1)
  c.batch_size, c.eval_batch_size = 128, 256
  c.total_steps = int(90 * STEPS_PER_EPOCH)
  c.eval_every_steps, c.log_every_steps, c.ckpt.every_steps = 5000, 100, 2000
  c.optim.update(name="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine",
                 warmup_steps=0)
  if arg.smoke:
    shrink_for_smoke(c, image_size=32)
  c.bf.scope = paper_scope(arg.scope, PAPER_SCOPE, c.batch_size)
  return c

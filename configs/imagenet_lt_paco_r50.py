"""ImageNet-LT, ResNet-50 + PaCo, with or without BatchFormer.

PaCo's ImageNet-LT recipe (its sh/ImageNetLT_train_R50.sh and paco_lt.py): batch 128 (4 GPUs x
32), 400 epochs (362,019 steps over 115,846 images), SGD lr 0.02, momentum 0.9, weight decay
5e-4, 10 warmup epochs then cosine; alpha 0.05, beta 1, gamma 1, temperature 0.2, a queue of
8,192 keys, 128-d projections of the 2048-d feature, key momentum 0.999. Query view: random
resized crop, flip, color jitter, RandAugment n=2 m=10; key view SimCLR's. BatchFormer on the
2048-d pooled feature, its stream through the classifier (paco.bf_branches="centers").

  python -m bf_jax.main --config configs/imagenet_lt_paco_r50.py \\
    --workdir gs://BUCKET/imagenet_lt_paco_bf --config.data.train_list=ImageNet_LT_train.txt \\
    --config.data.val_list=ImageNet_LT_val.txt --config.data.test_list=ImageNet_LT_test.txt

Hardware: a TPU v4-8 / 8-GPU host class; bf16 there (--config.model.dtype=bfloat16). Data: TFDS
imagenet2012 (manual download, docs/classify.md) and the standard split files.
Published (not measured here), All / Many / Medium / Few top-1: PaCo 57.0 / 64.8 / 55.9 / 39.1,
PaCo + BatchFormer 57.4 / 62.7 / 56.7 / 42.1 (BatchFormer README; PaCo's README gives 57.0).

Args: bf=on|off, branches=centers|both, smoke, seed=N, scope=paper|global|device|K.
Attention groups (scope=paper, the default): the whole batch of 128 (upstream has no PaCo +
BatchFormer code to follow).
"""

from bf_jax.tasks import base_config
from bf_jax.trainer.config_base import paper_scope, parse_arg, shrink_for_smoke

# Documented args and their defaults.
ARGS = dict(bf=True, branches="centers", smoke=False, seed=0, scope="paper")
PAPER_SCOPE = "global"  # the paper's attention groups (docstring)
STEPS_PER_EPOCH = 115846 / 128


def get_config(arg: str | None = None):
  arg = parse_arg(arg, **ARGS)
  c = base_config()
  c.seed = arg.seed
  c.data.update(name="imagenet_lt", num_classes=1000, augment="paco_imagenet", crop_min=0.08)
  c.model.update(name="resnet50")
  c.paco.update(enabled=True, alpha=0.05, beta=1.0, gamma=1.0, temperature=0.2, queue=8192,
                dim=128, momentum=0.999, bf_branches=arg.branches)
  c.bf.update(enabled=arg.bf)
  c.batch_size, c.eval_batch_size = 128, 256
  c.total_steps = int(400 * STEPS_PER_EPOCH)
  c.eval_every_steps, c.log_every_steps, c.ckpt.every_steps = 5000, 100, 2000
  c.optim.update(name="sgd", lr=0.02, momentum=0.9, weight_decay=5e-4, schedule="cosine",
                 warmup_steps=int(10 * STEPS_PER_EPOCH))
  if arg.smoke:
    shrink_for_smoke(c, image_size=32)
    c.paco.queue = 32
  c.bf.scope = paper_scope(arg.scope, PAPER_SCOPE, c.batch_size)
  return c

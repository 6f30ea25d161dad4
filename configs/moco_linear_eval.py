"""Linear probe of a MoCo v3 pre-training run: a linear classifier on the frozen backbone.

MoCo v3's linear-classification recipe: the pre-trained backbone fixed (no gradient, BatchNorm
on its running statistics, no BatchFormer), one linear layer on the pooled feature, SGD momentum
0.9, no weight decay, cosine schedule, lr 0.1 x batch/256; ImageNet: batch 1024, 90 epochs,
random resized crop + flip at 224, eval resized centre crop. CIFAR-10: batch 256, 100 epochs,
pad-crop + flip. The weights come from the pre-training run's latest checkpoint (its ``backbone``
group), so this config works for any backbone the pre-training config names.

  python -m bf_jax.main --config configs/moco_linear_eval.py \\
    --workdir gs://BUCKET/moco_v3_r50_bf_probe --config.init.from_workdir=gs://BUCKET/moco_v3_r50_bf
  python -m bf_jax.main --config configs/moco_linear_eval.py:dataset=cifar10 \\
    --workdir runs/moco_c10_bf_probe --config.init.from_workdir=runs/moco_c10_bf

Without --config.init.from_workdir the backbone stays at its random initialization (a
random-feature baseline; the run logs a warning). Paper (not measured here): ImageNet top-1 68.9
without and 70.1 with BatchFormer for MoCo v3 ResNet-50, 100 epochs. Not run yet.

Args: dataset=imagenet|cifar10, smoke, seed=N.
"""

from bf_jax.tasks import base_config
from bf_jax.trainer.config_base import parse_arg, shrink_for_smoke

# Documented args and their defaults.
ARGS = dict(dataset="imagenet", smoke=False, seed=0)
# dataset -> (model, classes, train images, batch, epochs, augmentation)
RECIPES = {"imagenet": ("resnet50", 1000, 1_281_167, 1024, 90, "inception"),
           "cifar10": ("resnet18_cifar", 10, 50_000, 256, 100, "crop_flip")}


def get_config(arg: str | None = None):
  arg = parse_arg(arg, **ARGS)
  if arg.dataset not in RECIPES:
    raise ValueError(f"config arg dataset={arg.dataset!r} must be one of {sorted(RECIPES)}.")
  model, classes, images, batch, epochs, augment = RECIPES[arg.dataset]
  c = base_config()
  c.seed = arg.seed
  c.data.update(name=arg.dataset, num_classes=classes, augment=augment, imbalance=1.0,
                eval_split="validation" if arg.dataset == "imagenet" else "test")  # TFDS names
  c.model.update(name=model, dtype="bfloat16" if arg.dataset == "imagenet" else "float32")
  c.bf.enabled = False  # the probe measures the backbone alone
  c.init.update(parts=("backbone",), freeze_backbone=True)
  c.batch_size, c.eval_batch_size = batch, 1000
  c.total_steps = epochs * (images // batch)
  c.eval_every_steps = 10 * (images // batch)
  c.log_every_steps, c.ckpt.every_steps = 100, 5 * (images // batch)
  c.optim.update(name="sgd", lr=0.1 * batch / 256, momentum=0.9, weight_decay=0.0,
                 schedule="cosine", warmup_steps=0)
  if arg.smoke:
    shrink_for_smoke(c, image_size=32 if arg.dataset == "imagenet" else 0)
    c.model.dtype = "float32"
  return c

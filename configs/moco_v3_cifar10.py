"""MoCo v3 on CIFAR-10 with a CIFAR ResNet-18, one GPU, with or without BatchFormer.

The ImageNet recipe scaled down (an untuned starting point, not a published one): batch 512,
200 epochs (19,531 steps), LARS lr 0.6 x 512/256 = 1.2, 10-epoch warmup then cosine, weight
decay 1e-6; temperature 0.2; m 0.99 -> 1 (cosine); projector 512-2048-256, predictor
256-2048-256; two views at 32x32 without blur (blur destroys 32-pixel images), crop area >= 0.2.
BatchFormer on the 512-d pooled feature, two streams, trained. kNN monitor (k 200, T 0.1) every
10 epochs over all 50,000 train and 10,000 test images.

  python -m bf_jax.main --config configs/moco_v3_cifar10.py --workdir runs/moco_c10_bf
  python -m bf_jax.main --config configs/moco_v3_cifar10.py:bf=off --workdir runs/moco_c10
  python -m bf_jax.main --config configs/moco_linear_eval.py:dataset=cifar10 \\
    --workdir runs/moco_c10_bf_probe --config.init.from_workdir=runs/moco_c10_bf

Hardware: one GPU (float32; add --config.model.dtype=bfloat16 on A100/H100). Data: TFDS cifar10.
No result measured yet; the paper reports ImageNet only.

Args: bf=on|off, smoke, seed=N, epochs=N.
"""

from bf_jax.tasks import base_config
from bf_jax.trainer.config_base import parse_arg, shrink_for_smoke

# Documented args and their defaults.
ARGS = dict(bf=True, smoke=False, seed=0, epochs=200)
IMAGES, BATCH = 50_000, 512


def get_config(arg: str | None = None):
  arg = parse_arg(arg, **ARGS)
  c = base_config()
  c.task, c.seed = "moco", arg.seed
  c.data.update(name="cifar10", num_classes=10, augment="two_view_noblur", crop_min=0.2,
                imbalance=1.0)
  c.model.update(name="resnet18_cifar")
  c.bf.update(enabled=arg.bf)
  c.moco.update(dim=256, mlp_dim=2048, temperature=0.2, momentum=0.99, momentum_cosine=True)
  steps_per_epoch = IMAGES // BATCH
  c.batch_size, c.eval_batch_size = BATCH, 1000
  c.total_steps = arg.epochs * steps_per_epoch
  c.eval_every_steps, c.log_every_steps = 10 * steps_per_epoch, 50
  c.ckpt.every_steps = 5 * steps_per_epoch
  c.optim.update(name="lars", lr=0.6 * BATCH / 256, momentum=0.9, weight_decay=1e-6,
                 schedule="cosine", warmup_steps=min(10 * steps_per_epoch, c.total_steps // 2))
  if arg.smoke:
    shrink_for_smoke(c)
    c.moco.update(dim=16, mlp_dim=64, knn_bank=32, knn_queries=16, knn_k=5)
  return c

"""MoCo v3, ResNet-50, ImageNet, 100 epochs, batch 4096, with or without BatchFormer.

MoCo v3's ResNet-50 100-epoch recipe (its README command): LARS, lr 0.6 x 4096/256 = 9.6 with a
10-epoch linear warmup then cosine, weight decay 1e-6 (not on biases/BN), momentum 0.9;
temperature 1.0; momentum encoder m 0.99 raised to 1 along a cosine; projector 2048-4096-256,
predictor 256-4096-256 (synchronized BN); two asymmetric views at 224, crop area >= 0.2.
BatchFormer: the projector's first module, on the pooled 2048-d feature, two streams, trained
(upstream left it frozen at its random init); attention within upstream's per-GPU groups of
256 by default (scope=global: over the whole batch of 4096). kNN monitor (k 200, T 0.1) every 5
epochs on 100,000 train images and 10,000 val images.

  python -m bf_jax.main --config configs/moco_v3_imagenet_r50.py \\
    --workdir gs://BUCKET/moco_v3_r50_bf --config.data.data_dir=gs://BUCKET/tensorflow_datasets
  # then the linear evaluation on the frozen backbone:
  python -m bf_jax.main --config configs/moco_linear_eval.py \\
    --workdir gs://BUCKET/moco_v3_r50_bf_probe --config.init.from_workdir=gs://BUCKET/moco_v3_r50_bf

Hardware: a TPU v4-64 / 32-GPU class for batch 4096 in bf16 (--config.model.dtype is already
bfloat16). Paper (its Table, not measured here): linear-probe top-1 68.9 without and 70.1 with
BatchFormer (MoCo-v2: 67.5 -> 68.4). Not run yet.

Args: bf=on|off, smoke, seed=N, scope=paper|global|device|K.
Attention groups (scope=paper, the default): groups of 256: MoCo v3's README trains batch 4096 on 2
nodes x 8 GPUs (DDP), the layer inside each replica.
"""

from bf_jax.tasks import base_config
from bf_jax.trainer.config_base import paper_scope, parse_arg, shrink_for_smoke

# Documented args and their defaults.
ARGS = dict(bf=True, smoke=False, seed=0, scope="paper")
PAPER_SCOPE = "256"  # the paper's attention groups (docstring)
IMAGES, BATCH, EPOCHS = 1_281_167, 4096, 100
STEPS_PER_EPOCH = IMAGES / BATCH


def get_config(arg: str | None = None):
  arg = parse_arg(arg, **ARGS)
  c = base_config()
  c.task, c.seed = "moco", arg.seed
  c.data.update(name="imagenet", num_classes=1000, augment="two_view", crop_min=0.2,
                imbalance=1.0, eval_split="validation")  # TFDS imagenet2012's labelled eval
  c.model.update(name="resnet50", dtype="bfloat16")
  c.bf.update(enabled=arg.bf)
  c.moco.update(dim=256, mlp_dim=4096, temperature=1.0, momentum=0.99, momentum_cosine=True,
                knn_bank=100_000, knn_queries=10_000)
  c.batch_size, c.eval_batch_size = BATCH, 1024
  c.total_steps = int(EPOCHS * STEPS_PER_EPOCH)
  c.eval_every_steps, c.log_every_steps, c.ckpt.every_steps = int(5 * STEPS_PER_EPOCH), 100, 1000
  c.optim.update(name="lars", lr=0.6 * BATCH / 256, momentum=0.9, weight_decay=1e-6,
                 schedule="cosine", warmup_steps=int(10 * STEPS_PER_EPOCH))
  if arg.smoke:
    shrink_for_smoke(c, image_size=32)
    c.model.dtype = "float32"
    c.moco.update(dim=16, mlp_dim=64, knn_bank=32, knn_queries=16, knn_k=5)
  c.bf.scope = paper_scope(arg.scope, PAPER_SCOPE, c.batch_size)
  return c

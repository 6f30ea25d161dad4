"""CIFAR-100 DeiT-Tiny (patch 4) with BatchFormerV2 after every block, from scratch, one GPU.

An untuned scaled-down starting point (not a published recipe): 32x32 images as 8x8 patches of
4 (65 tokens), 200 epochs of batch 256, AdamW lr 5e-4 x 256/512 with weight decay 0.05 (not on
biases, norms, position and class embeddings), cosine after 5 warmup epochs, label smoothing
0.1, Mixup 0.8 / CutMix 1.0, stochastic depth 0.1, pad-crop + flip. BatchFormerV2 after all 12
blocks (one shared layer, 4 heads, dropout 0.5): the first insertion point doubles the batch,
the later ones act on the BatchFormer stream only; removed at test time.

  python -m bf_jax.main --config configs/cifar100_deit_tiny_v2.py --workdir runs/c100_deit_t_bf
  python -m bf_jax.main --config configs/cifar100_deit_tiny_v2.py:bf=off --workdir runs/c100_deit_t

Hardware: one GPU. Data: TFDS cifar100. No result measured yet; the paper reports ImageNet only.

Args: bf=on|off, smoke, shared=on|off (one layer for all points or one each), epochs=N,
scope=paper|global|device|K, remat=none|streams|all (model.remat: recompute the blocks on both
streams, or all blocks, in the backward pass; memory in docs/performance.md).
Attention groups (scope=paper, the default): groups of 64: deit_share/main.py's per-GPU batch
default (DDP, the layer inside each replica; its GPU count is not stated).
"""

from bf_jax.tasks import base_config
from bf_jax.trainer.config_base import paper_scope, parse_arg, shrink_for_smoke

# Documented args and their defaults.
ARGS = dict(bf=True, smoke=False, shared=True, epochs=200, scope="paper", remat="none")
PAPER_SCOPE = "64"  # the paper's attention groups (docstring)
IMAGES, BATCH = 50_000, 256


def get_config(arg: str | None = None):
  arg = parse_arg(arg, **ARGS)
  c = base_config()
  c.data.update(name="cifar100", num_classes=100, augment="crop_flip", imbalance=1.0,
                mixup=0.8, cutmix=1.0, label_smoothing=0.1)
  c.model.update(name="deit_tiny", patch=4, drop_path=0.1)
  c.bf.update(enabled=arg.bf, insert_after=tuple(range(12)), shared_layers=arg.shared,
              num_heads=4, dropout=0.5)
  steps_per_epoch = IMAGES // BATCH
  c.batch_size, c.eval_batch_size = BATCH, 1000
  c.total_steps = arg.epochs * steps_per_epoch
  c.eval_every_steps, c.log_every_steps = 10 * steps_per_epoch, 100
  c.ckpt.every_steps = 5 * steps_per_epoch
  c.optim.update(name="adamw", lr=5e-4 * BATCH / 512, weight_decay=0.05, schedule="cosine",
                 warmup_steps=min(5 * steps_per_epoch, c.total_steps // 2))
  if arg.smoke:
    shrink_for_smoke(c)
  c.bf.scope = paper_scope(arg.scope, PAPER_SCOPE, c.batch_size)
  c.model.remat = arg.remat
  return c

"""ImageNet-1k DeiT-S with BatchFormerV2 after block 8 (two streams inside the ViT).

DeiT's recipe as far as bf_jax has it: 300 epochs, batch 1024, AdamW lr 5e-4 x 1024/512, weight
decay 0.05 (not on biases, norms, position and class embeddings), cosine after a 5-epoch warmup,
label smoothing 0.1, Mixup 0.8 / CutMix 1.0 (switch 0.5), stochastic depth 0.1, random resized
crop + flip + RandAugment (2 ops, magnitude 9, std 0.5) + random erasing 0.25 (data.augment
"deit"), 224x224, bf16; an EMA of the weights with --config.optim.ema_decay=0.99996 (evaluated
alongside). Not here: repeated augmentation. BatchFormerV2: one layer (4 heads, dropout 0.5)
after block 8 (0-based), every token position attending across its group of the batch (below);
the batch doubles there into [original; BatchFormer] streams that share blocks 9-11 and the
head; removed at test time. Train-step memory: docs/performance.md (python -m
bf_jax.bench.memory). --config.model.scan_layers=True runs blocks 0-8 and 9-11 as two scans;
unrolled by default, since on the CPU it measured no faster to compile (docs/performance.md).

  python -m bf_jax.main --config configs/imagenet_deit_small_v2.py --workdir runs/deit_s_bf
  python -m bf_jax.main --config configs/imagenet_deit_small_v2.py:bf=off --workdir runs/deit_s

Hardware: a TPU pod slice or 8+ GPUs (bf16). Data: TFDS imagenet2012. No result measured yet.
Paper (BatchFormerV2, the paper's numbers, not ours): DeiT-T 72.2 -> 72.7, DeiT-S 79.8 -> 80.4,
DeiT-B 81.7 -> 82.2 ImageNet top-1.

Args: bf=on|off, smoke, arch=deit_tiny|deit_small|deit_base, insert_after=N (one block),
epochs=N, scope=paper|global|device|K, remat=none|streams|all (model.remat: recompute the
blocks after insert_after, which run on both streams, or all blocks, in the backward pass;
memory in docs/performance.md).
Attention groups (scope=paper, the default): groups of 64: deit_share/main.py's per-GPU batch
default (DDP, the layer inside each replica; its GPU count is not stated).
"""

from bf_jax.tasks import base_config
from bf_jax.trainer.config_base import paper_scope, parse_arg, shrink_for_smoke

# Documented args and their defaults.
ARGS = dict(bf=True, smoke=False, arch="deit_small", insert_after=8, epochs=300, scope="paper",
            remat="none")
PAPER_SCOPE = "64"  # the paper's attention groups (docstring)
IMAGES, BATCH = 1_281_167, 1024


def get_config(arg: str | None = None):
  arg = parse_arg(arg, **ARGS)
  c = base_config()
  c.data.update(name="imagenet", num_classes=1000, augment="deit", image_size=224,
                imbalance=1.0, eval_split="validation", mixup=0.8, cutmix=1.0,
                label_smoothing=0.1)
  c.model.update(name=arg.arch, patch=16, drop_path=0.1, dtype="bfloat16")
  c.bf.update(enabled=arg.bf, insert_after=(arg.insert_after,), shared_layers=True,
              num_heads=4, dropout=0.5)
  steps_per_epoch = IMAGES // BATCH
  c.batch_size, c.eval_batch_size = BATCH, 1000
  c.total_steps = arg.epochs * steps_per_epoch
  c.eval_every_steps, c.log_every_steps = 10 * steps_per_epoch, 100
  c.ckpt.every_steps = 2 * steps_per_epoch
  c.optim.update(name="adamw", lr=5e-4 * BATCH / 512, weight_decay=0.05, b1=0.9, b2=0.999,
                 schedule="cosine", warmup_steps=min(5 * steps_per_epoch, c.total_steps // 2),
                 grad_clip=0.0)
  if arg.smoke:
    shrink_for_smoke(c, image_size=32)
    c.model.update(patch=8, dtype="float32")
  c.bf.scope = paper_scope(arg.scope, PAPER_SCOPE, c.batch_size)
  c.model.remat = arg.remat
  return c

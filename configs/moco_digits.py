"""MoCo v3 on the embedded digits (balanced), tiny CNN: the CPU-sized self-supervised check.

scikit-learn's 1,797 real 8x8 digits, 50 test images per class held out, a balanced training
set of 1,240 (124 per class) drawn from the rest, its labels unused by pre-training. Tiny CNN
(2 conv blocks, 64-d feature), projector 64-256-64, predictor 64-256-64, LARS, two views at 8x8
(crop area >= 0.3, no blur). The kNN monitor uses labels only to score: 200 neighbours over all
1,240 training images, the 500 test images as queries. What it shows is that pre-training makes
the features better than at initialization, with and without BatchFormer; figures in docs/moco.md
(measured there).

  python -m bf_jax.main --config configs/moco_digits.py --workdir runs/moco_digits_bf
  python -m bf_jax.main --config configs/moco_digits.py:bf=off --workdir runs/moco_digits

Hardware: any CPU; a few minutes on 2 cores.

Args: bf=on|off, smoke, seed=N, steps=N.
"""

from bf_jax.tasks import base_config
from bf_jax.trainer.config_base import parse_arg, shrink_for_smoke

# Documented args and their defaults.
ARGS = dict(bf=True, smoke=False, seed=0, steps=600)


def get_config(arg: str | None = None):
  arg = parse_arg(arg, **ARGS)
  c = base_config()
  c.task, c.seed = "moco", arg.seed
  c.data.update(name="digits", num_classes=10, imbalance=1.0, augment="two_view_noblur",
                crop_min=0.3)
  c.model.update(name="cnn", width=32, depth=2)
  c.bf.enabled = arg.bf
  c.moco.update(dim=64, mlp_dim=256, temperature=0.2, momentum=0.99, momentum_cosine=True)
  c.batch_size, c.eval_batch_size = 256, 256
  c.total_steps = arg.steps
  c.eval_every_steps, c.log_every_steps, c.ckpt.every_steps = arg.steps // 3, 50, 0
  c.optim.update(name="lars", lr=0.6 * c.batch_size / 256, momentum=0.9, weight_decay=1e-6,
                 schedule="cosine", warmup_steps=arg.steps // 10)
  if arg.smoke:
    shrink_for_smoke(c)
    c.moco.update(knn_bank=32, knn_queries=16, knn_k=5)
  return c

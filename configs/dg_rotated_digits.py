"""Rotated digits domain generalization on a CPU: leave-one-domain-out, SWAD (+ BatchFormer).

The embedded digits dealt into four domains rotated by 0, 30, 60 and 90 degrees (16x16;
bf_jax/tasks/dg/digits.py). The DG pipeline of configs/dg_pacs.py at toy scale: a tiny CNN (3 conv
layers, 128-d feature) from scratch, 32 images per training domain per step, Adam 1e-3 constant,
800 steps, validation every 50 on the training domains' 20% out-splits, SWAD (N_s 3, N_e 6,
r 1.3), BatchFormer (4 heads, dropout 0.5) with the shared classifier.

  python -m bf_jax.tasks.dg.digits --out ~/dg_data
  python -m bf_jax.main --config configs/dg_rotated_digits.py:bf=off --workdir runs/dg_digits
  python -m bf_jax.main --config configs/dg_rotated_digits.py --workdir runs/dg_digits_bf
  python -m bf_jax.tasks.dg.sweep runs/dg_digits runs/dg_digits_bf

Hardware: this 2-core CPU. Result: docs/dg.md (measured there).

Args: bf=on|off, smoke, algorithm=swad|erm, seeds=N, steps=N, data_dir=DIR.
"""

from bf_jax.tasks import base_config
from bf_jax.trainer.config_base import parse_arg

# Documented args and their defaults.
ARGS = dict(bf=True, smoke=False, algorithm="swad", seeds=3, steps=800, data_dir="~/dg_data")


def get_config(arg: str | None = None):
  arg = parse_arg(arg, **ARGS)
  c = base_config()
  c.task = "dg"
  c.data.update(name="rotated_digits", num_classes=10, data_dir=arg.data_dir, image_size=16,
                augment="none", imbalance=1.0)
  c.model.update(name="cnn", width=32, depth=3, freeze_bn=True)
  c.bf.update(enabled=arg.bf, mode="shared", num_heads=4, dropout=0.5)
  c.dg.update(batch_per_domain=32, trial_seeds=tuple(range(arg.seeds)), algorithm=arg.algorithm)
  c.batch_size, c.eval_batch_size = 96, 256
  c.total_steps, c.eval_every_steps, c.log_every_steps = arg.steps, 50, 100
  c.ckpt.update(every_steps=400, keep=1)
  c.optim.update(name="adamw", lr=1e-3, weight_decay=0.0, schedule="constant", warmup_steps=0)
  if arg.smoke:
    c.dg.update(batch_per_domain=4, trial_seeds=(0,), test_domains=("rot0",))
    c.batch_size, c.eval_batch_size = 12, 64
    c.total_steps, c.eval_every_steps, c.log_every_steps, c.ckpt.every_steps = 2, 1, 1, 0
  return c

"""Embedded long-tailed digits: MLP + PaCo, with or without BatchFormer (the CPU-sized PaCo).

The split of configs/digits_lt.py (imbalance 50: 124 images of class 0 down to 2 of class 9).
PaCo's CIFAR recipe scaled down: the query unaugmented (what the Balanced Softmax digits run
sees; PaCo's CIFAR views erase an 8x8 digit, docs/paco.md), the key shifted by up to a pixel
with brightness and contrast jitter; a queue of 256 keys (4 global batches), 32-d projections,
temperature 0.05, alpha 0.01 as PaCo's CIFAR-100-LT script. The momentum is 0.99, not PaCo's 0.999: 600 steps
would leave a 0.999 key encoder near its initialization.

  python -m bf_jax.main --config configs/digits_lt_paco.py --workdir runs/digits_paco_bf
  python -m bf_jax.main --config configs/digits_lt_paco.py:bf=off --workdir runs/digits_paco

Hardware: any CPU; one run takes seconds. README's PaCo section has the paired table over
seeds, next to Balanced Softmax (configs/digits_lt.py) on the same split, with its command.

Args: bf=on|off, smoke (a few steps, for tests), seed=N, branches=centers|both.
"""

from bf_jax.tasks import base_config
from bf_jax.trainer.config_base import parse_arg

# Documented args and their defaults.
ARGS = dict(bf=True, smoke=False, seed=0, branches="centers")


def get_config(arg: str | None = None):
  arg = parse_arg(arg, **ARGS)
  c = base_config()
  c.seed = arg.seed
  c.data.update(name="digits", num_classes=10, imbalance=50.0, augment="paco_small")
  c.model.name, c.model.width, c.model.depth = "mlp", 128, 2
  c.paco.update(enabled=True, alpha=0.01, beta=1.0, gamma=1.0, temperature=0.05, queue=256,
                dim=32, momentum=0.99, bf_branches=arg.branches)
  c.bf.enabled = arg.bf
  c.batch_size, c.eval_batch_size = 64, 128
  c.total_steps, c.eval_every_steps, c.log_every_steps = 600, 200, 100
  c.ckpt.every_steps = 0  # runs take seconds: a checkpoint at the end is enough
  c.optim.update(name="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine",
                 warmup_steps=20)
  if arg.smoke:
    c.total_steps, c.eval_every_steps, c.log_every_steps = 30, 15, 5
    c.ckpt.every_steps = 10
    c.optim.warmup_steps = 2
  return c

"""Embedded long-tailed digits: MLP + Balanced Softmax, with or without BatchFormer.

scikit-learn's 1,797 real 8x8 handwritten digits; 50 test images per class held out (balanced),
the long-tailed training set drawn from the rest (exponential profile, imbalance factor 50:
124 images of class 0 down to 2 of class 9, 342 in all).

  python -m bf_jax.main --config configs/digits_lt.py --workdir runs/digits_bf
  python -m bf_jax.main --config configs/digits_lt.py:bf=off --workdir runs/digits_base

Hardware: any CPU; one run takes seconds. `make demo` runs both over 10 seeds and prints the
table reported in README.md (measured in docs/demo.md, with the command and machine).

Args: bf=on|off, smoke (a few steps, for tests), seed=N, imbalance=F.
"""

from bf_jax.tasks import base_config
from bf_jax.trainer.config_base import parse_arg

# Documented args and their defaults.
ARGS = dict(bf=True, smoke=False, seed=0, imbalance=50.0)


def get_config(arg: str | None = None):
  arg = parse_arg(arg, **ARGS)
  c = base_config()
  c.seed = arg.seed
  c.data.name, c.data.num_classes, c.data.imbalance = "digits", 10, arg.imbalance
  c.model.name, c.model.width, c.model.depth = "mlp", 128, 2
  c.loss.name = "balanced_softmax"
  c.bf.enabled = arg.bf
  c.batch_size, c.eval_batch_size = 64, 128
  c.total_steps, c.eval_every_steps, c.log_every_steps = 600, 200, 100
  c.ckpt.every_steps = 0  # runs take seconds: a checkpoint at the end is enough
  c.steps_per_dispatch = 10  # a step takes about a millisecond: scan 10 per dispatch
  c.optim.update(name="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine",
                 warmup_steps=20)
  if arg.smoke:
    c.total_steps, c.eval_every_steps, c.log_every_steps = 30, 15, 5
    c.steps_per_dispatch = 1
    c.ckpt.every_steps = 10
    c.optim.warmup_steps = 2
  return c

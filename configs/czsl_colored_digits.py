"""Colored digits closed-world CZSL on a CPU: CGE or CompCos, with or without BatchFormer.

The embedded digits coloured red/green/blue/yellow (attribute = colour, object = digit; 28 seen
pairs, 6 unseen in val and 6 others in test; bf_jax/tasks/czsl/digits.py). The CZSL pipeline of
configs/czsl_mit_states_cge.py at toy scale: a tiny CNN (3 conv layers, 128-d) from scratch,
BatchFormer on its feature (two streams), batch 64, Adam 1e-3, 600 steps, val/test evaluation
every 50 steps, test reported at the best val AUC.

  python -m bf_jax.tasks.czsl.digits --out ~/czsl_data
  python -m bf_jax.main --config configs/czsl_colored_digits.py:bf=off --workdir runs/czsl_digits
  python -m bf_jax.main --config configs/czsl_colored_digits.py --workdir runs/czsl_digits_bf

Hardware: this 2-core CPU. Result: docs/czsl.md (measured there).

Args: bf=on|off, smoke, model=cge|compcos, seed=N, steps=N, data_dir=DIR.
"""

from bf_jax.tasks import base_config
from bf_jax.trainer.config_base import parse_arg

# Documented args and their defaults.
ARGS = dict(bf=True, smoke=False, model="cge", seed=0, steps=600, data_dir="~/czsl_data")


def get_config(arg: str | None = None):
  arg = parse_arg(arg, **ARGS)
  c = base_config()
  c.task, c.seed = "czsl", arg.seed
  c.data.update(name="colored_digits", data_dir=arg.data_dir, image_size=16, augment="none")
  c.model.update(name="cnn", width=32, depth=3)
  c.bf.update(enabled=arg.bf, mode="shared", num_heads=4, dropout=0.5)
  c.czsl.update(model=arg.model, emb_dim=64, hidden=128, img_layers=2, temperature=0.05)
  c.batch_size, c.eval_batch_size = 64, 128
  c.total_steps, c.eval_every_steps, c.log_every_steps = arg.steps, 50, 50
  c.ckpt.update(every_steps=300, keep=1)
  c.optim.update(name="adamw", lr=1e-3, weight_decay=5e-5, schedule="constant", warmup_steps=0)
  if arg.smoke:
    c.batch_size, c.eval_batch_size = 16, 64
    c.total_steps, c.eval_every_steps, c.log_every_steps, c.ckpt.every_steps = 2, 1, 1, 0
  return c

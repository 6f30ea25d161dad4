"""iNaturalist 2018, RIDE (3 experts, ResNet-50, 1536-d expert features), with or without BatchFormer.

RIDE recipe: batch 128 (8 GPUs upstream), 100 epochs over 437,513 images, SGD lr 0.2 with
5 warmup epochs and x0.1 steps at epochs 60 and 80, weight decay 2e-4, LDAM-DRW base loss;
BatchFormer `bf_only`, one layer shared by the experts. Eval on the released validation split.

  python -m bf_jax.main --config configs/inat18_ride_r50.py --workdir gs://BUCKET/inat18_ride_bf

Paper (repository README, All / Many / Medium / Few): RIDE 72.5 / 68.1 / 72.7 / 73.2;
RIDE + BatchFormer 74.1 / 65.5 / 74.5 / 75.8. Not run with this config yet.

Args: bf=on|off, mode=bf_only|shared, smoke, seed=N, scope=paper|global|device|K.
Attention groups (scope=paper, the default): groups of 16: RIDE's
config_iNaturalist_resnet50_ride.json splits its batch of 128 over n_gpu 8 replicas (32 each had
only the README's 4 GPUs been present).
"""

from bf_jax.tasks import base_config
from bf_jax.trainer.config_base import paper_scope, parse_arg, shrink_for_smoke

# Documented args and their defaults.
ARGS = dict(bf=True, mode="bf_only", smoke=False, seed=0, scope="paper")
PAPER_SCOPE = "16"  # the paper's attention groups (docstring)
STEPS_PER_EPOCH = 437513 / 128


def get_config(arg: str | None = None):
  arg = parse_arg(arg, **ARGS)
  c = base_config()
  c.seed = arg.seed
  c.data.update(name="inat18", num_classes=8142, augment="inception", train_split="train",
                eval_split="validation")
  c.model.update(name="resnet50", experts=3, width_mult=0.75, head="cosine", head_scale=30.0)
  c.loss.update(name="ldam", drw_start_step=int(80 * STEPS_PER_EPOCH), diversity_factor=-0.2)
  c.bf.update(enabled=arg.bf, mode=arg.mode)
  c.batch_size, c.eval_batch_size = 128, 256
  c.total_steps = int(100 * STEPS_PER_EPOCH)
  c.eval_every_steps, c.log_every_steps, c.ckpt.every_steps = 20000, 100, 5000
  c.optim.update(name="sgd", lr=0.2, momentum=0.9, weight_decay=2e-4, schedule="step",
                 step_fractions=(0.6, 0.8), step_factor=0.1,
                 warmup_steps=int(5 * STEPS_PER_EPOCH))
  if arg.smoke:
    shrink_for_smoke(c, image_size=32)
  c.bf.scope = paper_scope(arg.scope, PAPER_SCOPE, c.batch_size)
  return c

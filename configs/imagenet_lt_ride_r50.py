"""ImageNet-LT, RIDE (3 experts, ResNet-50 with 1536-d expert features), with or without BatchFormer.

RIDE recipe: batch 256, 100 epochs, SGD nesterov lr 0.1, 5 warmup epochs, x0.1 steps at epochs
60 and 80, weight decay 2e-4, cosine classifiers (s = 30), LDAM-DRW base loss. BatchFormer as
upstream ran it here: `bf_only` (each expert's classifier sees only BatchFormer features during
training), one layer shared by the experts.

  python -m bf_jax.main --config configs/imagenet_lt_ride_r50.py --workdir gs://BUCKET/inlt_ride_bf \\
    --config.data.train_list=ImageNet_LT_train.txt --config.data.val_list=ImageNet_LT_val.txt \\
    --config.data.test_list=ImageNet_LT_test.txt

Paper (repository README, ResNet-50, All / Many / Medium / Few): RIDE 53.6 / 64.9 / 50.4 / 33.2;
RIDE + BatchFormer 54.1 / 64.3 / 51.4 / 35.1. Not run with this config yet.

Args: bf=on|off, mode=bf_only|shared, smoke, seed=N, scope=paper|global|device|K.
Attention groups (scope=paper, the default): groups of 64: RIDE's
config_imagenet_lt_resnet50_ride.json splits its batch of 256 over n_gpu 4 replicas
(nn.DataParallel) and each attends over its chunk; the README's command passes --batch_size 400,
groups of 100.
"""

from bf_jax.tasks import base_config
from bf_jax.trainer.config_base import paper_scope, parse_arg, shrink_for_smoke

# Documented args and their defaults.
ARGS = dict(bf=True, mode="bf_only", smoke=False, seed=0, scope="paper")
PAPER_SCOPE = "64"  # the paper's attention groups (docstring)
STEPS_PER_EPOCH = 115846 / 256


def get_config(arg: str | None = None):
  arg = parse_arg(arg, **ARGS)
  c = base_config()
  c.seed = arg.seed
  c.data.update(name="imagenet_lt", num_classes=1000, augment="inception_jitter")
  c.model.update(name="resnet50", experts=3, width_mult=0.75, head="cosine", head_scale=30.0)
  c.loss.update(name="ldam", drw_start_step=int(80 * STEPS_PER_EPOCH), diversity_factor=-0.2)
  c.bf.update(enabled=arg.bf, mode=arg.mode)
  c.batch_size, c.eval_batch_size = 256, 256
  c.total_steps = int(100 * STEPS_PER_EPOCH)
  c.eval_every_steps, c.log_every_steps, c.ckpt.every_steps = 5000, 100, 2000
  c.optim.update(name="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=2e-4,
                 schedule="step", step_fractions=(0.6, 0.8), step_factor=0.1,
                 warmup_steps=int(5 * STEPS_PER_EPOCH))
  if arg.smoke:
    shrink_for_smoke(c, image_size=32)
  c.bf.scope = paper_scope(arg.scope, PAPER_SCOPE, c.batch_size)
  return c

"""CIFAR-10/100-LT from TFDS (array_record, read without TensorFlow), tiny CNN, smoke-sized.

The training system's 32x32 path: tfds.data_source + grain, pad-crop-flip augmentation,
BatchNorm synchronized over devices. The paper's ResNet-32 recipes come with the long-tailed
suite; this config is the small end-to-end check.

  python -m bf_jax.main --config configs/cifar_lt.py:dataset=cifar100 --workdir runs/c100

Needs the dataset prepared once (see the error message, or docs/classify.md). Tests run it on
tfds.testing.mock_data. No measured result yet.

Args: dataset=cifar10|cifar100, imbalance=F (1 with n_max=0: the full split), bf=on|off,
smoke, seed=N.
"""

from bf_jax.tasks import base_config
from bf_jax.trainer.config_base import parse_arg

CLASSES = {"cifar10": 10, "cifar100": 100}


# Documented args and their defaults.
ARGS = dict(dataset="cifar100", imbalance=100.0, bf=True, smoke=False, seed=0)


def get_config(arg: str | None = None):
  arg = parse_arg(arg, **ARGS)
  if arg.dataset not in CLASSES:
    raise ValueError(f"dataset={arg.dataset!r} must be one of {sorted(CLASSES)}.")
  c = base_config()
  c.seed = arg.seed
  c.data.update(name=arg.dataset, num_classes=CLASSES[arg.dataset], imbalance=arg.imbalance,
                augment="crop_flip")
  c.model.update(name="cnn", width=16, depth=3)
  c.loss.name = "balanced_softmax"
  c.bf.enabled = arg.bf
  c.batch_size, c.eval_batch_size = 128, 256
  c.total_steps, c.eval_every_steps, c.log_every_steps = 20000, 2000, 100
  c.ckpt.every_steps = 2000
  c.optim.update(name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="cosine",
                 warmup_steps=400)
  if arg.smoke:
    c.data.n_max, c.data.imbalance = 10, 10.0  # a tiny long tail: 10 images down to 1
    c.batch_size, c.eval_batch_size = 32, 32
    c.total_steps, c.eval_every_steps, c.log_every_steps = 6, 3, 2
    c.ckpt.every_steps = 3
    c.optim.warmup_steps = 1
  return c

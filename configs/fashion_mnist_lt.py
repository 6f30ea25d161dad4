"""Fashion-MNIST-LT: a small CNN with cross-entropy, Balanced Softmax or LDAM-DRW, with or
without BatchFormer.

Fashion-MNIST's 28x28 grayscale photos of clothing, long-tailed like CIFAR-LT (class i keeps
int(6000 * imbalance^(-i/9)) training images: 6000 down to 60, 14,886 in all, at imbalance 100),
tested on the standard 10,000. Results report head = the 3 largest classes, mid = the next 4,
tail = the last 3 (data.class_groups="rank:3,7"), since the usual shot thresholds leave no
few-shot class here.

  sudo apt-get install dataset-fashion-mnist   # or the four files, and data.data_dir
  python -m bf_jax.main --config configs/fashion_mnist_lt.py --workdir runs/fmnist_bs_bf
  python -m bf_jax.main --config configs/fashion_mnist_lt.py:bf=off --workdir runs/fmnist_bs
  python -m bf_jax.main --config configs/fashion_mnist_lt.py:imbalance=1,bf=off \
      --workdir runs/fmnist_balanced   # the sanity row: the whole balanced training set

`make fashion-mnist` runs the paired tables of docs/fashion_mnist.md, where the measured results
are.

Recipe (ours; no paper trains this set): convnet of width 16 (two conv-BN-ReLU-avgpool blocks of
16 and 32 channels, a 128-wide feature layer), pad-4 crop and flip on the device, batch 256, SGD
momentum 0.9, lr 0.1, weight decay 5e-4, 30 epochs of the training set. CE and Balanced
Softmax: cosine schedule with 50 warmup steps. LDAM-DRW keeps its paper's shape: a cosine
classifier (s = 30), margins up to 0.5, lr x0.01 at 80% and 90% of training, class-balanced
re-weighting (beta 0.9999) from 80%.

Args: bf=on|off, imbalance=F (1: the balanced set), loss=ce|balanced_softmax|ldam_drw,
scope=paper|global|device|K (paper: the whole batch, as the paper's long-tailed recipes), seed=N,
smoke (a few steps on a tiny long tail), data_dir=PATH (the folder of the four files; default
Debian's /usr/share/datasets/fashion-mnist).
"""

from bf_jax.data import long_tail
from bf_jax.tasks import base_config
from bf_jax.trainer.config_base import paper_scope, parse_arg, shrink_for_smoke

LOSSES = ("ce", "balanced_softmax", "ldam_drw")
EPOCHS = 30
PER_CLASS = 6000
# Documented args and their defaults.
ARGS = dict(bf=True, imbalance=100.0, loss="balanced_softmax", scope="paper", seed=0,
            smoke=False, data_dir="")
PAPER_SCOPE = "global"  # the paper's long-tailed recipes attend over the whole batch


def get_config(arg: str | None = None):
  arg = parse_arg(arg, **ARGS)
  if arg.loss not in LOSSES:
    raise ValueError(f"config arg loss={arg.loss!r} must be one of {LOSSES}.")
  c = base_config()
  c.seed = arg.seed
  c.data.update(name="fashion_mnist", num_classes=10, imbalance=arg.imbalance,
                augment="crop_flip", class_groups="rank:3,7", data_dir=arg.data_dir)
  c.model.update(name="convnet", width=16, depth=2)
  c.bf.enabled = arg.bf
  c.batch_size, c.eval_batch_size = 256, 1000
  n_train = sum(long_tail.class_counts(10, PER_CLASS, arg.imbalance))
  c.total_steps = EPOCHS * n_train // c.batch_size // 10 * 10  # rounded down to whole tens
  c.eval_every_steps, c.log_every_steps = 0, 100  # evaluated at the end (no val set to select)
  c.ckpt.every_steps = 0  # a run takes minutes: a checkpoint at the end is enough
  # steps_per_dispatch stays 1: XLA's CPU backend runs these convolutions about 8x slower
  # inside a scan (measured, docs/fashion_mnist.md).
  c.optim.update(name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="cosine",
                 warmup_steps=50)
  if arg.loss == "ldam_drw":
    c.loss.update(name="ldam", ldam_max_margin=0.5, ldam_scale=30.0, drw_beta=0.9999,
                  drw_start_step=int(0.8 * c.total_steps))
    c.model.update(head="cosine", head_scale=30.0)
    c.optim.update(schedule="step", step_fractions=(0.8, 0.9), step_factor=0.01)
  else:
    c.loss.name = arg.loss
  if arg.smoke:
    c.data.n_max, c.data.imbalance = 10, 10.0  # a tiny long tail: 10 images down to 1
    shrink_for_smoke(c)
    c.loss.drw_start_step = min(c.loss.drw_start_step, 1)  # exercise the switch
  c.bf.scope = paper_scope(arg.scope, PAPER_SCOPE, c.batch_size)
  return c

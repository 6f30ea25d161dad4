"""Datasets by name: the embedded digits, and TFDS image classification sets (long-tailed or not)."""

from __future__ import annotations

import dataclasses

import numpy as np

from bf_jax.data import long_tail
from bf_jax.data.digits import load_digits_lt
from bf_jax.data.pipeline import Preprocess
from bf_jax.data.sources import read_labels, tfds_source

# name -> (tfds name, classes, default n_max, mean, std, scale); digits is built in.
DATASETS = {
    "digits": (None, 10, None, (0.3053,), (0.3760,), 1.0),  # stats of all 1,797 images
    "cifar10": ("cifar10", 10, 5000, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 255.0),
    "cifar100": ("cifar100", 100, 500, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 255.0),
}


@dataclasses.dataclass
class Data:
  train_source: object
  train_indices: np.ndarray  # indices into train_source that form the training set
  eval_source: object
  num_classes: int
  train_class_counts: np.ndarray  # images per class in the training set
  preprocess: Preprocess
  image_shape: tuple[int, ...]


def load(data_cfg) -> Data:
  """Builds the training subset and eval source that ``data_cfg`` names."""
  if data_cfg.name not in DATASETS:
    raise ValueError(f"data.name={data_cfg.name!r} is unknown; choose one of {sorted(DATASETS)}.")
  tfds_name, num_classes, default_n_max, mean, std, scale = DATASETS[data_cfg.name]
  if data_cfg.num_classes != num_classes:
    raise ValueError(f"data.num_classes={data_cfg.num_classes} but {data_cfg.name} has "
                     f"{num_classes} classes; set data.num_classes={num_classes}.")
  preprocess = Preprocess(mean, std, scale, data_cfg.augment)
  if tfds_name is None:
    train, test, _ = load_digits_lt(data_cfg.imbalance, split_seed=data_cfg.split_seed,
                                    profile=data_cfg.profile)
    indices = np.arange(len(train))
    labels = train.labels
  else:
    train = tfds_source(tfds_name, data_cfg.train_split, data_cfg.data_dir or None)
    test = tfds_source(tfds_name, data_cfg.eval_split, data_cfg.data_dir or None)
    labels = read_labels(train, num_classes, f"{tfds_name} {data_cfg.train_split}")
    if data_cfg.imbalance == 1 and not data_cfg.n_max:  # the split as it is
      indices = np.arange(len(train))
    else:
      counts = long_tail.class_counts(num_classes, data_cfg.n_max or default_n_max,
                                      data_cfg.imbalance, data_cfg.profile)
      indices = long_tail.long_tail_indices(labels, counts, data_cfg.split_seed)
  counts = np.bincount(labels[indices], minlength=num_classes)
  image_shape = preprocess(train[0], None).shape
  return Data(train, indices, test, num_classes, counts, preprocess, image_shape)

"""Datasets by name: the embedded digits, Fashion-MNIST-LT, CIFAR-LT, and the split-file / TFDS
long-tail sets."""

from __future__ import annotations

import dataclasses

import numpy as np

from bf_jax.data import fashion_mnist, long_tail, sources, split_files
from bf_jax.data.digits import load_digits_lt
from bf_jax.data.pipeline import Preprocess
from bf_jax.data.sources import read_labels, tfds_source

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  tfds_name: str | None  # None: built in (digits)
  num_classes: int
  mean: tuple[float, ...]
  std: tuple[float, ...]
  scale: float = 255.0
  n_max: int | None = None  # head-class size of a synthetic long tail (CIFAR-LT)
  image_size: int = 0  # 0: as stored
  file_feature: str | None = None  # split-file sets: the feature holding the file name
  list_splits: tuple[str, str, str] | None = None  # TFDS splits holding train/val/test lists


DATASETS = {
    "digits": DatasetInfo(None, 10, (0.3053,), (0.3760,), scale=1.0),  # stats of all 1,797
    # IDX files (data/fashion_mnist.py); stats of the 60,000 training images.
    "fashion_mnist": DatasetInfo(None, 10, (0.2860,), (0.3530,), n_max=6000),
    "cifar10": DatasetInfo("cifar10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                           n_max=5000),
    "cifar100": DatasetInfo("cifar100", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                            n_max=500),
    # ILSVRC-2012 as released (self-supervised pre-training, linear evaluation).
    "imagenet": DatasetInfo("imagenet2012", 1000, IMAGENET_MEAN, IMAGENET_STD, image_size=224),
    # ImageNet-LT: train and val lists index ILSVRC-2012 train images, the test list its val.
    "imagenet_lt": DatasetInfo("imagenet2012", 1000, IMAGENET_MEAN, IMAGENET_STD, image_size=224,
                               file_feature="file_name",
                               list_splits=("train", "train", "validation")),
    # Places-LT: train and val lists index Places365-Standard train images, the test list its val.
    "places_lt": DatasetInfo("places365_small", 365, IMAGENET_MEAN, IMAGENET_STD, image_size=224,
                             file_feature="filename", list_splits=("train", "train", "validation")),
    # iNaturalist 2018 is long-tailed as released: its own train and validation splits.
    "inat18": DatasetInfo("i_naturalist2018", 8142, IMAGENET_MEAN, IMAGENET_STD, image_size=224),
}


@dataclasses.dataclass
class Data:
  train_source: object
  train_indices: np.ndarray  # indices into train_source that form the training set
  eval_source: object  # the test set
  num_classes: int
  train_class_counts: np.ndarray  # images per class in the training set
  preprocess: Preprocess
  image_shape: tuple[int, ...]
  val_source: object | None = None  # model selection, where the protocol has a val set
  train_labels: np.ndarray | None = None  # labels of train_indices, in order


def _from_lists(info: DatasetInfo, data_cfg):
  if not data_cfg.train_list or not data_cfg.test_list:
    raise ValueError(f"data.name={data_cfg.name!r} is defined by split files: set "
                     f"--config.data.train_list and --config.data.test_list (and optionally "
                     f"val_list) to the standard lists (see docs/classify.md).")
  data_dir = data_cfg.data_dir or None
  from tensorflow_datasets import decode
  skip = {"image": decode.SkipDecoding()}  # the name index needs file names, not pixels
  subsets = []
  for list_path, split in zip((data_cfg.train_list, data_cfg.val_list, data_cfg.test_list),
                              info.list_splits):
    if not list_path:
      subsets.append(None)
      continue
    source = tfds_source(info.tfds_name, split, data_dir)
    names = tfds_source(info.tfds_name, split, data_dir, decoders=skip)
    subsets.append(split_files.select(source, names, info.file_feature, list_path,
                                      info.num_classes))
  return subsets


def load(data_cfg) -> Data:
  """Builds the training subset and eval (and val) sources that ``data_cfg`` names."""
  if data_cfg.name not in DATASETS:
    raise ValueError(f"data.name={data_cfg.name!r} is unknown; choose one of {sorted(DATASETS)}.")
  info = DATASETS[data_cfg.name]
  if data_cfg.num_classes != info.num_classes:
    raise ValueError(f"data.num_classes={data_cfg.num_classes} but {data_cfg.name} has "
                     f"{info.num_classes} classes; set data.num_classes={info.num_classes}.")
  image_size = data_cfg.image_size or info.image_size
  preprocess = Preprocess(info.mean, info.std, info.scale, data_cfg.augment, image_size,
                          data_cfg.crop_min)
  val = None
  if data_cfg.name == "fashion_mnist":
    train, test, _ = fashion_mnist.load_lt(data_cfg.data_dir, data_cfg.imbalance,
                                           data_cfg.split_seed, data_cfg.profile, data_cfg.n_max)
    indices, labels = np.arange(len(train)), train.labels
  elif info.tfds_name is None:
    train, test, _ = load_digits_lt(data_cfg.imbalance, split_seed=data_cfg.split_seed,
                                    profile=data_cfg.profile)
    indices, labels = np.arange(len(train)), train.labels
  elif info.list_splits is not None:
    train, val, test = _from_lists(info, data_cfg)
    indices, labels = np.arange(len(train)), train.labels
  else:
    train = tfds_source(info.tfds_name, data_cfg.train_split, data_cfg.data_dir or None)
    test = tfds_source(info.tfds_name, data_cfg.eval_split, data_cfg.data_dir or None)
    if data_cfg.val_split:
      val = tfds_source(info.tfds_name, data_cfg.val_split, data_cfg.data_dir or None)
    labels = read_labels(train, info.num_classes, f"{info.tfds_name} {data_cfg.train_split}")
    if info.n_max is None or (data_cfg.imbalance == 1 and not data_cfg.n_max):
      indices = np.arange(len(train))  # the split as released
    else:
      counts = long_tail.class_counts(info.num_classes, data_cfg.n_max or info.n_max,
                                      data_cfg.imbalance, data_cfg.profile)
      indices = long_tail.long_tail_indices(labels, counts, data_cfg.split_seed)
    if not image_size:  # small images at stored size (CIFAR): read once into memory
      in_memory = sources.in_memory(train, indices)
      if in_memory is not None:  # position i of the new source is example indices[i]
        train, indices, labels = in_memory, np.arange(len(indices)), in_memory.labels
      test_in_memory = sources.in_memory(test, np.arange(len(test)))
      test = test if test_in_memory is None else test_in_memory
  counts = np.bincount(labels[indices], minlength=info.num_classes)
  image_shape = preprocess(train[int(indices[0])], None).shape
  if image_size:
    image_shape = (image_size, image_size, image_shape[-1])
  return Data(train, indices, test, info.num_classes, counts, preprocess, image_shape, val,
              labels[indices])

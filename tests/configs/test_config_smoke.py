"""Every config's smoke variant trains 2 steps end to end on mocked data."""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from helpers import ROOT, config_module, make_czsl_toy, make_fashion_mnist, train_losses
from PIL import Image

from bf_jax import data, tasks
from bf_jax.data import pipeline
from bf_jax.tasks.czsl import data as czsl_data
from bf_jax.tasks.czsl.train import build_czsl_model
from bf_jax.tasks.dg import data as dg_data
from bf_jax.tasks.dg import domains, sweep

# A third of the suite's time: make test-fast leaves these out, make test runs them.
pytestmark = pytest.mark.slow

SMOKE_CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.py") if p.stem != "__init__")


def _split_file_mock(tmp_path, config):
  """Generated ImageNet-style records and split files for the split-file datasets."""
  feature = "file_name" if config.data.name == "imagenet_lt" else "filename"
  rng = np.random.default_rng(0)

  def records(prefix, n):
    return [{feature: f"{prefix}_{i:04d}.JPEG".encode(), "label": np.int64(i % 7),
             "image": rng.integers(0, 256, (40, 36, 3), np.uint8)} for i in range(n)]

  splits = {"train": records("tr", 64), "validation": records("va", 16)}
  for name, prefix, n in (("train", "tr", 48), ("val", "tr", 16), ("test", "va", 16)):
    path = tmp_path / f"{name}.txt"
    start = 48 if name == "val" else 0
    path.write_text("".join(f"x/{prefix}_{i:04d}.JPEG {i % 7}\n" for i in range(start, start + n)))
    setattr(config.data, f"{name}_list", str(path))
  return _serve(splits)


def _serve(splits: dict[str, list[dict]]):
  """tfds.data_source(name, split=...) returns these records (the dataset's info from its code)."""
  return tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                                as_data_source_fn=lambda builder, split, **kw: splits[split])


def _tfds_mock(config):
  """Random CIFAR-style records: enough training images for a long-tailed subset (n_max per
  class), and a small test split, since eval runs over all of it (tfds' own mock gives every
  split the same size and ignores slices like ``test[:64]``)."""
  rng = np.random.default_rng(0)
  size = 3000 if config.data.n_max else 64  # n_max 10 of 100 classes: ~30 images per class

  def records(n):
    return [{"image": rng.integers(0, 256, (32, 32, 3), np.uint8),
             "label": np.int64(rng.integers(config.data.num_classes))} for _ in range(n)]

  splits = {config.data.train_split: records(size), config.data.eval_split: records(64)}
  if config.data.val_split:
    splits[config.data.val_split] = records(64)
  return _serve(splits)


def _dg_folders(tmp_path, config, per_class: int) -> None:
  """A prepared copy of the DG dataset's layout (its domains and class count), random pixels."""
  info = domains.DG_DATASETS[config.data.name]
  rng = np.random.default_rng(0)
  for d in info.domains:
    for k in range(info.num_classes):
      folder = tmp_path / "raw" / d / f"class{k:03d}"
      folder.mkdir(parents=True)
      for j in range(per_class):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), np.uint8)).save(folder / f"{j}.png")
  domains.prepare(config.data.name, tmp_path / "raw", tmp_path / "data")
  config.data.data_dir = str(tmp_path / "data")


# Configs that share their model and code path with a config that trains here check config, data
# (and model construction) only, to keep the suite in its time budget (measured: a ResNet-18 DG
# or CZSL smoke 20-35 s, the RIDE ResNet-50 ~100 s, MoCo ResNet-50 ~65 s of compiling):
# - DG: the ResNet recipe (bf_jax/tasks/dg/recipe.py) differs per dataset only; dg_rotated_digits
#   trains the DG path end to end, tests/tasks/dg/test_dg.py runs sweeps and resume;
# - CZSL: czsl_colored_digits trains; tests/tasks/czsl/test_czsl_train.py trains CGE and CompCos;
# - inat18_ride_r50: imagenet_lt_ride_r50 trains the same RIDE ResNet-50;
# - moco_v3_imagenet_r50: moco_v3_cifar10 and moco_digits train the MoCo path, the ResNet-50
#   trains in imagenet_lt_balanced_softmax_r50.
DG_TRAINED = ("dg_rotated_digits",)
CZSL_TRAINED = ("czsl_colored_digits",)
# - imagenet_deit_small_v2: cifar100_deit_tiny_v2 trains the ViT + BatchFormerV2 path.
DATA_ONLY = ("inat18_ride_r50", "moco_v3_imagenet_r50", "imagenet_deit_small_v2")
# One device for these: 8 emulated devices multiply their CPU step time (measured: the MoCo
# ResNet-18 CIFAR smoke 99 s on 8), and the multi-device paths are covered by smaller configs.
BIG = ("resnet50", "resnet152", "resnext50", "resnet18_cifar")


# Its steps run long enough that XLA's optimizations pay for their compile time (measured alone:
# 29 s without them, 19 s with).
OPTIMIZED = ("places_lt_balanced_softmax_r152",)


@pytest.mark.parametrize("path", [
    pytest.param(p, marks=pytest.mark.xla_optimized) if p.stem in OPTIMIZED else p
    for p in SMOKE_CONFIGS], ids=lambda p: p.stem)
def test_smoke_variant_trains_two_steps(tmp_path, path):
  module = config_module(path)
  config = module.get_config("smoke")
  config.total_steps, config.optim.warmup_steps = 2, 0
  # One eval batch covers the mocked test split: padded rows cost as much as real ones
  # (measured: the ResNet-152 smoke took 114 s with eval batches of 256, 51 s with 64).
  big = config.model.name in BIG
  config.eval_batch_size = 16 if big else 256 if config.data.n_max else 64
  if config.task == "dg":
    _dg_folders(tmp_path, config, per_class=2 if config.data.num_classes < 100 else 1)
    if path.stem not in DG_TRAINED:
      _check_dg_data(config)
      return
    mock = contextlib.nullcontext()  # batches of k x (domains - 1): 1 or 2 devices
    devices = jax.devices()[:1 if config.model.name.startswith("resnet") else 2]
  elif config.task == "czsl":
    make_czsl_toy(tmp_path / "raw")
    czsl_data.prepare(config.data.name, tmp_path / "raw", tmp_path / "data")
    config.data.data_dir = str(tmp_path / "data")
    if path.stem not in CZSL_TRAINED:
      _check_czsl_data(config)
      return
    mock = contextlib.nullcontext()
    devices = jax.devices()[:1 if config.model.name.startswith("resnet") else 2]
  elif config.data.name in ("imagenet_lt", "places_lt"):
    mock = _split_file_mock(tmp_path, config)
  elif config.data.name == "digits":
    mock = contextlib.nullcontext()
  elif config.data.name == "fashion_mnist":  # the four IDX files, 10 images of each class
    config.data.data_dir = str(make_fashion_mnist(tmp_path, per_class=10))
    mock = contextlib.nullcontext()
  elif config.data.name.startswith("cifar"):
    mock = _tfds_mock(config)
  else:
    mock = tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE)
  # ImageNet-size backbones on one device: 8 emulated devices triple their CPU step time here,
  # and the multi-device path is covered by the smaller configs.
  if config.task not in ("dg", "czsl"):
    devices = jax.devices()[:1] if big else None
  if path.stem in DATA_ONLY:
    with mock:
      _check_data(config)
    return
  with mock:  # XLA's optimizations off, as in the whole suite (conftest.py)
    result = tasks.run(config, tmp_path / "run", devices=devices)
  if config.task == "czsl":
    assert result["step"] == 2 and 0.0 <= result["AUC"] <= 1.0
    assert all(np.isfinite(train_losses(tmp_path / "run")))
    return
  if config.task == "dg":
    run_dir = sweep.run_dir(tmp_path / "run", config.dg.test_domains[0], 0)
    assert 0.0 <= result["selections"]["swad"]["avg"]["mean"] <= 100.0
    assert all(np.isfinite(train_losses(run_dir)))
    return
  assert result["step"] == 2 and 0.0 <= result["knn_acc" if config.task == "moco" else "acc"] <= 1.0
  assert all(np.isfinite(train_losses(tmp_path / "run")))


def _check_dg_data(config) -> None:
  """The config validates, its data opens, and its first batch is balanced over the domains."""
  tasks.validate(config)
  run = dg_data.load_dg(config.data, config.dg, config.dg.test_domains[0], 0)
  assert run.num_classes == config.data.num_classes
  per = config.dg.batch_per_domain
  index_batches = dg_data.balanced_index_batches(run.train_groups, per, 0)
  for k, group in enumerate(run.train_groups):
    assert np.isin(index_batches[0][k * per:(k + 1) * per], group).all()
  batches = pipeline.train_batches(
      run.train_source, np.concatenate(run.train_groups), config.batch_size, run.preprocess,
      run.num_classes, 0, 0, 0, 1, index_batches=index_batches)
  batch = next(batches)
  size = config.data.image_size
  assert batch["image"].shape == (config.batch_size, size, size, 3)
  assert len(run.train_groups) == len(domains.DG_DATASETS[config.data.name].domains) - 1


def _check_data(config) -> None:
  """The config validates, its data loads and its first training batch has the right shape."""
  tasks.validate(config)
  dataset = data.load(config.data)
  batch = next(pipeline.train_batches(
      dataset.train_source, dataset.train_indices, config.batch_size, dataset.preprocess,
      dataset.num_classes, 0, 0, 0, 1))
  views = (2,) if config.task == "moco" else ()  # MoCo's two views of each image
  assert batch["image"].shape == (config.batch_size, *views, *dataset.image_shape)
  assert ((0 <= batch["label"]) & (batch["label"] < config.data.num_classes)).all()


def _check_czsl_data(config) -> None:
  """The config validates, its data loads, its model builds and its first batch has pair labels."""
  tasks.validate(config)
  run = czsl_data.load_czsl(config.data.name, config.data.data_dir)
  size = config.data.image_size
  model = build_czsl_model(config, run, (size, size, 3), config.batch_size, config.seed)
  assert model.head(jnp.zeros((2, model.backbone.feat_dim))).shape == (2, len(run.pairs.pairs))
  preprocess = pipeline.Preprocess((0.5,) * 3, (0.25,) * 3, 255.0, config.data.augment, size)
  batch = next(pipeline.train_batches(run.sources["train"], np.arange(len(run.sources["train"])),
                                      config.batch_size, preprocess, len(run.pairs.pairs), 0, 0,
                                      0, 1))
  assert batch["image"].shape == (config.batch_size, size, size, 3)
  assert run.pairs.seen_mask[batch["label"]].all()  # training images are of seen pairs

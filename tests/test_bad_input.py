"""Bad input stops with a clear error naming the value and the fix."""

import numpy as np
import pytest

from bf_jax import train
from bf_jax.data import pipeline
from bf_jax.data.sources import ArraySource, read_labels
from helpers import load_config


def _smoke():
  return load_config("digits_lt", "smoke")


@pytest.mark.parametrize("field,value,match", [
    ("batch_size", 60, r"batch_size=60 is not divisible by the 8 devices .* e\.g\. 56 or 64"),
    ("data.name", "imagenet_x", r"data\.name='imagenet_x' must be one of"),
    ("loss.name", "focal", r"loss\.name='focal' must be one of"),
    ("optim.lr", -0.1, r"optim\.lr=-0\.1 must be a number > 0"),
    ("optim.lr", 0.0, r"optim\.lr=0\.0 must be a number > 0"),
    ("bf.scope", "gloabl", r"bf\.scope='gloabl' must be 'global', 'device', or a group size"),
    ("bf.mode", "both", r"bf\.mode='both' must be one of"),
    ("total_steps", 0, r"total_steps=0 must be an integer >= 1"),
    ("model.name", "vgg", r"model\.name='vgg' must be one of"),
    ("data.num_classes", 100, r"data\.num_classes=100 but digits has 10 classes"),
])
def test_bad_config_values(tmp_path, field, value, match):
  config = _smoke()
  group, _, leaf = field.rpartition(".")
  setattr(config[group] if group else config, leaf, value)
  with pytest.raises(ValueError, match=match):
    train.train_and_evaluate(config, tmp_path)
  assert not (tmp_path / "checkpoints").exists()  # failed before touching the workdir


def test_batch_larger_than_training_set(tmp_path):
  config = _smoke()
  config.batch_size = 512
  with pytest.raises(ValueError, match=r"342 examples, fewer than one global batch"):
    train.train_and_evaluate(config, tmp_path)


def test_group_scope_not_dividing_batch(tmp_path):
  config = _smoke()
  config.bf.scope = "5"
  with pytest.raises(ValueError, match=r"group_size=5 does not divide the global batch of 64"):
    train.train_and_evaluate(config, tmp_path)


def test_labels_out_of_range_in_the_data(tmp_path, monkeypatch):
  images = np.zeros((100, 8, 8, 1), np.float32)
  labels = np.arange(100) % 10
  labels[37] = 12
  with pytest.raises(ValueError, match=r"label 12 at example 37 is outside \[0, 10\)"):
    read_labels(ArraySource(images, labels), 10, "train split")
  # The same data reaching the pipeline stops training at the batch that holds it.
  prep = pipeline.Preprocess((0.0,), (1.0,), 1.0)
  batches = pipeline.train_batches(ArraySource(images, labels), np.arange(100), 100, prep, 10,
                                   seed=0, start_step=0, process_index=0, process_count=1)
  with pytest.raises(ValueError, match=r"label 12 of training example 37 is outside \[0, 10\)"):
    next(batches)
  evals = pipeline.eval_batches(ArraySource(images, labels), 64, prep, 10, 0, 1)
  with pytest.raises(ValueError, match=r"label 12 of eval example 37"):
    list(evals)


def test_missing_tfds_dataset_names_the_preparation_command(tmp_path):
  config = load_config("cifar_lt", "smoke")
  config.data.data_dir = str(tmp_path / "no_data_here")
  with pytest.raises(FileNotFoundError, match=r"tfds build cifar100 --file_format=array_record"):
    train.train_and_evaluate(config, tmp_path / "run")

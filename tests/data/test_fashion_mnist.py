"""Fashion-MNIST from its IDX files or a TFDS preparation: the reader on files the test writes,
the long-tailed split (the same on both roads), the messages for missing or damaged files, and a
run trained from a real TFDS array_record preparation (tests/golden/tfds). The real files are
never needed."""

import numpy as np
import pytest
from helpers import make_fashion_mnist, write_idx

from bf_jax import data
from bf_jax.data import fashion_mnist
from bf_jax.tasks import base_config


def test_the_idx_reader_reads_types_and_shapes_and_refuses_damage(tmp_path):
  values = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5
  write_idx(tmp_path / "a.gz", values, code=0x0C)
  np.testing.assert_array_equal(fashion_mnist.read_idx(tmp_path / "a.gz"), values)
  (tmp_path / "b").write_bytes(b"PK\x03\x04 a zip")
  with pytest.raises(ValueError, match=r"b is not an IDX file"):
    fashion_mnist.read_idx(tmp_path / "b")
  write_idx(tmp_path / "c", np.zeros((4, 2, 2), np.uint8), compress=False)
  (tmp_path / "c").write_bytes((tmp_path / "c").read_bytes()[:-3])
  with pytest.raises(ValueError, match=r"cut short or damaged"):
    fashion_mnist.read_idx(tmp_path / "c")


def test_the_long_tailed_split_follows_the_exponential_profile(tmp_path, monkeypatch):
  assert fashion_mnist.long_tail.class_counts(10, 6000, 100, "exp") == [
      6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]  # 14,886, the numbers
  monkeypatch.setattr(fashion_mnist, "PER_CLASS", 7)  # the test files hold 7 per class
  cfg = base_config().data
  cfg.update(name="fashion_mnist", data_dir=str(make_fashion_mnist(tmp_path)), imbalance=7.0)
  ds = data.load(cfg)
  assert ds.train_class_counts.tolist() == [7, 5, 4, 3, 2, 2, 1, 1, 1, 1]
  assert len(ds.eval_source) == 20 and ds.image_shape == (28, 28, 1)
  images = ds.train_source.images
  assert images.dtype == np.uint8 and images.shape[1:] == (28, 28, 1)
  np.testing.assert_array_equal(images[:, 0, 0, 0], ds.train_source.labels)
  again = data.load(cfg)  # the split seed fixes which images each class keeps
  np.testing.assert_array_equal(again.train_source.images, images)
  cfg.split_seed = 1
  assert not np.array_equal(data.load(cfg).train_source.images, images)


def test_missing_files_name_all_four_and_where_to_get_them(tmp_path):
  cfg = base_config().data
  cfg.update(name="fashion_mnist", data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match=r"has no train-images-idx3-ubyte\[\.gz\].*"
                                              r"t10k-labels-idx1-ubyte\.gz.*dataset-fashion-mnist"
                                              r".*--config\.data\.data_dir"):
    data.load(cfg)


def test_a_run_trains_on_it_from_the_devices(tmp_path, monkeypatch):
  from helpers import load_config

  from bf_jax import tasks
  from bf_jax.trainer import feed

  monkeypatch.setattr(fashion_mnist, "PER_CLASS", 7)
  config = load_config("digits_lt", "smoke")
  (tmp_path / "idx").mkdir()
  config.data.update(name="fashion_mnist", data_dir=str(make_fashion_mnist(tmp_path / "idx")),
                     imbalance=7.0, augment="crop_flip")
  config.batch_size, config.total_steps, config.eval_every_steps = 16, 4, 2
  config.log_every_steps, config.ckpt.every_steps, config.optim.warmup_steps = 2, 0, 0
  assert feed.resident(data.load(config.data).train_source, data.load(config.data).preprocess)
  result = tasks.run(config, tmp_path / "run")
  assert result["step"] == 4 and 0 <= result["acc"] <= 1


def test_the_long_tailed_set_does_not_depend_on_the_order_the_files_store(tmp_path, monkeypatch):
  monkeypatch.setattr(fashion_mnist, "PER_CLASS", 7)
  make_fashion_mnist(tmp_path / "a")
  (tmp_path / "b").mkdir()
  rng = np.random.default_rng(1)
  for split in ("train", "test"):  # the same images, stored in another order (as TFDS does)
    images_file, labels_file = fashion_mnist.FILES[split]
    source = fashion_mnist.read_split(tmp_path / "a", split)
    order = rng.permutation(len(source))
    write_idx(tmp_path / "b" / f"{images_file}.gz", source.images[order, ..., 0])
    write_idx(tmp_path / "b" / f"{labels_file}.gz", source.labels[order].astype(np.uint8))
  a, b = (fashion_mnist.load_lt(str(tmp_path / d), 7.0, split_seed=3) for d in "ab")
  np.testing.assert_array_equal(a[0].images, b[0].images)
  np.testing.assert_array_equal(a[0].labels, b[0].labels)
  assert a[2] == b[2] == [7, 5, 4, 3, 2, 2, 1, 1, 1, 1]


def test_a_tfds_preparation_is_read_without_tensorflow_and_gives_the_same_set(tmp_path,
                                                                              monkeypatch):
  """tests/golden/tfds holds TFDS's own builder's output (array_record) for the files
  ``make_fashion_mnist(per_class=3, test_per_class=1)`` writes, made with TensorFlow by
  tools/prepare_fashion_mnist_tfds.py (the command: docs/fashion_mnist.md)."""
  import shutil
  import sys

  from helpers import ROOT, load_config

  from bf_jax import tasks

  monkeypatch.setattr(fashion_mnist, "PER_CLASS", 3)
  prepared, idx = tmp_path / "tfds", tmp_path / "idx"
  shutil.copytree(ROOT / "tests" / "golden" / "tfds", prepared)
  make_fashion_mnist(idx, per_class=3, test_per_class=1)
  assert fashion_mnist.locate(str(prepared)) == ("tfds", str(prepared))
  assert fashion_mnist.locate(str(idx)) == ("idx", str(idx))
  stored = fashion_mnist.read_split(prepared, "train")
  assert stored.images.shape == (30, 28, 28, 1) and stored.images.dtype == np.uint8
  # TFDS stores the examples in another order; the long-tailed set is the same all the same.
  assert not np.array_equal(stored.labels, fashion_mnist.read_split(idx, "train").labels)
  (a_train, a_test, _), (b_train, b_test, _) = (fashion_mnist.load_lt(str(d), 3.0)
                                                for d in (prepared, idx))
  np.testing.assert_array_equal(a_train.images, b_train.images)
  np.testing.assert_array_equal(a_train.labels, b_train.labels)
  assert sorted(a_test.labels.tolist()) == sorted(b_test.labels.tolist()) == list(range(10))
  assert "tensorflow" not in sys.modules  # read without TensorFlow

  config = load_config("fashion_mnist_lt", f"smoke,data_dir={prepared}")
  config.data.n_max, config.data.imbalance, config.batch_size = 3, 3.0, 8
  result = tasks.run(config, tmp_path / "run")
  assert result["step"] == 2 and 0 <= result["acc"] <= 1
  assert {"head_acc", "mid_acc", "tail_acc"} <= set(result)

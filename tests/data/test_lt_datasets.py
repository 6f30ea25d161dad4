"""Split-file long-tail sets (ImageNet-LT, Places-LT) and iNat18, on mocked TFDS sources."""

import numpy as np
import pytest
import tensorflow_datasets as tfds
from helpers import load_config

from bf_jax.data import load, split_files
from bf_jax.tasks import classify

CLASSES = 5


def _records(prefix: str, n: int, feature: str, seed: int) -> list[dict]:
  rng = np.random.default_rng(seed)
  return [{feature: f"{prefix}_{i:05d}.JPEG".encode(), "label": np.int64(i % CLASSES),
           "image": rng.integers(0, 256, (rng.integers(20, 48), rng.integers(20, 48), 3), np.uint8)}
          for i in range(n)]


def _mock(feature: str):
  splits = {"train": _records("n0", 120, feature, 0), "validation": _records("val", 40, feature, 1)}
  return tfds.testing.mock_data(
      policy=tfds.testing.MockPolicy.USE_CODE,
      as_data_source_fn=lambda builder, split, **kw: splits[split])


def _write_list(path, prefix, indices, folder="train/x"):
  path.write_text("".join(f"{folder}/{prefix}_{i:05d}.JPEG {i % CLASSES}\n" for i in indices))
  return str(path)


def _lt_config(tmp_path, name: str):
  config = load_config("cifar_lt", "smoke")
  long_tail = [i for i in range(100) if i % CLASSES == 0 or i < 30]  # class 0 the head
  config.data.update(
      name=name, num_classes=1000 if name == "imagenet_lt" else 365, image_size=24,
      augment="inception_jitter",
      train_list=_write_list(tmp_path / "train.txt", "n0", long_tail),
      val_list=_write_list(tmp_path / "val.txt", "n0", range(100, 120)),
      test_list=_write_list(tmp_path / "test.txt", "val", range(40), folder="val"))
  config.batch_size, config.eval_batch_size, config.total_steps = 16, 16, 4
  config.eval_every_steps = 2
  return config


@pytest.mark.parametrize("name,feature", [("imagenet_lt", "file_name"), ("places_lt", "filename")])
def test_split_file_datasets_select_by_file_name(tmp_path, name, feature):
  config = _lt_config(tmp_path, name)
  with _mock(feature):
    data = load(config.data)
    assert len(data.train_indices) == len(data.train_source) == 44
    assert data.train_class_counts[:CLASSES].tolist() == [20, 6, 6, 6, 6]
    assert len(data.eval_source) == 40 and len(data.val_source) == 20
    assert data.image_shape == (24, 24, 3)
    assert data.eval_source[3]["file_name" if feature == "file_name" else "filename"] == b"val_00003.JPEG"
    result = classify.run(config, tmp_path / "run")
  assert result["step"] == 4 and "val_acc" in result and result["selected_step"] in (2, 4)
  # class 0 has 20 images (medium), the others 6 (few); no class has over 100 (many).
  assert "medium_acc" in result and "few_acc" in result and "many_acc" not in result


def test_split_file_errors(tmp_path):
  config = _lt_config(tmp_path, "imagenet_lt")
  (tmp_path / "bad.txt").write_text("train/x/n0_00001.JPEG\n")
  with _mock("file_name"):
    config.data.train_list = str(tmp_path / "bad.txt")
    with pytest.raises(ValueError, match=r"line 1 of .*bad.txt is .* expected 'path label'"):
      load(config.data)
    config.data.train_list = _write_list(tmp_path / "missing.txt", "n9", range(3))
    with pytest.raises(ValueError, match=r"3 of the 3 images listed .* are not in the dataset"):
      load(config.data)
    (tmp_path / "order.txt").write_text("train/x/n0_00001.JPEG 4\n")
    config.data.train_list = str(tmp_path / "order.txt")
    with pytest.raises(ValueError, match=r"n0_00001.JPEG has label 4 in the list but 1"):
      load(config.data)
    config.data.train_list = str(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match="nope.txt' does not exist"):
      load(config.data)
    config.data.train_list = ""
    with pytest.raises(ValueError, match="set --config.data.train_list"):
      load(config.data)


def test_inat18_as_released(tmp_path):
  config = load_config("cifar_lt", "smoke")
  config.data.update(name="inat18", num_classes=8142, image_size=24, augment="inception",
                     eval_split="validation")
  config.batch_size, config.eval_batch_size, config.total_steps = 16, 16, 2
  with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
    data = load(config.data)
    assert data.num_classes == 8142 and data.train_class_counts.sum() == 40
    result = classify.run(config, tmp_path)
  assert result["step"] == 2


def test_subset_view():
  sub = split_files.Subset([{"v": i} for i in range(10)], np.array([7, 2]), np.array([1, 0]))
  assert len(sub) == 2 and sub[0]["v"] == 7 and sub.labels.tolist() == [1, 0]

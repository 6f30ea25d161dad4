"""Encoded images through the host pipeline: libjpeg-turbo decoding (DCT-scaled for crops),
worker processes that never change a batch, and a bad file that names itself."""

import io
import os
import signal
import time

import numpy as np
import pytest
from PIL import Image

from bf_jax.data import augment, jpeg, pipeline
from bf_jax.data.image_folder import ImageFolderSource

MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _photo(seed: int, h: int, w: int) -> np.ndarray:
  """Smooth colour gradients plus a little noise: compresses like a photo, not like noise."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:h, 0:w] / max(h, w)
  base = np.stack([np.sin(6 * x + seed), np.cos(5 * y), np.sin(4 * (x + y))], -1)
  return np.clip(127 + 100 * base + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)


def _folder(root, n=24, h=90, w=120, classes=2):
  for i in range(n):
    d = root / f"c{i % classes}"
    d.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_photo(i, h, w)).save(d / f"{i:03d}.jpg", quality=90)
  return root


def test_the_folder_source_reads_classes_in_order(tmp_path):
  src = ImageFolderSource(_folder(tmp_path, n=6))
  assert len(src) == 6 and src.classes == ["c0", "c1"]
  assert src.labels.tolist() == [0, 0, 0, 1, 1, 1]
  record = src[4]
  assert isinstance(record["image"], bytes) and record["file"].endswith("c1/003.jpg")
  with pytest.raises(FileNotFoundError, match="no .jpg"):
    ImageFolderSource((tmp_path / "empty").mkdir() or tmp_path / "empty")


def test_jpeg_decoding_matches_pillow_and_scaled_crops_stay_close():
  image = _photo(0, 600, 800)
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="JPEG", quality=95)
  data = buf.getvalue()
  assert jpeg.size(data, "x") == (600, 800)
  ours = jpeg.decode(data, "x").astype(int)
  pil = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
  assert np.abs(ours - pil).max() <= 2  # libjpeg versions may differ in rounding
  # A small crop decodes at a reduced scale, and looks like the full decode's crop.
  box = (100, 50, 300, 250)  # 200x200 of 800x600 -> 64x64: 1/2 scale still covers it
  scaled, scaled_box = jpeg.decode_region(data, "x", box, (64, 64))
  assert scaled.shape == (300, 400, 3) and scaled_box == (50.0, 25.0, 150.0, 125.0)
  fast = augment._resize(scaled, scaled_box, (64, 64)).astype(int)
  full = augment._resize(jpeg.decode(data, "x"), box, (64, 64)).astype(int)
  assert np.abs(fast - full).mean() < 3
  # A crop that needs full resolution is decoded whole.
  assert jpeg.decode_region(data, "x", (0, 0, 800, 600), (512, 512))[0].shape == (600, 800, 3)


def test_encoded_records_go_through_every_preprocessing(tmp_path):
  src = ImageFolderSource(_folder(tmp_path, n=2))
  train = pipeline.Preprocess(*MEAN_STD, 255.0, "inception", 32)
  crop = train(src[0], np.random.default_rng(0))
  assert crop.dtype == np.uint8 and crop.shape == (32, 32, 3)  # normalized on the device
  evaluation = train(src[0], None)
  assert evaluation.dtype == np.float32 and evaluation.shape == (32, 32, 3)
  decoded = {"image": jpeg.decode(src[0]["image"], "x"), "label": 0}
  np.testing.assert_allclose(evaluation, train(decoded, None), atol=0.2)
  cifar = pipeline.Preprocess(*MEAN_STD, 255.0, "crop_flip")
  assert cifar(src[0], np.random.default_rng(0)).shape == (90, 120, 3)


def test_a_corrupt_or_truncated_jpeg_names_its_file(tmp_path):
  root = _folder(tmp_path, n=8)
  bad = root / "c1" / "003.jpg"
  bad.write_bytes(bad.read_bytes()[:200])  # truncated
  src = ImageFolderSource(root)
  prep = pipeline.Preprocess(*MEAN_STD, 255.0, "inception", 32)
  with pytest.raises(ValueError, match=r"cannot decode image .*c1/003\.jpg.*replace or remove"):
    for i in range(len(src)):
      prep(src[i], np.random.default_rng(i))
  (root / "c0" / "000.jpg").write_bytes(b"\xff\xd8 not a jpeg")
  with pytest.raises(ValueError, match=r"c0/000\.jpg"):
    prep(ImageFolderSource(root)[0], None)
  tfds_record = {"image": b"\xff\xd8 cut", "label": 0, "file_name": b"n0144_0001.JPEG"}
  with pytest.raises(ValueError, match=r"cannot decode image n0144_0001\.JPEG"):
    prep(tfds_record, np.random.default_rng(0))  # TFDS records read undecoded name their file


def _batches(src, workers, start_step=0, num_threads=2):
  prep = pipeline.Preprocess(*MEAN_STD, 255.0, "inception", 32)
  return pipeline.train_batches(src, np.arange(len(src)), 8, prep, 2, seed=3,
                                start_step=start_step, process_index=0, process_count=1,
                                num_threads=num_threads, workers=workers)


@pytest.mark.slow
def test_worker_processes_change_no_batch_and_resume_exactly(tmp_path):
  src = ImageFolderSource(_folder(tmp_path))
  inline = _batches(src, 0)
  want = [next(inline) for _ in range(5)]  # crosses an epoch (24 / 8)
  for workers in (1, 3):
    it = _batches(src, workers)
    for w in want:
      got = next(it)
      np.testing.assert_array_equal(got["image"], w["image"])
      np.testing.assert_array_equal(got["label"], w["label"])
    it.close()
  resumed = _batches(src, 2, start_step=3)
  np.testing.assert_array_equal(next(resumed)["image"], want[3]["image"])
  resumed.close()


@pytest.mark.slow
def test_a_bad_file_in_a_worker_and_a_dead_worker_end_the_stream_with_an_error(tmp_path):
  import psutil

  root = _folder(tmp_path)
  (root / "c1" / "005.jpg").write_bytes(b"\xff\xd8 truncated")
  it = _batches(ImageFolderSource(root), 2)
  with pytest.raises(Exception, match=r"c1/005\.jpg"):
    for _ in range(6):
      next(it)
  it.close()
  (root / "c1" / "005.jpg").unlink()
  it = _batches(ImageFolderSource(root), 2)
  next(it)
  workers = psutil.Process().children()
  assert workers
  os.kill(workers[-1].pid, signal.SIGKILL)
  start = time.monotonic()
  with pytest.raises(RuntimeError, match="terminated unexpectedly"):
    for _ in range(1000):
      next(it)
  assert time.monotonic() - start < 60  # an error, not a hang
  it.close()

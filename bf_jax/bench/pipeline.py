"""Images/s of the training input pipeline alone (no model).

A folder of JPEG files, decode included, through the training pipeline with ImageNet's
augmentation (the host's part: decode, random resized crop to 224, uint8 out; flip and
normalization run on the device), beside torchvision's DataLoader on the same files and the
decode-only rate of one core; the last line is ``images/s: X`` (bf_jax, the last worker count):

  .venv/bin/python -m bf_jax.bench.pipeline --make_images /tmp/jpegs    # 256 photos, 500x375
  .venv/bin/python -m bf_jax.bench.pipeline --images /tmp/jpegs --workers 1 2 \
      --torch_python /path/to/python-with-torch

Without ``--images``: synthetic 375x500 uint8 images in memory (no decoding), per augmentation
and thread count (``--threads``). MoCo v3's two-view augmentation counts an image once for both
of its views.
"""

import argparse
import io
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

from bf_jax.data import augment, jpeg, pipeline, views
from bf_jax.data.image_folder import ImageFolderSource
from bf_jax.data.sources import ArraySource

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
TORCH_PIPELINE = pathlib.Path(__file__).with_name("torch_pipeline.py")


def measure(augmentation: str, threads: int, batches: int, batch_size: int) -> float:
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (64, 375, 500, 3), dtype=np.uint8)
  source = ArraySource(images, np.arange(64) % 10)
  prep = pipeline.Preprocess((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 255.0, augmentation,
                             224)
  it = pipeline.train_batches(source, np.arange(64), batch_size, prep, 10, seed=0, start_step=0,
                              process_index=0, process_count=1, num_threads=threads)
  next(it)  # start-up
  t = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batches * batch_size / (time.perf_counter() - t)


def measure_two_views(size: int = 224, images: int = 200, **kwargs) -> float:
  """MoCo v3 two-view augmentation alone, one thread, plain loop: examples/s (both views each).

  ``size`` 224 crops from 375x500 images (ImageNet); 32 from 32x32 ones (CIFAR). ``kwargs`` go
  to ``two_views`` (e.g. ``blur_probs=(0, 0)``, usual at CIFAR size).
  """
  rng = np.random.default_rng(0)
  shape = (32, 32, 3) if size == 32 else (375, 500, 3)
  pool = rng.integers(0, 256, (16, *shape), dtype=np.uint8)
  views.two_views(pool[0], np.random.default_rng(0), size, **kwargs)  # start-up
  t = time.perf_counter()
  for i in range(images):
    views.two_views(pool[i % len(pool)], np.random.default_rng(i), size, **kwargs)
  return images / (time.perf_counter() - t)


def measure_all(threads=(1, 2, 4), batches: int = 20, batch_size: int = 64) -> list[dict]:
  """Images/s per augmentation and thread count, as rows for the benchmark report.

  ``two_view`` counts an image once for its two views (MoCo v3 at 224, through the pipeline).
  """
  rows = [{"augmentation": augmentation, "threads": t, "cpus": os.cpu_count(),
           "images_per_s": round(measure(augmentation, t, batches, batch_size), 1)}
          for augmentation in ("inception", "inception_jitter", "two_view") for t in threads]
  rows.append({"augmentation": "moco_two_views_32_noblur (views alone)", "threads": 1,
               "cpus": os.cpu_count(),
               "images_per_s": round(measure_two_views(32, 2000, blur_probs=(0.0, 0.0)), 1)})
  return rows


def make_images(folder: str | pathlib.Path, count: int = 256) -> pathlib.Path:
  """``count`` JPEG photos at ImageNet's typical size: random 500x375 crops of scikit-learn's
  two sample photos, quality 90, in two class folders."""
  from PIL import Image
  from sklearn.datasets import load_sample_images

  photos = load_sample_images().images
  rng = np.random.default_rng(0)
  folder = pathlib.Path(folder)
  for i in range(count):
    photo = photos[i % len(photos)]
    top = rng.integers(0, photo.shape[0] - 375 + 1)
    left = rng.integers(0, photo.shape[1] - 500 + 1)
    (folder / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo[top:top + 375, left:left + 500]).save(
        folder / f"class{i % 2}" / f"{i:05d}.jpg", quality=90)
  return folder


def measure_folder(images: str, workers: int, threads: int, batches: int,
                   batch_size: int = 64, augmentation: str = "inception") -> float:
  """Images/s of the training pipeline's host part over a JPEG folder, after its first batch."""
  source = ImageFolderSource(images)
  prep = pipeline.Preprocess(*IMAGENET, 255.0, augmentation, 224)
  it = pipeline.train_batches(source, np.arange(len(source)), batch_size, prep, 2, seed=0,
                              start_step=0, process_index=0, process_count=1,
                              num_threads=threads, workers=workers)
  next(it)  # start-up (worker processes, first batch)
  start = time.perf_counter()
  for _ in range(batches):
    next(it)
  rate = batches * batch_size / (time.perf_counter() - start)
  it.close()
  return rate


def decode_rates(images: str, count: int = 200, size: int = 224) -> dict[str, float]:
  """One core, plain loop: full JPEG decodes/s, and decodes/s of the DCT-scaled crops the
  pipeline makes (the same crop boxes), Pillow's full decode beside them."""
  from PIL import Image

  source = ImageFolderSource(images)
  blobs = [source[i]["image"] for i in range(min(len(source), 64))]

  def rate(fn) -> float:
    fn(blobs[0])
    start = time.perf_counter()
    for i in range(count):
      fn(blobs[i % len(blobs)])
    return count / (time.perf_counter() - start)

  rng = np.random.default_rng(0)

  def scaled(data: bytes):
    h, w = jpeg.size(data, "bench")
    return jpeg.decode_region(data, "bench", augment.crop_box(h, w, rng), (size, size), (h, w))

  return {"decode_full": round(rate(lambda d: jpeg.decode(d, "bench")), 1),
          "decode_crop_scaled": round(rate(scaled), 1),
          "decode_full_pillow": round(rate(
              lambda d: np.asarray(Image.open(io.BytesIO(d)).convert("RGB"))), 1)}


def scaled_vs_full(images: str, count: int = 64, size: int = 224) -> dict[str, float]:
  """How far the DCT-scaled decode's crops are from crops of the full decode (same boxes):
  mean and 99th-percentile absolute difference in uint8 levels."""
  source = ImageFolderSource(images)
  diffs = []
  for i in range(min(count, len(source))):
    data = source[i]["image"]
    h, w = jpeg.size(data, "bench")
    box = augment.crop_box(h, w, np.random.default_rng(i))
    fast = augment._resize(*jpeg.decode_region(data, "bench", box, (size, size)), (size, size))
    full = augment._resize(jpeg.decode(data, "bench"), box, (size, size))
    diffs.append(np.abs(fast.astype(np.int16) - full.astype(np.int16)).ravel())
  d = np.concatenate(diffs)
  return {"mean_abs": round(float(d.mean()), 2), "p99_abs": float(np.percentile(d, 99))}


def torch_rate(python: str, images: str, workers: int, batches: int, batch_size: int) -> dict:
  out = subprocess.run([python, str(TORCH_PIPELINE), images, f"--workers={workers}",
                        f"--batches={batches}", f"--batch_size={batch_size}"],
                       capture_output=True, text=True)
  if out.returncode:
    raise SystemExit(f"--torch_python {python}: {TORCH_PIPELINE.name} failed:\n"
                     f"{out.stderr[-2000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--images", default=None, help="a folder of JPEG files (or class folders)")
  parser.add_argument("--make_images", default=None, help="write 256 test JPEGs here and exit")
  parser.add_argument("--workers", type=int, nargs="+", default=[1])
  parser.add_argument("--threads", type=int, nargs="+", default=None,
                      help="grain threads (per worker with --images; default 4)")
  parser.add_argument("--torch_python", default=None)
  parser.add_argument("--batches", type=int, default=20)
  parser.add_argument("--batch_size", type=int, default=64)
  args = parser.parse_args()
  if args.make_images:
    print(f"wrote {make_images(args.make_images)}")
    return
  if not args.images:
    for row in measure_all(args.threads or [1, 2, 4], args.batches, args.batch_size):
      print(json.dumps(row), flush=True)
    return
  common = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
  decode = decode_rates(args.images)
  print(json.dumps({"impl": "decode only, 1 core", **decode, **common}), flush=True)
  print(json.dumps({"impl": "DCT-scaled crops vs full decode (uint8 levels)",
                    **scaled_vs_full(args.images)}), flush=True)
  rate = 0.0
  for workers in args.workers:
    for threads in args.threads or [4]:
      rate = measure_folder(args.images, workers, threads, args.batches, args.batch_size)
      cores = min(max(workers, 1) * threads, os.cpu_count() or 1)
      print(json.dumps({"impl": "bf_jax", "workers": workers, "threads": threads,
                        "images_per_s": round(rate, 1),
                        "of_decode_limit": round(rate / (cores * decode["decode_crop_scaled"]), 2),
                        **common}), flush=True)
    if args.torch_python:
      print(json.dumps(torch_rate(args.torch_python, args.images, workers, args.batches,
                                  args.batch_size)), flush=True)
  print(f"images/s: {rate:.1f}")


if __name__ == "__main__":
  main()

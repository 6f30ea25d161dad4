"""Images/s of the training input pipeline alone (no model), for ImageNet-style augmentation.

  .venv/bin/python -m bf_jax.bench.pipeline --threads 1 2 4 --batches 20

Synthetic 375x500 uint8 images (a typical ImageNet size) in memory, so the figure is the
augmentation + batching cost per host, without JPEG decoding or storage reads. MoCo v3's
two-view augmentation counts an image once for both of its views.
"""

import argparse
import json
import os
import time

import numpy as np

from bf_jax.data import pipeline, views
from bf_jax.data.sources import ArraySource


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


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
  parser.add_argument("--batches", type=int, default=20)
  parser.add_argument("--batch_size", type=int, default=64)
  args = parser.parse_args()
  for row in measure_all(args.threads, args.batches, args.batch_size):
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
  main()

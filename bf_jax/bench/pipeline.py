"""Images/s of the training input pipeline alone (no model), for ImageNet-style augmentation.

  .venv/bin/python -m bf_jax.bench.pipeline --threads 1 2 4 --batches 20

Synthetic 375x500 uint8 images (a typical ImageNet size) in memory, so the figure is the
augmentation + batching cost per host, without JPEG decoding or storage reads.
"""

import argparse
import json
import os
import time

import numpy as np

from bf_jax.data import pipeline
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


def measure_all(threads=(1, 2, 4), batches: int = 20, batch_size: int = 64) -> list[dict]:
  """Images/s per augmentation and thread count, as rows for the benchmark report."""
  return [{"augmentation": augmentation, "threads": t, "cpus": os.cpu_count(),
           "images_per_s": round(measure(augmentation, t, batches, batch_size), 1)}
          for augmentation in ("inception", "inception_jitter") for t in threads]


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

"""The data pipelines on the mesh: each process reads its own rows of every global batch.

Tasks name a source and its preprocessing; which rows this process reads (``jax.process_index``
of ``jax.process_count``) is decided here, once, so no task passes process indices by hand.
"""

from __future__ import annotations

import logging
from typing import Iterator, Sequence

import jax
import numpy as np

from bf_jax import data
from bf_jax.data import pipeline
from bf_jax.trainer import sharding

log = logging.getLogger("bf_jax")


def prepare(config, devices: Sequence[jax.Device] | None = None
            ) -> tuple[jax.sharding.Mesh, data.Data]:
  """The checked mesh and the loaded ``config.data`` (of a validated config)."""
  mesh = sharding.make_mesh(devices, config)
  dataset = data.load(config.data)
  if len(dataset.train_indices) < config.batch_size:
    raise ValueError(f"The training set has {len(dataset.train_indices)} examples, fewer than "
                     f"one global batch (batch_size={config.batch_size}); lower batch_size.")
  log.info("data %s: %d train / %d eval examples, class counts %s", config.data.name,
           len(dataset.train_indices), len(dataset.eval_source), dataset.train_class_counts.tolist())
  return mesh, dataset


def train_batches(source, indices: np.ndarray, batch_size: int, preprocess: pipeline.Preprocess,
                  num_classes: int, seed: int, start_step: int = 0, **options
                  ) -> Iterator[dict[str, np.ndarray]]:
  """Endless host batches (this process's rows) from ``start_step``; ``options`` go to
  ``pipeline.train_batches`` (sampler, labels, index_batches, num_threads)."""
  return pipeline.train_batches(source, indices, batch_size, preprocess, num_classes, seed,
                                start_step, jax.process_index(), jax.process_count(), **options)


def first_batches(stream: Iterator[dict[str, np.ndarray]], n: int) -> list[dict[str, np.ndarray]]:
  """The first ``n`` batches of a stream (fixed batches, e.g. the probe's)."""
  return [next(stream) for _ in range(n)]


def eval_batches(source, batch_size: int, preprocess: pipeline.Preprocess, num_classes: int,
                 mesh: jax.sharding.Mesh) -> Iterator[dict[str, jax.Array]]:
  """Every example of ``source`` once, as global batches on ``mesh`` (``mask`` 0: padding)."""
  for batch in pipeline.eval_batches(source, batch_size, preprocess, num_classes,
                                     jax.process_index(), jax.process_count()):
    yield sharding.put_batch(batch, mesh)

"""The data pipelines on the mesh: each process reads its own rows of every global batch.

Tasks name a source and its preprocessing; which rows this process reads (``jax.process_index``
of ``jax.process_count``) is decided here, once, so no task passes process indices by hand.

A training set held in memory with nothing random to draw per example (``data.augment='none'``,
stored size; the embedded digits) and at most ``RESIDENT_MAX_BYTES`` once preprocessed lives on
the devices: it is preprocessed once on the host, exactly as each batch would be, copied once,
and each step sends only its batch's indices (the same index stream), so the batches are the
same bits as the host pipeline's, for any device or process count and on resume.
"""

from __future__ import annotations

import logging
from typing import Iterator, Sequence

import grain
import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bf_jax import data
from bf_jax.data import pipeline
from bf_jax.data.sources import ArraySource, read_labels
from bf_jax.trainer import sharding

RESIDENT_MAX_BYTES = 256 * 2**20  # per device: the preprocessed float32 training set

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
                  num_classes: int, seed: int, start_step: int = 0,
                  mesh: jax.sharding.Mesh | None = None, **options) -> Iterator[dict]:
  """Endless batches from ``start_step``: host batches (this process's rows), or with ``mesh``
  and a training set that fits (``resident``) global batches already on the mesh. ``options``
  go to ``pipeline.train_batches`` (sampler, labels, index_batches, num_threads)."""
  if mesh is not None and resident(source, preprocess):
    return _resident_batches(source, indices, batch_size, preprocess, num_classes, seed,
                             start_step, mesh, **options)
  return pipeline.train_batches(source, indices, batch_size, preprocess, num_classes, seed,
                                start_step, jax.process_index(), jax.process_count(), **options)


def resident(source, preprocess: pipeline.Preprocess) -> bool:
  """Whether a training set lives on the devices: in memory, nothing to draw per example, and
  at most ``RESIDENT_MAX_BYTES`` as float32."""
  if not isinstance(source, ArraySource) or preprocess.augmentation != "none":
    return False
  return not preprocess.image_size and source.images.size * 4 <= RESIDENT_MAX_BYTES


def _resident_batches(source: ArraySource, indices: np.ndarray, batch_size: int,
                      preprocess: pipeline.Preprocess, num_classes: int, seed: int,
                      start_step: int, mesh: jax.sharding.Mesh, sampler: str = "instance",
                      labels: np.ndarray | None = None, index_batches=None, num_threads: int = 4
                      ) -> Iterator[dict[str, jax.Array]]:
  # Each example exactly as the host pipeline makes it: the same function, once.
  images = np.stack([preprocess(source[i], None) for i in range(len(source))])
  labels_N = read_labels(source, num_classes, "the training set").astype(np.int32)
  images, labels_N = sharding.replicate((images, labels_N), mesh)
  if index_batches is None:
    index_batches = pipeline.index_stream(indices, seed, sampler, labels).batch(batch_size)
  rows = NamedSharding(mesh, P(sharding.AXIS))
  local = batch_size // jax.process_count()
  lo = jax.process_index() * local
  gather = jax.jit(lambda x, y, i: {"image": x.at[i].get(out_sharding=rows),
                                    "label": y.at[i].get(out_sharding=rows)})
  # Drawing the indices is the host's only work per step (grain's shuffle, element by element):
  # threads draw ahead, as the host pipeline's do.
  drawn = iter(index_batches[start_step:].to_iter_dataset(grain.ReadOptions(
      num_threads=num_threads, prefetch_buffer_size=2 * num_threads)))
  for idx in drawn:
    local_idx = np.asarray(idx, np.int32)[lo:lo + local]
    yield gather(images, labels_N, jax.make_array_from_process_local_data(rows, local_idx))


def first_batches(stream: Iterator[dict[str, np.ndarray]], n: int) -> list[dict[str, np.ndarray]]:
  """The first ``n`` batches of a stream (fixed batches, e.g. the probe's)."""
  return [next(stream) for _ in range(n)]


def eval_batches(source, batch_size: int, preprocess: pipeline.Preprocess, num_classes: int,
                 mesh: jax.sharding.Mesh) -> Iterator[dict[str, jax.Array]]:
  """Every example of ``source`` once, as global batches on ``mesh`` (``mask`` 0: padding)."""
  for batch in pipeline.eval_batches(source, batch_size, preprocess, num_classes,
                                     jax.process_index(), jax.process_count()):
    yield sharding.put_batch(batch, mesh)

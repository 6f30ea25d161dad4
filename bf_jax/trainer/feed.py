"""The data pipelines on the mesh: each process reads its own rows of every global batch.

Tasks name a source and its preprocessing; which rows this process reads (``jax.process_index``
of ``jax.process_count``) is decided here, once, so no task passes process indices by hand.

A training set held in memory at its stored size (``ArraySource``), with ``data.augment`` 'none'
or 'crop_flip' and at most ``RESIDENT_MAX_BYTES`` per device, lives on the devices: copied once
(uint8 images as uint8), after which each step sends only its batch's indices (the same index
stream) and the devices gather the batch. Float images with nothing to draw (the embedded digits)
are preprocessed once on the host exactly as each batch would be, so their batches are the same
bits as the host pipeline's; the others are padded, cropped, flipped and normalized on the device
(``device_augment``), keyed by (seed, step, position), for any device or process count and on
resume.

ImageNet-style augmentations end on the host at the uint8 crop (``Preprocess.finish``): the
host sends uint8 and the device flips, jitters and normalizes, keyed the same way.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import weakref
from typing import Iterator, Sequence

import grain
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bf_jax import data
from bf_jax.data import device_augment, pipeline
from bf_jax.data.sources import IN_MEMORY_MAX_BYTES, ArraySource, read_labels
from bf_jax.trainer import sharding

RESIDENT_MAX_BYTES = IN_MEMORY_MAX_BYTES  # per device: the set as stored (float as float32)
MAX_AUTO_WORKERS = 32
DRAW_AHEAD = 32  # dispatches whose indices a device-resident set draws ahead

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
  """Endless batches from ``start_step``: with ``mesh``, global batches on the mesh (gathered
  there when the training set is ``resident``); without, this process's rows as numpy.
  ``options`` go to ``pipeline.train_batches`` (sampler, labels, index_batches, num_threads,
  workers)."""
  if mesh is not None and resident(source, preprocess):
    options.pop("workers", None)  # nothing per example for a worker to do
    return _resident_batches(source, indices, batch_size, preprocess, num_classes, seed,
                             start_step, mesh, **options)
  host = pipeline.train_batches(source, indices, batch_size, preprocess, num_classes, seed,
                                start_step, jax.process_index(), jax.process_count(), **options)
  if preprocess.finish is None:
    return host
  return _finished(host, preprocess.finish, batch_size, seed, start_step, mesh)


def workers(requested: int, source) -> int:
  """``data.workers``: N worker processes, or -1 for one per core but one when the records are
  encoded images (decoding is the host's main cost), none otherwise (in-memory or decoded
  records: starting processes would cost more than they save)."""
  if requested >= 0:
    return requested
  if not isinstance(source[0]["image"], bytes):
    return 0
  return max(1, min(MAX_AUTO_WORKERS, (os.cpu_count() or 2) - 1))


def resident(source, preprocess: pipeline.Preprocess) -> bool:
  """Whether a training set lives on the devices: in memory at its stored size, an
  augmentation the device can draw, and at most ``RESIDENT_MAX_BYTES`` as stored."""
  if not isinstance(source, ArraySource) or preprocess.image_size:
    return False
  if preprocess.augmentation not in ("none", "crop_flip"):
    return False
  itemsize = 1 if source.images.dtype == np.uint8 else 4
  return source.images.size * itemsize <= RESIDENT_MAX_BYTES


def _resident_batches(source: ArraySource, indices: np.ndarray, batch_size: int,
                      preprocess: pipeline.Preprocess, num_classes: int, seed: int,
                      start_step: int, mesh: jax.sharding.Mesh, sampler: str = "instance",
                      labels: np.ndarray | None = None, index_batches=None, num_threads: int = 4
                      ) -> Resident:
  del num_threads  # the indices are drawn on a thread of the set's own
  finish = None
  if source.images.dtype != np.uint8 and preprocess.augmentation == "none":
    # Each example exactly as the host pipeline makes it: the same function, once.
    images = np.stack([preprocess(source[i], None) for i in range(len(source))])
  else:  # as stored; the device does the rest
    images = source.images if source.images.dtype == np.uint8 else source.images.astype(
        np.float32)
    images = images[..., None] if images.ndim == 3 else images
    crop_flip = preprocess.augmentation == "crop_flip"
    finish = device_augment.Finish(preprocess.mean, preprocess.std, preprocess.scale,
                                   pad_crop=4 if crop_flip else 0, flip=crop_flip)
  labels_N = read_labels(source, num_classes, "the training set").astype(np.int32)
  if index_batches is None:
    index_batches = pipeline.batch_indices(indices, batch_size, seed, sampler, labels)
  # Drawing the indices is the host's only work per step, read straight from the index
  # dataset: grain's thread prefetch measured 3x slower here than the draw itself.
  return Resident(sharding.replicate((images, labels_N), mesh), index_batches, finish, seed,
                  start_step, batch_size, mesh)


class Resident:
  """Batches gathered on the devices from a resident training set: ``next`` gives one step's,
  ``take(k)`` the next k steps' stacked along a new leading axis, in one gather (what
  ``config.steps_per_dispatch`` asks for)."""

  def __init__(self, arrays: tuple[jax.Array, jax.Array], index_batches: grain.MapDataset,
               finish: device_augment.Finish | None, seed: int, start_step: int,
               batch_size: int, mesh: jax.sharding.Mesh):
    self.images, self.labels = arrays
    self.index_batches, self.step, self.mesh = index_batches, start_step, mesh
    self.local = batch_size // jax.process_count()
    self.lo = jax.process_index() * self.local
    rows = NamedSharding(mesh, P(None, sharding.AXIS))
    per_step = _on_mesh(finish, mesh, stacked=True) if finish is not None else None
    seed_u32 = np.uint32(seed)

    def gather(x, y, idx_KxB, first_step):
      batch = x.at[idx_KxB].get(out_sharding=rows)
      if per_step is not None:
        batch = per_step(batch, seed_u32, first_step)
      return {"image": batch, "label": y.at[idx_KxB].get(out_sharding=rows)}

    self._gather = jax.jit(gather, out_shardings=rows)
    self._gather_one = jax.jit(  # one step's batch, the leading axis dropped in the same program
        lambda *args: {k: v[0] for k, v in gather(*args).items()},
        out_shardings=NamedSharding(mesh, P(sharding.AXIS)))
    self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bf_jax_indices")
    self._ahead: dict[int, concurrent.futures.Future] = {}

  def close(self) -> None:
    self._pool.shutdown(cancel_futures=True)

  def _indices(self, step: int) -> np.ndarray:
    return np.asarray(self.index_batches[step], np.int32)[self.lo:self.lo + self.local]

  def take(self, k: int) -> dict[str, jax.Array]:
    return self._take(k, self._gather)

  def _take(self, k: int, gather) -> dict[str, jax.Array]:
    # One thread draws the next dispatches' indices (while the first compiles, then while
    # steps run): for a small set most of an epoch's draw is grain's cipher walking its block.
    ahead = {s: self._ahead.pop(s, None) for s in range(self.step, self.step + k)}
    idx = np.stack([f.result() if f is not None else self._indices(s) for s, f in ahead.items()])
    for s in range(self.step + k, self.step + (1 + DRAW_AHEAD) * k):
      if s not in self._ahead:
        self._ahead[s] = self._pool.submit(self._indices, s)
    rows = NamedSharding(self.mesh, P(None, sharding.AXIS))
    out = gather(self.images, self.labels, jax.make_array_from_process_local_data(rows, idx),
                 np.int32(self.step))
    self.step += k
    return out

  def __iter__(self) -> Resident:
    return self

  def __next__(self) -> dict[str, jax.Array]:
    return self._take(1, self._gather_one)


def _finished(host: Iterator[dict[str, np.ndarray]], finish: device_augment.Finish,
              batch_size: int, seed: int, start_step: int, mesh: jax.sharding.Mesh | None
              ) -> Iterator[dict]:
  """Host batches of uint8 crops, finished on the device: on the mesh, or (no mesh) this
  process's rows on its default device, back as numpy."""
  seed_u32 = np.uint32(seed)
  try:
    if mesh is not None:
      apply = jax.jit(_on_mesh(finish, mesh))
      for step, batch in enumerate(host, start_step):
        placed = sharding.put_batch(batch, mesh)
        yield {**placed, "image": apply(placed["image"], seed_u32, np.int32(step))}
    else:
      apply = jax.jit(finish)
      first = jax.process_index() * (batch_size // jax.process_count())
      for step, batch in enumerate(host, start_step):
        image = apply(batch["image"], seed_u32, np.int32(step), np.int32(first))
        yield {**batch, "image": np.asarray(image)}
  finally:  # closing this stream ends the host pipeline's workers
    host.close()


def _on_mesh(finish: device_augment.Finish, mesh: jax.sharding.Mesh, stacked: bool = False):
  """``finish`` on each device's rows of a global batch, each row keyed by its global position;
  ``stacked``: batches [k, B, ...] of steps first_step, first_step + 1, ..."""

  def local(images, seed, step):
    first = jax.lax.axis_index(sharding.AXIS) * images.shape[1 if stacked else 0]
    if not stacked:
      return finish(images, seed, step, first)
    steps = step + jnp.arange(images.shape[0], dtype=jnp.int32)
    return jax.vmap(lambda x, s: finish(x, seed, s, first))(images, steps)

  rows = P(None, sharding.AXIS) if stacked else P(sharding.AXIS)
  return jax.shard_map(local, mesh=mesh, in_specs=(rows, P(), P()), out_specs=rows)


def first_batches(stream: Iterator[dict[str, np.ndarray]], n: int) -> list[dict[str, np.ndarray]]:
  """The first ``n`` batches of a stream (fixed batches, e.g. the probe's)."""
  return [next(stream) for _ in range(n)]


def eval_batches(source, batch_size: int, preprocess: pipeline.Preprocess, num_classes: int,
                 mesh: jax.sharding.Mesh) -> Iterator[dict[str, jax.Array]]:
  """Every example of ``source`` once, as global batches on ``mesh`` (``mask`` 0: padding).

  An in-memory eval set within ``RESIDENT_MAX_BYTES`` (as float32) is prepared once, by the
  host pipeline's own function, and kept on the devices: every later evaluation only slices it.
  """
  if not isinstance(source, ArraySource) or source.images.size * 4 > RESIDENT_MAX_BYTES:
    for batch in _host_eval_batches(source, batch_size, preprocess, num_classes):
      yield sharding.put_batch(batch, mesh)
    return
  key = (batch_size, preprocess, num_classes, mesh)
  kept = _EVAL_SETS.setdefault(source, {})
  if key not in kept:
    batches = list(_host_eval_batches(source, batch_size, preprocess, num_classes))
    stacked = {k: np.stack([b[k] for b in batches]) for k in batches[0]}
    rows = NamedSharding(mesh, P(None, sharding.AXIS))
    kept[key] = {k: jax.make_array_from_process_local_data(rows, v) for k, v in stacked.items()}
  arrays = kept[key]
  for b in range(next(iter(arrays.values())).shape[0]):
    yield {k: v[b] for k, v in arrays.items()}


_EVAL_SETS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # source -> kept batches


def _host_eval_batches(source, batch_size: int, preprocess: pipeline.Preprocess,
                       num_classes: int) -> Iterator[dict[str, np.ndarray]]:
  return pipeline.eval_batches(source, batch_size, preprocess, num_classes,
                               jax.process_index(), jax.process_count())

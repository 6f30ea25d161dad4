"""Batches for training and evaluation, assembled per process with grain.

Training: each epoch is a seeded permutation of the training indices; global batch ``s`` is the
s-th run of ``batch_size`` indices of that endless stream and process ``p`` loads only its slice
of it. Each example's augmentation is seeded by (seed, step, position in the global batch), so a
batch is the same whatever the number of processes or devices, and resuming at step ``s`` is
just starting the stream at ``s``.

Evaluation: process ``p`` takes a contiguous shard of the eval set, padded to whole batches;
every process runs the same number of batches and a ``mask`` marks the real examples, so every
example counts exactly once.
"""

from __future__ import annotations

import dataclasses
import signal
from typing import Any, Iterator

import grain
import numpy as np

from bf_jax.data import augment, device_augment, jpeg, randaugment, shuffle, views

Batch = dict[str, np.ndarray]
EVAL_RESIZES = ("center_crop", "squash")  # ImageNet-style central crop; DomainBed's Resize((S, S))
# Augmentations whose host part ends at the uint8 crop; flip, jitter and normalization run on the
# device (``Preprocess.finish``).
FINISHED_ON_DEVICE = ("inception", "inception_jitter")
JITTER = 0.4


@dataclasses.dataclass(frozen=True)
class Preprocess:
  """How a record becomes a model input.

  ``image_size`` 0 keeps the stored size (CIFAR, digits); otherwise training crops with the
  augmentation and eval takes a resized central crop (ImageNet-style sets) or, with
  ``eval_resize="squash"``, the whole image resized to image_size x image_size (DomainBed).
  """
  mean: tuple[float, ...]
  std: tuple[float, ...]
  scale: float  # 255 for uint8 images, 1 for images already in [0, 1]
  augmentation: str = "none"
  image_size: int = 0
  crop_min: float = 0.08  # smallest area fraction of random resized crops
  eval_resize: str = "center_crop"  # one of EVAL_RESIZES

  def __post_init__(self):
    if self.eval_resize not in EVAL_RESIZES:  # fail at construction, not at the first eval
      raise ValueError(f"eval_resize={self.eval_resize!r} is unknown; choose one of "
                       f"{EVAL_RESIZES}.")

  @property
  def finish(self) -> device_augment.Finish | None:
    """What the device does to training batches after this (None: the host does it all)."""
    if self.augmentation not in FINISHED_ON_DEVICE:
      return None
    return device_augment.Finish(self.mean, self.std, 255.0, flip=True,
                                 jitter=JITTER if self.augmentation == "inception_jitter" else 0)

  def __call__(self, record: dict[str, Any], rng: np.random.Generator | None) -> np.ndarray:
    image = record["image"]
    if isinstance(image, bytes):  # encoded (a JPEG folder, TFDS records read undecoded)
      what = _name(record)
      if self.augmentation in FINISHED_ON_DEVICE and rng is not None:
        return augment.random_resized_crop_encoded(image, what, rng, self.image_size,
                                                   scale=(self.crop_min, 1.0))
      if rng is None and self.image_size and self.eval_resize == "center_crop":
        image = augment.resize_center_crop_encoded(image, what, self.image_size)
        return augment.normalize(image, self.mean, self.std, 255.0)
      image = jpeg.decode(image, what)
    image = np.asarray(image)
    if image.ndim == 2:
      image = image[..., None]
    if rng is None:
      if self.image_size and self.eval_resize == "squash":
        image = augment.resize_squash(image, self.image_size)
      elif self.image_size:
        image = augment.resize_center_crop(image, self.image_size)
    elif self.augmentation == "crop_flip":
      image = augment.crop_flip(image, rng)
    elif self.augmentation in augment.PACO_VIEWS:  # [2, H, W, C]: PaCo's query and key views
      pair = views.paco_views(self._to_uint8(image), rng, self.image_size or image.shape[0],
                              self.crop_min, augment.PACO_VIEWS[self.augmentation])
      return augment.normalize(pair, self.mean, self.std, 255.0)
    elif self.augmentation in augment.TWO_VIEW:  # [2, H, W, C]: MoCo v3's asymmetric pair
      blur = (1.0, 0.1) if self.augmentation == "two_view" else (0.0, 0.0)
      pair = views.two_views(self._to_uint8(image), rng, self.image_size or image.shape[0],
                             self.crop_min, blur_probs=blur)
      return augment.normalize(pair, self.mean, self.std, 255.0)
    elif self.augmentation == "domainbed":
      view = views.domainbed_view(self._to_uint8(image), rng, self.image_size or image.shape[0])
      return augment.normalize(view, self.mean, self.std, 255.0)
    elif self.augmentation == "deit":  # timm rand-m9-mstd0.5-inc1, then erasing (p=0.25, pixel)
      view = augment.flip(augment.random_resized_crop(
          self._to_uint8(image), rng, self.image_size or image.shape[0],
          scale=(self.crop_min, 1.0)), rng)
      view = augment.normalize(randaugment.randaugment(view, rng), self.mean, self.std, 255.0)
      return randaugment.random_erasing(view, rng)
    elif self.augmentation in FINISHED_ON_DEVICE:  # uint8 crop; the rest on the device
      return augment.random_resized_crop(self._to_uint8(image), rng, self.image_size,
                                         scale=(self.crop_min, 1.0))
    return augment.normalize(image, self.mean, self.std, self.scale)

  def _to_uint8(self, image: np.ndarray) -> np.ndarray:
    """8-bit pixels for the color ops (digits are floats in [0, 1])."""
    if self.scale == 255.0:
      return image
    return np.round(np.asarray(image, np.float32) * (255.0 / self.scale)).astype(np.uint8)


def _name(record: dict[str, Any]) -> str:
  """The file a record came from, for messages (a folder's path, TFDS's file name)."""
  for key in ("file", "file_name", "filename"):
    if key in record:
      name = record[key]
      return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
  return "of this record"


def _check_label(label: int, num_classes: int, where: str) -> int:
  if not 0 <= label < num_classes:
    raise ValueError(f"label {label} of {where} is outside [0, {num_classes}); set "
                     f"data.num_classes to the dataset's class count or fix the data.")
  return label


SAMPLERS = ("instance", "class_balanced")


def batch_indices(indices: np.ndarray, batch_size: int, seed: int, sampler: str,
                  labels: np.ndarray | None) -> grain.MapDataset:
  """Step -> the global batch's dataset indices, endless: shuffled epochs (grain's order,
  computed an epoch at a time, ``shuffle.py``), or class-balanced draws.

  Class-balanced (the decoupled classifier-retraining stage): every draw picks a class uniformly,
  then one of its images, seeded by the draw's position in the stream.
  """
  if sampler == "instance":
    return shuffle.shuffled_batches(indices, seed, batch_size)
  if sampler != "class_balanced":
    raise ValueError(f"data.sampler={sampler!r} is unknown; choose one of {SAMPLERS}.")
  by_class = [indices[labels == c] for c in np.unique(labels)]

  def draw(position: int, _) -> np.int64:
    rng = np.random.default_rng([seed, 1, position])
    members = by_class[rng.integers(len(by_class))]
    return members[rng.integers(len(members))]

  return grain.MapDataset.range(len(indices)).repeat().map_with_index(draw).batch(batch_size)


def train_batches(source, indices: np.ndarray, batch_size: int, preprocess: Preprocess,
                  num_classes: int, seed: int, start_step: int, process_index: int,
                  process_count: int, num_threads: int = 4, sampler: str = "instance",
                  labels: np.ndarray | None = None,
                  index_batches: grain.MapDataset | None = None,
                  workers: int = 0) -> Iterator[Batch]:
  """Endless iterator of this process's part of each global training batch, from start_step.

  ``labels`` (aligned with ``indices``) are needed by the class-balanced sampler only.
  ``index_batches`` (step -> the global batch's source indices) replaces the sampler, e.g. the
  per-domain balanced batches of domain generalization. ``workers`` > 0 loads batches in that
  many worker processes (grain's multiprocessing; each with ``num_threads`` threads): batch s
  is the same for any count, since worker w loads the batches s with s % workers == w and grain
  returns them in order.
  """
  local = batch_size // process_count
  lo = process_index * local

  def load(step: int, global_idx: np.ndarray) -> Batch:
    images, labels = [], []
    for pos in range(lo, lo + local):
      record = source[int(global_idx[pos])]
      rng = np.random.default_rng([seed, step, pos])
      images.append(preprocess(record, rng))
      labels.append(_check_label(int(record["label"]), num_classes,
                                 f"training example {int(global_idx[pos])}"))
    return {"image": np.stack(images), "label": np.asarray(labels, np.int32)}

  if index_batches is None:
    index_batches = batch_indices(indices, batch_size, seed, sampler, labels)
  ds = index_batches.map_with_index(load)
  ds = ds[start_step:].to_iter_dataset(grain.ReadOptions(num_threads=num_threads,
                                                         prefetch_buffer_size=2 * num_threads))
  if workers:
    from absl import flags
    if not flags.FLAGS.is_parsed():  # grain's workers read absl flags (defaults suit us)
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers),
                        worker_init_fn=_worker_init)
  return iter(ds)


def _worker_init(worker_index: int, worker_count: int) -> None:
  """A terminal's Ctrl-C reaches every process of its group: workers leave it to the trainer,
  which saves a checkpoint and ends the run (and with it the workers)."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)


def eval_batches(source, batch_size: int, preprocess: Preprocess, num_classes: int,
                 process_index: int, process_count: int) -> Iterator[Batch]:
  """This process's eval batches: ``image``, ``label`` and ``mask`` (0 for padding)."""
  n = len(source)
  bounds = [n * p // process_count for p in range(process_count + 1)]
  shard = np.arange(bounds[process_index], bounds[process_index + 1])
  local = batch_size // process_count
  largest = max(bounds[p + 1] - bounds[p] for p in range(process_count))
  num_batches = -(-largest // local)
  example = preprocess(source[0], None)
  for b in range(num_batches):
    idx = shard[b * local:(b + 1) * local]
    images = np.zeros((local, *example.shape), np.float32)
    labels = np.zeros((local,), np.int32)
    mask = np.zeros((local,), np.float32)
    for j, i in enumerate(idx):
      record = source[int(i)]
      images[j] = preprocess(record, None)
      labels[j] = _check_label(int(record["label"]), num_classes, f"eval example {int(i)}")
      mask[j] = 1.0
    yield {"image": images, "label": labels, "mask": mask}


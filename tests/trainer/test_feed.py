"""The data path on the mesh: a training set that fits lives on the devices and gives the same
batches, bit for bit, as the host pipeline (any device count, any start step, both samplers)."""

import jax
import numpy as np
import pytest

from bf_jax import data
from bf_jax.data.sources import ArraySource
from bf_jax.tasks import base_config
from bf_jax.trainer import feed, sharding


def _digits():
  cfg = base_config().data
  return data.load(cfg)


@pytest.mark.parametrize("sampler, start_step, n_devices", [
    ("instance", 0, 8), ("instance", 7, 2), ("class_balanced", 3, 8)])
def test_resident_batches_are_the_host_pipelines(sampler, start_step, n_devices):
  ds = _digits()
  assert feed.resident(ds.train_source, ds.preprocess)
  mesh = sharding.make_mesh(jax.devices()[:n_devices])
  args = (ds.train_source, ds.train_indices, 16, ds.preprocess, ds.num_classes, 5, start_step)
  host = feed.train_batches(*args, sampler=sampler, labels=ds.train_labels)
  device = feed.train_batches(*args, mesh=mesh, sampler=sampler, labels=ds.train_labels)
  for _ in range(4):
    want, got = next(host), next(device)
    placed = sharding.put_batch(want, mesh)["image"].sharding
    assert got["image"].sharding.is_equivalent_to(placed, 4)
    np.testing.assert_array_equal(np.asarray(got["image"]), want["image"])  # the same bits
    np.testing.assert_array_equal(np.asarray(got["label"]), want["label"])


def test_what_does_not_fit_or_draws_per_example_stays_on_the_host():
  ds = _digits()
  crop = type(ds.preprocess)(**{**vars(ds.preprocess), "augmentation": "crop_flip"})
  assert not feed.resident(ds.train_source, crop)
  small = ArraySource(np.zeros((2, 8, 8, 1), np.float32), np.zeros(2))
  assert feed.resident(small, ds.preprocess)
  too_big = ArraySource(np.broadcast_to(np.uint8(0), (1, feed.RESIDENT_MAX_BYTES // 4 + 1)),
                       np.zeros(1))
  assert not feed.resident(too_big, ds.preprocess)

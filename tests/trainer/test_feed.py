"""The data path on the mesh: a training set that fits lives on the devices and gives the same
batches, bit for bit, as the host pipeline (any device count, any start step, both samplers)."""

import dataclasses

import jax
import numpy as np
import pytest

from bf_jax import data
from bf_jax.data import pipeline
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


def test_what_does_not_fit_or_draws_what_the_device_cannot_stays_on_the_host():
  ds = _digits()
  crop = dataclasses.replace(ds.preprocess, augmentation="crop_flip")
  assert feed.resident(ds.train_source, crop)
  deit = dataclasses.replace(ds.preprocess, augmentation="deit")
  assert not feed.resident(ds.train_source, deit)
  small = ArraySource(np.zeros((2, 8, 8, 1), np.float32), np.zeros(2))
  assert feed.resident(small, ds.preprocess)
  too_big = ArraySource(np.broadcast_to(np.float32(0), (1, feed.RESIDENT_MAX_BYTES // 4 + 1)),
                        np.zeros(1))
  assert not feed.resident(too_big, ds.preprocess)
  as_uint8 = ArraySource(np.broadcast_to(np.uint8(0), (1, feed.RESIDENT_MAX_BYTES // 4 + 1)),
                         np.zeros(1))
  assert feed.resident(as_uint8, ds.preprocess)  # stored as uint8: a quarter of the bytes


def _uint8_set(n=40):
  rng = np.random.default_rng(0)
  return ArraySource(rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), np.arange(n) % 4)


def test_uint8_sets_are_padded_cropped_and_flipped_on_the_device_the_same_on_any_mesh():
  src = _uint8_set()
  prep = pipeline.Preprocess((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 255.0, "crop_flip")
  args = (src, np.arange(len(src)), 16, prep, 4, 5)
  streams = {n: feed.train_batches(*args, 0, mesh=sharding.make_mesh(jax.devices()[:n]))
             for n in (8, 2)}
  first = [{k: np.asarray(v) for k, v in next(streams[8]).items()} for _ in range(4)]
  for want in first:
    got = next(streams[2])
    np.testing.assert_array_equal(np.asarray(got["image"]), want["image"])
    np.testing.assert_array_equal(np.asarray(got["label"]), want["label"])
  resumed = next(feed.train_batches(*args, 3, mesh=sharding.make_mesh(jax.devices()[:4])))
  np.testing.assert_array_equal(np.asarray(resumed["image"]), first[3]["image"])
  # Each row is its source image, zero-padded by 4, cropped back and perhaps flipped.
  indices = pipeline.batch_indices(np.arange(len(src)), 16, 5, "instance", None)[0]
  raw = (first[0]["image"] * 0.25 + 0.5) * 255.0
  flips = 0
  for row, i in zip(raw, indices):
    padded = np.pad(src.images[i].astype(np.float32), ((4, 4), (4, 4), (0, 0)))
    views = [(padded[t:t + 8, l:l + 8], f) for t in range(9) for l in range(9) for f in (0, 1)]
    match = [f for v, f in views if np.allclose(v[:, ::-1] if f else v, row, atol=1e-3)]
    assert match, "a row that is no pad-crop of its image"
    flips += match[0]
  assert 0 < flips < 16


def test_the_probe_stream_without_a_mesh_finishes_rows_as_the_mesh_does(tmp_path):
  from PIL import Image

  from bf_jax.data.image_folder import ImageFolderSource

  for i in range(12):
    (tmp_path / f"c{i % 2}").mkdir(exist_ok=True)
    Image.fromarray(np.full((40, 50, 3), 20 * i, np.uint8)).save(tmp_path / f"c{i % 2}/{i}.jpg")
  src = ImageFolderSource(tmp_path)
  prep = pipeline.Preprocess((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 255.0, "inception_jitter", 16)
  args = (src, np.arange(len(src)), 8, prep, 2, 7, 2)
  on_mesh = next(feed.train_batches(*args, mesh=sharding.make_mesh(jax.devices()[:8])))
  on_host = next(feed.train_batches(*args))
  assert on_mesh["image"].dtype == np.float32 and isinstance(on_host["image"], np.ndarray)
  np.testing.assert_allclose(np.asarray(on_mesh["image"]), on_host["image"], atol=1e-5)


@pytest.mark.parametrize("n_devices", [8, 2])
def test_an_in_memory_eval_set_is_kept_on_the_devices_with_the_hosts_batches(n_devices,
                                                                           monkeypatch):
  ds = _digits()
  mesh = sharding.make_mesh(jax.devices()[:n_devices])
  host = [sharding.put_batch(b, mesh) for b in pipeline.eval_batches(
      ds.eval_source, 64, ds.preprocess, 10, 0, 1)]
  first = list(feed.eval_batches(ds.eval_source, 64, ds.preprocess, 10, mesh))
  calls = []
  monkeypatch.setattr(pipeline, "eval_batches", lambda *a: calls.append(a) or iter(()))
  again = list(feed.eval_batches(ds.eval_source, 64, ds.preprocess, 10, mesh))
  assert not calls  # prepared once: the second evaluation only slices what the devices hold
  assert len(first) == len(again) == len(host) == 8  # 500 examples, 64 a batch
  for want, got, kept in zip(host, first, again):
    for key in ("image", "label", "mask"):
      np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(want[key]))
      np.testing.assert_array_equal(np.asarray(kept[key]), np.asarray(want[key]))
      assert got[key].sharding.is_equivalent_to(want[key].sharding, want[key].ndim)

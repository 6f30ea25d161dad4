"""The device's end of an augmentation: keyed by (seed, step, position), and the same colour ops
as the host's numpy jitter."""

import jax
import jax.numpy as jnp
import numpy as np

from bf_jax.data import device_augment

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def _images(n=6, h=5, w=7):
  return np.random.default_rng(0).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_nothing_drawn_is_plain_normalization():
  x = _images()
  out = device_augment.Finish(MEAN, STD)(x, np.uint32(1), np.int32(0))
  want = (x.astype(np.float32) / 255.0 - np.float32(MEAN)) / np.float32(STD)
  np.testing.assert_allclose(np.asarray(out), want, rtol=1e-6, atol=1e-6)


def test_draws_follow_seed_step_and_global_position():
  x = _images()
  finish = device_augment.Finish(MEAN, STD, flip=True, jitter=0.4, pad_crop=2)
  a = np.asarray(finish(x, np.uint32(3), np.int32(9)))
  np.testing.assert_array_equal(a, np.asarray(finish(x, np.uint32(3), np.int32(9))))
  assert not np.allclose(a, np.asarray(finish(x, np.uint32(3), np.int32(10))))
  assert not np.allclose(a, np.asarray(finish(x, np.uint32(4), np.int32(9))))
  # Rows 2.. of the batch, given as a batch starting at position 2: the same draws.
  tail = np.asarray(finish(x[2:], np.uint32(3), np.int32(9), 2))
  np.testing.assert_allclose(tail, a[2:], atol=1e-6)


def test_the_colour_ops_are_the_hosts():
  x = jnp.asarray(_images(1)[0], jnp.float32)
  xn = np.asarray(x)
  f = np.float32(1.3)
  np.testing.assert_allclose(device_augment._brightness(x, f), xn * f, rtol=1e-6)
  m = xn.mean()
  np.testing.assert_allclose(device_augment._contrast(x, f), (xn - m) * f + m, atol=1e-3)
  gray = (xn @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
  np.testing.assert_allclose(device_augment._saturation(x, f), (xn - gray) * f + gray,
                             rtol=1e-5, atol=1e-3)
  same = device_augment.color_jitter(x, jax.random.key(0), 0.0)  # factors all 1
  np.testing.assert_allclose(same, xn, atol=1e-3)
  jittered = device_augment.color_jitter(x, jax.random.key(0), 0.4)
  assert float(jittered.min()) >= 0 and float(jittered.max()) <= 255


def test_pad_crop_keeps_the_size_and_the_pixels():
  x = jnp.arange(4 * 5 * 1, dtype=jnp.float32).reshape(4, 5, 1) + 1
  seen = set()
  for k in range(30):
    out = np.asarray(device_augment.pad_crop(x, jax.random.key(k), 1))
    assert out.shape == (4, 5, 1)
    inside = out[out > 0]
    assert set(inside.tolist()) <= set(np.asarray(x).ravel().tolist())
    seen.add(out.tobytes())
  assert len(seen) > 3

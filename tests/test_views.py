"""MoCo v3 two-view augmentation: shapes, seeding, and each op's behaviour on crafted inputs."""

import numpy as np
import pytest

from bf_jax.data import views

IDENTITY = np.array([1.0, 1.0, 1.0, 0.0])  # brightness, contrast, saturation factors; hue shift


def _noise(shape, seed=0):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _views(image, seed, size=32, **kw):
  return views.two_views(image, np.random.default_rng(seed), size, **kw)


@pytest.mark.parametrize("shape,size", [((375, 500, 3), 224), ((40, 100, 3), 48),
                                        ((60, 45, 1), 32)])
def test_shape_and_dtype(shape, size):
  out = _views(_noise(shape), 0, size, blur_probs=(1.0, 1.0), solarize_probs=(1.0, 1.0))
  assert out.shape == (2, size, size, shape[-1]) and out.dtype == np.uint8


def test_rejects_images_without_one_or_three_channels():
  for bad in (_noise((8, 8)), _noise((8, 8, 4))):
    with pytest.raises(ValueError, match="C in \\(1, 3\\)"):
      _views(bad, 0)


def test_seeded_deterministic_and_views_differ():
  image = _noise((64, 80, 3))
  a = _views(image, 5)
  np.testing.assert_array_equal(a, _views(image, 5))
  assert not np.array_equal(a, _views(image, 6))
  assert not np.array_equal(a[0], a[1])


def test_solarize_inverts_high_pixels():
  p = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
  expected = np.where(p.astype(int) >= 128, 255 - p.astype(int), p)
  np.testing.assert_array_equal(views._solarize(p), expected)


def test_solarize_in_two_views_changes_only_that_op():
  """All draws precede the ops, so the same seed with solarize forced on gives the solarized
  version of the same views (solarize is per pixel, so the flip after it does not matter)."""
  image = _noise((64, 80, 3), seed=1)
  for seed in range(5):
    plain = _views(image, seed, blur_probs=(0.0, 0.0), solarize_probs=(0.0, 0.0))
    solar = _views(image, seed, blur_probs=(0.0, 0.0), solarize_probs=(1.0, 1.0))
    assert solar.max() <= 127 and plain.max() >= 128
    np.testing.assert_array_equal(solar, views._solarize(plain))


def test_solarize_and_grayscale_probabilities():
  """Solarize p = (0, 0.2), grayscale p = 0.2 per view, counted over seeds (fixed, so no flakes)."""
  image = _noise((40, 40, 3), seed=2)
  n, solarized, gray = 150, np.zeros(2), np.zeros(2)
  for seed in range(n):
    plain = _views(image, seed, size=16, blur_probs=(0.0, 0.0), solarize_probs=(0.0, 0.0))
    solar = _views(image, seed, size=16, blur_probs=(0.0, 0.0), solarize_probs=(0.0, 0.2))
    solarized += [not np.array_equal(plain[i], solar[i]) for i in range(2)]
    gray += [np.array_equal(v[..., 0], v[..., 1]) and np.array_equal(v[..., 1], v[..., 2])
             for v in plain]
  assert solarized[0] == 0 and 0.1 < solarized[1] / n < 0.3, solarized
  assert all(0.1 < g / n < 0.3 for g in gray), gray


def test_jitter_probability_on_a_constant_image():
  """On a flat gray image only brightness changes pixels (crop, flip, blur, contrast, saturation,
  hue and grayscale keep it flat and gray), so a view != 100 means jitter ran (p = 0.8)."""
  image = np.full((30, 40, 3), 100, np.uint8)
  changed = 0
  for seed in range(100):
    out = _views(image, seed, size=8)
    assert (out == out[:, :1, :1, :1]).all()  # each view stays one flat gray
    changed += (out[:, 0, 0, 0] != 100).sum()
  assert 0.65 < changed / 200 < 0.95, changed


def test_flip_probability_on_a_ramp():
  """crop_min=1 on a square image crops (almost) all of it, and 1-channel jitter is monotone, so
  a left-to-right ramp comes out decreasing exactly when the view was flipped (p = 0.5)."""
  ramp = np.tile(np.linspace(20, 230, 32).astype(np.uint8), (32, 1))[..., None]
  flipped = 0
  for seed in range(100):
    out = _views(ramp, seed, size=16, crop_min=1.0, solarize_probs=(0.0, 0.0)).astype(int)
    left, right = out[:, :, :4].mean((1, 2, 3)), out[:, :, -4:].mean((1, 2, 3))
    assert (left != right).all()
    flipped += (left > right).sum()
  assert 0.35 < flipped / 200 < 0.65, flipped


def test_grayscale_equal_channels_with_601_luma():
  x = _noise((20, 30, 3))
  out = views._grayscale(x)
  assert out.shape == x.shape and out.dtype == np.uint8
  np.testing.assert_array_equal(out[..., 0], out[..., 1])
  np.testing.assert_array_equal(out[..., 0], out[..., 2])
  luma = x.astype(np.float64) @ [0.299, 0.587, 0.114]
  assert np.abs(out[..., 0] - luma).max() <= 1


def test_jitter_identity_factors_and_zero_hue_leave_image_unchanged():
  x = _noise((50, 70, 3))
  for order in (np.arange(4), np.array([3]), np.array([2, 0, 3, 1])):
    out = views._color_jitter(x, order, IDENTITY)
    assert out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
    assert np.abs(out.astype(int) - x).max() <= 1


def test_hue_rotates_and_keeps_value_and_chroma():
  red = np.zeros((2, 2, 3), np.uint8)
  red[..., 0] = 255
  hue = lambda x, s: views._color_jitter(x, np.array([3]), np.array([1.0, 1.0, 1.0, s]))
  np.testing.assert_array_equal(hue(red, 1 / 3)[0, 0], [0, 255, 0])
  np.testing.assert_array_equal(hue(red, -1 / 3)[0, 0], [0, 0, 255])
  np.testing.assert_array_equal(hue(red, 1 / 6)[0, 0], [255, 255, 0])  # yellow
  x = _noise((30, 30, 3))
  out = hue(x, 0.07).astype(int)
  assert np.abs(out - x).max() > 10  # it moved ...
  for reduce in (np.max, np.min):  # ... but kept V (max) and max - min
    assert np.abs(reduce(out, -1) - reduce(x.astype(int), -1)).max() <= 1
  assert np.abs(hue(hue(x, 0.07), -0.07).astype(int) - x).max() <= 2


def test_brightness_contrast_saturation_semantics():
  x = _noise((30, 40, 3))
  one = lambda op, f: views._color_jitter(x, np.array([op]), np.where(np.arange(4) == op, f,
                                                                         IDENTITY))
  np.testing.assert_array_equal(one(0, 0.5), np.floor(x * 0.5 + 0.5))  # rounds half up
  np.testing.assert_array_equal(one(0, 2.0), np.minimum(x.astype(int) * 2, 255))  # clips, no wrap
  mean_luma = (x.astype(np.float64) @ [0.299, 0.587, 0.114]).mean()
  flat = one(1, 0.0)
  assert np.abs(flat.astype(int) - mean_luma).max() <= 1
  gray = one(2, 0.0)
  assert np.abs(gray.astype(int) - views._grayscale(x)).max() <= 1
  # Saturation 2 moves every channel away from the luma, contrast 2 away from the mean.
  luma = x.astype(np.float64) @ [0.299, 0.587, 0.114]
  sat = one(2, 2.0).astype(float)
  assert (np.abs(sat - luma[..., None]) >= np.abs(x - luma[..., None]) - 1).all()
  con = one(1, 2.0).astype(float)
  assert (np.abs(con - mean_luma) >= np.abs(x - mean_luma) - 1).all()


def test_grayscale_input_skips_color_ops():
  x = _noise((20, 25, 1))
  out = views._color_jitter(x, np.array([2, 3]), np.array([1.0, 1.0, 0.0, 0.3]))
  np.testing.assert_array_equal(out, x)
  assert np.abs(views._color_jitter(x, np.array([0]), np.array([0.5, 1, 1, 0])).astype(int)
                - x * 0.5).max() <= 1


@pytest.mark.parametrize("channels", [1, 3])
def test_blur_lowers_variance_more_with_larger_sigma(channels):
  x = _noise((64, 64, channels))
  small, large = views._blur(x, 0.5), views._blur(x, 2.0)
  assert small.shape == x.shape and small.dtype == np.uint8
  assert large.var() < small.var() < 0.9 * x.var()
  assert large.var() < 0.1 * x.var()


def test_preprocess_two_view_gives_two_normalized_views_and_a_single_eval_image():
  from bf_jax.data import pipeline
  rng = np.random.default_rng(0)
  record = {"image": rng.integers(0, 256, (40, 36, 3), np.uint8), "label": 3}
  prep = pipeline.Preprocess((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 255.0, "two_view", 24, 0.2)
  pair = prep(record, np.random.default_rng(1))
  assert pair.shape == (2, 24, 24, 3) and pair.dtype == np.float32
  raw = views.two_views(record["image"], np.random.default_rng(1), 24, 0.2)
  np.testing.assert_allclose(pair, (raw / 255.0 - 0.5) / 0.25, atol=1e-6)
  assert prep(record, None).shape == (24, 24, 3)  # eval: one resized centre crop


def test_preprocess_two_view_of_float_images_goes_through_8_bit_pixels():
  from bf_jax.data import pipeline
  image = np.full((8, 8, 1), 0.5, np.float32)  # digits: floats in [0, 1], scale 1
  prep = pipeline.Preprocess((0.0,), (1.0,), 1.0, "two_view_noblur", 0, 1.0)
  pair = prep({"image": image, "label": 0}, np.random.default_rng(0))
  want = views.two_views(np.full((8, 8, 1), 128, np.uint8), np.random.default_rng(0), 8, 1.0,
                         blur_probs=(0.0, 0.0))
  np.testing.assert_allclose(pair, want / 255.0, atol=1e-6)
  assert pair.shape == (2, 8, 8, 1) and np.ptp(pair[0]) == 0.0  # flat stays flat

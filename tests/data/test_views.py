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


# DomainBed's training view and eval squash.


def _domainbed(image, seed, size=32):
  return views.domainbed_view(image, np.random.default_rng(seed), size)


def _no_color(monkeypatch, calls=None):
  """Jitter and grayscale become identities (recording jitter's draws), leaving crop and flip."""
  def jitter(x, order, factors):
    if calls is not None:
      calls.append((np.array(order), np.array(factors)))
    return x
  monkeypatch.setattr(views, "_color_jitter", jitter)
  monkeypatch.setattr(views, "_grayscale", lambda x: x)


def _is_gray(x):
  return np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 1], x[..., 2])


@pytest.mark.parametrize("shape,size", [((375, 500, 3), 224), ((40, 100, 3), 48),
                                        ((60, 45, 1), 32)])
def test_domainbed_shape_and_dtype(shape, size):
  out = _domainbed(_noise(shape), 0, size)
  assert out.shape == (size, size, shape[-1]) and out.dtype == np.uint8


def test_domainbed_rejects_images_without_one_or_three_channels():
  for bad in (_noise((8, 8)), _noise((8, 8, 4))):
    with pytest.raises(ValueError, match="domainbed_view .*C in \\(1, 3\\)"):
      _domainbed(bad, 0)


@pytest.mark.parametrize("channels", [1, 3])
def test_domainbed_seeded_deterministic_and_seeds_differ(channels):
  image = _noise((64, 80, channels))
  a = _domainbed(image, 5)
  np.testing.assert_array_equal(a, _domainbed(image, 5))
  assert not np.array_equal(a, _domainbed(image, 6))


def test_domainbed_crop_area_and_flip_rate(monkeypatch):
  """With color off, ramps that encode x and y give the crop's width and height: one seed gives
  one crop, and bilinear resizing keeps a ramp's slope away from the image border."""
  _no_color(monkeypatch)
  n, size = 60, 32
  ramp = np.tile(np.arange(250, dtype=np.uint8), (250, 1))[..., None]  # value = column
  fractions, flipped = [], 0
  for seed in range(n):
    along_x = _domainbed(ramp, seed, size)[..., 0].astype(float)
    along_y = _domainbed(ramp.transpose(1, 0, 2).copy(), seed, size)[..., 0].astype(float)
    slope_x = (along_x[:, 24] - along_x[:, 8]).mean() / 16  # crop width / size
    slope_y = (along_y[24] - along_y[8]).mean() / 16
    assert slope_y > 0  # flips are horizontal only
    flipped += slope_x < 0
    fractions.append(abs(slope_x) * slope_y * size ** 2 / 250 ** 2)
  assert 0.68 <= min(fractions) and max(fractions) <= 1.02, (min(fractions), max(fractions))
  assert min(fractions) < 0.8  # the draws do span the range: not always the whole image
  assert 0.3 < flipped / n < 0.7, flipped


def test_domainbed_jitter_always_runs_with_domainbed_ranges(monkeypatch):
  calls = []
  _no_color(monkeypatch, calls)
  for seed in range(200):
    _domainbed(_noise((20, 20, 3)), seed, 8)
  assert len(calls) == 200  # p = 1: every view is jittered
  orders, factors = np.stack([c[0] for c in calls]), np.stack([c[1] for c in calls])
  assert (np.sort(orders, 1) == np.arange(4)).all()
  assert (factors >= [0.7, 0.7, 0.7, -0.3]).all() and (factors <= [1.3, 1.3, 1.3, 0.3]).all()
  assert (factors.min(0) < [0.75, 0.75, 0.75, -0.25]).all()  # and fill the ranges
  assert (factors.max(0) > [1.25, 1.25, 1.25, 0.25]).all()


def test_domainbed_color_always_changes_a_colorful_image(monkeypatch):
  """Same seed with jitter and grayscale off gives the same crop and flip (draws come first), so
  the real view always differing from it means color ops ran on every draw."""
  image = _noise((40, 40, 3), seed=3)
  real = [_domainbed(image, seed, 16) for seed in range(100)]
  _no_color(monkeypatch)
  for seed, view in enumerate(real):
    assert np.abs(view.astype(int) - _domainbed(image, seed, 16)).max() > 2, seed


def test_domainbed_brightness_range_on_a_constant_image():
  """A flat gray image stays flat and gray under every op but brightness: 100 * U(0.7, 1.3)."""
  image = np.full((30, 40, 3), 100, np.uint8)
  values = []
  for seed in range(200):
    out = _domainbed(image, seed, 8)
    assert (out == out[0, 0, 0]).all()
    values.append(int(out[0, 0, 0]))
  assert 70 <= min(values) < 76 and 124 < max(values) <= 130, (min(values), max(values))


def test_domainbed_grayscale_rate():
  """Saturation >= 0.7 never equalizes the channels of noise, so gray views are grayscale's
  (p = 0.1): 400 draws, mean 40, sd 6; fixed seeds, so no flakes."""
  image = _noise((24, 24, 3), seed=4)
  gray = sum(_is_gray(_domainbed(image, seed, 8)) for seed in range(400))
  assert 20 <= gray <= 60, gray


def test_domainbed_one_channel():
  image = _noise((30, 50, 1))
  out = _domainbed(image, 0, 16)
  assert out.shape == (16, 16, 1) and out.dtype == np.uint8
  assert not np.array_equal(out, _domainbed(image, 1, 16))


def test_resize_squash_keeps_the_whole_image():
  from bf_jax.data import augment
  halves = np.zeros((20, 40, 3), np.uint8)
  halves[:, 20:] = 255
  out = augment.resize_squash(halves, 16)
  assert out.shape == (16, 16, 3) and out.dtype == np.uint8
  assert (out[:, :7] == 0).all() and (out[:, 9:] == 255).all()
  assert (out[:, 7] < 128).all() and (out[:, 8] > 128).all()
  edge = np.zeros((20, 40, 1), np.uint8)
  edge[:, :5] = 255  # the left eighth: a central crop would drop it
  squashed = augment.resize_squash(edge, 16)
  assert squashed.shape == (16, 16, 1) and (squashed[:, 0] == 255).all()
  assert (augment.resize_center_crop(edge, 16) == 0).all()


def test_preprocess_eval_squash_differs_from_center_crop():
  from bf_jax.data import augment, pipeline
  image = _noise((30, 60, 3))
  record = {"image": image, "label": 0}
  kw = dict(mean=(0.5,) * 3, std=(0.25,) * 3, scale=255.0, augmentation="domainbed",
            image_size=16)
  squash = pipeline.Preprocess(**kw, eval_resize="squash")(record, None)
  crop = pipeline.Preprocess(**kw)(record, None)
  assert squash.shape == crop.shape == (16, 16, 3) and squash.dtype == np.float32
  np.testing.assert_allclose(squash, (augment.resize_squash(image, 16) / 255.0 - 0.5) / 0.25,
                             atol=1e-6)
  assert np.abs(squash - crop).max() > 1.0
  with pytest.raises(ValueError, match="'stretch'"):
    pipeline.Preprocess(**kw, eval_resize="stretch")


def test_preprocess_domainbed_train_gives_one_normalized_view():
  from bf_jax.data import pipeline
  image = _noise((40, 36, 3))
  prep = pipeline.Preprocess((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 255.0, "domainbed", 24,
                             eval_resize="squash")
  out = prep({"image": image, "label": 1}, np.random.default_rng(2))
  assert out.shape == (24, 24, 3) and out.dtype == np.float32
  raw = views.domainbed_view(image, np.random.default_rng(2), 24)
  want = (raw / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  np.testing.assert_allclose(out, want, atol=1e-5)


def test_preprocess_domainbed_of_float_images_goes_through_8_bit_pixels():
  from bf_jax.data import pipeline
  image = np.full((8, 8, 1), 0.5, np.float32)
  prep = pipeline.Preprocess((0.0,), (1.0,), 1.0, "domainbed")
  out = prep({"image": image, "label": 0}, np.random.default_rng(0))
  want = views.domainbed_view(np.full((8, 8, 1), 128, np.uint8), np.random.default_rng(0), 8)
  assert out.shape == (8, 8, 1)
  np.testing.assert_allclose(out, want / 255.0, atol=1e-6)


@pytest.mark.parametrize("recipe, shape, size", [("cifar", (32, 32, 3), 32),
                                                 ("imagenet", (40, 36, 3), 24),
                                                 ("small", (8, 8, 1), 8)])
def test_paco_views_shape_and_seeded(recipe, shape, size):
  image = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
  a = views.paco_views(image, np.random.default_rng(3), size, 0.2, recipe)
  b = views.paco_views(image, np.random.default_rng(3), size, 0.2, recipe)
  assert a.shape == (2, size, size, shape[-1]) and a.dtype == np.uint8
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a[0], a[1])


def test_paco_small_views_keep_the_query_and_shift_the_key_by_at_most_a_pixel():
  image = np.zeros((8, 8, 1), np.uint8)
  image[3:5, 3:5] = 200  # a blob away from the border: a shift keeps all of it
  moved = 0
  for seed in range(20):
    query, key = views.paco_views(image, np.random.default_rng(seed), 8, 0.2, "small")
    np.testing.assert_array_equal(query, image)
    bright = key[..., 0] >= np.sort(key.ravel())[-4]  # the blob: the four brightest pixels
    ys, xs = np.nonzero(bright)
    assert bright.sum() == 4 and abs(ys.min() - 3) <= 1 and abs(xs.min() - 3) <= 1
    moved += (ys.min(), xs.min()) != (3, 3)
  assert moved > 0


def test_paco_views_unknown_recipe_is_named():
  with pytest.raises(ValueError, match="recipe='svhn' is unknown"):
    views.paco_views(np.zeros((8, 8, 1), np.uint8), np.random.default_rng(0), 8, 0.2, "svhn")

"""DeiT augmentation: RandAugment ops on crafted images, draw statistics, random erasing, and
the "deit" branch of Preprocess. Small images and fixed seeds: cheap and never flaky."""

import math

import numpy as np
import pytest

from bf_jax import tasks
from bf_jax.data import augment
from bf_jax.data import randaugment as ra
from bf_jax.data.pipeline import Preprocess
from bf_jax.tasks import base_config

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FILL = np.array(ra.FILL, np.uint8)


def _noise(shape, seed=0):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _ramp():
  """16x16x3: every value 0..255 once per channel."""
  return np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), 3, axis=-1)


# --------------------------------------------------------------------------- single ops


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("name", ra.OPS)
def test_every_op_keeps_shape_and_dtype(name, channels):
  image = _noise((12, 10, channels))
  for negate in (False, True):
    out = ra.apply_op(image, name, ra.op_arg(name, 0.9, negate))
    assert out.shape == image.shape and out.dtype == np.uint8


def test_op_arg_follows_timm_level_mappings():
  arg = ra.op_arg
  assert arg("Rotate", 0.9, False) == pytest.approx(27.0)
  assert arg("Rotate", 0.9, True) == pytest.approx(-27.0)
  assert arg("ShearX", 0.5, True) == pytest.approx(-0.15)
  assert arg("TranslateYRel", 1.0, False) == pytest.approx(0.45)
  assert arg("ColorIncreasing", 0.9, False) == pytest.approx(1.81)
  assert arg("SharpnessIncreasing", 0.9, True) == pytest.approx(0.19)
  assert arg("ContrastIncreasing", 1.0, True) == 0.1  # max(0.1, 1 - 0.9): not 0.0999...
  assert arg("BrightnessIncreasing", 1.5, True) == 0.1  # magnitudes above 10 (max_magnitude > 10)
  assert arg("PosterizeIncreasing", 1.5, False) == -2  # ... posterize to black, as below
  assert [arg("PosterizeIncreasing", lv, False) for lv in (0.0, 0.5, 0.9, 1.0)] == [4, 2, 1, 0]
  assert [arg("SolarizeIncreasing", lv, False) for lv in (0.0, 0.5, 0.9, 1.0)] == [256, 128, 26, 0]
  assert [arg("SolarizeAdd", lv, True) for lv in (0.0, 0.5, 0.9)] == [0, 55, 99]
  assert all(arg(n, 0.9, True) is None for n in ("AutoContrast", "Equalize", "Invert"))


def test_invert():
  image = _noise((6, 7, 3))
  np.testing.assert_array_equal(ra.apply_op(image, "Invert", None), 255 - image)


@pytest.mark.parametrize("bits,mask", [(8, 0xFF), (4, 0xF0), (2, 0xC0), (1, 0x80), (0, 0x00),
                                       (-2, 0x00)])
def test_posterize_keeps_top_bits(bits, mask):
  image = _ramp()
  np.testing.assert_array_equal(ra.apply_op(image, "PosterizeIncreasing", bits), image & mask)


@pytest.mark.parametrize("threshold", [0, 26, 128, 256])
def test_solarize_inverts_pixels_at_or_above_threshold(threshold):
  image = _ramp().astype(int)
  expected = np.where(image >= threshold, 255 - image, image)
  np.testing.assert_array_equal(ra.apply_op(_ramp(), "SolarizeIncreasing", threshold), expected)


@pytest.mark.parametrize("add", [0, 99, 200])
def test_solarize_add_raises_only_dark_pixels(add):
  image = _ramp().astype(int)
  expected = np.where(image < 128, np.minimum(image + add, 255), image)
  np.testing.assert_array_equal(ra.apply_op(_ramp(), "SolarizeAdd", add), expected)


def test_autocontrast_and_equalize_stretch_a_narrow_range():
  image = (50 + _noise((64, 64, 3)) // 5).astype(np.uint8)  # values in [50, 101]
  for name in ("AutoContrast", "Equalize"):
    out = ra.apply_op(image, name, None)
    assert out.min() < 10 and out.max() > 245, name


def test_enhance_factor_one_is_identity_and_brightness_scales():
  image = _noise((10, 10, 3))
  for name in ("ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
               "SharpnessIncreasing"):
    np.testing.assert_array_equal(ra.apply_op(image, name, 1.0), image)
  half = ra.apply_op(image, "BrightnessIncreasing", 0.5).astype(int)
  assert np.abs(half - image.astype(int) * 0.5).max() <= 1


@pytest.mark.parametrize("resample", [ra.RESAMPLE, ra.Image.BILINEAR])
def test_rotate_by_90_is_a_quarter_turn_counterclockwise(resample):
  image = _noise((9, 9, 3))
  np.testing.assert_array_equal(ra.apply_op(image, "Rotate", 90.0, resample), np.rot90(image))


def test_fill_is_timm_img_mean():
  assert ra.FILL == tuple(round(255 * m) for m in MEAN) == (124, 116, 104)


def test_rotate_fills_corners_with_the_mean_pixel_and_keeps_the_center():
  image = np.full((21, 21, 3), 7, np.uint8)
  out = ra.apply_op(image, "Rotate", 30.0)
  for corner in (out[0, 0], out[0, -1], out[-1, 0], out[-1, -1]):
    np.testing.assert_array_equal(corner, FILL)
  np.testing.assert_array_equal(out[8:13, 8:13], image[8:13, 8:13])


def test_translate_shifts_by_a_fraction_of_the_size_and_fills():
  image = _noise((8, 8, 3))
  left = ra.apply_op(image, "TranslateXRel", 0.25)  # content moves 2 pixels left
  np.testing.assert_array_equal(left[:, :6], image[:, 2:])
  np.testing.assert_array_equal(left[:, 6:], np.broadcast_to(FILL, (8, 2, 3)))
  down = ra.apply_op(image, "TranslateYRel", -0.25)  # content moves 2 pixels down
  np.testing.assert_array_equal(down[2:], image[:-2])
  np.testing.assert_array_equal(down[:2], np.broadcast_to(FILL, (2, 8, 3)))


def test_shear_zero_is_identity_and_shear_moves_pixels():
  image = _noise((8, 8, 3))
  for name in ("ShearX", "ShearY"):
    np.testing.assert_array_equal(ra.apply_op(image, name, 0.0), image)
    assert not np.array_equal(ra.apply_op(image, name, 0.27), image)


def test_unknown_op_and_bad_channels_are_refused():
  with pytest.raises(ValueError, match="unknown RandAugment op"):
    ra.apply_op(_noise((4, 4, 3)), "Cutout", 1.0)
  with pytest.raises(ValueError, match="C in \\(1, 3\\)"):
    ra.randaugment(_noise((4, 4, 4)), np.random.default_rng(0))


# --------------------------------------------------------------------------- draws


def test_op_choice_is_uniform_and_half_of_the_ops_apply():
  n = 15000
  drawn = ra.draw_ops(np.random.default_rng(0), num_ops=n)
  counts = np.array([sum(d[0] == name for d in drawn) for name in ra.OPS])
  assert np.abs(counts - n / 15).max() < 5 * math.sqrt(n / 15)  # sd ~ 31
  applied = sum(d[1] for d in drawn)
  assert abs(applied - n / 2) < 5 * math.sqrt(n / 4)
  negated = sum(d[3] for d in drawn)
  assert abs(negated - n / 2) < 5 * math.sqrt(n / 4)


def test_magnitude_is_normal_around_nine_and_clipped_to_zero_ten():
  n = 8000
  mags = np.array([d[2] for d in ra.draw_ops(np.random.default_rng(1), num_ops=n)])
  assert mags.min() >= 0.0 and mags.max() == 10.0
  assert 0.015 < np.mean(mags == 10.0) < 0.03  # P(N(9, 0.5) > 10) = 0.023
  assert abs(np.median(mags) - 9.0) < 0.03
  wide = np.array([d[2] for d in ra.draw_ops(np.random.default_rng(2), 2000, 5.0, 5.0)])
  assert wide.min() == 0.0 and wide.max() == 10.0 and np.mean(wide == 0.0) > 0.1
  fixed = [d[2] for d in ra.draw_ops(np.random.default_rng(3), 50, magnitude_std=0.0)]
  assert fixed == [9.0] * 50


def test_draws_come_in_a_fixed_order_per_op():
  """Op index, apply coin, magnitude noise, sign: one op after the other."""
  for seed in range(5):
    rng = np.random.default_rng(seed)
    expected = []
    for _ in range(3):
      name, applies = ra.OPS[rng.integers(15)], rng.random() < 0.5
      magnitude, negate = min(10.0, max(0.0, 9 + 0.5 * rng.standard_normal())), rng.random() < 0.5
      expected.append((name, applies, magnitude, negate))
    assert ra.draw_ops(np.random.default_rng(seed), 3) == expected


def test_draws_do_not_depend_on_the_probability():
  """Every op draws its coin, noise and sign whether or not it applies."""
  never = ra.draw_ops(np.random.default_rng(4), 20, prob=0.0)
  always = ra.draw_ops(np.random.default_rng(4), 20, prob=1.0)
  assert not any(d[1] for d in never) and all(d[1] for d in always)
  assert [(d[0], d[2], d[3]) for d in never] == [(d[0], d[2], d[3]) for d in always]


def test_randaugment_replays_its_draws():
  image = _noise((20, 24, 3), seed=5)
  for seed in range(8):
    out = ra.randaugment(image, np.random.default_rng(seed), num_ops=3, prob=0.8)
    expected = image
    for name, applies, m, negate in ra.draw_ops(np.random.default_rng(seed), 3, prob=0.8):
      if applies:
        expected = ra.apply_op(expected, name, ra.op_arg(name, m / 10, negate))
    np.testing.assert_array_equal(out, expected)


def test_randaugment_is_deterministic_per_seed():
  image = _noise((20, 24, 3), seed=6)
  outs = [ra.randaugment(image, np.random.default_rng(s)) for s in range(6)]
  for s, out in enumerate(outs):
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, ra.randaugment(image, np.random.default_rng(s)))
  assert len({o.tobytes() for o in outs}) > 2


def test_randaugment_with_prob_zero_is_identity_and_handles_gray():
  image = _noise((10, 12, 3), seed=7)
  np.testing.assert_array_equal(ra.randaugment(image, np.random.default_rng(0), prob=0.0), image)
  gray = _noise((10, 12, 1), seed=8)
  for seed in range(6):
    out = ra.randaugment(gray, np.random.default_rng(seed), prob=1.0)
    assert out.shape == gray.shape and out.dtype == np.uint8


# --------------------------------------------------------------------------- random erasing


def _erased(seed, prob=0.25, shape=(32, 32, 3)):
  image = np.full(shape, 5.0, np.float32)  # noise never draws exactly 5.0
  out = ra.random_erasing(image, np.random.default_rng(seed), prob=prob)
  assert out.shape == shape and out.dtype == np.float32
  assert (image == 5.0).all()  # the input is never written to
  return out != 5.0


def test_random_erasing_rate_is_prob():
  n = 2000
  rate = np.mean([_erased(seed).any() for seed in range(n)])
  assert abs(rate - 0.25) < 4 * math.sqrt(0.25 * 0.75 / n)


def test_random_erasing_erases_one_rectangle_of_bounded_area_and_nothing_else():
  area = 32 * 32
  for seed in range(60):
    mask = _erased(seed, prob=1.0)
    assert mask.any()
    assert (mask == mask[..., :1]).all()  # every channel of an erased pixel
    rows, cols = np.flatnonzero(mask[..., 0].any(1)), np.flatnonzero(mask[..., 0].any(0))
    h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    assert mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()  # a full rectangle ...
    assert mask.sum() == h * w * 3  # ... and untouched outside it
    slack = (h + w + 1) / 2 + 0.25  # rounding h and w to whole pixels
    assert 0.02 * area - slack <= h * w <= area / 3 + slack
    assert h < 32 and w < 32


def test_erase_box_area_and_aspect_statistics():
  rng = np.random.default_rng(9)
  boxes = [ra.erase_box(rng, 224, 224) for _ in range(2000)]
  frac = np.array([h * w / 224 ** 2 for _, _, h, w in boxes])
  assert frac.min() > 0.019 and frac.max() < 0.336
  assert abs(frac.mean() - (0.02 + 1 / 3) / 2) < 0.01
  log_aspect = np.array([math.log(h / w) for _, _, h, w in boxes])
  assert np.abs(log_aspect).max() < math.log(1 / 0.3) + 0.05
  assert abs(log_aspect.mean()) < 0.05
  for top, left, h, w in boxes:
    assert 0 <= top <= 224 - h and 0 <= left <= 224 - w


def test_random_erasing_gives_up_when_no_box_fits():
  assert ra.erase_box(np.random.default_rng(0), 4, 4, 0.99, 1.0, 1.0) is None
  image = np.zeros((4, 4, 3), np.float32)
  out = ra.random_erasing(image, np.random.default_rng(0), 1.0, 0.99, 1.0, 1.0)
  np.testing.assert_array_equal(out, image)


# --------------------------------------------------------------------------- Preprocess


def test_preprocess_deit_is_crop_flip_randaugment_normalize_erase():
  image = _noise((40, 30, 3), seed=10)
  pre = Preprocess(MEAN, STD, 255.0, "deit", image_size=16)
  for seed in range(6):
    out = pre({"image": image, "label": 0}, np.random.default_rng(seed))
    assert out.shape == (16, 16, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, pre({"image": image}, np.random.default_rng(seed)))
    rng = np.random.default_rng(seed)
    x = augment.flip(augment.random_resized_crop(image, rng, 16, scale=(0.08, 1.0)), rng)
    x = augment.normalize(ra.randaugment(x, rng), MEAN, STD, 255.0)
    np.testing.assert_array_equal(out, ra.random_erasing(x, rng))
  a, b = (pre({"image": image}, np.random.default_rng(s)) for s in (0, 1))
  assert not np.array_equal(a, b)


def test_preprocess_deit_takes_float_gray_images_and_evaluates_plainly():
  digits = np.random.default_rng(11).random((12, 12)).astype(np.float32)  # in [0, 1]
  pre = Preprocess((0.5,), (0.5,), 1.0, "deit")
  out = pre({"image": digits}, np.random.default_rng(0))
  assert out.shape == (12, 12, 1) and out.dtype == np.float32
  np.testing.assert_allclose(pre({"image": digits}, None)[..., 0], (digits - 0.5) / 0.5)


def test_config_check_accepts_deit_augmentation():
  assert "deit" in augment.AUGMENTATIONS
  config = base_config()
  config.data.augment = "deit"
  tasks.validate(config)
  config.data.augment = "deit3"
  with pytest.raises(ValueError, match="data.augment"):
    tasks.validate(config)

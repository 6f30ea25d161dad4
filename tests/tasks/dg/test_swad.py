"""SWAD's window on scripted loss curves, and the online dense averager's step boundaries."""

import math

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from bf_jax.tasks.dg.swad import SwadAverager, swad_window

# Valley, defaults N_s=3, N_e=6, r=1.3. t_s: L0..L2 each have a smaller loss within their next
# 3; L3=1.0 <= min(1.0, 1.1, 1.05) -> t_s=3, threshold 1.3. t_e: L7..L12 = 1.4..1.9 are all
# > 1.3 -> t_e=7; every window starting at 4, 5 or 6 holds one of 1.1, 1.05, 1.2 <= 1.3.
VALLEY = [5.0, 3.0, 2.0, 1.0, 1.1, 1.05, 1.2, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0]
# Never rises: t_s=2 (2.0 <= min(2.0, 2.5, 2.2); L1=3.0 > 2.0). Threshold 2.6; no loss is
# strictly above it (2.6 itself is not), so t_e=None.
FLAT = [4.0, 3.0, 2.0, 2.5, 2.2, 2.1, 2.3, 2.0, 2.4, 2.6]
# Noisy, N_s=3, N_e=2: L1=2.0 is a local minimum (3.0 > 2.0 < 2.5) but L3=1.5 < 2.0 is among
# its next 3 -> not t_s; L3=1.5 <= min(1.5, 1.8, 1.7) -> t_s=3, threshold 1.95. Pairs
# (L_i, L_i+1) from i=4: (1.8,1.7) (1.7,1.9) (1.9,2.0) (2.0,1.9) (1.9,2.1) each hold a value
# <= 1.95; (L9, L10) = (2.1, 2.2) are both > 1.95 -> t_e=9.
NOISY = [3.0, 2.0, 2.5, 1.5, 1.8, 1.7, 1.9, 2.0, 1.9, 2.1, 2.2, 2.3]
# Tie and a tolerated excursion, defaults: L1=1.0 <= min(1.0, 1.0, 1.0) -> t_s=1 (ties count),
# threshold 1.3. L4..L8 = 1.5 are 5 < N_e=6 in a row, broken by L9=1.0; L10..L15 = 1.6 (6) ->
# t_e=10.
SPIKE = [2.0, 1.0, 1.0, 1.0] + [1.5] * 5 + [1.0] + [1.6] * 6


@pytest.mark.parametrize("losses, kwargs, expected", [
    (VALLEY, {}, (3, 7)),
    (FLAT, {}, (2, None)),
    (NOISY, {"n_tolerance": 2}, (3, 9)),
    (SPIKE, {}, (1, 10)),
    (SPIKE[:15], {}, (1, None)),  # the last run of 1.6 is one evaluation short of N_e
    ([3.0, 2.0], {}, (None, None)),  # fewer than N_s evaluations
    ([], {}, (None, None)),
    ([5.0, 4.0, 3.0, 2.0, 1.0], {}, (None, None)),  # still decreasing: L_i > L_i+1 always
    ([5.0, 4.0, 3.0], {"n_converge": 1}, (0, None)),  # N_s=1: every L_i is its own minimum
    # r=1 (ratio 0): threshold 1.0; L2=1.5 > 1.0 with N_e=1 -> t_e=2; L1=1.0 is not > 1.0.
    ([1.0, 1.0, 1.5], {"n_converge": 1, "n_tolerance": 1, "tolerance_ratio": 0.0}, (0, 2)),
])
def test_swad_window_on_scripted_curves(losses, kwargs, expected):
  assert swad_window(losses, **kwargs) == expected


def _train(averager, losses, eval_every, extra_steps=0, first_step=1):
  """Steps 1, 2, ...: add_step({"w": step, "w2": [step^2]}), then an evaluation after steps E,
  2E, ... reporting the next scripted loss; then ``extra_steps`` steps without evaluation."""
  step = first_step
  for loss in losses:
    for _ in range(eval_every):
      averager.add_step(_params(step))
      step += 1
    averager.end_segment(loss)
  for _ in range(extra_steps):
    averager.add_step(_params(step))
    step += 1
  return step


def _params(step):
  return {"w": jnp.float32(step), "nested": {"w2": jnp.array([step ** 2], jnp.float32)}}


def _check_mean_of_steps(averaged, steps):
  steps = np.asarray(steps, np.float64)
  expected = {"w": np.float32(steps.mean()),
              "nested": {"w2": np.float32([(steps ** 2).mean()])}}
  chex.assert_trees_all_close(averaged, expected, rtol=1e-6)


def test_dense_average_covers_exactly_segments_t_s_to_t_e_minus_1():
  # NOISY with N_e=2, E=4: t_s=3, t_e=9 -> segments 3..8 = steps 3*4+1=13 .. 9*4=36. Squared
  # steps are averaged too, so a window shifted or widened by a step at both ends is caught.
  averager = SwadAverager(n_tolerance=2)
  _train(averager, NOISY, eval_every=4, extra_steps=3)
  assert (averager.t_s, averager.t_e) == (3, 9)
  _check_mean_of_steps(averager.averaged(), range(13, 37))
  _check_mean_of_steps(averager.averaged(final=False), range(13, 37))
  assert averager.n_averaged == 24


def test_done_at_t_e_and_later_steps_change_nothing():
  # NOISY, N_e=2: t_e=9 is known at evaluation t_e + N_e - 1 = 10, after step 11*4 = 44.
  averager = SwadAverager(n_tolerance=2)
  step = _train(averager, NOISY[:10], eval_every=4)
  assert not averager.done and averager.t_e is None
  step = _train(averager, NOISY[10:11], eval_every=4, first_step=step)
  assert averager.done and averager.t_e == 9
  before = averager.averaged()
  _train(averager, [0.1, 50.0, 0.1], eval_every=4, extra_steps=5, first_step=step)
  chex.assert_trees_all_equal(averager.averaged(), before)
  assert averager.held_sums == 1  # only the committed total is left
  _check_mean_of_steps(before, range(13, 37))


def test_spike_window_and_early_end_detection():
  # SPIKE, defaults, E=2: t_s=1, t_e=10 -> segments 1..9 = steps 3..20; the excursion at
  # segments 4..8 is inside the window.
  averager = SwadAverager()
  _train(averager, SPIKE, eval_every=2)
  assert averager.done and (averager.t_s, averager.t_e) == (1, 10)
  _check_mean_of_steps(averager.averaged(), range(3, 21))


def test_no_t_e_averages_up_to_the_last_step():
  # FLAT, E=3: t_s=2, no t_e -> segments 2..9 = steps 7..30 and the two steps 31, 32 after the
  # last evaluation. Every loss is <= the threshold 2.6, so each segment is known to be inside
  # as soon as its own loss arrives: final=False gives steps 7..30.
  averager = SwadAverager()
  _train(averager, FLAT, eval_every=3, extra_steps=2)
  assert (averager.t_s, averager.t_e, averager.done) == (2, None, False)
  _check_mean_of_steps(averager.averaged(), range(7, 33))
  _check_mean_of_steps(averager.averaged(final=False), range(7, 31))


def test_undecided_excursion_counts_only_at_the_end():
  # SPIKE[:8] = [2, 1, 1, 1, 1.5, 1.5, 1.5, 1.5], E=1: t_s=1; segments 1..3 are committed;
  # segments 4..7 (losses above 1.3, fewer than N_e) are undecided. final=True: steps 2..8 plus
  # step 9 after the last evaluation; final=False: steps 2..4.
  averager = SwadAverager()
  _train(averager, SPIKE[:8], eval_every=1, extra_steps=1)
  _check_mean_of_steps(averager.averaged(final=False), range(2, 5))
  _check_mean_of_steps(averager.averaged(), range(2, 10))


def test_fallback_without_t_s_averages_everything_after_the_first_evaluation():
  # Still decreasing (no t_s), E=2: segments 1..3 = steps 3..8 and step 9 after the last eval.
  averager = SwadAverager()
  _train(averager, [5.0, 4.0, 3.0, 2.0], eval_every=2, extra_steps=1)
  assert averager.t_s is None
  _check_mean_of_steps(averager.averaged(), range(3, 10))
  with pytest.raises(ValueError, match="nothing to average"):
    averager.averaged(final=False)
  # Fewer than N_s evaluations: one evaluation after steps 1, 2, then steps 3, 4.
  averager = SwadAverager()
  _train(averager, [5.0], eval_every=2, extra_steps=2)
  _check_mean_of_steps(averager.averaged(), [3, 4])


def test_nothing_after_the_first_evaluation_raises():
  averager = SwadAverager()
  with pytest.raises(ValueError, match="nothing to average"):
    averager.averaged()
  _train(averager, [], eval_every=1, extra_steps=3)  # steps, but no evaluation yet
  with pytest.raises(ValueError, match="nothing to average"):
    averager.averaged()
  averager.end_segment(1.0)
  with pytest.raises(ValueError, match="nothing to average"):
    averager.averaged()


def _as_restored_without_target(state):
  """What a checkpoint restore without a target looks like: numpy leaves, 0-d arrays for the
  numbers, lists turned into {"0": ..., "1": ...}."""
  if isinstance(state, dict):
    return {k: _as_restored_without_target(v) for k, v in state.items()}
  if isinstance(state, list):
    return {str(i): _as_restored_without_target(v) for i, v in enumerate(state)}
  return np.array(state)


@pytest.mark.parametrize("cut", [2 * 5 + 1, 2 * 8, 2 * 12 + 1])
@pytest.mark.parametrize("restored_without_target", [False, True])
def test_state_dict_round_trip_mid_training(cut, restored_without_target):
  # SPIKE, E=2: evaluation k after step 2(k+1), t_s=1 known at evaluation 3 (step 8), t_e=10
  # known at evaluation 15 (step 32), steps 33, 34 ignored. Cut after step 11 (segment 4
  # undecided, segment 5 open), 16 (segments 4..7 of the excursion queued), 25 (segments 10,
  # 11 of the final rise queued, segment 12 open). Window: segments 1..9 = steps 3..20.
  def run(split):
    averager = SwadAverager()
    for step in range(1, 2 * len(SPIKE) + 3):
      averager.add_step(_params(step))
      if step % 2 == 0 and step // 2 <= len(SPIKE):
        averager.end_segment(SPIKE[step // 2 - 1])
      if step == split:
        state = averager.state_dict()
        if restored_without_target:
          state = _as_restored_without_target(state)
        averager = SwadAverager.from_state_dict(state)
    return averager
  uncut, resumed = run(None), run(cut)
  assert (resumed.t_s, resumed.t_e, resumed.n_evals) == (uncut.t_s, uncut.t_e, uncut.n_evals)
  chex.assert_trees_all_close(resumed.averaged(), uncut.averaged(), rtol=1e-6)
  _check_mean_of_steps(resumed.averaged(), range(3, 21))


@pytest.mark.parametrize("n_converge, n_tolerance", [(3, 6), (6, 2), (1, 1), (4, 4)])
def test_online_matches_the_offline_window_with_bounded_memory(n_converge, n_tolerance):
  # Random-walk curves that dip and rise: the online decisions equal swad_window's, the average
  # equals the mean of the steps the docstring's convention names, and the held sums stay
  # within max(N_s, N_e) + 1 after every call and at the peak inside end_segment.
  rng = np.random.default_rng(n_converge * 10 + n_tolerance)
  bound = max(n_converge, n_tolerance) + 1
  eval_every, extra = 2, 1
  for _ in range(6):
    losses = list(2.0 + np.cumsum(rng.normal(0.0, 0.3, size=int(rng.integers(1, 25)))).clip(-1.9))
    averager = SwadAverager(n_converge, n_tolerance, 0.1)
    step = 1
    for loss in losses:
      for _ in range(eval_every):
        averager.add_step(_params(step))
        step += 1
        assert averager.held_sums <= bound
      averager.end_segment(loss)
      assert averager.held_sums <= bound
    for _ in range(extra):
      averager.add_step(_params(step))
      step += 1
    assert averager.peak_held_sums <= bound
    t_s, t_e = swad_window(losses, n_converge, n_tolerance, 0.1)
    assert (averager.t_s, averager.t_e) == (t_s, t_e)
    last = step - 1
    if t_s is None:  # fallback: every step after evaluation 0
      first, stop = eval_every + 1, last
    else:
      first, stop = t_s * eval_every + 1, last if t_e is None else t_e * eval_every
    if first > stop:
      with pytest.raises(ValueError, match="nothing to average"):
        averager.averaged()
    else:
      _check_mean_of_steps(averager.averaged(), range(first, stop + 1))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_sums_are_float32_copies_of_the_params(dtype):
  averager = SwadAverager(n_converge=1)
  params = {"w": jnp.full((3,), 1.0, dtype)}
  averager.add_step(params)
  params["w"].delete()  # a step that donates its state frees the caller's buffer
  # 1 + 2^-9 rounds to 1 in bf16; its average with 1 must not.
  averager.add_step({"w": jnp.full((3,), 1.0 + 2.0 ** -8, jnp.float32)})
  averager.end_segment(1.0)
  out = averager.averaged()
  assert out["w"].dtype == jnp.float32
  np.testing.assert_allclose(out["w"], 1.0 + 2.0 ** -9, rtol=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_converge": 0}, "n_converge=0"),
    ({"n_converge": 2.5}, "n_converge=2.5"),
    ({"n_tolerance": 0}, "n_tolerance=0"),
    ({"tolerance_ratio": -0.1}, "tolerance_ratio=-0.1"),
    ({"tolerance_ratio": math.nan}, "tolerance_ratio=nan"),
])
def test_bad_arguments_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    SwadAverager(**kwargs)
  with pytest.raises(ValueError, match=match):
    swad_window([1.0, 2.0], **kwargs)


def test_non_finite_loss_names_the_evaluation():
  averager = SwadAverager()
  averager.end_segment(2.0)
  averager.end_segment(1.5)
  with pytest.raises(ValueError, match="evaluation 2 is nan"):
    averager.end_segment(float("nan"))
  with pytest.raises(ValueError, match="evaluation 1 is inf"):
    swad_window([1.0, math.inf, 2.0])


def test_params_that_change_structure_or_are_not_float_raise():
  averager = SwadAverager()
  averager.add_step({"w": jnp.zeros(2)})
  with pytest.raises(ValueError, match="same params tree"):
    averager.add_step({"w": jnp.zeros(2), "b": jnp.zeros(1)})
  with pytest.raises(ValueError, match=r"\['step'\].*int32"):
    SwadAverager().add_step({"step": jnp.int32(3)})

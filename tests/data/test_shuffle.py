"""The epoch-at-a-time shuffle is grain's own order, element for element and batch for batch."""

import grain
import numpy as np
import pytest
from grain._src.python.experimental.index_shuffle.python import index_shuffle_module

from bf_jax.data import shuffle


@pytest.mark.parametrize("n", [1, 2, 3, 7, 342, 1000, 8000, 65536, 70000, 300000])
@pytest.mark.parametrize("seed", [0, 5, 2**32 - 1])
def test_an_epoch_is_grains_index_shuffle(n, seed):
  perm = shuffle.epoch_permutation(n, seed)
  positions = np.unique(np.random.default_rng(n).integers(0, n, 60))
  want = [index_shuffle_module.index_shuffle(int(r), max_index=n - 1, seed=seed, rounds=4)
          if n > 1 else 0 for r in positions]
  assert perm[positions].tolist() == want
  if n <= 70000:
    assert sorted(perm.tolist()) == list(range(n))  # a permutation (grain's, too)


def test_the_batches_are_grains_across_epochs_and_far_into_the_stream():
  indices = np.arange(100, 442)  # the digits' size: most of a 2^16 block is walked
  grains = grain.MapDataset.range(len(indices)).shuffle(seed=7).repeat().map(
      lambda i: indices[i]).batch(64)
  ours = shuffle.shuffled_batches(indices, 7, 64)
  for step in [*range(12), 1000, 12345]:  # 342 / 64: batches that straddle two epochs
    np.testing.assert_array_equal(ours[step], grains[step])
    assert ours[step].dtype == grains[step].dtype


def test_the_round_keys_are_cpp_seed_seq_words():
  # Printed by g++ 12 (libstdc++): std::seed_seq s{seed}; uint32_t o[4]; s.generate(o, o + 4);
  assert shuffle.round_keys(0) == [2963817213, 69796629, 1973464570, 532167439]
  assert shuffle.round_keys(1) == [1304574429, 1385991880, 1625791478, 1649374289]
  assert shuffle.round_keys(2**32 - 1) == [3258260622, 2976084991, 227751652, 537413182]

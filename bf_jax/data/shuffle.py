"""Grain's global shuffle, a whole epoch at a time in numpy: the same order, bit for bit.

``grain.MapDataset.range(n).shuffle(seed).repeat()`` places position r of epoch e at
``index_shuffle(r, n - 1, seed + e, rounds=4)``: a 4-round Simon-style Feistel cipher on blocks
of B = max(16, ceil(log2(n - 1)) rounded up to even) bits, keyed by ``std::seed_seq{seed}``,
applied again until the result is at most n - 1 (cycle walking). Grain computes it one Python
call per element; for a small set most of the 2^16 block is walked (87 us an element for the
342 digits, 5.6 ms per batch of 64). Here an epoch is a few vectorized passes.
``tests/data/test_shuffle.py`` holds this to grain's own function.
"""

from __future__ import annotations

import functools
import math
import sys
import threading

import grain
import numpy as np

ROUNDS = 4
_MASK32 = 0xFFFFFFFF


def round_keys(seed: int, rounds: int = ROUNDS) -> list[int]:
  """``std::seed_seq{seed}.generate`` of ``rounds`` 32-bit words (the C++ standard's algorithm)."""
  n, s = rounds, 1
  out = [0x8B8B8B8B] * n
  t = 11 if n >= 623 else 7 if n >= 68 else 5 if n >= 39 else 3 if n >= 7 else (n - 1) // 2
  p = (n - t) // 2
  q = p + t
  m = max(s + 1, n)
  mix = lambda x: x ^ (x >> 27)
  for k in range(m):
    r1 = (1664525 * mix(out[k % n] ^ out[(k + p) % n] ^ out[(k - 1) % n])) & _MASK32
    r2 = (r1 + (s if k == 0 else (k % n + seed if k <= s else k % n))) & _MASK32
    out[(k + p) % n] = (out[(k + p) % n] + r1) & _MASK32
    out[(k + q) % n] = (out[(k + q) % n] + r2) & _MASK32
    out[k % n] = r2
  for k in range(m, m + n):
    r3 = (1566083941 * mix((out[k % n] + out[(k + p) % n] + out[(k - 1) % n]) & _MASK32)) \
        & _MASK32
    r4 = (r3 - k % n) & _MASK32
    out[(k + p) % n] ^= r3
    out[(k + q) % n] ^= r4
    out[k % n] = r4
  return out


def block_bits(max_index: int) -> int:
  bits = math.ceil(math.log2(max_index))
  return max(bits + bits % 2, 16)


def _encrypt(x: np.ndarray, keys: list[int], word: int) -> np.ndarray:
  dtype = x.dtype.type
  mask = dtype((1 << word) - 1)
  rot = lambda v, r: ((v << dtype(r % word)) | (v >> dtype(word - r % word))) & mask
  f = lambda v: (rot(v, 1) & rot(v, 8)) ^ rot(v, 2)
  left, right = (x >> dtype(word)) & mask, x & mask
  for i in range(0, len(keys), 2):
    left = left ^ f(right) ^ dtype(keys[i] & int(mask))
    right = right ^ f(left) ^ dtype(keys[i + 1] & int(mask))
  return (left << dtype(word)) | right


def epoch_permutation(n: int, seed: int) -> np.ndarray:
  """[index_shuffle(r, n - 1, seed, 4) for r in range(n)], vectorized. Small sets' epochs are
  kept (read-only): paired runs in one process (the demo's two arms) draw the same ones."""
  if n <= _KEEP_BELOW:
    return _kept_permutation(n, seed % 2**32)
  return _permutation(n, seed)


_KEEP_BELOW = 16384  # at most 128 KiB an epoch, 512 epochs kept


@functools.lru_cache(maxsize=512)
def _kept_permutation(n: int, seed: int) -> np.ndarray:
  perm = _permutation(n, seed)
  perm.flags.writeable = False
  return perm


def _permutation(n: int, seed: int) -> np.ndarray:
  if n == 1:
    return np.zeros(1, np.int64)
  keys, bits = round_keys(seed % 2**32), block_bits(n - 1)
  last = np.uint64(n - 1)
  if 2**bits <= 8 * n:  # walks are short: follow each one
    out = np.arange(n, dtype=np.uint64)
    todo = np.arange(n)
    while len(todo):
      out[todo] = _encrypt(out[todo], keys, bits // 2)
      todo = todo[out[todo] > last]
    return out.astype(np.int64)
  # A small set in a large block: encrypt the whole block once, then let every entry jump to
  # where its pointer points until it lands at most n - 1 (pointer doubling: log2 of the
  # longest walk passes). Entries on cycles with no such value never land; none is asked for.
  jump = _encrypt(np.arange(2**bits, dtype=np.uint32 if bits <= 32 else np.uint64), keys,
                  bits // 2)
  while (jump[:n] > last).any():
    jump = np.where(jump > last, jump[jump], jump)
  return jump[:n].astype(np.int64)


class _EpochBatches:
  """step -> batch of indices; keeps the last few epochs' permutations. Picklable (grain's
  worker processes get a copy without the cache)."""

  def __init__(self, indices: np.ndarray, seed: int, batch_size: int):
    self.__setstate__({"indices": indices, "seed": seed, "batch_size": batch_size})

  def __getstate__(self) -> dict:
    return {"indices": self.indices, "seed": self.seed, "batch_size": self.batch_size}

  def __setstate__(self, state: dict) -> None:
    self.__dict__.update(state)
    self._cache: dict[int, np.ndarray] = {}
    self._lock = threading.Lock()  # grain's threads read a few batches ahead

  def _epoch(self, e: int) -> np.ndarray:
    with self._lock:
      if e not in self._cache:
        while len(self._cache) > 4:  # epochs go by in order
          self._cache.pop(min(self._cache))
        self._cache[e] = self.indices[epoch_permutation(len(self.indices), self.seed + e)]
      return self._cache[e]

  def __call__(self, step: int) -> np.ndarray:
    positions = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
    epochs, within = np.divmod(positions, len(self.indices))
    return np.concatenate([self._epoch(int(e))[within[epochs == e]] for e in np.unique(epochs)])


def shuffled_batches(indices: np.ndarray, seed: int, batch_size: int) -> grain.MapDataset:
  """Step -> the global batch's entries of ``indices``: the same as
  ``MapDataset.range(len(indices)).shuffle(seed).repeat().map(indices.__getitem__)
  .batch(batch_size)``, one epoch's permutation computed at a time."""
  return grain.MapDataset.range(sys.maxsize // batch_size).map(
      _EpochBatches(np.asarray(indices), seed, batch_size))

"""PaCo's queue of momentum keys and their labels: a ring buffer in the train state.

It lives in the checkpoint with the parameters, so a resumed run contrasts against the same
keys as the uninterrupted one. Every device holds the same copy and enqueues the same
all-gathered keys, so no collective is needed to keep the copies equal.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def init(size: int, dim: int, num_classes: int, seed: int) -> dict[str, np.ndarray]:
  """A queue of ``size`` random unit keys with random labels, as PaCo's (and MoCo's) start: the
  first ``size / global batch`` steps contrast partly against these."""
  rng = np.random.default_rng([seed, 0x9AC0])
  keys_KxD = rng.standard_normal((size, dim)).astype(np.float32)
  keys_KxD /= np.linalg.norm(keys_KxD, axis=1, keepdims=True)
  labels_K = rng.integers(0, num_classes, size).astype(np.int32)
  return {"keys": keys_KxD, "labels": labels_K, "ptr": np.zeros((), np.int32)}


def enqueue(queue: dict[str, jax.Array], keys_GxD: jax.Array,
            labels_G: jax.Array) -> dict[str, jax.Array]:
  """The queue with ``keys`` written from ``ptr`` on, wrapping around the end; the oldest keys
  are the ones overwritten. Needs G <= queue size (the config checks say so)."""
  size = queue["keys"].shape[0]
  rows_G = (queue["ptr"] + jnp.arange(keys_GxD.shape[0])) % size
  return {"keys": queue["keys"].at[rows_G].set(keys_GxD.astype(queue["keys"].dtype)),
          "labels": queue["labels"].at[rows_G].set(labels_G.astype(queue["labels"].dtype)),
          "ptr": ((queue["ptr"] + keys_GxD.shape[0]) % size).astype(jnp.int32)}

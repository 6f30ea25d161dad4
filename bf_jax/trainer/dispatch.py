"""Several train steps per dispatch (``config.steps_per_dispatch`` = k): a ``lax.scan`` of the
task's own step over k batches stacked along a new leading axis.

A small step (the digits' MLP: about a millisecond) costs less than the host's round trip around
it (fetching the batch, dispatching the program, the loop's checks); k steps in one program pay
that once. The steps are the same steps: each sees its own batch and step number.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bf_jax.trainer import sharding


def scanned(train_step: Callable, k: int) -> Callable:
  """``(state, batches [k, B, ...], first_step) -> (state, metrics [k])`` running ``train_step``
  on each batch in turn."""

  def many(state, batches: dict, first_step: jax.Array):
    def body(state, xs):
      batch, i = xs
      return train_step(state, batch, first_step + i)

    return jax.lax.scan(body, state, (batches, jnp.arange(k, dtype=jnp.int32)))

  return jax.jit(many, donate_argnums=0)


def next_batches(batches: Iterator[dict], k: int, mesh: jax.sharding.Mesh) -> dict:
  """The next batch on the mesh (k = 1), or the next k stacked along a new leading axis."""
  if k == 1:
    return sharding.put_batch(next(batches), mesh)
  if hasattr(batches, "take"):  # a device-resident set gathers k steps at once
    return batches.take(k)
  group = [next(batches) for _ in range(k)]
  rows = NamedSharding(mesh, P(None, sharding.AXIS))
  out = {}
  for key in group[0]:
    parts = [b[key] for b in group]
    if isinstance(parts[0], jax.Array):  # already on the mesh (a device-resident set)
      out[key] = _stack(rows)(*parts)
    else:
      out[key] = jax.make_array_from_process_local_data(rows, np.stack(parts))
  return out


_STACKS: dict = {}


def _stack(rows: NamedSharding) -> Callable:
  if rows not in _STACKS:
    _STACKS[rows] = jax.jit(lambda *xs: jnp.stack(xs), out_shardings=rows)
  return _STACKS[rows]


def per_step(window: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
  """Fetched metrics, one dict per step: a dispatch's stacked [k] values split."""
  if k == 1:
    return window
  out = []
  for metrics in window:
    if np.ndim(next(iter(metrics.values()))) == 0:  # split at an earlier fetch
      out.append(metrics)
    else:
      out += [{name: v[i] for name, v in metrics.items()} for i in range(k)]
  return out

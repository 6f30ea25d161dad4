"""Runs of identical blocks as one ``lax.scan`` over their stacked parameters (model.scan_layers).

XLA compiles a scan's body once, so a run of L blocks costs one block's compile instead of L.
The two layouts of a backbone's blocks, as parameter (or state) trees of nested dicts:

- unrolled: ``blocks``: {i: block i} for every block;
- scanned: ``block_stacks``: {j: run j's blocks stacked on a new leading axis}, and
  ``singles``: {n: the n-th block outside every run} (a ResNet stage's first block, which
  changes the shape), when there are any.

``scanned_tree`` and ``unrolled_tree`` convert one into the other exactly; ``stack`` builds the
scanned modules from unrolled ones, so both layouts start from the same values.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

STACKS, SINGLES, BLOCKS = "block_stacks", "singles", "blocks"


def _stacked(trees: Sequence[Any]) -> Any:
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def stack(blocks: Sequence[nnx.Module]) -> nnx.Module:
  """One module like ``blocks[0]`` whose state is the blocks' stacked on a new leading axis."""
  graphdef, *_ = nnx.split(blocks[0])
  return nnx.merge(graphdef, _stacked([nnx.split(b)[1] for b in blocks]))


def singles(n_blocks: int, runs: Sequence[tuple[int, int]]) -> list[int]:
  """The blocks no run covers, in order."""
  covered = {i for a, b in runs for i in range(a, b)}
  return [i for i in range(n_blocks) if i not in covered]


def scanned_tree(tree: dict, runs: Sequence[tuple[int, int]]) -> dict:
  """An unrolled tree (``blocks``: {i: ...}) in the scanned layout; other keys as they are."""
  out = {k: v for k, v in tree.items() if k != BLOCKS}
  blocks = tree[BLOCKS]
  out[STACKS] = {j: _stacked([blocks[i] for i in range(a, b)]) for j, (a, b) in enumerate(runs)}
  alone = singles(len(blocks), runs)
  if alone:
    out[SINGLES] = {n: blocks[i] for n, i in enumerate(alone)}
  return out


def unrolled_tree(tree: dict, runs: Sequence[tuple[int, int]]) -> dict:
  """The inverse of ``scanned_tree``."""
  out = {k: v for k, v in tree.items() if k not in (STACKS, SINGLES)}
  blocks = {a + n: jax.tree.map(lambda x, n=n: x[n], tree[STACKS][j])
            for j, (a, b) in enumerate(runs) for n in range(b - a)}
  n_blocks = sum(b - a for a, b in runs) + len(tree.get(SINGLES, {}))
  blocks.update({i: tree[SINGLES][n] for n, i in enumerate(singles(n_blocks, runs))})
  out[BLOCKS] = dict(sorted(blocks.items()))
  return out


def scan(stacked: nnx.Module, x: jax.Array, call: Callable[[nnx.Module, jax.Array, Any], jax.Array],
         xs: Any = None, remat: bool = False, updates: type | None = None) -> jax.Array:
  """Runs the stacked blocks in order: ``call(block, x, xs_i)`` for block i.

  Only the activations are carried; the parameters go in as the scan's inputs and are never
  stacked again. ``updates``: a variable type the blocks change as they run (BatchNorm's
  ``nnx.BatchStat`` in training), written back into ``stacked`` after the scan.
  """
  graphdef, state = nnx.split(stacked)
  # Plain arrays in and out: variables carried through the scan would keep the outer trace,
  # and NNX refuses to update them inside it.
  state = nnx.to_pure_dict(state)

  def body(x, layer):
    block_state, extra = layer
    block = nnx.merge(graphdef, block_state)
    y = call(block, x, extra)
    return y, (nnx.to_pure_dict(nnx.state(block, updates)) if updates is not None else None)

  if remat:
    body = jax.checkpoint(body)
  x, changed = jax.lax.scan(body, x, (state, xs))
  if updates is not None:
    new = nnx.state(stacked, updates)
    nnx.replace_by_pure_dict(new, changed)
    nnx.update(stacked, new)
  return x

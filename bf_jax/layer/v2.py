"""BatchFormerV2: the dense two-stream BatchFormer inside a deep network, for any stack of blocks.

Tokens ``x_BxLxC``: at each insertion point every token position l attends across the batch
(``BatchFormer`` on [B, L, C]). Training runs two streams through one network:

* the FIRST insertion point doubles the batch: ``[x; BF(x)]`` (2B rows: the original stream,
  then the BatchFormer stream);
* every LATER insertion point splits the batch into those halves and applies its BatchFormer
  to the second half only: ``[x_orig; BF(x_bf)]``, so the original stream never meets a
  BatchFormer;
* every block (and the head) is shared by the two streams; targets are duplicated
  (``duplicate``).

At evaluation the layers are skipped: the network is exactly the same network without them,
so inference costs nothing extra. Insertion point ``i`` means "after block ``i``" (0-based), as
upstream's DeiT/DETR ``insert_idx``. Under ``jax.shard_map`` each device holds its own
``[orig; BF]`` halves; with ``axis_name`` set the BatchFormer stream of every device attends to
the BatchFormer stream of the whole global batch (the V1 ``scope`` semantics, per half).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from bf_jax.layer.batchformer import BatchFormer, RngsLike, layer_mode

Block = Callable[[jax.Array], jax.Array]


def insert(x_BxLxC: jax.Array, bf: Any, *, first: bool, deterministic: bool | None = None,
           rngs: RngsLike = None) -> jax.Array:
  """One insertion point in training: ``[x; BF(x)]`` if ``first``, else ``[x1; BF(x2)]`` on the
  two halves of ``x`` (which must then have an even number of rows). ``deterministic=None``:
  the layer's own mode (``model.eval()``, ``nnx.view``), else dropout on."""
  deterministic = layer_mode(bf, deterministic)
  kw = {} if rngs is None else {"rngs": rngs}
  if first:
    return jnp.concatenate([x_BxLxC, bf(x_BxLxC, deterministic=deterministic, **kw)], axis=0)
  rows = x_BxLxC.shape[0]
  if rows % 2:
    raise ValueError(f"a later BatchFormerV2 insertion point got {rows} rows; it expects the "
                     f"[orig; BF] halves that the first insertion point makes (even rows).")
  orig, bf_stream = x_BxLxC[:rows // 2], x_BxLxC[rows // 2:]
  return jnp.concatenate([orig, bf(bf_stream, deterministic=deterministic, **kw)], axis=0)


def run_blocks(blocks: Sequence[Block], x_BxLxC: jax.Array, bfs: Mapping[int, Any], *,
               train: bool, key: jax.Array | None = None) -> jax.Array:
  """Runs ``blocks`` in order; in training, the BatchFormer ``bfs[i]`` acts after block ``i``.

  Returns 2B rows in training when ``bfs`` is not empty, B rows otherwise. ``key``: dropout
  randomness, folded with the insertion index so the insertion points draw independently.
  """
  bad = [i for i in bfs if not 0 <= i < len(blocks)]
  if bad:
    raise ValueError(f"BatchFormerV2 insertion points {bad} are outside the {len(blocks)} "
                     f"blocks (0..{len(blocks) - 1}).")
  first = True
  for i, block in enumerate(blocks):
    x_BxLxC = block(x_BxLxC)
    if train and i in bfs:
      rngs = None if key is None else jax.random.fold_in(key, i)
      x_BxLxC = insert(x_BxLxC, bfs[i], first=first, rngs=rngs)
      first = False
  return x_BxLxC


def duplicate(targets: Any) -> Any:
  """Targets for the two streams: every [B, ...] leaf of the pytree becomes [2B, ...]."""
  return jax.tree.map(lambda t: jnp.concatenate([t, t], axis=0), targets)


def make_batchformers(dim: int, insert_after: Sequence[int], *, shared: bool,
                      rngs: nnx.Rngs, **bf_kwargs) -> nnx.Dict:
  """{block index: BatchFormer}; ``shared``: one layer (one set of weights) at every point."""
  points = sorted(set(int(i) for i in insert_after))
  if len(points) != len(insert_after):
    raise ValueError(f"insert_after={tuple(insert_after)} repeats a block index.")
  if not points:
    return nnx.Dict()
  if shared:
    layer = BatchFormer(dim, rngs=rngs, **bf_kwargs)
    return nnx.Dict({str(i): layer for i in points})
  return nnx.Dict({str(i): BatchFormer(dim, rngs=rngs, **bf_kwargs) for i in points})


def by_index(bfs: nnx.Dict) -> dict[int, Any]:
  """``make_batchformers``' string keys (NNX needs them) as block indices for ``run_blocks``."""
  return {int(k): v for k, v in bfs.items()}

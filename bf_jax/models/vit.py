"""ViT / DeiT (Dosovitskiy et al. 2021; Touvron et al. 2021) in NNX, with BatchFormerV2 inside.

Tokens are [B, T, C] with T = 1 + (image / patch)^2 (the class token first). Pre-norm blocks
(LayerNorm eps 1e-6, multi-head self-attention, MLP with GELU, ratio 4), stochastic depth
growing linearly to ``drop_path`` over the depth, the head on the final-normed class token.
DeiT's init: truncated normal (std 0.02) for linear weights and the position/class embeddings,
zero biases, LayerNorm scale 1.

BatchFormerV2 (``bf_jax/layer/v2.py``): in training a BatchFormer acts after each block of
``insert_after``, every token position attending across the batch; the first point doubles the
batch into [original stream; BatchFormer stream], the later ones transform the second half
only, and every block and the head are shared by the two streams. ``eval_logits`` never runs a
BatchFormer: the evaluated network is the plain ViT.

``scan_layers``: each run of blocks between insertion points is one ``lax.scan`` over its
blocks' stacked parameters (``block_stacks``), so XLA compiles one block per run instead of
every block; a run ends at each insertion point because the batch doubles there. The blocks
start from the same values as unrolled (they are built unrolled, then stacked), and
``bf_jax/models/scan_blocks.py`` converts a parameter tree between the two layouts.

``remat="streams"`` recomputes, in the backward pass, the blocks that run on both streams
instead of keeping their activations: the second stream then costs compute, not the memory of a
doubled batch (``"all"``: every block, for a baseline kept on the same footing).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from bf_jax.layer import v2
from bf_jax.models import scan_blocks
from bf_jax.models.init_streams import bf_stream

VIT_ARCHS = {  # (width, depth, heads)
    "deit_tiny": (192, 12, 3), "deit_small": (384, 12, 6), "deit_base": (768, 12, 12),
}
_TRUNC = nnx.initializers.truncated_normal(stddev=0.02)
REMAT = ("none", "streams", "all")


def _linear(cin: int, cout: int, dtype: Any, rngs: nnx.Rngs) -> nnx.Linear:
  return nnx.Linear(cin, cout, kernel_init=_TRUNC, bias_init=nnx.initializers.zeros_init(),
                    dtype=dtype, rngs=rngs)


def _norm(dim: int, dtype: Any, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return nnx.LayerNorm(dim, epsilon=1e-6, dtype=dtype, rngs=rngs)


def gelu(x: jax.Array) -> jax.Array:
  """GELU, tanh form (within 1e-3 of DeiT's exact erf GELU). The erf form fails shard_map's
  varying-axes check in this JAX version (its polynomial primitive mixes manual axes)."""
  return jax.nn.gelu(x, approximate=True)


def drop_path(x_BxTxC: jax.Array, rate: float | jax.Array, key: jax.Array | None,
              rows_B: jax.Array | None = None) -> jax.Array:
  """Stochastic depth: each sample's residual branch is dropped with probability ``rate`` and
  the kept ones scaled by 1 / (1 - rate). A sample's coin is keyed by its global row
  (``rows_B``; default 0..B-1), so every device draws independently and any device count draws
  what one device draws. No key (eval) or rate 0: the identity (a traced rate of 0, in a
  scan, keeps every sample at scale 1)."""
  if key is None or (isinstance(rate, float) and rate == 0.0):
    return x_BxTxC
  if rows_B is None:
    rows_B = jnp.arange(x_BxTxC.shape[0])
  u_B = jax.vmap(lambda r: jax.random.uniform(jax.random.fold_in(key, r)))(rows_B)
  keep_B = u_B < 1.0 - rate
  return x_BxTxC * (keep_B / (1.0 - rate)).astype(x_BxTxC.dtype)[:, None, None]


class Attention(nnx.Module):
  def __init__(self, dim: int, heads: int, dtype: Any, rngs: nnx.Rngs):
    if dim % heads:
      raise ValueError(f"ViT width {dim} is not divisible by heads={heads}.")
    self.heads = heads
    self.qkv = _linear(dim, 3 * dim, dtype, rngs)
    self.proj = _linear(dim, dim, dtype, rngs)

  def __call__(self, x_BxTxC: jax.Array) -> jax.Array:
    b, t, c = x_BxTxC.shape
    qkv = self.qkv(x_BxTxC).reshape(b, t, 3, self.heads, c // self.heads)
    q_BxTxHxD, k_BxTxHxD, v_BxTxHxD = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    out_BxTxHxD = jax.nn.dot_product_attention(q_BxTxHxD, k_BxTxHxD, v_BxTxHxD)
    return self.proj(out_BxTxHxD.reshape(b, t, c))


class Block(nnx.Module):
  """Pre-norm transformer block with stochastic depth on both residual branches."""

  def __init__(self, dim: int, heads: int, mlp_ratio: float, drop_path_rate: float, dtype: Any,
               rngs: nnx.Rngs):
    self.norm1, self.attn = _norm(dim, dtype, rngs), Attention(dim, heads, dtype, rngs)
    self.norm2 = _norm(dim, dtype, rngs)
    hidden = int(dim * mlp_ratio)
    self.fc1, self.fc2 = _linear(dim, hidden, dtype, rngs), _linear(hidden, dim, dtype, rngs)
    self.drop_path_rate = drop_path_rate

  def __call__(self, x_BxTxC: jax.Array, key: jax.Array | None = None,
               rows_B: jax.Array | None = None, rate: jax.Array | None = None) -> jax.Array:
    """``rate``: the drop-path rate when it is an input (a scan's), else the block's own."""
    rate = self.drop_path_rate if rate is None else rate
    k1, k2 = (None, None) if key is None else jax.random.split(key)
    x_BxTxC = x_BxTxC + drop_path(self.attn(self.norm1(x_BxTxC)), rate, k1, rows_B)
    h = self.fc2(gelu(self.fc1(self.norm2(x_BxTxC))))
    return x_BxTxC + drop_path(h, rate, k2, rows_B)


def segments(depth: int, split_after: Sequence[int]) -> list[tuple[int, int]]:
  """The runs [start, stop) of blocks a scan covers: split after each insertion point."""
  ends = sorted({int(i) + 1 for i in split_after if 0 <= int(i) < depth - 1}) + [depth]
  return list(zip([0] + ends[:-1], ends))


class ViT(nnx.Module):
  """A ViT classifier with the ``train_logits`` / ``eval_logits`` interface of the classifier
  task (``bf_jax/trainer/supervised.py``); ``bfs`` from ``v2.make_batchformers`` (empty: no
  BatchFormer)."""

  def __init__(self, image_size: int, patch: int, in_chans: int, num_classes: int, dim: int,
               depth: int, heads: int, *, mlp_ratio: float = 4.0, drop_path: float = 0.1,
               bfs: nnx.Dict | None = None, axis_name: str | None = None, dtype: Any = None,
               remat: str = "none", scan_layers: bool = False,
               split_after: Sequence[int] = (), rngs: nnx.Rngs):
    if remat not in REMAT:
      raise ValueError(f"model.remat={remat!r} must be one of {REMAT}.")
    if image_size % patch:
      raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch}.")
    grid = image_size // patch
    self.patch_embed = nnx.Conv(in_chans, dim, (patch, patch), strides=patch, padding="VALID",
                                kernel_init=_TRUNC, dtype=dtype, rngs=rngs)
    self.cls_token = nnx.Param(_TRUNC(rngs.params(), (1, 1, dim)))
    self.pos_embed = nnx.Param(_TRUNC(rngs.params(), (1, 1 + grid * grid, dim)))
    rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]  # DeiT's linear rule
    blocks = [Block(dim, heads, mlp_ratio, r, dtype, rngs) for r in rates]
    if scan_layers:  # runs end at the insertion points, with or without a BatchFormer there
      self.runs = tuple(segments(depth, tuple(split_after) + tuple(int(k) for k in bfs or {})))
      self.block_stacks = nnx.List([scan_blocks.stack(blocks[a:b]) for a, b in self.runs])
      self.rates = tuple(tuple(rates[a:b]) for a, b in self.runs)
    else:
      self.blocks = nnx.List(blocks)
    self.scan_layers, self.depth = scan_layers, depth
    self.norm = _norm(dim, dtype, rngs)
    self.head = _linear(dim, num_classes, dtype, rngs)
    self.bfs = bfs if bfs is not None else nnx.Dict()
    self.axis_name = axis_name  # the data axis, inside shard_map: global rows for drop path
    self.dtype, self.remat = dtype, remat

  def _tokens(self, images_BxHxWxC: jax.Array) -> jax.Array:
    x = self.patch_embed(images_BxHxWxC)
    b, h, w, c = x.shape
    x_BxNxC = x.reshape(b, h * w, c)
    cls_Bx1xC = jnp.broadcast_to(self.cls_token[...].astype(x.dtype), (b, 1, c))
    return jnp.concatenate([cls_Bx1xC, x_BxNxC], axis=1) + self.pos_embed[...].astype(x.dtype)

  def _logits(self, x_BxTxC: jax.Array) -> jax.Array:
    return self.head(self.norm(x_BxTxC)[:, 0]).astype(jnp.float32)

  def train_logits(self, images: jax.Array, labels: Any, key: jax.Array
                   ) -> tuple[jax.Array, Any]:
    """Logits of both streams ([2B, K] with BatchFormer, else [B, K]) and their targets."""
    bf_key, path_key = jax.random.split(key)
    path_keys = jax.random.split(path_key, self.depth)
    # Global rows for drop path: the original stream's, then the BatchFormer stream's after
    # the global batch (as one device holding the whole [orig; BF] batch numbers them).
    b = images.shape[0]
    first = 0 if self.axis_name is None else jax.lax.axis_index(self.axis_name) * b
    total = b if self.axis_name is None else b * jax.lax.axis_size(self.axis_name)
    rows_B = first + jnp.arange(b)
    rows_2B = jnp.concatenate([rows_B, total + rows_B])

    def block_fn(blk, k):
      def run(x):
        both = x.shape[0] != b
        call = lambda x: blk(x, k, rows_2B if both else rows_B)
        if self.remat == "all" or (self.remat == "streams" and both):
          call = jax.checkpoint(call)
        return call(x)
      return run

    bfs = v2.by_index(self.bfs)
    if not self.scan_layers:
      blocks = [block_fn(blk, k) for blk, k in zip(self.blocks, path_keys)]
      x = v2.run_blocks(blocks, self._tokens(images), bfs, train=True, key=bf_key)
      return self._logits(x), (v2.duplicate(labels) if bfs else labels)
    x, first_bf = self._tokens(images), True
    for stack, rates, (start, stop) in zip(self.block_stacks, self.rates, self.runs):
      both = x.shape[0] != b
      x = self._scan(stack, x, path_keys[start:stop], jnp.asarray(rates),
                     rows_2B if both else rows_B,
                     self.remat == "all" or (self.remat == "streams" and both))
      if stop - 1 in bfs:  # as v2.run_blocks inserts, with the same dropout keys
        x = v2.insert(x, bfs[stop - 1], first=first_bf,
                      rngs=jax.random.fold_in(bf_key, stop - 1))
        first_bf = False
    return self._logits(x), (v2.duplicate(labels) if bfs else labels)

  @staticmethod
  def _scan(stack: Block, x_BxTxC: jax.Array, keys: jax.Array | None, rates: jax.Array,
            rows_B: jax.Array | None, remat: bool) -> jax.Array:
    """A stack's blocks in order, each with its drop-path key and rate."""
    return scan_blocks.scan(stack, x_BxTxC, lambda blk, x, kr: blk(x, kr[0], rows_B, kr[1]),
                            xs=(keys, rates), remat=remat)

  def eval_logits(self, images: jax.Array) -> jax.Array:
    x = self._tokens(images)
    if self.scan_layers:
      for stack, rates in zip(self.block_stacks, self.rates):
        x = self._scan(stack, x, None, jnp.asarray(rates), None, False)
      return self._logits(x)
    for blk in self.blocks:
      x = blk(x)
    return self._logits(x)


def build_vit(arch: str, image_size: int, patch: int, in_chans: int, num_classes: int, *,
              drop_path: float, insert_after: Sequence[int], shared_bf: bool, bf_kwargs: dict,
              dtype: Any, rngs: nnx.Rngs, remat: str = "none", scan_layers: bool = False,
              split_after: Sequence[int] = ()) -> ViT:
  """A DeiT size by name (``VIT_ARCHS``) with BatchFormers after ``insert_after``."""
  if arch not in VIT_ARCHS:
    raise ValueError(f"model.name={arch!r} is not a ViT; choose one of {sorted(VIT_ARCHS)}.")
  dim, depth, heads = VIT_ARCHS[arch]
  bad = [i for i in insert_after if not 0 <= i < depth]
  if bad:
    raise ValueError(f"bf.insert_after={tuple(insert_after)}: {bad} outside the {depth} blocks "
                     f"of {arch} (0..{depth - 1}).")
  # Their own stream: the blocks start alike with and without them (paired comparisons).
  bfs = v2.make_batchformers(dim, insert_after, shared=shared_bf, rngs=bf_stream(rngs),
                             **bf_kwargs)
  return ViT(image_size, patch, in_chans, num_classes, dim, depth, heads, drop_path=drop_path,
             bfs=bfs, axis_name=bf_kwargs.get("axis_name"), dtype=dtype, remat=remat,
             scan_layers=scan_layers, split_after=split_after, rngs=rngs)

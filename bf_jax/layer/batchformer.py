"""BatchFormer: a transformer encoder layer applied along the batch axis.

The layer is PyTorch's ``nn.TransformerEncoderLayer(C, nhead=4, dim_feedforward=C,
dropout=0.5)`` fed so that the mini-batch is the sequence (post-norm, ReLU, LayerNorm eps
1e-5, packed q/k/v projections, dropout in four places, no mask, no positional encoding),
with PyTorch's default initialization. ``torch_weights.load_torch_state_dict`` imports its weights.

Written for the per-device view, like ``nnx.BatchNorm(axis_name=...)``: with ``axis_name``
set and the call inside ``jax.shard_map``/``jax.pmap``, each device keeps its local queries
and attends to keys/values all-gathered over that axis, which equals the single-device
computation on the whole global batch, forward and backward.

Dimension letters (tensor names carry them):
  B  samples this call sees (the local batch on one device)
  N  independent attention groups in one call
  Q  query samples per group
  G  key/value samples per group (the gathered global batch, a group, or B)
  P  positions per sample: 1 for V1 features [B, C], L for V2 tokens [B, L, C]
  C  feature dim; H heads; D = C // H head dim; F feed-forward dim
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.errors import TraceContextError
from flax.nnx.nn.dtypes import promote_dtype

from bf_jax.layer.attention import attend, dropout, probs

__all__ = ["BatchFormer", "EncoderLayer", "two_stream", "MODES"]

MODES = ("shared", "bf_only")

RngsLike = nnx.Rngs | nnx.RngStream | jax.Array | None


def _torch_uniform(fan_in: int) -> nnx.Initializer:
  """nn.Linear's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.

  kaiming_uniform(a=sqrt(5)) reduces to exactly this bound for the weight.
  """
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def _torch_linear(fan_in: int, fan_out: int, *, zero_bias: bool = False, **kw) -> nnx.Linear:
  bias_init = nnx.initializers.zeros_init() if zero_bias else _torch_uniform(fan_in)
  return nnx.Linear(fan_in, fan_out, kernel_init=_torch_uniform(fan_in), bias_init=bias_init, **kw)


class EncoderLayer(nnx.Module):
  """One post-norm encoder layer whose 'sequence' is the batch.

  Parameter names follow ``torch.nn.TransformerEncoderLayer`` so state dicts map one to one;
  6C^2 + 10C parameters when F = C.
  """

  def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, *,
               dtype: Any = None, query_chunk: int | None = None,
               attention_impl: str | None = None, rngs: nnx.Rngs):
    self.num_heads = num_heads
    self.dropout = dropout
    self.query_chunk, self.attention_impl = query_chunk, attention_impl
    kw = dict(dtype=dtype, rngs=rngs)
    # Kernels are [in, out]: xavier's fan_in/fan_out match torch's [3C, C] weight.
    self.in_proj = nnx.Linear(dim, 3 * dim, kernel_init=nnx.initializers.xavier_uniform(),
                              bias_init=nnx.initializers.zeros_init(), **kw)
    self.out_proj = _torch_linear(dim, dim, zero_bias=True, **kw)
    self.linear1 = _torch_linear(dim, ffn_dim, **kw)
    self.linear2 = _torch_linear(ffn_dim, dim, **kw)
    # Two-pass variance: torch's LayerNorm is not the E[x^2]-E[x]^2 shortcut.
    self.norm1 = nnx.LayerNorm(dim, epsilon=1e-5, use_fast_variance=False, **kw)
    self.norm2 = nnx.LayerNorm(dim, epsilon=1e-5, use_fast_variance=False, **kw)

  def _project(self, x_NxQxPxC: jax.Array, kv_NxGxPxC: jax.Array | None):
    """Scaled queries [N, Q, P, H, D], keys and values [N, G, P, H, D]."""
    c = x_NxQxPxC.shape[-1]
    h, d = self.num_heads, c // self.num_heads
    if kv_NxGxPxC is None:  # keys are the queries: one packed projection
      qkv = self.in_proj(x_NxQxPxC)
      q, k, v = jnp.split(qkv, 3, axis=-1)
    else:
      # Queries and gathered keys differ: split the packed projection, cast as nnx.Linear does.
      x_NxQxPxC, kv_NxGxPxC, w_Cx3C, b_3C = promote_dtype(
          (x_NxQxPxC, kv_NxGxPxC, self.in_proj.kernel[...], self.in_proj.bias[...]),
          dtype=self.in_proj.dtype)
      q = x_NxQxPxC @ w_Cx3C[:, :c] + b_3C[:c]
      kv = kv_NxGxPxC @ w_Cx3C[:, c:] + b_3C[c:]
      k, v = jnp.split(kv, 2, axis=-1)
    heads = lambda t: t.reshape(*t.shape[:-1], h, d)
    return heads(q) / math.sqrt(d), heads(k), heads(v)

  def attention_probs(self, x_NxQxPxC: jax.Array, kv_NxGxPxC: jax.Array | None,
                      mask_QxG: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """(attention probabilities [N, P, H, Q, G] before dropout, values [N, G, P, H, D])."""
    q_NxQxPxHxD, k_NxGxPxHxD, v_NxGxPxHxD = self._project(x_NxQxPxC, kv_NxGxPxC)
    return probs(q_NxQxPxHxD, k_NxGxPxHxD, mask_QxG, v_NxGxPxHxD.dtype), v_NxGxPxHxD

  def _attention(self, x_NxQxPxC, kv_NxGxPxC, mask_QxG, key, rows_NxQ, cols, remat):
    q_NxQxPxHxD, k_NxGxPxHxD, v_NxGxPxHxD = self._project(x_NxQxPxC, kv_NxGxPxC)
    out_NxQxPxHxD = attend(q_NxQxPxHxD, k_NxGxPxHxD, v_NxGxPxHxD, mask_QxG, self.dropout, key,
                           rows_NxQ, cols, query_chunk=self.query_chunk,
                           impl=self.attention_impl, remat=remat)
    return self.out_proj(out_NxQxPxHxD.reshape(*out_NxQxPxHxD.shape[:-2], x_NxQxPxC.shape[-1]))

  def __call__(self, x_NxQxPxC: jax.Array, kv_NxGxPxC: jax.Array | None,
               mask_QxG: jax.Array | None, key: jax.Array | None,
               rows_NxQ: jax.Array | None = None,
               cols: tuple[jax.Array, int] | None = None, remat: bool = False) -> jax.Array:
    """Runs the layer; ``kv=None`` attends within x itself, ``key=None`` disables dropout.

    ``rows_NxQ`` are the queries' global sample indices, which key the dropout masks; ``cols``
    the keys' positions within their group (``attention.dropout``), when not ``range(G)``;
    ``remat`` says the call runs under ``jax.checkpoint`` (``attention.chunk_rows``).
    """
    keys = [None] * 4 if key is None else list(jax.random.split(key, 4))
    attn = self._attention(x_NxQxPxC, kv_NxGxPxC, mask_QxG, keys[0], rows_NxQ, cols, remat)
    h = self.norm1(x_NxQxPxC + dropout(attn, self.dropout, keys[1], rows_NxQ))
    hidden = dropout(jax.nn.relu(self.linear1(h)), self.dropout, keys[2], rows_NxQ)
    ffn = self.linear2(hidden)
    return self.norm2(h + dropout(ffn, self.dropout, keys[3], rows_NxQ))


class BatchFormer(nnx.Module):
  """BatchFormer (V1 on [B, C], V2 on [B, L, C]): samples attend to each other.

  Args:
    dim: feature dim C (must be divisible by num_heads).
    num_heads: attention heads (4 in the paper).
    ffn_dim: feed-forward width; None means C, as in the paper.
    dropout: dropout rate used in all four places (0.5 in the paper).
    num_layers: >1 stacks layers like ``nn.TransformerEncoder`` (no final norm).
    axis_name: mesh/pmap axis to attend across. None: only the batch this call sees.
    group_size: attend only within groups of this many consecutive samples of the global
      batch (reproduces a per-GPU batch of that size on any number of devices).
    dtype: compute dtype (e.g. jnp.bfloat16 on accelerators); params stay float32.
    remat: recompute the layer (and its key gather) in the backward pass instead of keeping
      its activations. None: on for V2 tokens [B, L, C], off for V1 features.
    query_chunk: queries per attention chunk (``attention.chunk_rows``): None picks chunks
      whose attention is no bigger than the layer's input (under remat only once the whole
      attention would be over 24 times the input), 0 never chunks.
    attention_impl: ``jax.nn.dot_product_attention``'s implementation where there is no
      attention dropout (None/'xla' everywhere, 'cudnn' the fused kernel on NVIDIA GPUs).
    deterministic: the mode when a call does not pass one; like ``nnx.Dropout``'s, it is set
      by ``model.train()``/``model.eval()`` and ``nnx.view(model, deterministic=...)``.
    rngs: parameter init and, by default, the dropout stream. Parameters depend only on the
      dims and this seed, never on axis_name or group_size.

  The layer is for training only: at eval the caller skips it (see ``two_stream``).
  """

  def __init__(self, dim: int, num_heads: int = 4, ffn_dim: int | None = None,
               dropout: float = 0.5, num_layers: int = 1, axis_name: str | None = None,
               group_size: int | None = None, *, dtype: Any = None,
               deterministic: bool | None = None, remat: bool | None = None,
               query_chunk: int | None = None, attention_impl: str | None = None,
               rngs: nnx.Rngs):
    _check_int("dim", dim, 1)
    _check_int("num_heads", num_heads, 1)
    _check_int("num_layers", num_layers, 1)
    if dim % num_heads:
      raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}; choose num_heads "
                       f"among the divisors of {dim} (the paper uses 4).")
    if ffn_dim is not None:
      _check_int("ffn_dim", ffn_dim, 1)
    if group_size is not None:
      _check_int("group_size", group_size, 1)
    if query_chunk is not None:
      _check_int("query_chunk", query_chunk, 0)
    if attention_impl not in (None, "xla", "cudnn"):
      raise ValueError(f"attention_impl={attention_impl!r} must be None, 'xla' or 'cudnn'.")
    if not 0.0 <= dropout <= 1.0:
      raise ValueError(f"dropout={dropout} is outside [0, 1].")
    self.dim, self.num_heads, self.dropout = dim, num_heads, dropout
    self.axis_name, self.group_size = axis_name, group_size
    self.deterministic, self.remat = deterministic, remat
    self.layers = nnx.List([
        EncoderLayer(dim, num_heads, ffn_dim or dim, dropout, dtype=dtype,
                     query_chunk=query_chunk, attention_impl=attention_impl, rngs=rngs)
        for _ in range(num_layers)])
    # Like nnx.Dropout: fall back to the 'default' stream when there is no 'dropout' one.
    has_stream = "dropout" in rngs or "default" in rngs
    self.rngs = rngs["dropout"].fork() if has_stream else nnx.data(None)

  def set_view(self, deterministic: bool | None = None) -> None:
    """Used by ``nnx.view``.

    Args:
      deterministic: if True, no dropout.
    """
    if deterministic is not None:
      self.deterministic = deterministic

  def __call__(self, x: jax.Array, *, deterministic: bool | None = None,
               rngs: RngsLike = None) -> jax.Array:
    """Returns BatchFormer features with the shape of ``x`` ([B, C] or [B, L, C]).

    ``deterministic`` overrides the layer's own mode and ``rngs`` (an Rngs, RngStream or key)
    the dropout stream, for this call.
    """
    if deterministic is None:
      deterministic = self.deterministic
    if deterministic is None:
      raise ValueError("BatchFormer needs deterministic=True/False: at the call, in the "
                       "constructor, by model.train()/model.eval(), or through "
                       "nnx.view(model, deterministic=...).")
    if x.ndim not in (2, 3):
      raise ValueError(f"BatchFormer expects [B, C] or [B, L, C] features; got rank {x.ndim} "
                       f"with shape {x.shape}. Flatten or pool the features first.")
    if x.shape[-1] != self.dim:
      raise ValueError(f"BatchFormer(dim={self.dim}) got features with last dim "
                       f"{x.shape[-1]} (shape {x.shape}); build it with dim={x.shape[-1]}.")
    key = None if deterministic or self.dropout == 0.0 else self._dropout_key(rngs)
    x_BxPxC = x[:, None, :] if x.ndim == 2 else x
    remat = self.remat if self.remat is not None else x.ndim == 3
    y_BxPxC = self._apply_layers(x_BxPxC, key, remat)
    return y_BxPxC[:, 0, :] if x.ndim == 2 else y_BxPxC

  def _dropout_key(self, rngs: RngsLike) -> jax.Array:
    if rngs is None:
      if self.rngs is None:
        raise ValueError("BatchFormer in training mode needs dropout randomness: build it with "
                         "rngs=nnx.Rngs(seed) (or a 'dropout' stream), or pass rngs= at the call.")
      try:
        key = self.rngs()
      except TraceContextError as e:
        raise TraceContextError(
            "BatchFormer cannot draw dropout from its own Rngs inside a jax transform (jax.jit, "
            "jax.grad, ...) that closes over the layer: NNX refuses to advance a stream created "
            "outside it. Pass the module itself to nnx.jit/nnx.grad, or nnx.split it and pass "
            "its state and a key to the transformed function, which merges it and calls "
            "bf(x, deterministic=False, rngs=key).") from e
    elif isinstance(rngs, nnx.Rngs):
      key = rngs["dropout"]()
    elif isinstance(rngs, nnx.RngStream):
      key = rngs()
    else:
      key = rngs
    return key

  def _apply_layers(self, h_BxPxC: jax.Array, key: jax.Array | None, remat: bool) -> jax.Array:
    b = h_BxPxC.shape[0]
    n_dev = 1 if self.axis_name is None else jax.lax.axis_size(self.axis_name)
    k = self.group_size
    if k is not None and (b * n_dev) % k:
      where = f"{b} per device x {n_dev} devices" if self.axis_name else "the local batch"
      raise ValueError(f"group_size={k} does not divide the global batch of {b * n_dev} "
                       f"({where}); pick a batch size that is a multiple of {k}.")
    first = 0 if self.axis_name is None else jax.lax.axis_index(self.axis_name) * b
    rows_B = first + jnp.arange(b)
    for i, layer in enumerate(self.layers):
      layer_key = None if key is None else jax.random.fold_in(key, i)
      run = functools.partial(self._run_layer, layer, key=layer_key, rows_B=rows_B, n_dev=n_dev,
                              remat=remat)
      # Under remat the gather is inside too: keeping the gathered keys for the backward pass
      # would hold G / B times the layer's input; the backward pass gathers them again.
      h_BxPxC = (jax.checkpoint(run) if remat else run)(h_BxPxC)
    return h_BxPxC

  def _run_layer(self, layer: EncoderLayer, h_BxPxC: jax.Array, *, key: jax.Array | None,
                 rows_B: jax.Array, n_dev: int, remat: bool) -> jax.Array:
    b, k = h_BxPxC.shape[0], self.group_size
    if k is not None and b % k == 0:
      # Groups never straddle devices: attend within local groups, no communication.
      h_NxQxPxC = h_BxPxC.reshape(b // k, k, *h_BxPxC.shape[1:])
      return layer(h_NxQxPxC, None, None, key, rows_B.reshape(b // k, k),
                   remat=remat).reshape(h_BxPxC.shape)
    if self.axis_name is None:
      return layer(h_BxPxC[None], None, None, key, rows_B[None], remat=remat)[0]
    kv_GxPxC, mask_QxG = self._gather_keys(h_BxPxC, n_dev)
    # Masked groups lay out every gathered key; the attention-dropout draw must still be
    # the one the grouped path makes: one value per position within the group.
    cols = None if mask_QxG is None else (jnp.arange(b * n_dev) % k, k)
    return layer(h_BxPxC[None], kv_GxPxC[None], mask_QxG, key, rows_B[None], cols,
                 remat=remat)[0]

  def _gather_keys(self, h_BxPxC: jax.Array, n_dev: int):
    """All-gathers this layer's input once: the whole batch, or only the query's group."""
    b, k = h_BxPxC.shape[0], self.group_size
    if k is not None and k % b == 0:
      # The whole local batch sits inside one group of k / b consecutive devices: gather within
      # those devices only, so each device receives k rows, not the global batch.
      per = k // b
      groups = [list(range(g * per, (g + 1) * per)) for g in range(n_dev // per)]
      return jax.lax.all_gather(h_BxPxC, self.axis_name, axis=0, tiled=True,
                                axis_index_groups=groups), None
    kv_GxPxC = jax.lax.all_gather(h_BxPxC, self.axis_name, axis=0, tiled=True)
    if k is None:
      return kv_GxPxC, None
    first = jax.lax.axis_index(self.axis_name) * b
    # Groups straddle device boundaries unevenly: mask keys outside each query's group.
    group_Q = (first + jnp.arange(b)) // k
    group_G = jnp.arange(b * n_dev) // k
    return kv_GxPxC, group_Q[:, None] == group_G[None, :]


def _check_int(name: str, value: Any, minimum: int) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
    raise ValueError(f"{name}={value!r} must be an integer >= {minimum}.")


def two_stream(feats: jax.Array, labels: Any, bf: Any, mode: str = "shared", *,
               deterministic: bool | None = None,
               rngs: RngsLike = None) -> tuple[jax.Array, Any]:
  """Builds the training batch for the shared classifier.

  ``"shared"``: ``concat([f, BF(f)])`` and the labels (any pytree of [B, ...] arrays, or None)
  duplicated, so one head sees both streams. ``"bf_only"``: ``BF(f)`` with labels unchanged
  (RIDE's ImageNet-LT/iNat recipe). ``bf`` is a :class:`BatchFormer` or
  ``bf_jax.layer.linen.BatchFormer`` (inside a Linen module).

  ``deterministic=None``: the layer's own mode (``model.eval()``, ``nnx.view``), else dropout on.

  Training only. The eval path must not call this nor the layer: at test time the head runs
  on the original features ``f``, which is what makes BatchFormer free at inference.
  """
  if mode not in MODES:
    raise ValueError(f"two_stream mode={mode!r} is not one of {MODES}.")
  deterministic = layer_mode(bf, deterministic)
  # Only pass rngs when given, so the Linen wrapper (which takes keys from apply) fits too.
  kw = {} if rngs is None else {"rngs": rngs}
  bf_feats = bf(feats, deterministic=deterministic, **kw)
  if mode == "bf_only":
    return bf_feats, labels
  both = lambda a: jnp.concatenate([a, a], axis=0)
  return jnp.concatenate([feats, bf_feats], axis=0), jax.tree.map(both, labels)


def layer_mode(bf: Any, deterministic: bool | None) -> bool:
  """The call's ``deterministic``, else the layer's attribute, else False (training helpers)."""
  if deterministic is not None:
    return deterministic
  # A layer without the attribute (a wrapper may take the mode from each call only): training.
  return bool(getattr(bf, "deterministic", None))

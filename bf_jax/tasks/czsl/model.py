"""Closed-world CZSL heads: pooled image features [B, C] -> logits over ALL pairs [B, P].

The heads score every pair of ``Pairs.pairs`` (train, val and test); the training loss masks the
unseen ones elsewhere. Two models:

  CompCos (Mancini et al. 2021, closed world: no feasibility scores): cosine between an MLP image
    embedding and a projection of [attr embedding, obj embedding], divided by a temperature.
  CGE (Naeem et al. 2021): a 2-layer GCN over a graph of attributes, objects and pairs gives the
    pair embeddings; logits are dot products with an MLP image embedding.

Dimension letters (tensor names carry them):
  B  images; C  image feature dim; D  joint embedding dim
  A  attributes; O  objects; P  pairs; K = A + O primitives; N = A + O + P graph nodes
  W  word-vector dim; E  primitive embedding dim (W with word vectors, else D); H  hidden width
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bf_jax.tasks.czsl.metrics import Pairs

KINDS = ("compcos", "cge")


class Const(nnx.Variable):
  """A fixed array (adjacency, word vectors, indices): state the optimizer never sees, rebuilt from
  the config, so not in checkpoints (it travels in the models' ``other`` state)."""


def word_tokens(name: str) -> list[str]:
  """Lowercased words of a primitive name: "Boots.Ankle" -> ["boots", "ankle"]."""
  return [t for t in re.split(r"[ _.\-]+", name.lower()) if t]


def load_word_vectors(path: str, names: list[str]) -> np.ndarray:
  """[len(names), W] float32 from a GloVe-style text file; a name's vector is the mean of its words'.

  Streams the file once and keeps only the needed words (GloVe files are GBs). A first line
  "count dim" (word2vec text header) is skipped; the first vector of a repeated word wins.
  """
  tokens = {n: word_tokens(n) for n in names}
  needed = {t for ts in tokens.values() for t in ts}
  found: dict[str, np.ndarray] = {}
  dim = None
  try:
    f = open(path, encoding="utf-8", errors="replace")
  except FileNotFoundError:
    raise FileNotFoundError(f"word-vector file {path!r} does not exist; give a GloVe-style text file "
                            "(one 'word v1 ... vW' per line) or leave czsl.word_vectors empty to "
                            "learn the embeddings") from None
  with f:
    for i, line in enumerate(f):
      word, _, rest = line.rstrip("\n").partition(" ")
      if i == 0 and word.isdigit() and rest.strip().isdigit():  # word2vec header "count dim"
        dim = int(rest)
        continue
      if dim is None:  # from the first entry
        dim = len(rest.split())
      if word not in needed or word in found:  # cheap test first: most lines are skipped
        continue
      vals = rest.split()
      if len(vals) != dim:  # e.g. a multi-word entry whose first word is ours: not our word
        continue
      found[word] = np.asarray(vals, np.float32)
      if len(found) == len(needed):
        break
  missing = [(n, [t for t in ts if t not in found] or ["<no words>"])
             for n, ts in tokens.items() if not ts or any(t not in found for t in ts)]
  if missing:
    shown = ", ".join(f"{n!r} (no vector for {', '.join(map(repr, ts))})" for n, ts in missing[:10])
    raise ValueError(f"{path}: {len(missing)} of {len(names)} names lack word vectors: {shown}"
                     f"{' ...' if len(missing) > 10 else ''}. Provide a file that covers them, or "
                     "leave czsl.word_vectors empty to learn the embeddings.")
  return np.stack([np.mean([found[t] for t in tokens[n]], axis=0) for n in names]).astype(np.float32)


class ImageEmbedder(nnx.Module):
  """MLP C -> H -> ... -> D with ReLU between layers (none after the last); num_layers=1: Linear."""

  def __init__(self, in_dim: int, out_dim: int, hidden: int, num_layers: int = 2, *,
               rngs: nnx.Rngs):
    if num_layers < 1:
      raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])

  def __call__(self, feats_BxC: jax.Array) -> jax.Array:
    h = feats_BxC
    for i, layer in enumerate(self.layers):
      h = layer(h) if i == 0 else layer(jax.nn.relu(h))
    return h


def _check_vectors(word_vectors, pairs: Pairs) -> np.ndarray | None:
  """[A + O, W] float32 (attrs then objs, the order build_czsl_head loads them in), or None."""
  if word_vectors is None:
    return None
  k = len(pairs.attrs) + len(pairs.objs)
  v = np.asarray(word_vectors, np.float32)
  if v.ndim != 2 or v.shape[0] != k:
    raise ValueError(f"word_vectors must be [A + O = {k}, W] (attrs then objs), got {v.shape}")
  return v


def _cosine_rows(x: jax.Array) -> jax.Array:
  return x / (jnp.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)


class CompCos(nnx.Module):
  """Closed-world CompCos: logits = cos(img(x), Linear([attr_emb, obj_emb])) / temperature.

  Primitive embeddings are trainable nnx.Params, initialized from word vectors (E = W) if given,
  else N(0, 1) with E = emb_dim (torch nn.Embedding's default, as the reference's learned option;
  the scale is irrelevant to the forward pass since the pair embedding is normalized). The pair
  composition is a single Linear(2E -> D), as in CompCos.
  """

  def __init__(self, feat_dim: int, pairs: Pairs, *, emb_dim: int, img_hidden: int,
               img_layers: int = 2, word_vectors: np.ndarray | None = None,
               temperature: float = 0.05, rngs: nnx.Rngs):
    a = len(pairs.attrs)
    v = _check_vectors(word_vectors, pairs)
    if v is None:
      v = np.asarray(jax.random.normal(rngs.params(), (a + len(pairs.objs), emb_dim)))
    self.attr_emb_AxE = nnx.Param(jnp.asarray(v[:a]))
    self.obj_emb_OxE = nnx.Param(jnp.asarray(v[a:]))
    self.pair_attr_P = Const(jnp.asarray(pairs.pair_attr, jnp.int32))
    self.pair_obj_P = Const(jnp.asarray(pairs.pair_obj, jnp.int32))
    self.compose = nnx.Linear(2 * v.shape[1], emb_dim, rngs=rngs)
    self.image = ImageEmbedder(feat_dim, emb_dim, img_hidden, img_layers, rngs=rngs)
    self.temperature = float(temperature)

  def pair_embeddings(self) -> jax.Array:
    """[P, D], unit rows."""
    both_Px2E = jnp.concatenate([self.attr_emb_AxE[...][self.pair_attr_P[...]],
                                 self.obj_emb_OxE[...][self.pair_obj_P[...]]], axis=-1)
    return _cosine_rows(self.compose(both_Px2E))

  def __call__(self, feats_BxC: jax.Array) -> jax.Array:
    img_BxD = _cosine_rows(self.image(feats_BxC.astype(jnp.float32)))
    return (img_BxD @ self.pair_embeddings().T / self.temperature).astype(jnp.float32)


def cge_adjacency(pairs: Pairs) -> np.ndarray:
  """D^-1/2 (A + I) D^-1/2 [N, N] float32 over nodes (attrs, objs, pairs) in that order.

  Edges: pair-attr, pair-obj and attr-obj for each pair, plus self-loops. Dense: fine for
  MIT-States/UT-Zappos; C-GQA's ~10k nodes make it ~400 MB in float32, and a sparse product
  (BCOO or segment sums over the edge list) would be the next step there.
  """
  a, o, p = len(pairs.attrs), len(pairs.objs), len(pairs.pairs)
  attr_P, obj_P = pairs.pair_attr, a + pairs.pair_obj
  pair_P = a + o + np.arange(p)
  adj = np.eye(a + o + p, dtype=np.float64)
  for u, w in ((pair_P, attr_P), (pair_P, obj_P), (attr_P, obj_P)):
    adj[u, w] = adj[w, u] = 1.0  # binary: pairs are unique, so no edge is counted twice
  inv_sqrt_N = 1.0 / np.sqrt(adj.sum(axis=1))
  return (adj * inv_sqrt_N[:, None] * inv_sqrt_N[None, :]).astype(np.float32)


def _gcn_layer(adj_MxN: jax.Array, x_NxI: jax.Array, layer: nnx.Linear) -> jax.Array:
  """adj @ x @ W + b, multiplying by the N x N matrix on the narrower side (the cheaper order)."""
  if layer.in_features <= layer.out_features:
    return layer(adj_MxN @ x_NxI)
  return adj_MxN @ (x_NxI @ layer.kernel[...]) + layer.bias[...]


class CGE(nnx.Module):
  """Compositional Graph Embedding: logits = img(x) @ GCN(X)[pair nodes]^T (no normalization).

  Node features X: word vectors (fixed, the GCN learns to map them; a pair node gets the mean of
  its attr's and obj's) if given, else a trainable nnx.Param N(0, 1) of width ``node_dim``.
  GCN: H1 = relu(Â X W1 + b1) of width ``gcn_hidden`` (4096 in the paper), H2 = Â H1 W2 + b2 of
  width emb_dim; only the pair rows of H2 are computed.
  """

  def __init__(self, feat_dim: int, pairs: Pairs, *, emb_dim: int, gcn_hidden: int,
               img_hidden: int, img_layers: int = 2, word_vectors: np.ndarray | None = None,
               node_dim: int | None = None, rngs: nnx.Rngs):
    a, o, p = len(pairs.attrs), len(pairs.objs), len(pairs.pairs)
    v = _check_vectors(word_vectors, pairs)
    if v is None:
      shape = (a + o + p, node_dim or emb_dim)
      self.nodes_NxW = nnx.Param(jax.random.normal(rngs.params(), shape))
    else:
      pair_PxW = (v[pairs.pair_attr] + v[a + pairs.pair_obj]) / 2
      self.nodes_NxW = Const(jnp.asarray(np.concatenate([v, pair_PxW])))
    self.adj_NxN = Const(jnp.asarray(cge_adjacency(pairs)))
    self.num_primitives = a + o  # pair nodes are rows [a + o, N) of the graph
    self.gcn1 = nnx.Linear(self.nodes_NxW.shape[1], gcn_hidden, rngs=rngs)
    self.gcn2 = nnx.Linear(gcn_hidden, emb_dim, rngs=rngs)
    self.image = ImageEmbedder(feat_dim, emb_dim, img_hidden, img_layers, rngs=rngs)

  def pair_embeddings(self) -> jax.Array:
    """[P, D]."""
    adj = self.adj_NxN[...]
    h1_NxH = jax.nn.relu(_gcn_layer(adj, self.nodes_NxW[...], self.gcn1))
    return _gcn_layer(adj[self.num_primitives:], h1_NxH, self.gcn2)

  def __call__(self, feats_BxC: jax.Array) -> jax.Array:
    img_BxD = self.image(feats_BxC.astype(jnp.float32))
    return (img_BxD @ self.pair_embeddings().T).astype(jnp.float32)


def build_czsl_head(kind: str, feat_dim: int, pairs: Pairs, *, emb_dim: int, hidden: int,
                    img_layers: int, word_vectors_path: str, temperature: float,
                    rngs: nnx.Rngs) -> nnx.Module:
  """The head ``kind`` ("compcos" | "cge"). ``hidden`` is the image MLP's hidden width and CGE's
  GCN hidden width; an empty ``word_vectors_path`` learns the primitive/node embeddings (width
  emb_dim); ``temperature`` is CompCos's (CGE has none)."""
  if kind not in KINDS:
    raise ValueError(f"unknown CZSL head {kind!r}; choose one of {KINDS}")
  vectors = (load_word_vectors(word_vectors_path, list(pairs.attrs) + list(pairs.objs))
             if word_vectors_path else None)
  if kind == "compcos":
    return CompCos(feat_dim, pairs, emb_dim=emb_dim, img_hidden=hidden, img_layers=img_layers,
                   word_vectors=vectors, temperature=temperature, rngs=rngs)
  return CGE(feat_dim, pairs, emb_dim=emb_dim, gcn_hidden=hidden, img_hidden=hidden,
             img_layers=img_layers, word_vectors=vectors, rngs=rngs)

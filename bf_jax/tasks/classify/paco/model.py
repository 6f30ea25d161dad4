"""PaCo's two encoders, with BatchFormer in the online one (training only).

Online: backbone -> f -> [f; BF(f)] -> the linear classifier (the class centers, the test-time
model); f (and, with ``paco.bf_branches="both"``, BF(f)) -> projector -> unit queries.
Momentum: its own backbone and projector, an EMA of the online ones -> unit keys. It has no
BatchFormer, so a key never depends on which other images share the batch. With "both" the
projector's BatchNorm sees both streams' rows together (as MoCo's projector does here).
Stream letters in tensor names: S streams (1 without BatchFormer, 2 with: original first).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from bf_jax.layer.batchformer import BatchFormer
from bf_jax.models.classifier import build_backbone, build_batchformer
from bf_jax.tasks.classify.paco.loss import unit

BF_BRANCHES = ("centers", "both")


class Projector(nnx.Module):
  """PaCo's MLP head: Linear(C, C), BatchNorm (synchronized over ``axis_name``), ReLU,
  Linear(C, dim)."""

  def __init__(self, in_dim: int, out_dim: int, *, axis_name: str | None, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(in_dim, in_dim, rngs=rngs)
    self.norm = nnx.BatchNorm(in_dim, momentum=0.9, epsilon=1e-5, axis_name=axis_name, rngs=rngs)
    self.out = nnx.Linear(in_dim, out_dim, rngs=rngs)

  def __call__(self, x_NxC: jax.Array, train: bool) -> jax.Array:
    return self.out(jax.nn.relu(self.norm(self.hidden(x_NxC), use_running_average=not train)))


class PaCo(nnx.Module):
  """``train_outputs`` for the loss; ``eval_logits`` is the classifier alone (no BatchFormer)."""

  def __init__(self, backbone: nnx.Module, bf: BatchFormer | None, head: nnx.Module,
               projector: Projector, bf_branches: str):
    self.backbone, self.bf, self.head, self.projector = backbone, bf, head, projector
    self.bf_branches = bf_branches

  def train_outputs(self, images: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(unit queries [S', b, D], classifier logits [S, b, K]); S' = S with
    ``bf_branches="both"``, else 1 (the contrastive branch on the original stream only)."""
    feats_bxC = self.backbone(images, train=True)
    streams_SxbxC = feats_bxC[None]
    if self.bf is not None:
      bf_bxC = self.bf(feats_bxC, deterministic=False, rngs=key)
      streams_SxbxC = jnp.stack([feats_bxC, bf_bxC])
    s, b, c = streams_SxbxC.shape
    logits_SxbxK = self.head(streams_SxbxC.reshape(s * b, c)).reshape(s, b, -1)
    contrasted = streams_SxbxC if self.bf_branches == "both" else streams_SxbxC[:1]
    z_NxD = self.projector(contrasted.reshape(-1, c), train=True)
    return unit(z_NxD).reshape(contrasted.shape[0], b, -1), logits_SxbxK

  def eval_logits(self, images: jax.Array) -> jax.Array:
    return self.head(self.backbone(images, train=False))


class KeyEncoder(nnx.Module):
  """The momentum encoder: backbone and projector (their parameters an EMA of the online
  ones), BatchNorm on batch statistics as MoCo's key encoder."""

  def __init__(self, backbone: nnx.Module, projector: Projector):
    self.backbone, self.projector = backbone, projector

  def __call__(self, images: jax.Array) -> jax.Array:
    return unit(self.projector(self.backbone(images, train=True), train=True))


def build_paco(config, num_classes: int, image_shape: tuple[int, ...], local_batch: int,
               axis_name: str = "data") -> tuple[PaCo, KeyEncoder]:
  """(online, momentum); the momentum parameters are replaced by a copy of the online ones.

  The BatchFormer draws from its own stream (``bf_stream``), so with bf on or off one seed
  gives the same backbone, classifier and projector: the arms of a comparison start paired.
  """
  def parts(rngs: nnx.Rngs):
    backbone = build_backbone(config.model, image_shape, rngs, axis_name)
    return backbone, Projector(backbone.feat_dim, config.paco.dim, axis_name=axis_name,
                               rngs=rngs)

  rngs = nnx.Rngs(config.seed)
  backbone = build_backbone(config.model, image_shape, rngs, axis_name)
  bf = build_batchformer(config.bf, backbone.feat_dim, local_batch, rngs, axis_name)
  head = nnx.Linear(backbone.feat_dim, num_classes, rngs=rngs)
  projector = Projector(backbone.feat_dim, config.paco.dim, axis_name=axis_name, rngs=rngs)
  online = PaCo(backbone, bf, head, projector, config.paco.bf_branches)
  return online, KeyEncoder(*parts(nnx.Rngs(config.seed + 1)))

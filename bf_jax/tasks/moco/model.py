"""MoCo v3 (Chen, Xie, He 2021) with BatchFormer as the first module of the projector.

Online model: backbone -> [f; BF(f)] (two streams, training only) -> projector MLP ->
predictor MLP -> queries. Momentum model: its own backbone, its own BatchFormer copy (or none)
and projector, each an EMA of the online one, -> keys. Neither model ever holds the other's
modules: the upstream code put one BatchFormer instance inside both encoders, so the momentum
encoder's freeze loop also froze it at its random init; here the trainable layer is only in the
online model and gets gradients (``tests/tasks/moco/test_moco.py`` checks that it changes).

The projector's BatchNorm sees both streams' rows together, as upstream's concatenation did.
Stream letters in tensor names: S streams (1 without BatchFormer, 2 with: original first).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from bf_jax.layer.batchformer import BatchFormer


class ProjectionMLP(nnx.Module):
  """MoCo v3's MLP: (Linear no-bias, BN, ReLU) x (layers - 1), Linear no-bias, [BN no affine].

  BatchNorm is synchronized over ``axis_name``, as MoCo v3's SyncBatchNorm.
  """

  def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int,
               last_bn: bool, *, axis_name: str | None, rngs: nnx.Rngs):
    dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
    self.linears = nnx.List([nnx.Linear(a, b, use_bias=False, rngs=rngs)
                             for a, b in zip(dims[:-1], dims[1:])])
    bn = lambda d, affine: nnx.BatchNorm(d, momentum=0.9, epsilon=1e-5, use_scale=affine,
                                         use_bias=affine, axis_name=axis_name, rngs=rngs)
    self.norms = nnx.List([bn(d, True) for d in dims[1:-1]] + ([bn(out_dim, False)]
                                                                if last_bn else []))

  def __call__(self, x_NxC: jax.Array, train: bool) -> jax.Array:
    for i, linear in enumerate(self.linears):
      x_NxC = linear(x_NxC)
      if i < len(self.norms):
        x_NxC = self.norms[i](x_NxC, use_running_average=not train)
      if i < len(self.linears) - 1:
        x_NxC = jax.nn.relu(x_NxC)
    return x_NxC


def _streams(feats_BxC: jax.Array, bf: BatchFormer | None, key: jax.Array) -> jax.Array:
  """[S*B, C]: the features, then BF(features) when there is a BatchFormer."""
  if bf is None:
    return feats_BxC
  return jnp.concatenate([feats_BxC, bf(feats_BxC, deterministic=False, rngs=key)], axis=0)


class MomentumEncoder(nnx.Module):
  """Backbone, optional BatchFormer copy, projector: the key encoder, never trained directly."""

  def __init__(self, backbone: nnx.Module, bf: BatchFormer | None, projector: ProjectionMLP):
    self.backbone, self.bf, self.projector = backbone, bf, projector

  def __call__(self, images: jax.Array, key: jax.Array) -> jax.Array:
    """Keys [S, B, D] of one view (batch statistics in BatchNorm, as MoCo v3)."""
    b = images.shape[0]
    z = self.projector(_streams(self.backbone(images, train=True), self.bf, key), train=True)
    return z.reshape(-1, b, z.shape[-1])


class MoCo(nnx.Module):
  """The online model: ``queries`` for training, ``features`` for the kNN monitor and probes.

  Top-level groups are named like the classifier's (``backbone``, ``bf``) so a linear evaluation
  loads ``backbone`` from a MoCo checkpoint with ``init.parts=("backbone",)``.
  """

  def __init__(self, backbone: nnx.Module, bf: BatchFormer | None, projector: ProjectionMLP,
               predictor: ProjectionMLP):
    self.backbone, self.bf, self.projector, self.predictor = backbone, bf, projector, predictor

  def queries(self, images: jax.Array, key: jax.Array) -> jax.Array:
    """Queries [S, B, D] of one view; stream 0 is the original, stream 1 BatchFormer's."""
    b = images.shape[0]
    z = self.projector(_streams(self.backbone(images, train=True), self.bf, key), train=True)
    q = self.predictor(z, train=True)
    return q.reshape(-1, b, q.shape[-1])

  def features(self, images: jax.Array) -> jax.Array:
    """Pooled backbone features [B, C] in eval mode: what a probe or kNN sees (no BatchFormer)."""
    return self.backbone(images, train=False)


def build_moco(moco_cfg, backbone_fn, bf_fn, seed: int, axis_name: str = "data"
               ) -> tuple[MoCo, MomentumEncoder]:
  """(online, momentum) from factories; ``momentum_params`` makes the second a copy of the first.

  ``backbone_fn(rngs)`` and ``bf_fn(dim, rngs)`` (None for no BatchFormer) build the parts;
  ``moco_cfg.momentum_bf`` "ema" gives the momentum model its own BatchFormer, "none" none.
  """
  def encoder(rngs: nnx.Rngs, with_bf: bool):
    backbone = backbone_fn(rngs)
    bf = bf_fn(backbone.feat_dim, rngs) if with_bf else None
    projector = ProjectionMLP(backbone.feat_dim, moco_cfg.mlp_dim, moco_cfg.dim,
                              moco_cfg.projector_layers, True, axis_name=axis_name, rngs=rngs)
    return backbone, bf, projector

  rngs = nnx.Rngs(seed)
  backbone, bf, projector = encoder(rngs, True)
  predictor = ProjectionMLP(moco_cfg.dim, moco_cfg.mlp_dim, moco_cfg.dim,
                            moco_cfg.predictor_layers, False, axis_name=axis_name, rngs=rngs)
  online = MoCo(backbone, bf, projector, predictor)
  momentum = MomentumEncoder(*encoder(nnx.Rngs(seed + 1), bf is not None
                                      and moco_cfg.momentum_bf == "ema"))
  return online, momentum


def momentum_params(online_params: dict, momentum_template: dict) -> dict:
  """The online parameters of every group the momentum model has (MoCo v3's initial copy)."""
  return {k: jax.tree.map(jnp.copy, online_params[k]) for k in momentum_template}

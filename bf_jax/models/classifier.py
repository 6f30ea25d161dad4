"""Backbone + BatchFormer (training only) + one head shared by both streams."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from bf_jax.batchformer import BatchFormer, two_stream
from bf_jax.models.backbones import MLP, TinyCNN
from bf_jax.models.resnet import ARCHS, build_resnet

BACKBONES = ("mlp", "cnn", *ARCHS)
HEADS = ("linear", "cosine")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class CosineHead(nnx.Module):
  """scale * cos(feature, class weight): the normed linear classifier of LDAM and RIDE."""

  def __init__(self, dim: int, num_classes: int, scale: float, *, rngs: nnx.Rngs):
    init = nnx.initializers.uniform(2.0)
    self.kernel = nnx.Param(init(rngs.params(), (dim, num_classes)) - 1.0)
    self.scale = scale

  def __call__(self, feats_NxC: jax.Array) -> jax.Array:
    f = feats_NxC / (jnp.linalg.norm(feats_NxC, axis=-1, keepdims=True) + 1e-12)
    w = self.kernel[...] / (jnp.linalg.norm(self.kernel[...], axis=0, keepdims=True) + 1e-12)
    return self.scale * f @ w


def build_head(model_cfg, dim: int, num_classes: int, rngs: nnx.Rngs) -> nnx.Module:
  if model_cfg.head == "cosine":
    return CosineHead(dim, num_classes, model_cfg.head_scale, rngs=rngs)
  if model_cfg.head == "linear":
    return nnx.Linear(dim, num_classes, rngs=rngs)
  raise ValueError(f"model.head={model_cfg.head!r} is unknown; choose one of {HEADS}.")


class Classifier(nnx.Module):
  """``train_logits`` runs the two-stream training path; ``eval_logits`` never touches ``bf``."""

  def __init__(self, backbone: nnx.Module, head: nnx.Module, bf: BatchFormer | None,
               bf_mode: str):
    self.backbone = backbone
    self.bf = bf
    self.bf_mode = bf_mode
    self.head = head

  def train_logits(self, images: jax.Array, labels_B: jax.Array,
                   key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Logits and labels of the training batch: 2B rows in 'shared' mode, B otherwise."""
    feats_BxC = self.backbone(images, train=True)
    if self.bf is None:
      return self.head(feats_BxC), labels_B
    feats, labels = two_stream(feats_BxC, labels_B, self.bf, self.bf_mode, rngs=key)
    return self.head(feats), labels

  def eval_logits(self, images: jax.Array) -> jax.Array:
    return self.head(self.backbone(images, train=False))


def scope_to_group_size(scope: str, local_batch: int) -> int | None:
  """'global' -> None, 'device' -> the per-device batch, '<k>' -> k."""
  if scope == "global":
    return None
  if scope == "device":
    return local_batch
  return int(scope)


def build_backbone(model_cfg, image_shape: tuple[int, ...], rngs: nnx.Rngs,
                   axis_name: str = "data") -> nnx.Module:
  dtype = DTYPES[model_cfg.dtype]
  if model_cfg.name == "mlp":
    return MLP(image_shape, model_cfg.width, model_cfg.depth, rngs=rngs)
  if model_cfg.name == "cnn":
    return TinyCNN(image_shape, model_cfg.width, model_cfg.depth, axis_name=axis_name, rngs=rngs)
  if model_cfg.name in ARCHS:
    return build_resnet(model_cfg.name, image_shape[-1], width_mult=model_cfg.width_mult,
                        axis_name=axis_name, dtype=dtype, rngs=rngs)
  raise ValueError(f"model.name={model_cfg.name!r} is unknown; choose one of {BACKBONES}.")


def build_batchformer(bf_cfg, dim: int, local_batch: int, rngs: nnx.Rngs,
                      axis_name: str = "data") -> BatchFormer | None:
  if not bf_cfg.enabled:
    return None
  return BatchFormer(dim, num_heads=bf_cfg.num_heads, dropout=bf_cfg.dropout,
                     num_layers=bf_cfg.num_layers, axis_name=axis_name,
                     group_size=scope_to_group_size(bf_cfg.scope, local_batch), rngs=rngs)


def build_model(model_cfg, bf_cfg, num_classes: int, image_shape: tuple[int, ...],
                local_batch: int, seed: int, axis_name: str = "data") -> Classifier:
  """The classifier a config describes; parameters depend only on the config and seed."""
  rngs = nnx.Rngs(seed)
  backbone = build_backbone(model_cfg, image_shape, rngs, axis_name)
  bf = build_batchformer(bf_cfg, backbone.feat_dim, local_batch, rngs, axis_name)
  head = build_head(model_cfg, backbone.feat_dim, num_classes, rngs)
  return Classifier(backbone, head, bf, bf_cfg.mode)

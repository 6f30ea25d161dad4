"""Backbone + BatchFormer (training only) + one linear head shared by both streams."""

from __future__ import annotations

import jax
from flax import nnx

from bf_jax.batchformer import BatchFormer, two_stream
from bf_jax.models.backbones import MLP, TinyCNN

BACKBONES = ("mlp", "cnn")


class Classifier(nnx.Module):
  """``train_logits`` runs the two-stream training path; ``eval_logits`` never touches ``bf``."""

  def __init__(self, backbone: nnx.Module, num_classes: int, bf: BatchFormer | None,
               bf_mode: str, *, rngs: nnx.Rngs):
    self.backbone = backbone
    self.bf = bf
    self.bf_mode = bf_mode
    self.head = nnx.Linear(backbone.feat_dim, num_classes, rngs=rngs)

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


def build_model(model_cfg, bf_cfg, num_classes: int, image_shape: tuple[int, ...],
                local_batch: int, seed: int, axis_name: str = "data") -> Classifier:
  """The classifier a config describes; parameters depend only on the config and seed."""
  rngs = nnx.Rngs(seed)
  if model_cfg.name == "mlp":
    backbone = MLP(image_shape, model_cfg.width, model_cfg.depth, rngs=rngs)
  elif model_cfg.name == "cnn":
    backbone = TinyCNN(image_shape, model_cfg.width, model_cfg.depth, axis_name=axis_name,
                       rngs=rngs)
  else:
    raise ValueError(f"model.name={model_cfg.name!r} is unknown; choose one of {BACKBONES}.")
  bf = None
  if bf_cfg.enabled:
    bf = BatchFormer(backbone.feat_dim, num_heads=bf_cfg.num_heads, dropout=bf_cfg.dropout,
                     num_layers=bf_cfg.num_layers, axis_name=axis_name,
                     group_size=scope_to_group_size(bf_cfg.scope, local_batch), rngs=rngs)
  return Classifier(backbone, num_classes, bf, bf_cfg.mode, rngs=rngs)

"""Backbone + BatchFormer (training only) + one head shared by both streams."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from bf_jax.layer.batchformer import BatchFormer, two_stream
from bf_jax.models import bf_config
from bf_jax.models.backbones import MLP, ConvNet, TinyCNN
from bf_jax.models.heads import HEADS, build_head
from bf_jax.models.init_streams import bf_stream
from bf_jax.models.resnet import ARCHS, build_resnet
from bf_jax.models.ride import RIDE
from bf_jax.models.vit import VIT_ARCHS, build_vit

BACKBONES = ("mlp", "cnn", "convnet", *ARCHS, *VIT_ARCHS)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class Classifier(nnx.Module):
  """``train_logits`` runs the two-stream training path; ``eval_logits`` never touches ``bf``."""

  def __init__(self, backbone: nnx.Module, head: nnx.Module, bf: BatchFormer | None,
               bf_mode: str, freeze_backbone: bool = False, freeze_bn: bool = False):
    self.backbone = backbone
    self.freeze_backbone = freeze_backbone
    self.freeze_bn = freeze_bn  # BatchNorm on its running statistics, affine still trained
    self.bf = bf
    self.bf_mode = bf_mode
    self.head = head

  def train_logits(self, images: jax.Array, labels_B: jax.Array,
                   key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Logits and labels of the training batch: 2B rows in 'shared' mode, B otherwise."""
    if self.freeze_backbone:  # classifier re-training: fixed features, running BN statistics
      feats_BxC = jax.lax.stop_gradient(self.backbone(images, train=False))
    else:  # the backbones' ``train`` flag only switches BatchNorm (they have no dropout)
      feats_BxC = self.backbone(images, train=not self.freeze_bn)
    if self.bf is None:
      return self.head(feats_BxC), labels_B
    feats, labels = two_stream(feats_BxC, labels_B, self.bf, self.bf_mode, rngs=key)
    return self.head(feats), labels

  def eval_logits(self, images: jax.Array) -> jax.Array:
    return self.head(self.backbone(images, train=False))

  def probe_features(self, images: jax.Array) -> jax.Array:
    """The BatchFormer's input for a probe batch: eval-mode features (BatchNorm's running
    statistics), so a probe does not depend on the other samples beyond the layer."""
    return self.backbone(images, train=False)


def build_backbone(model_cfg, image_shape: tuple[int, ...], rngs: nnx.Rngs,
                   axis_name: str = "data") -> nnx.Module:
  dtype = DTYPES[model_cfg.dtype]
  if model_cfg.name == "mlp":
    return MLP(image_shape, model_cfg.width, model_cfg.depth, rngs=rngs)
  if model_cfg.name == "cnn":
    return TinyCNN(image_shape, model_cfg.width, model_cfg.depth, axis_name=axis_name, rngs=rngs)
  if model_cfg.name == "convnet":
    return ConvNet(image_shape, model_cfg.width, model_cfg.depth, axis_name=axis_name, rngs=rngs)
  if model_cfg.name in ARCHS:
    return build_resnet(model_cfg.name, image_shape[-1], width_mult=model_cfg.width_mult,
                        axis_name=axis_name, dtype=dtype, rngs=rngs,
                        scan_layers=model_cfg.scan_layers)
  raise ValueError(f"model.name={model_cfg.name!r} is unknown; choose one of {BACKBONES}.")


def build_batchformer(bf_cfg, dim: int, local_batch: int, rngs: nnx.Rngs,
                      axis_name: str = "data") -> BatchFormer | None:
  if not bf_cfg.enabled:
    return None
  kwargs = bf_config.layer_kwargs(bf_cfg, dim, local_batch, axis_name)
  return BatchFormer(dim, **kwargs, rngs=bf_stream(rngs))


def build_model(model_cfg, bf_cfg, num_classes: int, image_shape: tuple[int, ...],
                local_batch: int, seed: int, axis_name: str = "data",
                freeze_backbone: bool = False) -> nnx.Module:
  """The classifier a config describes; parameters depend only on the config and seed.

  ``model.experts > 0`` builds RIDE on the ResNet ``model.name`` (cosine heads, one shared
  BatchFormer); otherwise backbone + BatchFormer + one head.
  """
  rngs = nnx.Rngs(seed)
  if model_cfg.name in VIT_ARCHS:  # BatchFormerV2 inside the ViT (bf_jax/layer/v2.py)
    size, _, chans = image_shape
    insert_after = tuple(bf_cfg.insert_after) if bf_cfg.enabled else ()
    bf_kwargs = bf_config.layer_kwargs(bf_cfg, VIT_ARCHS[model_cfg.name][0], local_batch,
                                       axis_name, "another model.name")
    return build_vit(model_cfg.name, size, model_cfg.patch, chans, num_classes,
                     drop_path=model_cfg.drop_path, insert_after=insert_after,
                     shared_bf=bf_cfg.shared_layers, bf_kwargs=bf_kwargs,
                     dtype=DTYPES[model_cfg.dtype], rngs=rngs, remat=model_cfg.remat,
                     scan_layers=model_cfg.scan_layers,
                     split_after=tuple(bf_cfg.insert_after))  # both arms alike
  if model_cfg.experts:
    if freeze_backbone:
      raise ValueError("init.freeze_backbone is for the single-head classifier, not RIDE "
                       "(model.experts > 0).")
    if model_cfg.name not in ARCHS:
      raise ValueError(f"model.experts={model_cfg.experts} (RIDE) needs a ResNet model.name, "
                       f"one of {tuple(ARCHS)}; got {model_cfg.name!r}.")
    return RIDE(model_cfg.name, model_cfg.experts, image_shape[-1], num_classes,
                width_mult=model_cfg.width_mult, head_scale=model_cfg.head_scale,
                bf_mode=bf_cfg.mode, axis_name=axis_name, dtype=DTYPES[model_cfg.dtype],
                rngs=rngs, scan_layers=model_cfg.scan_layers,
                bf_factory=lambda dim: build_batchformer(bf_cfg, dim, local_batch, rngs, axis_name))
  backbone = build_backbone(model_cfg, image_shape, rngs, axis_name)
  bf = build_batchformer(bf_cfg, backbone.feat_dim, local_batch, rngs, axis_name)
  head = build_head(model_cfg, backbone.feat_dim, num_classes, rngs)
  return Classifier(backbone, head, bf, bf_cfg.mode, freeze_backbone,
                    model_cfg.get("freeze_bn", False))

"""RIDE (Wang et al. 2021): routing diverse distribution-aware experts, with one BatchFormer.

Shared early stages; each expert has its own later stages (with RIDE's reduced widths) and a
cosine classifier. One BatchFormer is shared by the experts and applied to each expert's pooled
features: ``bf_only`` (upstream's ImageNet-LT / iNat recipe) or ``shared`` two-stream (needed
on CIFAR-100-LT). Training returns logits [N, E, K] for the RIDE loss; eval averages the experts
and never touches the BatchFormer. The expert-routing stage (a later efficiency step) is not
included: all experts run at eval.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from bf_jax.layer.batchformer import BatchFormer, two_stream
from bf_jax.models.heads import CosineHead
from bf_jax.models.resnet import Stages, Stem, arch, global_pool

# Shared stages (stem included): CIFAR ResNet-32 shares layer1, ImageNet ResNets layer1-2.
SHARED_STAGES = {True: 1, False: 2}


class RIDE(nnx.Module):
  """Multi-expert ResNet with cosine classifiers and an optional shared BatchFormer."""

  def __init__(self, arch_name: str, num_experts: int, in_chans: int, num_classes: int, *,
               width_mult: float, head_scale: float, bf_mode: str, axis_name: str | None,
               dtype: Any, rngs: nnx.Rngs, scan_layers: bool = False,
               bf_factory: Callable[[int], BatchFormer | None] = lambda dim: None):
    block, depths, widths, cifar, shortcut, groups, base_width = arch(arch_name)
    k = SHARED_STAGES[cifar]
    expert_widths = [max(1, int(round(w * width_mult))) for w in widths[k:]]
    kw = dict(shortcut=shortcut, axis_name=axis_name, dtype=dtype, groups=groups,
              base_width=base_width, rngs=rngs, scan_layers=scan_layers)
    stem_width = widths[0] if cifar else 64
    self.stem = Stem(in_chans, stem_width, cifar, axis_name, dtype, rngs)
    self.shared = Stages(block, depths[:k], widths[:k], stem_width, downsample_first=False, **kw)
    self.experts = nnx.List([
        Stages(block, depths[k:], expert_widths, self.shared.feat_dim, downsample_first=True, **kw)
        for _ in range(num_experts)])
    self.feat_dim = self.experts[0].feat_dim
    self.heads = nnx.List([CosineHead(self.feat_dim, num_classes, head_scale, rngs=rngs)
                           for _ in range(num_experts)])
    self.bf = bf_factory(self.feat_dim)  # built here: its dim is the experts' feature dim
    self.bf_mode = bf_mode

  def _trunk(self, images: jax.Array, train: bool) -> jax.Array:
    return self.shared(self.stem(images, train), train)

  def train_logits(self, images: jax.Array, labels_B: jax.Array,
                   key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-expert logits [N, E, K] (N = 2B in 'shared' mode) and their labels."""
    h = self._trunk(images, train=True)
    logits, labels = [], labels_B
    for e, (stages, head) in enumerate(zip(self.experts, self.heads)):
      feats_BxC = global_pool(stages(h, train=True))
      if self.bf is not None:  # one layer for all experts; its own dropout draw per expert
        feats_BxC, labels = two_stream(feats_BxC, labels_B, self.bf, self.bf_mode,
                                       rngs=jax.random.fold_in(key, e))
      logits.append(head(feats_BxC))
    return jnp.stack(logits, axis=1), labels

  def eval_logits(self, images: jax.Array) -> jax.Array:
    h = self._trunk(images, train=False)
    return jnp.mean(jnp.stack([head(global_pool(stages(h, train=False)))
                               for stages, head in zip(self.experts, self.heads)]), axis=0)

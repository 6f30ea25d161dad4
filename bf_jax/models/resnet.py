"""ResNets in NNX: the CIFAR ResNet-32 of the long-tail literature and ImageNet-style ResNets.

Every backbone maps images [B, H, W, C_in] to pooled features [B, feat_dim]. BatchNorm takes
batch statistics when ``train`` and synchronizes them over ``axis_name`` (the whole global
batch). ``dtype`` is the compute dtype (bfloat16 on accelerators); parameters stay float32.

Feature dims: ResNet-32 64 (RIDE's reduced width 48), ResNet-10 512, ResNet-50/152 and
ResNeXt-50 2048 (RIDE reduces them to 384 / 1536 through ``width_mult``).
"""

from __future__ import annotations

import logging
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from bf_jax.models import scan_blocks

# torchvision's init for convs: kaiming normal, fan_out, ReLU gain.
_CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def _bn(c: int, axis_name: str | None, dtype: Any, rngs: nnx.Rngs):
  return nnx.BatchNorm(c, momentum=0.9, epsilon=1e-5, axis_name=axis_name, dtype=dtype, rngs=rngs)


class Conv(nnx.Conv):
  """``nnx.Conv`` whose 1x1 convolutions run as a matmul on CPU.

  XLA:CPU computes a convolution's weight gradient as another convolution with the batch as
  channels and the feature map as the window, which for 1x1 kernels was the largest cost of a
  ResNet-50 step (profiled: 2.2 s for one layer's gradient, where the equivalent matmul is
  6.6 GFLOP). As ``x @ W`` the gradient is a plain matmul. Same parameters and values; GPUs and
  TPUs keep the convolution, which their libraries already handle well.
  """

  def __call__(self, inputs: jax.Array, out_sharding=None) -> jax.Array:
    if (self.kernel_size != (1, 1) or self.feature_group_count != 1 or self.use_bias
        or jax.default_backend() != "cpu"):
      return super().__call__(inputs, out_sharding)
    stride = self.strides if isinstance(self.strides, int) else self.strides[0]
    x = inputs[:, ::stride, ::stride, :]  # padding is 0 for a 1x1 kernel
    kernel = self.kernel[...][0, 0]
    if self.dtype is not None:
      x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    return jnp.dot(x, kernel, precision=self.precision)


def _conv(cin: int, cout: int, k: int, stride: int, dtype: Any, rngs: nnx.Rngs, groups: int = 1):
  return Conv(cin, cout, (k, k), strides=stride, padding=k // 2, use_bias=False,
              feature_group_count=groups, kernel_init=_CONV_INIT, dtype=dtype, rngs=rngs)


class BasicBlock(nnx.Module):
  expansion = 1

  def __init__(self, cin: int, width: int, stride: int, *, shortcut: str, axis_name, dtype,
               rngs: nnx.Rngs, groups: int = 1, base_width: int = 64):
    del groups, base_width
    self.conv1 = _conv(cin, width, 3, stride, dtype, rngs)
    self.bn1 = _bn(width, axis_name, dtype, rngs)
    self.conv2 = _conv(width, width, 3, 1, dtype, rngs)
    self.bn2 = _bn(width, axis_name, dtype, rngs)
    self.shortcut, self.stride, self.pad = _make_shortcut(cin, width, stride, shortcut, axis_name,
                                                          dtype, rngs)

  def __call__(self, x, train: bool):
    h = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=not train))
    h = self.bn2(self.conv2(h), use_running_average=not train)
    return jax.nn.relu(h + _apply_shortcut(self, x, train))


class Bottleneck(nnx.Module):
  expansion = 4

  def __init__(self, cin: int, width: int, stride: int, *, shortcut: str, axis_name, dtype,
               rngs: nnx.Rngs, groups: int = 1, base_width: int = 64):
    inner = int(width * (base_width / 64.0)) * groups
    self.conv1 = _conv(cin, inner, 1, 1, dtype, rngs)
    self.bn1 = _bn(inner, axis_name, dtype, rngs)
    self.conv2 = _conv(inner, inner, 3, stride, dtype, rngs, groups=groups)
    self.bn2 = _bn(inner, axis_name, dtype, rngs)
    self.conv3 = _conv(inner, width * 4, 1, 1, dtype, rngs)
    self.bn3 = _bn(width * 4, axis_name, dtype, rngs)
    self.shortcut, self.stride, self.pad = _make_shortcut(cin, width * 4, stride, shortcut,
                                                          axis_name, dtype, rngs)

  def __call__(self, x, train: bool):
    h = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=not train))
    h = jax.nn.relu(self.bn2(self.conv2(h), use_running_average=not train))
    h = self.bn3(self.conv3(h), use_running_average=not train)
    return jax.nn.relu(h + _apply_shortcut(self, x, train))


def _make_shortcut(cin, cout, stride, kind, axis_name, dtype, rngs):
  """'B': 1x1 conv + BN when the shape changes. 'A': parameter-free subsample + zero-pad."""
  if stride == 1 and cin == cout:
    return None, stride, 0
  if kind == "A":
    return None, stride, cout - cin
  return nnx.List([_conv(cin, cout, 1, stride, dtype, rngs),
                   _bn(cout, axis_name, dtype, rngs)]), stride, 0


def _apply_shortcut(block, x, train: bool):
  if block.shortcut is not None:
    conv, bn = block.shortcut
    return bn(conv(x), use_running_average=not train)
  if block.stride == 1 and block.pad == 0:
    return x
  x = x[:, ::block.stride, ::block.stride, :]
  half = block.pad // 2
  return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (half, block.pad - half)))


def stage_runs(depths: list[int]) -> list[tuple[int, int]]:
  """The runs a scan covers: each stage's blocks after its first (which changes the shape)."""
  starts = [sum(depths[:i]) for i in range(len(depths))]
  return [(a + 1, a + d) for a, d in zip(starts, depths) if d > 1]


class Stages(nnx.Module):
  """Residual stages; the first block of every stage but (optionally) the first has stride 2.

  ``scan_layers``: each stage's first block alone (``singles``), the rest as one scan over
  their stacked parameters and BatchNorm statistics (``block_stacks``; bf_jax/models/
  scan_blocks.py), built from the same values as unrolled.
  """

  def __init__(self, block: type, depths: list[int], widths: list[int], cin: int, *,
               downsample_first: bool, shortcut: str, axis_name: str | None, dtype: Any,
               groups: int, base_width: int, rngs: nnx.Rngs, scan_layers: bool = False):
    blocks = []
    for i, (depth, width) in enumerate(zip(depths, widths)):
      for j in range(depth):
        stride = 2 if j == 0 and (i > 0 or downsample_first) else 1
        blocks.append(block(cin, width, stride, shortcut=shortcut, axis_name=axis_name,
                            dtype=dtype, rngs=rngs, groups=groups, base_width=base_width))
        cin = width * block.expansion
    self.feat_dim = cin
    self.scan_layers = scan_layers
    if not scan_layers:
      self.blocks = nnx.List(blocks)
      return
    if jax.default_backend() == "cpu":
      logging.getLogger("bf_jax").warning(
          "model.scan_layers=True on a CPU: XLA's CPU backend runs the backward convolutions "
          "of a scanned block many times slower than unrolled ones (benchmarks/conv_scan.py: "
          "about 20x); it is for accelerators, where it saves compile time.")
    self.runs = tuple(stage_runs(depths))
    firsts = scan_blocks.singles(len(blocks), self.runs)
    self.singles = nnx.List([blocks[i] for i in firsts])
    self.block_stacks = nnx.List([scan_blocks.stack(blocks[a:b]) for a, b in self.runs])
    # The order of execution: ("single", n) or ("stack", j), by first block index.
    order = [(i, "single", n) for n, i in enumerate(firsts)]
    order += [(a, "stack", j) for j, (a, _) in enumerate(self.runs)]
    self.order = tuple((kind, n) for _, kind, n in sorted(order))

  def __call__(self, h: jax.Array, train: bool) -> jax.Array:
    # XLA:CPU fuses the whole residual chain of a stage into the layout transposes that feed
    # each weight-gradient convolution, recomputing up to 5 blocks per transpose (profiled:
    # 0.79 of 2.4 s thread time per ResNet-32 step). A barrier per block output stops that.
    # Identity on values; applied on CPU only, where it was measured.
    barrier = jax.default_backend() == "cpu"

    def run(block, h, _=None):
      h = block(h, train)
      return jax.lax.optimization_barrier(h) if barrier else h

    if not self.scan_layers:
      for block in self.blocks:
        h = run(block, h)
      return h
    for kind, n in self.order:
      if kind == "single":
        h = run(self.singles[n], h)
      else:  # BatchNorm's running statistics change in training: carried out of the scan
        h = scan_blocks.scan(self.block_stacks[n], h, run,
                             updates=nnx.BatchStat if train else None)
    return h


class Stem(nnx.Module):
  """CIFAR stem (3x3 conv) or ImageNet stem (7x7/2 conv + 3x3/2 max pool)."""

  def __init__(self, in_chans: int, width: int, cifar: bool, axis_name, dtype, rngs: nnx.Rngs):
    self.cifar = cifar
    self.conv = _conv(in_chans, width, 3 if cifar else 7, 1 if cifar else 2, dtype, rngs)
    self.bn = _bn(width, axis_name, dtype, rngs)

  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    h = jax.nn.relu(self.bn(self.conv(x), use_running_average=not train))
    if not self.cifar:
      h = nnx.max_pool(h, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    return h


def global_pool(h_BxHxWxC: jax.Array) -> jax.Array:
  return jnp.mean(h_BxHxWxC.astype(jnp.float32), axis=(1, 2))


class ResNet(nnx.Module):
  """Stem, stages, global average pool."""

  def __init__(self, block: type, depths: list[int], widths: list[int], *, in_chans: int,
               cifar_stem: bool, shortcut: str, axis_name: str | None, dtype: Any = None,
               groups: int = 1, base_width: int = 64, rngs: nnx.Rngs, scan_layers: bool = False):
    stem_width = widths[0] if cifar_stem else 64
    self.stem = Stem(in_chans, stem_width, cifar_stem, axis_name, dtype, rngs)
    self.stages = Stages(block, depths, widths, stem_width, downsample_first=False,
                         shortcut=shortcut, axis_name=axis_name, dtype=dtype, groups=groups,
                         base_width=base_width, rngs=rngs, scan_layers=scan_layers)
    self.feat_dim = self.stages.feat_dim

  def __call__(self, images_BxHxWxC: jax.Array, train: bool) -> jax.Array:
    return global_pool(self.stages(self.stem(images_BxHxWxC, train), train))


# name -> (block, depths, widths at width_mult 1, CIFAR stem, shortcut, groups, base width)
ARCHS = {
    "resnet32": (BasicBlock, [5, 5, 5], [16, 32, 64], True, "A", 1, 64),
    "resnet18": (BasicBlock, [2, 2, 2, 2], [64, 128, 256, 512], False, "B", 1, 64),
    "resnet18_cifar": (BasicBlock, [2, 2, 2, 2], [64, 128, 256, 512], True, "B", 1, 64),
    "resnet10": (BasicBlock, [1, 1, 1, 1], [64, 128, 256, 512], False, "B", 1, 64),
    "resnet50": (Bottleneck, [3, 4, 6, 3], [64, 128, 256, 512], False, "B", 1, 64),
    "resnet152": (Bottleneck, [3, 8, 36, 3], [64, 128, 256, 512], False, "B", 1, 64),
    "resnext50": (Bottleneck, [3, 4, 6, 3], [64, 128, 256, 512], False, "B", 32, 4),
}


def arch(name: str, width_mult: float = 1.0):
  """(block, depths, widths scaled by width_mult, cifar stem, shortcut, groups, base width)."""
  block, depths, widths, cifar, shortcut, groups, base_width = ARCHS[name]
  widths = [max(1, int(round(w * width_mult))) for w in widths]
  return block, depths, widths, cifar, shortcut, groups, base_width


def build_resnet(name: str, in_chans: int, *, width_mult: float = 1.0,
                 axis_name: str | None = "data", dtype: Any = None, rngs: nnx.Rngs,
                 scan_layers: bool = False) -> ResNet:
  """A backbone from ARCHS; ``width_mult`` scales stage widths (RIDE's reduce_dimension)."""
  block, depths, widths, cifar, shortcut, groups, base_width = arch(name, width_mult)
  return ResNet(block, depths, widths, in_chans=in_chans, cifar_stem=cifar, shortcut=shortcut,
                axis_name=axis_name, dtype=dtype, groups=groups, base_width=base_width, rngs=rngs,
                scan_layers=scan_layers)

"""ImageNet-pretrained weights for our ResNets, from a torchvision ``state_dict`` saved as .npz.

The file is the torchvision model's ``state_dict`` as numpy arrays (torch is needed only to write
it, never here):

  import numpy as np, torchvision
  m = torchvision.models.resnet50(weights="IMAGENET1K_V1")   # or resnet18, resnet152, ...
  np.savez("resnet50_imagenet.npz", **{k: v.numpy() for k, v in m.state_dict().items()})

Names: ``conv1``, ``bn1``, ``layer{1..4}.{j}.conv{1,2[,3]}`` / ``.bn{..}`` and
``.downsample.{0,1}``; ``fc.*`` and ``num_batches_tracked`` are ignored. Convolutions are OIHW
there and HWIO here; BatchNorm ``weight, bias, running_mean, running_var`` become ``scale, bias``
(params) and ``mean, var`` (stats). Every other name must match one-to-one, with equal shapes.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from bf_jax.models.resnet import ARCHS

_BN_PARAMS = {"weight": "scale", "bias": "bias"}
_BN_STATS = {"running_mean": "mean", "running_var": "var"}
_IGNORED = ("fc.", "num_batches_tracked")


def _layer_pairs(block_names: dict, depths: list[int], bottleneck: bool):
  """(our module path, torch prefix, 'conv' | 'bn') for every layer of the backbone."""
  pairs = [(("stem", "conv"), "conv1", "conv"), (("stem", "bn"), "bn1", "bn")]
  convs = (1, 2, 3) if bottleneck else (1, 2)
  i = 0
  for stage, depth in enumerate(depths):
    for j in range(depth):
      torch_block = f"layer{stage + 1}.{j}"
      ours = ("stages", "blocks", i)
      for k in convs:
        pairs += [(ours + (f"conv{k}",), f"{torch_block}.conv{k}", "conv"),
                  (ours + (f"bn{k}",), f"{torch_block}.bn{k}", "bn")]
      if "shortcut" in block_names[i]:
        pairs += [(ours + ("shortcut", 0), f"{torch_block}.downsample.0", "conv"),
                  (ours + ("shortcut", 1), f"{torch_block}.downsample.1", "bn")]
      i += 1
  return pairs


def _at(tree: dict, path: tuple) -> dict:
  for key in path:
    tree = tree[key]
  return tree


def load_torchvision_resnet(arch: str, params: dict, stats: dict,
                            weights: Mapping[str, np.ndarray]) -> tuple[dict, dict]:
  """(params, stats) of backbone ``arch`` (pure dicts) with every tensor taken from ``weights``.

  Raises ValueError naming the tensor when a name is missing, left over, or of another shape
  (e.g. a ResNet-18 file for a ResNet-50 model).
  """
  if arch not in ARCHS or ARCHS[arch][3]:
    imagenet = sorted(k for k, v in ARCHS.items() if not v[3])
    raise ValueError(f"torchvision weights exist for the ImageNet ResNets {imagenet}, not "
                     f"model.name={arch!r}.")
  block, depths = ARCHS[arch][0], ARCHS[arch][1]
  params, stats = _copy(params), _copy(stats)
  used = set()

  def take(name: str, want: tuple[int, ...], transpose: tuple[int, ...] | None = None):
    if name not in weights:
      raise ValueError(f"the weights file has no {name!r}, which {arch} needs; is it a "
                       f"torchvision {arch} state_dict?")
    value = np.asarray(weights[name], np.float32)
    if transpose is not None:
      value = value.transpose(transpose)
    if value.shape != tuple(want):
      raise ValueError(f"{name!r} has shape {np.asarray(weights[name]).shape} in the weights "
                       f"file, which does not fit {arch} here (needs {tuple(want)} after "
                       f"OIHW->HWIO); the file is for another architecture or width.")
    used.add(name)
    return value

  for path, prefix, kind in _layer_pairs(params["stages"]["blocks"], depths,
                                         block.expansion == 4):
    p = _at(params, path)
    if kind == "conv":
      p["kernel"] = take(f"{prefix}.weight", p["kernel"].shape, (2, 3, 1, 0))
      continue
    s = _at(stats, path)
    for theirs, ours in _BN_PARAMS.items():
      p[ours] = take(f"{prefix}.{theirs}", p[ours].shape)
    for theirs, ours in _BN_STATS.items():
      s[ours] = take(f"{prefix}.{theirs}", s[ours].shape)
  extra = sorted(k for k in weights if k not in used and not any(x in k for x in _IGNORED))
  if extra:
    raise ValueError(f"the weights file has {len(extra)} tensors {arch} has no place for, e.g. "
                     f"{extra[:3]}; is it a torchvision {arch} state_dict?")
  return params, stats


def load_npz(path: str) -> dict[str, np.ndarray]:
  """The arrays of an .npz file (local or gs://), with a clear error when it is missing."""
  import io

  from etils import epath

  file = epath.Path(path)
  if not file.exists():
    raise FileNotFoundError(f"init.pretrained={path!r} does not exist; write it once with "
                            f"torchvision (see bf_jax/models/torchvision_resnet.py) and point "
                            f"--config.init.pretrained to it.")
  with np.load(io.BytesIO(file.read_bytes())) as data:
    return {k: data[k] for k in data.files}


def _copy(tree: Any) -> Any:
  return {k: _copy(v) for k, v in tree.items()} if isinstance(tree, dict) else tree

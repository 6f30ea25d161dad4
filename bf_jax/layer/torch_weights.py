"""Import weights of ``torch.nn.TransformerEncoderLayer`` / ``nn.TransformerEncoder``.

Works on a plain ``{name: np.ndarray}`` dict (e.g. ``{k: v.numpy() for k, v in
module.state_dict().items()}``), so torch is never needed here.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Mapping

import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
  from bf_jax.layer.batchformer import BatchFormer

log = logging.getLogger(__name__)  # under "bf_jax", the package's logger

# torch name (per layer) -> (our module, our param, transpose?)
_LAYER_MAP = {
    "self_attn.in_proj_weight": ("in_proj", "kernel", True),
    "self_attn.in_proj_bias": ("in_proj", "bias", False),
    "self_attn.out_proj.weight": ("out_proj", "kernel", True),
    "self_attn.out_proj.bias": ("out_proj", "bias", False),
    "linear1.weight": ("linear1", "kernel", True),
    "linear1.bias": ("linear1", "bias", False),
    "linear2.weight": ("linear2", "kernel", True),
    "linear2.bias": ("linear2", "bias", False),
    "norm1.weight": ("norm1", "scale", False),
    "norm1.bias": ("norm1", "bias", False),
    "norm2.weight": ("norm2", "scale", False),
    "norm2.bias": ("norm2", "bias", False),
}


def _split_by_layer(sd: Mapping[str, np.ndarray], prefix: str) -> dict[int, dict[str, np.ndarray]]:
  by_layer: dict[int, dict[str, np.ndarray]] = {}
  unexpected, ignored = [], []
  for name, value in sd.items():
    if not name.startswith(prefix):
      # A prefix picks the encoder out of a whole model's state dict; without one, every key
      # must be the layer's.
      (ignored if prefix else unexpected).append(name)
      continue
    rest = name[len(prefix):]
    m = re.fullmatch(r"layers\.(\d+)\.(.+)", rest)
    idx, leaf = (int(m.group(1)), m.group(2)) if m else (0, rest)
    if leaf not in _LAYER_MAP:
      unexpected.append(name)
      continue
    by_layer.setdefault(idx, {})[leaf] = np.asarray(value)
  if unexpected:
    raise ValueError(f"Unexpected keys in the torch state dict: {sorted(unexpected)}. Expected "
                     f"the keys of nn.TransformerEncoderLayer (optionally 'layers.<i>.'-prefixed, "
                     f"after prefix={prefix!r}); a final encoder norm is not supported.")
  if ignored:
    log.debug("load_torch_state_dict ignored %d keys outside prefix=%r: %s", len(ignored),
              prefix, sorted(ignored))
  return by_layer


def load_torch_state_dict(bf: "BatchFormer", sd: Mapping[str, np.ndarray], prefix: str = "") -> None:
  """Copies torch TransformerEncoderLayer (or TransformerEncoder) weights into ``bf`` in place.

  Args:
    bf: the BatchFormer to fill; its dims and layer count must match the state dict.
    sd: ``{name: array}`` from ``module.state_dict()`` (arrays, not tensors).
    prefix: the encoder's keys start with it (e.g. ``"encoder."``), so ``sd`` may be a whole
      model's state dict: keys outside the prefix are skipped (listed at DEBUG level); keys
      inside it must all be the layer's. ``""``: every key must be.
  """
  by_layer = _split_by_layer(sd, prefix)
  if sorted(by_layer) != list(range(len(bf.layers))):
    raise ValueError(f"The state dict holds layers {sorted(by_layer)} but the BatchFormer has "
                     f"num_layers={len(bf.layers)}; build it with num_layers={len(by_layer)}.")
  for idx, layer in enumerate(bf.layers):
    missing = sorted(set(_LAYER_MAP) - set(by_layer[idx]))
    if missing:
      raise ValueError(f"Layer {idx} of the torch state dict lacks {missing}.")
    for leaf, value in by_layer[idx].items():
      module_name, param_name, transpose = _LAYER_MAP[leaf]
      param = getattr(getattr(layer, module_name), param_name)
      new = value.T if transpose else value
      if new.shape != param.shape:
        raise ValueError(f"{prefix}{leaf} of layer {idx} has shape {value.shape}, which does not "
                         f"fit {module_name}.{param_name} of shape {param.shape} (torch weights "
                         f"are [out, in]); is dim/ffn_dim right?")
      param[...] = jnp.asarray(new, dtype=param.dtype)

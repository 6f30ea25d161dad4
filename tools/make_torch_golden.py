"""Writes tests/golden/torch_encoder_layer.npz: PyTorch's TransformerEncoderLayer, fed the BatchFormer way.

PyTorch is needed only here, never by bf_jax. Regenerate with (any Python that has torch):

  python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 numpy
  /tmp/torchenv/bin/python tools/make_torch_golden.py

For each case the file holds the module's weights (randomized beyond the default init so every
tensor matters), and in eval mode for V1 ([B, C] fed as [B, 1, C]) and V2 ([B, L, C], fed as is,
i.e. seq-first so B is the sequence): the input x, output y, a cotangent dy, the input gradient
dx = d<y, dy>/dx and, for the smaller cases, the parameter gradients. Keys: '<case>/<what>'.
"""

import pathlib

import numpy as np
import torch
from torch import nn

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "golden" / "torch_encoder_layer.npz"
B_V1, B_V2, L = 12, 6, 5


def _build(c: int, num_layers: int) -> nn.Module:
  layer = nn.TransformerEncoderLayer(c, 4, c, 0.5)  # the paper's layer, seq-first, post-norm
  module = layer if num_layers == 1 else nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
  with torch.no_grad():  # perturb every tensor (LN scale 1 / zero biases would hide mapping bugs)
    for p in module.parameters():
      p.add_(0.1 * torch.randn_like(p))
  return module.eval()


def _case(out: dict, name: str, module: nn.Module, x_np: np.ndarray, param_grads: bool) -> None:
  seq_first = x_np[:, None, :] if x_np.ndim == 2 else x_np
  x = torch.tensor(seq_first, requires_grad=True)
  module.zero_grad()
  y = module(x)
  dy = torch.randn_like(y)
  (y * dy).sum().backward()
  squeeze = (lambda a: a[:, 0, :]) if x_np.ndim == 2 else (lambda a: a)
  out[f"{name}/x"] = x_np
  out[f"{name}/y"] = squeeze(y.detach().numpy())
  out[f"{name}/dy"] = squeeze(dy.numpy())
  out[f"{name}/dx"] = squeeze(x.grad.numpy())
  if param_grads:
    for pname, p in module.named_parameters():
      out[f"{name}/grad/{pname}"] = p.grad.numpy().copy()


def main() -> None:
  torch.manual_seed(0)
  rng = np.random.default_rng(0)
  out: dict[str, np.ndarray] = {}
  cases = [("c48", 48, 1, True), ("c64", 64, 1, True), ("c256", 256, 1, False),
           ("stack2_c64", 64, 2, True)]
  for case, c, num_layers, param_grads in cases:
    module = _build(c, num_layers)
    for pname, p in module.state_dict().items():
      out[f"{case}/param/{pname}"] = p.numpy().copy()
    _case(out, f"{case}/v1", module, rng.standard_normal((B_V1, c)).astype(np.float32), param_grads)
    _case(out, f"{case}/v2", module, rng.standard_normal((B_V2, L, c)).astype(np.float32), param_grads)
  out["torch_version"] = np.array(torch.__version__)
  OUT.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(OUT, **out)
  print(f"wrote {len(out)} arrays to {OUT} ({OUT.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
  main()

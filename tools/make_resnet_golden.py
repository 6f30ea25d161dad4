"""Writes tests/golden/torchvision_resnet.npz: torchvision-layout ResNets, their weights and output.

PyTorch is needed only here, never by bf_jax. The module below is written with torchvision's
ResNet structure and parameter names (conv1/bn1/maxpool stem, layer1-4 of BasicBlock or
Bottleneck with the stride on conv2, downsample.0/1), at reduced widths so the file stays small
(stem 64, stages 8-64 for the ResNet-18 case, bottleneck widths 4-32 for the ResNet-50 case).
Regenerate with (any Python that has torch):

  /tmp/torchenv/bin/python tools/make_resnet_golden.py

Keys: '<case>/w/<state_dict name>' (weights, BatchNorm statistics randomized so every tensor
matters), '<case>/x' (NCHW input), '<case>/y' (eval-mode pooled features).
"""

import pathlib

import numpy as np
import torch
from torch import nn

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "golden" / "torchvision_resnet.npz"


class Basic(nn.Module):
  expansion = 1

  def __init__(self, cin, width, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(width)
    self.downsample = _downsample(cin, width, stride)

  def forward(self, x):
    h = torch.relu(self.bn1(self.conv1(x)))
    h = self.bn2(self.conv2(h))
    return torch.relu(h + (x if self.downsample is None else self.downsample(x)))


class Bottle(nn.Module):
  expansion = 4

  def __init__(self, cin, width, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(width)
    self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(width * 4)
    self.downsample = _downsample(cin, width * 4, stride)

  def forward(self, x):
    h = torch.relu(self.bn1(self.conv1(x)))
    h = torch.relu(self.bn2(self.conv2(h)))
    h = self.bn3(self.conv3(h))
    return torch.relu(h + (x if self.downsample is None else self.downsample(x)))


def _downsample(cin, cout, stride):
  if stride == 1 and cin == cout:
    return None
  return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
  def __init__(self, block, depths, widths):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    cin = 64
    for i, (depth, width) in enumerate(zip(depths, widths)):
      blocks = []
      for j in range(depth):
        blocks.append(block(cin, width, 2 if j == 0 and i > 0 else 1))
        cin = width * block.expansion
      setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
    self.fc = nn.Linear(cin, 10)  # present like torchvision's; the importer ignores it

  def forward(self, x):
    h = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
    for i in range(1, 5):
      h = getattr(self, f"layer{i}")(h)
    return h.mean(dim=(2, 3))


def main() -> None:
  torch.manual_seed(0)
  out = {}
  for case, block, widths in (("resnet18", Basic, [8, 16, 32, 64]),
                              ("resnet50", Bottle, [4, 8, 16, 32])):
    depths = [2, 2, 2, 2] if case == "resnet18" else [3, 4, 6, 3]
    model = ResNet(block, depths, widths)
    with torch.no_grad():
      for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
          m.weight.add_(0.2 * torch.randn_like(m.weight))
          m.bias.add_(0.2 * torch.randn_like(m.bias))
          m.running_mean.copy_(0.2 * torch.randn_like(m.running_mean))
          m.running_var.copy_(0.5 + torch.rand_like(m.running_var))
    model.eval()
    x = torch.randn(2, 3, 40, 36)
    with torch.no_grad():
      y = model(x)
    out.update({f"{case}/w/{k}": v.numpy() for k, v in model.state_dict().items()})
    out[f"{case}/x"], out[f"{case}/y"] = x.numpy(), y.numpy()
  OUT.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(OUT, **out)
  print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
  main()

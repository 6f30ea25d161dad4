"""The same train step in PyTorch, for the side-by-side ratio: ResNet-32 (CIFAR, option-A
shortcuts) or ResNet-50, + one BatchFormer layer (nn.TransformerEncoderLayer over the batch,
ffn = dim, 4 heads, dropout 0.5), two streams through one linear head, CE, SGD momentum with
weight decay. Imported only when torch is; never a dependency of bf_jax.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn


class _Basic(nn.Module):
  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.b1 = nn.BatchNorm2d(cout)
    self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.b2 = nn.BatchNorm2d(cout)
    self.stride, self.pad = stride, cout - cin

  def forward(self, x):
    h = F.relu(self.b1(self.c1(x)))
    h = self.b2(self.c2(h))
    s = x
    if self.stride != 1 or self.pad:  # option A: subsample + zero channels
      s = x[:, :, ::self.stride, ::self.stride]
      s = F.pad(s, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
    return F.relu(h + s)


class _Bottleneck(nn.Module):
  def __init__(self, cin: int, width: int, stride: int):
    super().__init__()
    cout = width * 4
    self.c1, self.b1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
    self.c2, self.b2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
    self.c3, self.b3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
    self.short = None
    if stride != 1 or cin != cout:
      self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

  def forward(self, x):
    h = F.relu(self.b1(self.c1(x)))
    h = F.relu(self.b2(self.c2(h)))
    h = self.b3(self.c3(h))
    return F.relu(h + (x if self.short is None else self.short(x)))


def resnet32() -> tuple[nn.Module, int]:
  layers, cin = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
  for i, width in enumerate((16, 32, 64)):
    for j in range(5):
      layers.append(_Basic(cin, width, 2 if j == 0 and i > 0 else 1))
      cin = width
  return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten()), 64


def resnet50() -> tuple[nn.Module, int]:
  layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
            nn.MaxPool2d(3, 2, 1)]
  cin = 64
  for i, (width, depth) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
    for j in range(depth):
      layers.append(_Bottleneck(cin, width, 2 if j == 0 and i > 0 else 1))
      cin = width * 4
  return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten()), 2048


BACKBONES = {"resnet32": resnet32, "resnet50": resnet50}


class Model(nn.Module):
  def __init__(self, backbone: str, classes: int, bf: bool):
    super().__init__()
    self.backbone, dim = BACKBONES[backbone]()
    self.bf = nn.TransformerEncoderLayer(dim, 4, dim, 0.5) if bf else None
    self.head = nn.Linear(dim, classes)

  def forward(self, x, y):
    f = self.backbone(x)
    if self.bf is not None:  # the batch is the sequence: [B, 1, C]
      f = torch.cat([f, self.bf(f.unsqueeze(1)).squeeze(1)], 0)
      y = torch.cat([y, y], 0)
    return F.cross_entropy(self.head(f), y)


def time_train_step(backbone: str, batch: int, bf: bool, size: int, classes: int,
                    dtype: str = "float32", warmup: int = 2, iters: int = 5) -> dict:
  """Median ms of forward + backward + SGD step (CUDA if available, else CPU threads)."""
  dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  model = Model(backbone, classes, bf).to(dev).train()
  opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
  x = torch.randn(batch, 3, size, size, device=dev)
  y = torch.randint(0, classes, (batch,), device=dev)
  if dev.type == "cuda":
    model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
  autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16")

  def step():
    opt.zero_grad(set_to_none=True)
    with autocast:
      loss = model(x, y)
    loss.backward()
    opt.step()
    if dev.type == "cuda":
      torch.cuda.synchronize()

  for _ in range(warmup):
    step()
  times = []
  for _ in range(iters):
    t = time.perf_counter()
    step()
    times.append(time.perf_counter() - t)
  ms = 1e3 * statistics.median(times)
  return {"impl": "torch", "torch": torch.__version__, "device": str(dev),
          "threads": torch.get_num_threads(), "backbone": backbone, "batch": batch, "bf": bf,
          "dtype": dtype, "train_ms": round(ms, 2), "train_img_s": round(batch / ms * 1e3, 1)}


def main() -> None:
  """``python torch_ref.py --backbone resnet32 --batch 128 --bf 1 --size 32 --classes 100``:
  one JSON line. Run as a script so any Python with torch can serve (no bf_jax imports)."""
  import argparse
  import json
  parser = argparse.ArgumentParser()
  parser.add_argument("--backbone", required=True, choices=sorted(BACKBONES))
  parser.add_argument("--batch", type=int, required=True)
  parser.add_argument("--bf", type=int, choices=(0, 1), required=True)
  parser.add_argument("--size", type=int, required=True)
  parser.add_argument("--classes", type=int, required=True)
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--iters", type=int, default=5)
  a = parser.parse_args()
  print(json.dumps(time_train_step(a.backbone, a.batch, bool(a.bf), a.size, a.classes, a.dtype,
                                   a.warmup, a.iters)))


if __name__ == "__main__":
  main()

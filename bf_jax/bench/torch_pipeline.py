"""torchvision's DataLoader over a folder of JPEG files, the way a PyTorch ImageNet recipe reads
it: PIL decode, RandomResizedCrop(224), RandomHorizontalFlip, ToTensor, Normalize. Run with a
Python that has torch (never a bf_jax dependency); ``bf_jax.bench.pipeline --torch_python``
calls it. Prints one JSON line.

  PY_WITH_TORCH bf_jax/bench/torch_pipeline.py DIR --workers 2 --batches 20
"""

import argparse
import json
import pathlib
import time

import torch
from PIL import Image
from torchvision import transforms

SUFFIXES = (".jpg", ".jpeg", ".png")


class Files(torch.utils.data.Dataset):

  def __init__(self, root: str, transform):
    self.files = sorted(p for p in pathlib.Path(root).rglob("*") if p.suffix.lower() in SUFFIXES)
    self.transform = transform

  def __len__(self):
    return len(self.files)

  def __getitem__(self, i):
    with Image.open(self.files[i]) as im:
      return self.transform(im.convert("RGB")), 0


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("images")
  parser.add_argument("--workers", type=int, default=0)
  parser.add_argument("--batches", type=int, default=20)
  parser.add_argument("--batch_size", type=int, default=64)
  args = parser.parse_args()
  torch.set_num_threads(1)  # as a DataLoader worker has; the main process only collates
  transform = transforms.Compose([
      transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
      transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
  data = Files(args.images, transform)
  sampler = torch.utils.data.RandomSampler(data, replacement=True,
                                           num_samples=args.batch_size * (args.batches + 1))
  loader = torch.utils.data.DataLoader(data, args.batch_size, sampler=sampler,
                                       num_workers=args.workers,
                                       prefetch_factor=2 if args.workers else None)
  it = iter(loader)
  next(it)  # start-up: workers spawned, first batch made
  start = time.perf_counter()
  for _ in range(args.batches):
    next(it)
  rate = args.batches * args.batch_size / (time.perf_counter() - start)
  print(json.dumps({"impl": "torchvision DataLoader", "workers": args.workers,
                    "torch": torch.__version__, "images_per_s": round(rate, 1)}))


if __name__ == "__main__":
  main()

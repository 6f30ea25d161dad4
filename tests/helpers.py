"""Shared test helpers: loading config files and reading run logs."""

import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).parents[1]


def load_config(name: str, arg: str | None = None):
  """configs/<name>.py:get_config(arg), unlocked so tests can edit fields."""
  spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def config_module(path: pathlib.Path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def kill_9_and_resume(config_file: str, workdir: pathlib.Path, *overrides: str) -> int:
  """Runs ``bf_jax.main`` in a subprocess, SIGKILLs it once a checkpoint exists (no handler
  runs; an async save may be cut in half), reruns the same command to the end; returns the step
  it was killed at (asserting that is before the end and that the rerun resumed)."""
  cmd = [sys.executable, "-m", "bf_jax.main", "--config", config_file, f"--workdir={workdir}",
         *overrides]
  # One device, and otherwise the test process's XLA flags: with Eigen's threads on, the killed
  # run's reductions would split differently from the straight run's in this process.
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  env = {**os.environ, "XLA_FLAGS": " ".join(flags), "JAX_PLATFORMS": "cpu"}
  proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  ckpts = workdir / "checkpoints"
  steps = lambda: [int(p.name) for p in ckpts.iterdir() if p.name.isdigit()] \
      if ckpts.is_dir() else []
  deadline = time.time() + 120
  while not steps():
    assert proc.poll() is None, proc.stdout.read()
    assert time.time() < deadline, "no checkpoint appeared"
    time.sleep(0.05)
  proc.kill()
  out = proc.communicate()[0]
  killed_at = max(steps())
  assert "final:" not in out, "the run ended before it could be killed"
  again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert again.returncode == 0, again.stdout + again.stderr
  assert re.search(r"resumed from the checkpoint at step (\d+)", again.stderr), again.stderr
  return killed_at


def read_metrics(workdir) -> list[dict]:
  return [json.loads(line) for line in (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()]


def train_losses(workdir) -> list[float]:
  return [m["train/loss"] for m in read_metrics(workdir) if "train/loss" in m]


# A learnable compositional toy: the attribute is a colour tint, the object a pattern.
CZSL_TRAIN = [("red", "bars"), ("red", "dots"), ("green", "dots"), ("green", "plain"),
              ("blue", "bars"), ("blue", "plain")]
CZSL_VAL = [("red", "bars"), ("green", "plain"), ("red", "plain")]  # red plain unseen
CZSL_TEST = [("blue", "plain"), ("red", "dots"), ("blue", "dots"), ("green", "bars")]


def make_czsl_toy(root: pathlib.Path, per_pair: int = 6, size: int = 12, seed: int = 0) -> None:
  """The czsl layout (images/, compositional-split-natural/*_pairs.txt, metadata JSON) of the
  toy above, ``per_pair`` images per pair and split."""
  import numpy as np
  from PIL import Image

  rng = np.random.default_rng(seed)
  colours, patterns = {"red": 0, "green": 1, "blue": 2}, ("bars", "dots", "plain")
  split_dir = root / "compositional-split-natural"
  split_dir.mkdir(parents=True)
  records = []
  for split, pairs in (("train", CZSL_TRAIN), ("val", CZSL_VAL), ("test", CZSL_TEST)):
    (split_dir / f"{split}_pairs.txt").write_text("".join(f"{a} {o}\n" for a, o in pairs))
    for a, o in pairs:
      folder = root / "images" / f"{a}_{o}"
      folder.mkdir(parents=True, exist_ok=True)
      for k in range(per_pair):
        img = np.full((size, size, 3), 40, np.int64)
        img[..., colours[a]] = 170
        if o == "bars":
          img[:, ::3] = 250
        elif o == "dots":
          img[::3, ::3] = 250
        img += rng.integers(-15, 15, img.shape)
        name = f"{split}_{k}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / name)
        records.append({"image": f"{a}_{o}/{name}", "attr": a, "obj": o, "set": split})
  (root / "metadata_compositional-split-natural.json").write_text(json.dumps(records))


def write_idx(path, array, code: int = 0x08, compress: bool = True) -> None:
  """An IDX file (Fashion-MNIST's format) holding ``array``; gzip-compressed by default."""
  import gzip
  import struct
  raw = b"\0\0" + bytes([code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
  raw += array.astype(array.dtype.newbyteorder(">")).tobytes()
  with (gzip.open if compress else open)(path, "wb") as f:
    f.write(raw)


def make_fashion_mnist(folder, per_class: int = 7, test_per_class: int = 2):
  """Fashion-MNIST's four files in ``folder``: random 28x28 images, ``per_class`` training and
  ``test_per_class`` test images of each of the 10 classes, pixel (0, 0) holding the label."""
  import numpy as np

  from bf_jax.data import fashion_mnist
  rng = np.random.default_rng(0)
  pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
  for split, n in (("train", per_class), ("test", test_per_class)):
    labels = np.repeat(np.arange(10), n).astype(np.uint8)
    images = rng.integers(0, 256, (len(labels), 28, 28), np.uint8)
    images[:, 0, 0] = labels  # each image carries its label, to check they stay together
    image_file, label_file = fashion_mnist.FILES[split]
    write_idx(pathlib.Path(folder) / f"{image_file}.gz", images)
    write_idx(pathlib.Path(folder) / label_file, labels, compress=False)  # plain files too
  return folder

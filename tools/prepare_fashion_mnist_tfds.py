"""Prepares TFDS's `fashion_mnist` in array_record from the four local IDX files, no download.

  python tools/prepare_fashion_mnist_tfds.py --idx_dir /usr/share/datasets/fashion-mnist \
      --data_dir ~/tensorflow_datasets

TFDS's own builder (its features, class names, version and example generation) writes the
dataset; only where the files come from changes: the local files instead of its download, whose
checksums Debian's recompressed copies would not match. Its example generation reads through
tf.io.gfile, so this needs TensorFlow, in an environment of its own (bf_jax never does):

  python3.12 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu \
      "tensorflow-datasets==4.9.*" importlib_resources array_record
  /tmp/tfvenv/bin/python tools/prepare_fashion_mnist_tfds.py --idx_dir ... --data_dir ...

Then `data_dir=<data_dir>` (configs/fashion_mnist_lt.py) trains on it through tfds.data_source,
without TensorFlow. docs/fashion_mnist.md says more.
"""

import argparse
import gzip
import pathlib
import shutil
import struct
import tempfile

import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import mnist

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class LocalFashionMNIST(mnist.FashionMNIST, skip_registration=True):
  """TFDS's FashionMNIST builder, its splits generated from raw IDX files in ``raw_dir``."""

  name = "fashion_mnist"  # the same dataset: tfds.data_source("fashion_mnist") reads it

  def __init__(self, *, raw_dir: pathlib.Path, **kwargs):
    self._raw_dir = raw_dir
    super().__init__(**kwargs)

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return [tfds.core.SplitGenerator(name=split, gen_kwargs=dict(
        num_examples=_count(self._raw_dir / labels), data_path=self._raw_dir / images,
        label_path=self._raw_dir / labels)) for split, (images, labels) in FILES.items()]


def _count(labels_file: pathlib.Path) -> int:
  """The example count of an IDX label file's header."""
  with open(labels_file, "rb") as f:
    return struct.unpack(">I", f.read(8)[4:])[0]


def _raw_copy(idx_dir: pathlib.Path, out: pathlib.Path) -> None:
  """The four files, uncompressed, in ``out`` (TFDS's generator reads them raw)."""
  for stem in (name for pair in FILES.values() for name in pair):
    found = [p for p in (idx_dir / f"{stem}.gz", idx_dir / stem) if p.is_file()]
    if not found:
      raise SystemExit(f"error: {idx_dir} has no {stem}[.gz]; give --idx_dir the folder of the "
                       f"four Fashion-MNIST files.")
    with (gzip.open if found[0].suffix == ".gz" else open)(found[0], "rb") as src, \
        open(out / stem, "wb") as dst:
      shutil.copyfileobj(src, dst)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--idx_dir", required=True, help="folder of the four IDX files (.gz or not)")
  parser.add_argument("--data_dir", required=True, help="TFDS data folder to write into")
  args = parser.parse_args()
  data_dir = pathlib.Path(args.data_dir).expanduser()
  with tempfile.TemporaryDirectory() as raw:
    _raw_copy(pathlib.Path(args.idx_dir).expanduser(), pathlib.Path(raw))
    builder = LocalFashionMNIST(raw_dir=pathlib.Path(raw), data_dir=str(data_dir),
                                file_format="array_record")
    builder.download_and_prepare()
  print(f"prepared {builder.info.full_name} in {builder.data_dir}: " + ", ".join(
      f"{name} {split.num_examples}" for name, split in builder.info.splits.items()))


if __name__ == "__main__":
  main()

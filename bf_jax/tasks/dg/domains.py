"""Domain-generalization datasets (PACS, VLCS, OfficeHome, TerraIncognita, DomainNet).

They ship as image folders, ``<root>/<domain>/<class>/<image files>``. Decoding tens of thousands
of loose files in every epoch is slow and depends on the folder staying intact, so each dataset is
converted ONCE into one array_record file per domain, then read back as random-access sources:

  python -m bf_jax.tasks.dg.domains prepare --dataset pacs --root /data/PACS --out ~/dg_data \\
      [--image_size 224] [--format png|jpeg]

``--root`` is the folder that holds the domain folders (for PACS: ``art_painting/``,
``cartoon/``, ``photo/``, ``sketch/``); folders there that are not domains of the dataset are
ignored. The command prints the images per domain and writes, under ``<out>/<dataset>/``:

* ``<domain>.array_record``: one record per image, in sorted class order then sorted file name
  order. A record is ``label`` (int64, little endian), the length of the file's relative path
  (uint16, little endian), that path (``<class>/<file>``, UTF-8), then the image encoded as PNG
  (default: lossless, so decoded pixels equal the source's RGB pixels) or JPEG (quality 95,
  no chroma subsampling: several times smaller for photographs, lossy). Written with
  ``group_size:1`` and no extra compression (the images are compressed already), so reading one
  record reads only it.
* ``<domain>.labels.npy``: the labels of all records (int64), so that class counts, balanced
  sampling and splits need no image decode.
* ``meta.json``: classes, domains, per-domain and per-domain-per-class counts, image size and
  format version. It is written last: a folder without it was not (fully) prepared.

Images are converted to RGB with Pillow (grayscale is replicated, alpha dropped), pixels as stored
(no EXIF rotation, as torchvision's ImageFolder). ``--image_size S`` resizes each image (bicubic)
so that its SHORTER side is S, keeping the aspect ratio; without it images keep their stored size.
Class names are the sorted sub-folder names (Python string order, as ImageFolder), and must be
the same in every domain so that a label means the same class everywhere. Hidden files and
folders (name starting with '.') are skipped; every other file in a class folder must be an
image Pillow can open.

Reading: ``domain_source(name, data_dir, domain)``; model selection within the training domains
(DomainBed's "training-domain validation"): ``in_out_split``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import shlex
import sys
from typing import Any, Callable, Sequence

import numpy as np

from bf_jax.data.image_records import (FORMAT_VERSION, IMAGE_FORMATS, WRITER_OPTIONS, RecordFile,
                                       encode_image, encode_record, load_image, read_meta)


@dataclasses.dataclass(frozen=True)
class DomainSetInfo:
  domains: tuple[str, ...]  # domain folder names, in the conventional (paper/DomainBed) order
  num_classes: int


DG_DATASETS: dict[str, DomainSetInfo] = {
    "pacs": DomainSetInfo(("art_painting", "cartoon", "photo", "sketch"), 7),
    "vlcs": DomainSetInfo(("Caltech101", "LabelMe", "SUN09", "VOC2007"), 5),
    "office_home": DomainSetInfo(("Art", "Clipart", "Product", "Real World"), 65),
    "terra_incognita": DomainSetInfo(("location_38", "location_43", "location_46",
                                      "location_100"), 10),
    "domain_net": DomainSetInfo(("clipart", "infograph", "painting", "quickdraw", "real",
                                 "sketch"), 345),
    # The embedded digits, rotated per domain (RotatedMNIST-style; tasks/dg/digits.py writes it).
    "rotated_digits": DomainSetInfo(("rot0", "rot30", "rot60", "rot90"), 10),
}


# ----------------------------------------------------------------------------------- prepare


def _info(name: str, info: DomainSetInfo | None) -> DomainSetInfo:
  if info is not None:
    return info
  if name not in DG_DATASETS:
    raise ValueError(f"dataset {name!r} is unknown; choose one of {sorted(DG_DATASETS)}.")
  return DG_DATASETS[name]


def _visible(path: pathlib.Path) -> list[pathlib.Path]:
  """Entries of a folder without hidden ones (.DS_Store, ._* AppleDouble, .ipynb_checkpoints)."""
  return sorted((p for p in path.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)


def _scan(root: pathlib.Path, info: DomainSetInfo,
          name: str) -> tuple[list[str], dict[str, list[list[pathlib.Path]]]]:
  """(classes, per domain the sorted image files of each class); checks the layout first."""
  if not root.is_dir():
    what = "is a file, not a folder" if root.exists() else "does not exist"
    raise FileNotFoundError(f"root {str(root)!r} {what}; pass --root the folder that holds the "
                            f"domain folders {list(info.domains)} of {name}.")
  present = sorted(p.name for p in _visible(root) if p.is_dir())
  missing = [d for d in info.domains if d not in present]
  if missing:
    raise FileNotFoundError(
        f"domain folder(s) {missing} of {name} are missing under {root}; found folders "
        f"{present}, expected {list(info.domains)}. Point --root to the folder that directly "
        f"holds the domain folders (names are case-sensitive).")
  classes_of = {d: [p.name for p in _visible(root / d) if p.is_dir()] for d in info.domains}
  first = info.domains[0]
  classes = classes_of[first]
  for d in info.domains[1:]:
    if classes_of[d] != classes:
      lacks = sorted(set(classes) - set(classes_of[d]))
      extra = sorted(set(classes_of[d]) - set(classes))
      raise ValueError(f"domain {d!r} of {name} has different class folders than {first!r}: "
                       f"it lacks {lacks} and has extra {extra}. Every domain must hold the "
                       f"same classes so that labels agree; fix the folders under {root}.")
  if len(classes) != info.num_classes:
    raise ValueError(f"{name} has {info.num_classes} classes but the domain folders under "
                     f"{root} hold {len(classes)} class folders "
                     f"({classes[:10]}{'...' if len(classes) > 10 else ''}); is --root the "
                     f"right dataset, unpacked completely?")
  files: dict[str, list[list[pathlib.Path]]] = {}
  for d in info.domains:
    files[d] = []
    for c in classes:
      entries = _visible(root / d / c)
      nested = [p for p in entries if p.is_dir()]
      if nested:
        raise ValueError(f"class folder {root / d / c} holds sub-folder(s) "
                         f"{[p.name for p in nested[:5]]}; images must lie directly in "
                         f"<root>/<domain>/<class>/. Move them up or delete the folders.")
      if not entries:
        raise ValueError(f"class folder {root / d / c} (domain {d!r}, class {c!r}) holds no "
                         f"images; is the download complete? Every class needs images in "
                         f"every domain.")
      files[d].append(entries)
  return classes, files


def prepare(name: str, root: str | os.PathLike, out_dir: str | os.PathLike,
            image_size: int | None = None, *, image_format: str = "png",
            info: DomainSetInfo | None = None,
            log: Callable[[str], None] | None = None) -> dict[str, Any]:
  """Converts ``<root>/<domain>/<class>/*`` into ``<out_dir>/<name>/`` (see module docstring).

  ``info`` overrides the registry entry (a dataset not in ``DG_DATASETS``, or tests); ``log``
  receives a line per finished domain. Returns the meta dict that is also ``meta.json``.
  """
  info = _info(name, info)
  if not name or name in (".", "..") or "/" in name or os.sep in name:
    raise ValueError(f"dataset name {name!r} must be a plain folder name.")
  if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                 or image_size < 1):
    raise ValueError(f"image_size={image_size!r} must be a positive int (the shorter side after "
                     f"resizing) or None to keep the stored size.")
  if image_format not in IMAGE_FORMATS:
    raise ValueError(f"image_format={image_format!r} is unknown; choose one of {IMAGE_FORMATS}.")
  root = pathlib.Path(root).expanduser()
  classes, files = _scan(root, info, name)

  from array_record.python import array_record_module

  out = pathlib.Path(out_dir).expanduser() / name
  out.mkdir(parents=True, exist_ok=True)
  meta_path = out / "meta.json"
  meta_path.unlink(missing_ok=True)  # until rewritten, the folder reads as "not prepared"
  counts, class_counts = {}, {}
  for d in info.domains:
    labels = []
    tmp = out / f"{d}.array_record.tmp"
    writer = array_record_module.ArrayRecordWriter(str(tmp), WRITER_OPTIONS)
    try:
      for label, class_files in enumerate(files[d]):
        for path in class_files:
          image = load_image(path, image_size)
          writer.write(encode_record(label, f"{classes[label]}/{path.name}",
                                     encode_image(image, image_format)))
          labels.append(label)
    except BaseException:
      writer.close()
      tmp.unlink(missing_ok=True)
      raise
    writer.close()
    labels = np.asarray(labels, np.int64)
    np.save(out / f"{d}.labels.tmp.npy", labels)
    os.replace(out / f"{d}.labels.tmp.npy", out / f"{d}.labels.npy")
    os.replace(tmp, out / f"{d}.array_record")
    counts[d] = len(labels)
    class_counts[d] = np.bincount(labels, minlength=len(classes)).tolist()
    if log is not None:
      log(f"{d}: {len(labels)} images")
  meta = {
      "format_version": FORMAT_VERSION,
      "dataset": name,
      "classes": classes,
      "domains": list(info.domains),
      "counts": counts,
      "class_counts": class_counts,
      "image_size": image_size,
      "image_format": image_format,
      "root": str(root.resolve()),
  }
  tmp = out / "meta.json.tmp"
  tmp.write_text(json.dumps(meta, indent=1) + "\n")
  os.replace(tmp, meta_path)
  return meta


# -------------------------------------------------------------------------------------- read


def prepare_command(name: str, data_dir: str | os.PathLike) -> str:
  """The shell command that prepares ``name`` into ``data_dir``, for error messages."""
  command = (f"python -m bf_jax.tasks.dg.domains prepare --dataset {shlex.quote(name)} "
             f"--root /path/to/{shlex.quote(name)} --out {shlex.quote(str(data_dir))}")
  info = DG_DATASETS.get(name)
  if info:
    command += f"\n(--root: the folder holding {', '.join(d + '/' for d in info.domains)})"
  return command


def load_meta(name: str, data_dir: str | os.PathLike) -> dict[str, Any]:
  """``meta.json`` of a prepared DG dataset; a loud error with the prepare command if absent."""
  return read_meta(name, data_dir, DG_DATASETS, "dataset", prepare_command(name, data_dir))


class DomainSource(RecordFile):
  """One prepared domain; ``file_name(i)`` is ``<class>/<file>``."""

  def __init__(self, name: str, data_dir: str | os.PathLike, domain: str):
    meta = load_meta(name, data_dir)
    if domain not in meta["domains"]:
      raise ValueError(f"domain {domain!r} is not one of {name}'s domains {meta['domains']}.")
    self.name, self.domain, self.classes = name, domain, list(meta["classes"])
    self.num_classes = len(self.classes)
    super().__init__(pathlib.Path(data_dir).expanduser() / name, domain,
                     meta["counts"][domain], f"{name}/{domain}", prepare_command(name, data_dir))


def domain_source(name: str, data_dir: str | os.PathLike, domain: str) -> DomainSource:
  """The prepared ``domain`` of dataset ``name`` under ``data_dir`` as a random-access source."""
  return DomainSource(name, data_dir, domain)


def in_out_split(num_examples: int, holdout_fraction: float = 0.2,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(in, out) index arrays, DomainBed-style: a seeded random ``out`` part for model selection.

  ``out`` has exactly ``int(num_examples * holdout_fraction)`` indices (rounded DOWN, as
  DomainBed), ``in`` the rest; both sorted, disjoint and together ``range(num_examples)``. Use a
  different seed per domain (e.g. ``seed + domain index``) for independent splits.
  """
  if isinstance(num_examples, bool) or int(num_examples) != num_examples or num_examples < 0:
    raise ValueError(f"num_examples={num_examples!r} must be a non-negative int.")
  if not 0.0 <= holdout_fraction < 1.0:
    raise ValueError(f"holdout_fraction={holdout_fraction!r} must lie in [0, 1) (DomainBed: "
                     f"0.2); 1 would leave nothing to train on.")
  n = int(num_examples)
  perm = np.random.default_rng(seed).permutation(n)
  n_out = int(n * holdout_fraction)
  return np.sort(perm[n_out:]), np.sort(perm[:n_out])


# --------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """``prepare``: converts a dataset's image folders; prints and returns the meta dict."""
  parser = argparse.ArgumentParser(prog="python -m bf_jax.tasks.dg.domains",
                                   description=__doc__.split("\n\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("prepare", help="convert <root>/<domain>/<class>/<images> to array_record")
  p.add_argument("--dataset", required=True, choices=sorted(DG_DATASETS))
  p.add_argument("--root", required=True, help="folder holding the domain folders")
  p.add_argument("--out", required=True, help="writes <out>/<dataset>/")
  p.add_argument("--image_size", type=int, default=None,
                 help="resize so the shorter side is this (default: as stored)")
  p.add_argument("--format", default="png", choices=IMAGE_FORMATS,
                 help="png: lossless (default); jpeg: quality 95, smaller")
  args = parser.parse_args(argv)
  log = lambda line: print(line, flush=True)  # noqa: E731
  meta = prepare(args.dataset, args.root, args.out, args.image_size, image_format=args.format,
                 log=log)
  out = pathlib.Path(args.out).expanduser() / args.dataset
  width = max(len(d) for d in meta["domains"])
  print(f"\n{args.dataset}: {len(meta['classes'])} classes, written to {out}")
  for d in meta["domains"]:
    print(f"  {d:<{width}}  {meta['counts'][d]:>7} images")
  print(f"  {'total':<{width}}  {sum(meta['counts'].values()):>7} images")
  return meta


if __name__ == "__main__":
  main(sys.argv[1:])

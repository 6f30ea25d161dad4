"""CZSL datasets (MIT-States, UT-Zappos, C-GQA; closed world) -> per-split array_record.

Input: the layout of the czsl codebase (Mancini, Naeem et al.) and its download script, per
dataset folder ``<root>`` (conventionally ``data/mit-states``, ``data/ut-zap50k``, ``data/cgqa``):

* ``<root>/images/<relative path>``: the images;
* ``<root>/<split>/{train,val,test}_pairs.txt``: one ``attr obj`` pair per line (attribute first,
  whitespace separated); ``<split>`` defaults to ``compositional-split-natural``;
* ``<root>/metadata_<split>.t7``: a torch pickle of ``{"image", "attr", "obj", "set"}`` dicts.
  bf_jax does not depend on torch: convert it once to ``metadata_<split>.json`` with

    python tools/czsl_metadata_to_json.py <root>/metadata_compositional-split-natural.t7

  then prepare (once):

    python -m bf_jax.tasks.czsl.data prepare --dataset mit_states --root data/mit-states \\
        --out ~/czsl_data [--image_size 256] [--format jpeg|png]

Vocabularies and labels are those of ``metrics.Pairs.from_splits``: attributes, objects and pairs
sorted by name over the union of the three pair files; an image's label is its pair's index there.
An instance is kept only if its ``set`` is train/val/test, its attribute is not ``"NA"`` and its
pair is listed in THAT split's pair file (the czsl codebase drops instances of unlisted pairs);
the dropped ones are counted by reason: ``set`` (set not train/val/test), ``attr_na``,
``pair_unlisted`` (in no pair file), ``pair_other_split`` (listed only for another split).
Kept instances stay in metadata order. Every kept image must exist.

Output, under ``<out>/<dataset>/``, in the format of ``bf_jax.data.image_records`` (record = label,
relative path under ``images/``, encoded image; Pillow RGB, optional bicubic resize of the
shorter side to ``--image_size``): ``{train,val,test}.array_record``, ``{split}.labels.npy``
(int64 pair indices) and, written LAST, ``meta.json``: format_version, attrs, objs, pairs,
split_pairs (per split, in pair-file order), counts, dropped, image_size, image_format. JPEG
(quality 95, 4:4:4) is the default since these are photographs; ``png`` is lossless.

Reading: ``load_czsl(name, data_dir)`` -> ``CZSLData`` (``Pairs``, a ``CZSLSource`` per split).
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

from bf_jax.data import image_records
from bf_jax.tasks.czsl.metrics import Pairs

FORMAT_VERSION = image_records.FORMAT_VERSION  # the record format of bf_jax/data/image_records.py
SPLITS = ("train", "val", "test")
DEFAULT_SPLIT = "compositional-split-natural"
# Registry name -> the dataset's conventional folder name (as the czsl download script makes it).
CZSL_DATASETS: dict[str, str] = {"mit_states": "mit-states", "ut_zappos": "ut-zap50k",
                                 "cgqa": "cgqa",
                                 "colored_digits": "colored-digits"}  # bf_jax/tasks/czsl/digits.py
_CONVERTER = "tools/czsl_metadata_to_json.py"
_DROP_REASONS = ("set", "attr_na", "pair_unlisted", "pair_other_split")

# ----------------------------------------------------------------------------------- prepare


def read_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
  """(attr, obj) pairs of a ``*_pairs.txt`` file, in file order; blank lines are skipped."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"pairs file {path} not found; download the dataset's compositional "
                            f"split (the czsl codebase's download script puts "
                            f"{{train,val,test}}_pairs.txt under <root>/{path.parent.name}/).")
  pairs = []
  for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
    parts = line.split()
    if not parts:
      continue
    if len(parts) != 2:
      raise ValueError(f"{path} line {n}: expected 'attr obj' (two names separated by a space), "
                       f"got {line!r}")
    pairs.append((parts[0], parts[1]))
  return pairs


def read_metadata(root: pathlib.Path, split: str = DEFAULT_SPLIT) -> list[dict[str, str]]:
  """``<root>/metadata_<split>.json`` records; says how to convert the .t7 if only it exists."""
  path = root / f"metadata_{split}.json"
  if not path.is_file():
    t7 = path.with_suffix(".t7")
    if t7.is_file():
      raise FileNotFoundError(f"{path} not found, only {t7} (a torch pickle). Convert it once, "
                              f"with torch installed:\n  python {_CONVERTER} "
                              f"{shlex.quote(str(t7))}")
    raise FileNotFoundError(f"neither {path} nor {t7} exists; download the dataset's metadata "
                            f"(czsl download script), then run python {_CONVERTER} on the .t7.")
  records = json.loads(path.read_text(encoding="utf-8"))
  if not isinstance(records, list):
    raise ValueError(f"{path} holds a {type(records).__name__}, not a list of records; "
                     f"regenerate it with python {_CONVERTER}")
  keys = {"image", "attr", "obj", "set"}
  for i, r in enumerate(records):
    if not isinstance(r, dict) or not keys <= set(r):
      raise ValueError(f"{path} record {i} is not a dict with keys {sorted(keys)}: {r!r:.200}; "
                       f"regenerate it with python {_CONVERTER}")
  return records


def select(records: list[dict[str, str]], split_pairs: dict[str, list[tuple[str, str]]]
           ) -> tuple[dict[str, list[tuple[str, tuple[str, str]]]], dict[str, int]]:
  """Kept (image, pair) per split, in record order, and the dropped counts by reason."""
  listed = {s: set(ps) for s, ps in split_pairs.items()}
  everything = set().union(*listed.values())
  kept: dict[str, list] = {s: [] for s in SPLITS}
  dropped = dict.fromkeys(_DROP_REASONS, 0)
  for r in records:
    pair = (r["attr"], r["obj"])
    if r["set"] not in SPLITS:
      dropped["set"] += 1
    elif r["attr"] == "NA":
      dropped["attr_na"] += 1
    elif pair not in everything:
      dropped["pair_unlisted"] += 1
    elif pair not in listed[r["set"]]:
      dropped["pair_other_split"] += 1
    else:
      kept[r["set"]].append((r["image"], pair))
  return kept, dropped


def _check_images(images: pathlib.Path, rel_paths: list[str]) -> None:
  """Fails before writing anything if an image path is unsafe or its file is missing."""
  if not images.is_dir():
    raise FileNotFoundError(f"image folder {images} not found; --root must be the dataset folder "
                            f"that holds images/ (download and unpack the images there).")
  unsafe = [p for p in rel_paths if pathlib.PurePath(p).is_absolute() or ".." in p.split("/")]
  if unsafe:
    raise ValueError(f"{len(unsafe)} metadata image path(s) leave {images}, e.g. {unsafe[:3]}")
  missing = [p for p in rel_paths if not (images / p).is_file()]
  if missing:
    raise FileNotFoundError(f"{len(missing)} of {len(rel_paths)} listed images are missing under "
                            f"{images}, e.g. {missing[:5]}; is the image download complete?")


def _write_split(path: pathlib.Path, items: list[tuple[str, int]], images: pathlib.Path,
                 image_size: int | None, image_format: str) -> None:
  """Writes (relative path, label) items to ``path``, via a temporary file."""
  from array_record.python import array_record_module

  tmp = path.with_name(path.name + ".tmp")
  writer = array_record_module.ArrayRecordWriter(str(tmp), image_records.WRITER_OPTIONS)
  try:
    for rel, label in items:
      image = image_records.load_image(images / rel, image_size)
      encoded = image_records.encode_image(image, image_format)
      writer.write(image_records.encode_record(label, rel, encoded))
  except BaseException:
    writer.close()
    tmp.unlink(missing_ok=True)
    raise
  writer.close()
  os.replace(tmp, path)


def prepare(name: str, root: str | os.PathLike, out_dir: str | os.PathLike,
            image_size: int | None = None, image_format: str = "jpeg",
            split: str = DEFAULT_SPLIT, log: Callable[[str], None] | None = None) -> dict[str, Any]:
  """Converts the CZSL dataset at ``root`` into ``<out_dir>/<name>/`` (see module docstring).

  Returns the meta dict that is also ``meta.json``; ``log`` gets the dropped and written counts.
  """
  if not name or name in (".", "..") or "/" in name or os.sep in name:
    raise ValueError(f"dataset name {name!r} must be a plain folder name.")
  if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                 or image_size < 1):
    raise ValueError(f"image_size={image_size!r} must be a positive int or None.")
  if image_format not in image_records.IMAGE_FORMATS:
    raise ValueError(f"image_format={image_format!r} is unknown; use one of "
                     f"{image_records.IMAGE_FORMATS}.")
  log = log or (lambda line: None)
  root = pathlib.Path(root).expanduser()
  if not root.is_dir():
    raise FileNotFoundError(f"root {root} is not a folder; pass the dataset folder (e.g. "
                            f"data/{CZSL_DATASETS.get(name, name)}) holding images/ and {split}/.")
  split_pairs = {s: read_pairs(root / split / f"{s}_pairs.txt") for s in SPLITS}
  pairs = Pairs.from_splits(split_pairs["train"], split_pairs["val"], split_pairs["test"])
  kept, dropped = select(read_metadata(root, split), split_pairs)
  log(f"dropped {sum(dropped.values())} instances: " +
      ", ".join(f"{k}={v}" for k, v in dropped.items()))
  images = root / "images"
  _check_images(images, [rel for s in SPLITS for rel, _ in kept[s]])

  out = pathlib.Path(out_dir).expanduser() / name
  out.mkdir(parents=True, exist_ok=True)
  (out / "meta.json").unlink(missing_ok=True)  # until rewritten, the folder reads as unprepared
  counts = {}
  for s in SPLITS:
    labels = pairs.index([p for _, p in kept[s]])
    items = [(rel, int(label)) for (rel, _), label in zip(kept[s], labels)]
    _write_split(out / f"{s}.array_record", items, images, image_size, image_format)
    np.save(out / f"{s}.labels.tmp.npy", labels)
    os.replace(out / f"{s}.labels.tmp.npy", out / f"{s}.labels.npy")
    counts[s] = len(labels)
    log(f"{s}: {len(labels)} images")
  meta = {"format_version": FORMAT_VERSION, "dataset": name, "split": split,
          "attrs": pairs.attrs, "objs": pairs.objs, "pairs": [list(p) for p in pairs.pairs],
          "split_pairs": {s: [list(p) for p in split_pairs[s]] for s in SPLITS},
          "counts": counts, "dropped": dropped, "image_size": image_size,
          "image_format": image_format, "root": str(root.resolve())}
  tmp = out / "meta.json.tmp"
  tmp.write_text(json.dumps(meta, indent=1) + "\n")
  os.replace(tmp, out / "meta.json")
  return meta


# -------------------------------------------------------------------------------------- read


def prepare_command(name: str, data_dir: str | os.PathLike) -> str:
  """The shell commands that prepare ``name`` into ``data_dir``, for error messages."""
  root = f"data/{CZSL_DATASETS.get(name, name)}"
  return (f"python {_CONVERTER} {root}/metadata_{DEFAULT_SPLIT}.t7\n  "
          f"python -m bf_jax.tasks.czsl.data prepare --dataset {shlex.quote(name)} --root {root} "
          f"--out {shlex.quote(str(data_dir))}")


def load_meta(name: str, data_dir: str | os.PathLike) -> dict[str, Any]:
  """``meta.json`` of a prepared dataset; a loud error with the prepare commands if absent."""
  return image_records.read_meta(name, data_dir, CZSL_DATASETS, "CZSL dataset",
                           prepare_command(name, data_dir))


class CZSLSource(image_records.RecordFile):
  """One prepared split: ``{'image': HxWx3 uint8, 'label': pair index}``; ``file_name(i)`` is
  the image's path under ``<root>/images/``."""

  def __init__(self, name: str, data_dir: str | os.PathLike, split: str):
    if split not in SPLITS:
      raise ValueError(f"split {split!r} must be one of {SPLITS}.")
    meta = load_meta(name, data_dir)
    self.name, self.split = name, split
    super().__init__(pathlib.Path(data_dir).expanduser() / name, split, meta["counts"][split],
                     f"{name}/{split}", prepare_command(name, data_dir))


@dataclasses.dataclass
class CZSLData:
  """A prepared CZSL dataset: vocabularies, a source per split, training images per pair."""
  pairs: Pairs
  sources: dict[str, CZSLSource]
  train_pair_counts: np.ndarray  # [P] int64


def pairs_from_meta(meta: dict[str, Any]) -> Pairs:
  """The ``Pairs`` of a meta dict, checked against its stored pair list (the label order)."""
  sp = {s: [tuple(p) for p in meta["split_pairs"][s]] for s in SPLITS}
  pairs = Pairs.from_splits(sp["train"], sp["val"], sp["test"])
  if [list(p) for p in pairs.pairs] != meta["pairs"]:
    raise ValueError("meta.json pairs differ from the sorted union of split_pairs; labels would "
                     "mean other pairs: prepare the dataset again.")
  return pairs


def load_czsl(name: str, data_dir: str | os.PathLike) -> CZSLData:
  """The prepared dataset ``name`` under ``data_dir``."""
  pairs = pairs_from_meta(load_meta(name, data_dir))
  sources = {s: CZSLSource(name, data_dir, s) for s in SPLITS}
  counts = np.bincount(sources["train"].labels, minlength=len(pairs.pairs)).astype(np.int64)
  return CZSLData(pairs=pairs, sources=sources, train_pair_counts=counts)


# --------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """``prepare``: converts a dataset; prints per-split image/pair counts; returns the meta dict."""
  parser = argparse.ArgumentParser(prog="python -m bf_jax.tasks.czsl.data",
                                   description=__doc__.split("\n\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("prepare", help="convert a CZSL dataset folder to array_record")
  p.add_argument("--dataset", required=True, choices=sorted(CZSL_DATASETS))
  p.add_argument("--root", required=True, help="dataset folder holding images/ and the split")
  p.add_argument("--out", required=True, help="writes <out>/<dataset>/")
  p.add_argument("--image_size", type=int, default=None,
                 help="resize so the shorter side is this (default: as stored)")
  p.add_argument("--format", default="jpeg", choices=image_records.IMAGE_FORMATS,
                 help="jpeg: quality 95 (default); png: lossless, larger")
  p.add_argument("--split", default=DEFAULT_SPLIT, help="split folder name under --root")
  args = parser.parse_args(argv)
  meta = prepare(args.dataset, args.root, args.out, args.image_size, args.format, args.split,
                 log=lambda line: print(line, flush=True))
  pairs = pairs_from_meta(meta)
  seen = pairs.split_pairs["train"]
  out = pathlib.Path(args.out).expanduser() / args.dataset
  print(f"\n{args.dataset}: {len(pairs.attrs)} attrs, {len(pairs.objs)} objs, "
        f"{len(pairs.pairs)} pairs, written to {out}")
  for s in SPLITS:
    listed = pairs.split_pairs[s]
    line = f"  {s:<5}  {meta['counts'][s]:>7} images  {len(listed):>5} pairs"
    if s != "train":
      line += f" ({len(listed & seen)} seen, {len(listed - seen)} unseen)"
    print(line)
  return meta


if __name__ == "__main__":
  main(sys.argv[1:])

"""Converts a CZSL dataset's ``metadata_<split>.t7`` into ``metadata_<split>.json``.

Why: the czsl codebase (Mancini, Naeem et al.) and its download script ship the per-image
metadata of MIT-States, UT-Zappos and C-GQA as a ``torch.save`` pickle (a list of dicts
``{"image", "attr", "obj", "set"}``). Reading it needs PyTorch, which bf_jax never depends on, so
run this once, in any environment that has torch:

  python tools/czsl_metadata_to_json.py data/mit-states/metadata_compositional-split-natural.t7

It writes ``metadata_compositional-split-natural.json`` next to the .t7: a JSON list of the same
records, in the same order, with exactly those four keys as strings. Then prepare the dataset with
``python -m bf_jax.tasks.czsl.data prepare ...`` (see bf_jax/tasks/czsl/data.py).

The file is read with ``torch.load(weights_only=True)`` (plain lists/dicts/strings need no
arbitrary unpickling). If your torch refuses it, and you trust the file, pass ``--allow_pickle``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from typing import Any, Sequence

KEYS = ("image", "attr", "obj", "set")


def _as_str(value: Any) -> str:
  # Old pickles may hold bytes (Python 2 era); decode them rather than writing "b'...'".
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def to_json_records(records: Sequence[Any]) -> list[dict[str, str]]:
  """The records as ``[{"image", "attr", "obj", "set"}: str]``, in order; other keys dropped."""
  if isinstance(records, (str, bytes, dict)) or not hasattr(records, "__len__"):
    raise ValueError(f"expected a list of dicts with keys {list(KEYS)}, got "
                     f"{type(records).__name__}; is this a CZSL metadata_*.t7 file?")
  out = []
  for i, record in enumerate(records):
    if not isinstance(record, dict):
      raise ValueError(f"record {i} is a {type(record).__name__}, not a dict with keys "
                       f"{list(KEYS)}: {record!r:.200}")
    missing = [k for k in KEYS if k not in record]
    if missing:
      raise ValueError(f"record {i} lacks key(s) {missing} (has {sorted(map(str, record))}): "
                       f"{record!r:.200}")
    out.append({k: _as_str(record[k]) for k in KEYS})
  return out


def json_path(t7_path: str | os.PathLike) -> pathlib.Path:
  """``<folder>/<stem>.json`` for ``<folder>/<stem>.t7``."""
  return pathlib.Path(t7_path).with_suffix(".json")


def _torch_load(path: pathlib.Path, allow_pickle: bool) -> Any:
  try:
    import torch
  except ImportError as e:
    raise SystemExit("this converter needs PyTorch (bf_jax itself does not): run it in an "
                     "environment with torch installed, e.g. `pip install torch`.") from e
  if allow_pickle:
    return torch.load(path, map_location="cpu", weights_only=False)
  try:
    return torch.load(path, map_location="cpu", weights_only=True)
  except TypeError:  # torch < 1.13 has no weights_only
    return torch.load(path, map_location="cpu")
  except Exception as e:  # the restricted unpickler met something other than lists/dicts/str
    raise SystemExit(f"torch.load(weights_only=True) could not read {path} "
                     f"({type(e).__name__}: {e}); if you trust the file, rerun with "
                     f"--allow_pickle.") from e


def main(argv: Sequence[str] | None = None) -> pathlib.Path:
  """Converts the .t7 given on the command line; returns the written JSON path."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("t7", help="path to <root>/metadata_<split>.t7")
  parser.add_argument("--allow_pickle", action="store_true",
                      help="torch.load(weights_only=False): only for files you trust")
  args = parser.parse_args(argv)
  src = pathlib.Path(args.t7).expanduser()
  if not src.is_file():
    raise SystemExit(f"{src} does not exist; download the dataset with the czsl codebase's "
                     f"download script (it puts metadata_<split>.t7 in the dataset folder).")
  records = to_json_records(_torch_load(src, args.allow_pickle))
  dst = json_path(src)
  tmp = dst.with_name(dst.name + ".tmp")
  tmp.write_text(json.dumps(records) + "\n")
  os.replace(tmp, dst)  # never leave a half-written JSON that prepare would read
  print(f"wrote {len(records)} records to {dst}")
  return dst


if __name__ == "__main__":
  main(sys.argv[1:])

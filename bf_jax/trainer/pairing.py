"""What a paired comparison reads from a run: its initial parameters' fingerprints and its result.

``init.json``: {module group: sha256 of its initial parameters} as the run started (step 0), so a
comparison can check that both arms of a seed started from the same backbone and head.
``result.json``: the final metrics the run returned.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import jax
import numpy as np
from etils import epath

INIT_FILE, RESULT_FILE = "init.json", "result.json"


def _host(leaf) -> np.ndarray:
  if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
    leaf = leaf.addressable_data(0)  # replicated: every process holds the whole value
  return np.asarray(jax.device_get(leaf))


def fingerprints(params: dict[str, Any]) -> dict[str, str]:
  """{top-level group: hex digest over its leaves' paths, dtypes, shapes and values}."""
  out = {}
  for group, tree in sorted(params.items()):
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
      value = _host(leaf)
      digest.update(f"{jax.tree_util.keystr(path)}|{value.dtype}|{value.shape}".encode())
      digest.update(np.ascontiguousarray(value).tobytes())
    out[group] = digest.hexdigest()[:16]
  return out


def record_init(workdir: str | epath.Path, prints: dict[str, str]) -> None:
  if jax.process_index() == 0:
    (epath.Path(workdir) / INIT_FILE).write_text(json.dumps(prints, indent=1))


def write_result(workdir: str | epath.Path, result: dict[str, Any]) -> None:
  if jax.process_index() == 0:
    (epath.Path(workdir) / RESULT_FILE).write_text(json.dumps(result, indent=1, default=float))

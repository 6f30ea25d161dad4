"""The workdir's record of how its checkpoints were trained, and what it started from and ended
with.

``config.json`` is the config the run trains with; ``config_history.jsonl`` gets one line per
start (step, time, host, processes, git commit, the whole config). A restart whose config differs
from ``config.json`` in a workdir holding checkpoints stops before anything is written, listing
every differing field, unless the user names the fields in ``--config.resume_changes`` (e.g.
``total_steps`` to train longer). Before the first checkpoint nothing was trained that a change
could contradict: the new config replaces the record (the history keeps the old one).

``init.json`` holds {parameter group: sha256 of its initial values} as the run started, so a
paired comparison can check that both arms of a seed started from the same backbone and head;
``result.json`` the final metrics, written only when the run reached ``total_steps``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import socket
import subprocess
import time
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from etils import epath

from bf_jax.trainer import config_base

if TYPE_CHECKING:
  from bf_jax.trainer.checkpointing import Checkpointer

CONFIG, HISTORY = "config.json", "config_history.jsonl"
INIT_FILE, RESULT_FILE = "init.json", "result.json"
_MISSING = "<absent>"
# Fields that may differ without changing the math: a restart may change them, and two arms of a
# paired comparison may differ in them. The probe only reads the model; remat changes what the
# backward pass recomputes, not what it computes; a batch is the same for any number of workers;
# a scan over k steps computes the k steps; the class groups only sort the reported accuracies;
# a cached program is the program compiled.
MATH_FREE = ("resume_changes", "probe.enabled", "probe.batches", "probe.seed", "model.remat",
             "data.workers", "steps_per_dispatch", "data.class_groups", "compile_cache_dir")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  """{'optim.lr': 0.05, ...} of a nested config dict."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def allowed_changes(config) -> set[str]:
  """The fields a restart may change: ``config.resume_changes`` (comma-separated names)."""
  names = {n.strip() for n in str(config.resume_changes).split(",") if n.strip()}
  return names | set(MATH_FREE)


def differences(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
  """{field: (old value, new value)} of two recorded configs. A field one of them lacks because
  the schema gained it after that run was recorded is no difference at its default."""
  old_f, new_f = flatten(old), flatten(new)
  out = {k: (old_f.get(k, _MISSING), new_f.get(k, _MISSING))
         for k in sorted(set(old_f) | set(new_f))
         if old_f.get(k, _MISSING) != new_f.get(k, _MISSING)}
  if any(_MISSING in v for v in out.values()):  # the schema only when a record lacks a field
    schema = flatten(json.loads(config_base.base_config().to_json_best_effort()))
    out = {k: v for k, v in out.items()
           if not (_MISSING in v and k in schema and schema[k] in v)}
  return out


def _has_checkpoint(workdir: epath.Path) -> bool:
  directory = workdir / "checkpoints"
  return directory.exists() and any(p.name.isdigit() for p in directory.iterdir())


def _check_writable(workdir: epath.Path) -> None:
  """A local workdir must be, or be creatable as, a directory we can write to."""
  if "://" in str(workdir):
    return  # object stores: Orbax and epath report their own errors
  there = pathlib.Path(os.fspath(workdir)).absolute()
  while not there.exists():
    there = there.parent
  if not there.is_dir():
    raise NotADirectoryError(f"--workdir={workdir}: {there} is a file, not a directory; give a "
                             f"directory path for --workdir (it is created if missing).")
  if not os.access(there, os.W_OK | os.X_OK):
    raise PermissionError(f"--workdir={workdir} cannot be written: {there} is not writable by "
                          f"this user; give a directory you can create and write to.")


def _starts(workdir: epath.Path) -> list[dict[str, Any]]:
  """The history's entries, oldest first (a line cut short by a kill is skipped)."""
  path = workdir / HISTORY
  out = []
  for line in (path.read_text().splitlines() if path.exists() else []):
    try:
      out.append(json.loads(line))
    except json.JSONDecodeError:
      continue
  return out


def check(config, workdir: str | pathlib.Path, n_devices: int | None = None
          ) -> dict[str, tuple[Any, Any]]:
  """Raises (on every process, before anything is written) when ``workdir`` records another
  config; returns the differences the config allows (``resume_changes``). ``n_devices``: the
  mesh this start trains on (a ``bf.scope='device'`` run may not resume on another count)."""
  workdir = epath.Path(workdir)
  _check_writable(workdir)
  path = workdir / CONFIG
  trained = _has_checkpoint(workdir)
  starts = _starts(workdir) if trained else []
  if trained and n_devices is not None:
    _check_device_scope(config, workdir, starts, n_devices)
  if path.exists():
    if not trained and not (workdir / HISTORY).exists():
      raise FileExistsError(
          f"{path} exists, but {workdir} holds no checkpoint and no {HISTORY}: bf_jax did not "
          f"write it, and will not overwrite it. Move the file away or pick another --workdir.")
    try:
      old, source = json.loads(path.read_text()), path
    except json.JSONDecodeError as e:
      raise ValueError(f"{path} is not the JSON bf_jax writes ({e}); its history is in "
                       f"{workdir / HISTORY}. Restore the file or pick another --workdir."
                       ) from None
  elif starts:  # config.json deleted from a trained workdir: the history still says how
    old, source = starts[-1]["config"], workdir / HISTORY
  else:
    return {}
  diffs = differences(old, json.loads(config.to_json_best_effort()))
  if not trained:
    return diffs  # a start that saved nothing (e.g. a loss that blew up): nothing to contradict
  allowed = allowed_changes(config)
  refused = {k: v for k, v in diffs.items() if k not in allowed}
  if refused:
    lines = "\n".join(f"  {k}: {old_v!r} (recorded) -> {new_v!r} (now)"
                      for k, (old_v, new_v) in refused.items())
    raise ValueError(
        f"{workdir} was trained with another config ({source.name} records it); nothing was "
        f"changed. Differing fields:\n"
        f"{lines}\nTo continue with the recorded config, drop these overrides; to change them on "
        f"purpose, add --config.resume_changes={','.join(refused)}; or pick another --workdir.")
  return diffs


def _check_device_scope(config, workdir: epath.Path, starts: list[dict], n_devices: int) -> None:
  """Under ``bf.scope='device'`` the layer attends over each device's rows: another device count
  would change what it attends over mid-run. Global and group scopes may move freely."""
  recorded = [s for s in starts if "devices" in s]  # histories from before this was recorded
  if not (config.bf.enabled and config.bf.scope == "device" and recorded):
    return
  was = recorded[-1]["devices"]
  if was != n_devices:
    raise ValueError(
        f"bf.scope='device': {workdir} was trained on {was} devices ({config.batch_size // was} "
        f"rows per device, what the layer attends over); this start has {n_devices} "
        f"({config.batch_size // n_devices} per device). Resume on {was} devices, or start a new "
        f"--workdir with bf.scope='{config.batch_size // was}' (a group size that does not "
        f"depend on the device count).")


def _git_commit() -> str | None:
  try:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=pathlib.Path(__file__).parent,
                         capture_output=True, text=True, timeout=10)
  except (OSError, subprocess.SubprocessError):
    return None
  return (out.stdout.strip() or None) if out.returncode == 0 else None


def record(config, workdir: str | pathlib.Path, start_step: int,
           diffs: dict[str, tuple[Any, Any]], ckpt: Checkpointer | None = None,
           n_devices: int | None = None) -> None:
  """Appends this start to the history; writes config.json only when it is new or changed, and
  then with ``ckpt`` only once its first checkpoint is saved, so the record never names a config
  that no checkpoint was trained with (a start that fails first leaves the old one)."""
  if jax.process_index() != 0:
    return
  workdir = epath.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  config_json = config.to_json_best_effort(indent=2)
  entry = {"start_step": start_step, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "host": socket.gethostname(), "processes": jax.process_count(),
           **({} if n_devices is None else
              {"devices": n_devices, "per_device_batch": config.batch_size // n_devices}),
           "git_commit": _git_commit(), "changed": {k: list(v) for k, v in diffs.items()},
           "config": json.loads(config_json)}
  history = workdir / HISTORY
  line = json.dumps(entry) + "\n"
  if "://" in str(workdir):  # object stores cannot append
    history.write_text((history.read_text() if history.exists() else "") + line)
  else:
    with open(os.fspath(history), "a") as f:
      f.write(line)
  if not (workdir / CONFIG).exists() or diffs:  # (a deleted config.json is written again)
    write = lambda: _write_atomically(workdir / CONFIG, config_json)
    if ckpt is None:
      write()
    else:
      ckpt.on_next_save.append(write)


def _write_atomically(path: epath.Path, text: str) -> None:
  tmp = path.parent / f"{path.name}.tmp"
  tmp.write_text(text)
  tmp.replace(path)


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
  """The one writer of ``result.json``."""
  if jax.process_index() == 0:
    (epath.Path(workdir) / RESULT_FILE).write_text(json.dumps(result, indent=1, default=float))

"""One run at a time in a workdir: ``run.lock`` names the process that holds it.

Two runs writing one workdir interleave their logs and race on the checkpoints. Process 0 of a
run takes the lock before anything is written and removes it on every exit path. A lock left by
a process that no longer exists on this host (kill -9, a crashed machine) is stale and is taken
over; one from another host cannot be checked from here, so it is refused with its path to
remove by hand. Object stores (gs://) are not locked: they offer no atomic create.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import time

import jax
from etils import epath

FILE = "run.lock"


class WorkdirBusy(ValueError):
  """Another run holds the workdir (a user error: exit 2 on the command line)."""


def _alive(pid: int) -> bool:
  if pid <= 0:  # unreadable holder; and os.kill(-1, ...) would address every process
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # someone else's process
    return True
  return True


class WorkdirLock:
  def __init__(self, workdir: str | pathlib.Path):
    self.path = epath.Path(workdir) / FILE
    self.held = False
    self.active = jax.process_index() == 0 and "://" not in str(workdir)

  def acquire(self) -> None:
    """Takes the lock, or raises naming the run that holds it (before anything is written)."""
    if not self.active:
      return
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path = pathlib.Path(os.fspath(self.path))
    holder = self._holder(path)
    if holder is not None:
      if holder.get("host") != me["host"] or _alive(int(holder.get("pid", -1))):
        raise WorkdirBusy(
            f"another bf_jax run (pid {holder.get('pid')} on {holder.get('host')}, since "
            f"{holder.get('since')}) holds {path.parent}: wait for it to end or pick another "
            f"--workdir; if that run is gone, remove {path}.")
      path.unlink(missing_ok=True)  # stale: its process is gone
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:  # another run took it between our look and our create
      return self.acquire()
    with os.fdopen(fd, "w") as f:
      json.dump(me, f)
    self.held = True

  @staticmethod
  def _holder(path: pathlib.Path) -> dict | None:
    try:
      return json.loads(path.read_text())
    except FileNotFoundError:
      return None
    except (json.JSONDecodeError, OSError):  # half-written by a killed process
      return {"pid": -1, "host": socket.gethostname(), "since": "?"}

  def release(self) -> None:
    if self.held:
      pathlib.Path(os.fspath(self.path)).unlink(missing_ok=True)
      self.held = False

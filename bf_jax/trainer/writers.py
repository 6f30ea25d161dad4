"""Run logs in the workdir (process 0 only): metrics.jsonl, TensorBoard events (the config
record is run_record.py's).

TensorBoard files are written with tensorboardX, so TensorFlow is never needed. A gs:// workdir
works through etils.epath (with gcsfs) and tensorboardX (with google-cloud-storage): install
``bf_jax[gcs]``. Cloud Storage objects cannot be appended to, so there metrics.jsonl is rewritten
whole at each write (once per log window).
"""

from __future__ import annotations

import json
import logging
import pathlib
import sys
import time
from typing import Any

import jax
from etils import epath


class MetricWriter:
  """Appends one JSON line per write and mirrors the scalars to TensorBoard.

  ``resume_step``: a run resumed from that step's checkpoint first drops what it logged past it
  (a run killed after its last checkpoint trains those steps again), so the logs keep one record
  per step; TensorBoard purges those events the same way.
  """

  def __init__(self, workdir: str | pathlib.Path, resume_step: int | None = None):
    self.active = jax.process_index() == 0
    self.workdir = epath.Path(workdir)
    self._tb = None
    if not self.active:
      return
    self.workdir.mkdir(parents=True, exist_ok=True)
    self._remote = "://" in str(workdir)
    jsonl = self.workdir / "metrics.jsonl"
    lines = jsonl.read_text().splitlines(keepends=True) if jsonl.exists() else []
    if resume_step is not None:
      kept = [line for line in lines if json.loads(line)["step"] <= resume_step]
      if len(kept) < len(lines):
        _replace(jsonl, "".join(kept))
      lines = kept
    if self._remote:
      self._lines = lines
    else:
      self._jsonl = open(jsonl, "a")
    from tensorboardX import SummaryWriter
    purge = {} if resume_step is None else {"purge_step": resume_step + 1}
    self._tb = SummaryWriter(str(self.workdir / "tb"), **purge)

  def write(self, step: int, scalars: dict[str, Any], prefix: str = "") -> None:
    if not self.active:
      return
    values = {f"{prefix}{k}": float(v) for k, v in scalars.items()}
    line = json.dumps({"step": step, "time": time.time(), **values}) + "\n"
    if self._remote:
      self._lines.append(line)
      (self.workdir / "metrics.jsonl").write_text("".join(self._lines))
    else:
      self._jsonl.write(line)
      self._jsonl.flush()
    for k, v in values.items():
      self._tb.add_scalar(k, v, step)

  def close(self) -> None:
    if self.active:
      if not self._remote:
        self._jsonl.close()
      self._tb.close()


def _replace(path: epath.Path, text: str) -> None:
  tmp = path.parent / f"{path.name}.tmp"
  tmp.write_text(text)
  tmp.replace(path)


class Progress:
  """Images/s, the share of wall time spent waiting for input, and the ETA, over the steps since
  the last report. The loop adds the time each batch took to arrive (``waited``): a run whose
  host pipeline cannot keep up shows a large ``input`` share."""

  def __init__(self, total_steps: int, batch_size: int, start_step: int):
    self.total, self.batch = total_steps, batch_size
    self._t, self._step, self._wait = time.perf_counter(), start_step, 0.0

  def waited(self, seconds: float) -> None:
    self._wait += seconds

  def input_share(self) -> float:
    """The waiting share of the wall time since the last report (0 to 1)."""
    return min(self._wait / max(time.perf_counter() - self._t, 1e-9), 1.0)

  def line(self, step: int, scalars: dict[str, float]) -> str:
    """The progress line; ``scalars["input_wait"]`` (``input_share``) shows as ``input N%``."""
    now = time.perf_counter()
    rate = (step - self._step) / max(now - self._t, 1e-9)
    self._t, self._step, self._wait = now, step, 0.0
    eta = (self.total - step) / max(rate, 1e-9)
    parts = " ".join(f"{k} {v:.4g}" for k, v in scalars.items() if k != "input_wait")
    share = f" input {100 * scalars['input_wait']:.0f}% |" if "input_wait" in scalars else ""
    return (f"step {step}/{self.total} {parts} | {rate * self.batch:,.0f} img/s |{share} "
            f"ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}")


def setup_logging(level: int = logging.INFO) -> None:
  """bf_jax's own lines at ``level`` on stderr; Orbax/JAX/absl chatter only from WARNING up.

  absl's handler on the root logger filters by absl's verbosity, so bf_jax gets its own handler.
  """
  from absl import logging as absl_logging
  absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every file it writes
  logging.getLogger("jax").setLevel(logging.WARNING)  # and JAX every backend it probes
  logger = logging.getLogger("bf_jax")
  if not logger.handlers:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    logger.addHandler(handler)
  logger.setLevel(level)
  logger.propagate = False

"""``task="classify"``: supervised (long-tailed) classification with BatchFormer.

``train.py``: the run (train, evaluate, select, per-class accuracy); ``model.py``: the model
and state a config builds; ``metrics.py``: the many/medium/few-shot accuracies; ``checks.py``:
the config checks; ``probe.py``: what the trained layer attends to (at each evaluation, and
``inspect`` on a checkpoint).
"""

from __future__ import annotations

import pathlib
from typing import Any, Sequence


def validate(config) -> None:
  """Raises ValueError for the first bad field of ``config``."""
  from bf_jax.tasks.classify.checks import validate as validate_
  validate_(config)


def run(config, workdir: str | pathlib.Path, devices: Sequence[Any] | None = None,
        stop_at: int | None = None) -> dict[str, Any]:
  """Trains ``config`` in ``workdir`` (resuming what it holds); returns its final metrics."""
  from bf_jax.tasks.classify.train import run as run_
  return run_(config, workdir, devices, stop_at)


def inspect(config, workdir: str | pathlib.Path, out: str | pathlib.Path | None = None
            ) -> dict[str, Any]:
  """Probes the newest checkpoint of a run (``bf_jax/tasks/classify/probe.py``)."""
  from bf_jax.tasks.classify.probe import inspect as inspect_
  return inspect_(config, workdir, out)


__all__ = ["validate", "run", "inspect"]

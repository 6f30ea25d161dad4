"""``task="dg"``: DomainBed-style leave-one-domain-out domain generalization, ERM and SWAD.

``domains.py``: the datasets' image folders -> prepared records; ``data.py``: in/out splits and
per-domain balanced batches; ``train.py``: one (test domain, trial seed) run; ``swad.py``: SWAD's
weight averaging; ``sweep.py``: every run of a config, and the result table; ``digits.py``: the
rotated-digits CPU set; ``recipe.py``: the DomainBed configs; ``checks.py``: the config checks.
"""

from __future__ import annotations

import pathlib
from typing import Any, Sequence


def validate(config) -> None:
  """Raises ValueError for the first bad field of ``config``."""
  from bf_jax.tasks.dg.checks import validate as validate_
  validate_(config)


def run(config, workdir: str | pathlib.Path, devices: Sequence[Any] | None = None,
        stop_at: int | None = None) -> dict[str, Any]:
  """Trains ``config`` in ``workdir`` (resuming what it holds); returns its final metrics."""
  from bf_jax.tasks.dg.sweep import run as run_
  return run_(config, workdir, devices, stop_at)


__all__ = ["validate", "run"]

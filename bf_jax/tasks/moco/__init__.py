"""``task="moco"``: MoCo v3 (+ BatchFormer) self-supervised pre-training.

``train.py``: the run, with a kNN monitor (``knn.py``) as its evaluation; ``model.py``: the
online and momentum networks; ``steps.py``: the jitted contrastive step; ``contrastive.py``: the
loss and which streams are contrasted (``moco.pairing``); ``checks.py``: the config checks. The
linear evaluation that follows is a ``task="classify"`` run (``configs/moco_linear_eval.py``).
"""

from __future__ import annotations

import pathlib
from typing import Any, Sequence


def validate(config) -> None:
  """Raises ValueError for the first bad field of ``config``."""
  from bf_jax.tasks.moco.checks import validate as validate_
  validate_(config)


def run(config, workdir: str | pathlib.Path, devices: Sequence[Any] | None = None,
        stop_at: int | None = None) -> dict[str, Any]:
  """Trains ``config`` in ``workdir`` (resuming what it holds); returns its final metrics."""
  from bf_jax.tasks.moco.train import run as run_
  return run_(config, workdir, devices, stop_at)


__all__ = ["validate", "run"]

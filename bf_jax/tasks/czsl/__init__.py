"""``task="czsl"``: closed-world compositional zero-shot learning (CGE, CompCos) + BatchFormer.

``data.py``: the czsl layout -> prepared records; ``model.py``: the CGE and CompCos heads;
``train.py``: the run; ``steps.py``: the pair-score step; ``metrics.py``: the closed-world
evaluation of the reference czsl codebase (AUC of the seen/unseen accuracy curve over calibration
biases, best HM, best seen/unseen, attribute/object accuracy) and ``Pairs`` for the
attribute/object/pair bookkeeping; ``digits.py``: the colored-digits CPU set; ``recipe.py``: the
paper's configs; ``checks.py``: the config checks.
"""

from __future__ import annotations

import pathlib
from typing import Any, Sequence


def validate(config) -> None:
  """Raises ValueError for the first bad field of ``config``."""
  from bf_jax.tasks.czsl.checks import validate as validate_
  validate_(config)


def run(config, workdir: str | pathlib.Path, devices: Sequence[Any] | None = None,
        stop_at: int | None = None) -> dict[str, Any]:
  """Trains ``config`` in ``workdir`` (resuming what it holds); returns its final metrics."""
  from bf_jax.tasks.czsl.train import run as run_
  return run_(config, workdir, devices, stop_at)


__all__ = ["validate", "run"]

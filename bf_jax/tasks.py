"""run(config, workdir): the entry every task shares; ``config.task`` picks the loop."""

from __future__ import annotations

import pathlib
from typing import Any, Sequence

import jax

from bf_jax import pretrain, train
from bf_jax.dg import sweep


def run(config, workdir: str | pathlib.Path, devices: Sequence[jax.Device] | None = None,
        stop_at: int | None = None) -> dict[str, Any]:
  """``task="classify"``: train.train_and_evaluate; ``"moco"``: pretrain.pretrain; ``"dg"``:
  dg.sweep.run (every leave-one-domain-out run of the config); ``"czsl"``: czsl.train."""
  if config.task == "moco":
    return pretrain.pretrain(config, workdir, devices, stop_at)
  if config.task == "dg":
    return sweep.run(config, workdir, devices, stop_at)
  if config.task == "czsl":
    from bf_jax.czsl.train import train_czsl
    return train_czsl(config, workdir, devices, stop_at)
  return train.train_and_evaluate(config, workdir, devices, stop_at)

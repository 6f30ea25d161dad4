"""The task registry: ``config.task`` -> a package under ``bf_jax/tasks`` exposing the same two
functions, ``validate(config)`` and ``run(config, workdir, devices=None, stop_at=None)``, and a
``config.py`` whose ``BLOCKS`` maps the task's config blocks to their defaults.

Importing the registry adds every task's blocks to the shared schema (``base_config``), so every
config holds every block. A task package's ``__init__`` imports its code only when ``validate``
or ``run`` is called, so a run of one task loads none of the others' code. Tasks never import
each other (tests/test_layout.py holds them to that).
"""

from __future__ import annotations

import importlib
import pathlib
from types import ModuleType
from typing import Any, Sequence

import jax
import ml_collections

from bf_jax.trainer import compile_cache, config_base

# name -> package, in the order the docs list them.
REGISTRY = {
    "classify": "bf_jax.tasks.classify",  # supervised (long-tailed) classification
    "moco": "bf_jax.tasks.moco",  # MoCo v3 self-supervised pre-training
    "dg": "bf_jax.tasks.dg",  # DomainBed leave-one-domain-out, ERM and SWAD
    "czsl": "bf_jax.tasks.czsl",  # closed-world compositional zero-shot learning
}
TASKS = tuple(REGISTRY)

for _name, _package in REGISTRY.items():  # the first is config.task's default
  config_base.add_task(_name, importlib.import_module(f"{_package}.config").BLOCKS)


def base_config() -> ml_collections.ConfigDict:
  """Every field with its defaults: the shared schema and every task's block."""
  return config_base.base_config()


def get(name: str) -> ModuleType:
  """The task package registered as ``name``; a loud error naming the choices otherwise."""
  if name not in REGISTRY:
    raise ValueError(f"config.task={name!r} must be one of {TASKS}; set it with "
                     f"--config.task=...")
  return importlib.import_module(REGISTRY[name])


def validate(config) -> None:
  """Raises ValueError for the first bad field of ``config`` (its task's checks)."""
  get(config.task).validate(config)


def run(config, workdir: str | pathlib.Path, devices: Sequence[jax.Device] | None = None,
        stop_at: int | None = None) -> dict[str, Any]:
  """Runs ``config.task`` in ``workdir`` (resuming what it holds); returns its final metrics.

  ``devices`` restricts the mesh (tests compare 1 and 8 devices); ``stop_at`` ends the run early
  at that step with a checkpoint, as a preemption would (rerun to resume).
  """
  compile_cache.setup(config.compile_cache_dir)  # before anything compiles
  return get(config.task).run(config, workdir, devices, stop_at)

"""The classifier's BatchFormer probe (``config.probe``): at every evaluation, and on any
checkpoint through ``python -m bf_jax.probe``, the trained layer runs on probe batches drawn as
training batches are (the training sampler, ``probe.seed`` instead of the run's seed, so both
arms and every seed of a comparison see the same samples) and writes ``probe.json``,
``attention.png``, ``gradient_share.png`` and ``probe/*`` TensorBoard scalars
(bf_jax/trainer/probe_stats.py says what they measure, bf_jax/trainer/prober.py runs it)."""

from __future__ import annotations

import pathlib
from typing import Any, Callable, Iterator

import jax
import numpy as np
from etils import epath

from bf_jax import data
from bf_jax.tasks.classify import checks, model
from bf_jax.trainer import feed, prober
from bf_jax.trainer.run import restore_newest


def stream(config, dataset: data.Data) -> Callable[[int], Iterator[dict[str, np.ndarray]]]:
  """seed -> this process's part of the training stream drawn from ``seed`` (the probe's)."""
  return lambda seed: feed.train_batches(
      dataset.train_source, dataset.train_indices, config.batch_size, dataset.preprocess,
      dataset.num_classes, seed, sampler=config.data.sampler, labels=dataset.train_labels)


def make_prober(config, dataset: data.Data, parts, mesh: jax.sharding.Mesh,
                workdir: str | pathlib.Path) -> prober.Prober:
  """The probe of a classifier run, on the probe stream's first ``probe.batches`` batches."""
  batches = feed.first_batches(stream(config, dataset)(config.probe.seed), config.probe.batches)
  return prober.Prober(config, batches, dataset.train_class_counts, parts.graphdef, parts.other,
                       parts.loss_fn, mesh, workdir, config.data.name)


def inspect(config, workdir: str | pathlib.Path, out: str | pathlib.Path | None = None
            ) -> dict[str, Any]:
  """Probes the newest checkpoint of a classifier run (``config`` is its config.json, probe
  fields as wanted); writes into ``out`` (default: the workdir) and returns the record."""
  if not config.bf.enabled:
    raise ValueError(f"{workdir} trained without BatchFormer (bf.enabled=False): there is no "
                     f"layer to probe; inspect the run of the same seed with bf.enabled=True.")
  config.probe.enabled = True
  checks.validate(config)
  mesh, dataset = feed.prepare(config)
  parts = model.build(config, mesh, dataset)
  step, state = restore_newest(config, workdir, parts.state)
  if step == 0:
    raise FileNotFoundError(f"{workdir} holds no checkpoint yet (checkpoints/ is empty): train "
                            f"it first, or give the workdir of a run that saved one.")
  out = epath.Path(workdir if out is None else out)
  out.mkdir(parents=True, exist_ok=True)
  record = make_prober(config, dataset, parts, mesh, workdir).record(state, step, None, out)
  return {"step": step, **record}

"""The classifier's BatchFormer probe (``config.probe``): at every evaluation, and on any
checkpoint through ``python -m bf_jax.inspect``, the trained layer runs on probe batches drawn as
training batches are (the training sampler, ``probe.seed`` instead of the run's seed, so both
arms and every seed of a comparison see the same samples) and writes ``probe.json``,
``attention.png``, ``gradient_share.png`` and ``probe/*`` TensorBoard scalars
(bf_jax/trainer/probe.py says what they measure)."""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import nnx
from jax.sharding import PartitionSpec as P

from bf_jax import data
from bf_jax.data import pipeline
from bf_jax.tasks.classify import build, checks
from bf_jax.layer.attention_maps import attention_maps, on_whole_batch
from bf_jax.models.classifier import scope_to_group_size
from bf_jax.trainer import checkpointing, plots, setup, sharding, writers
from bf_jax.trainer import probe as probe_lib
from bf_jax.trainer.sharding import AXIS

log = logging.getLogger("bf_jax")


def wanted(config) -> bool:
  """A probe needs a BatchFormer to look at: a bf-off run with probe.enabled skips it."""
  return bool(config.probe.enabled and config.bf.enabled)


def probe_batches(config, dataset: data.Data, n: int) -> list[dict[str, np.ndarray]]:
  """This process's part of the first ``n`` global batches of the probe stream."""
  stream = pipeline.train_batches(
      dataset.train_source, dataset.train_indices, config.batch_size, dataset.preprocess,
      dataset.num_classes, config.probe.seed, 0, jax.process_index(), jax.process_count(),
      sampler=config.data.sampler, labels=dataset.train_labels)
  return [next(stream) for _ in range(n)]


def make_probe_fn(parts, mesh: jax.sharding.Mesh, group_of_class_K: np.ndarray):
  """(state, batch, step) -> ([layers, B, B] attention, [3, 3] gradient share, labels [B]).

  The backbone runs sharded, as the eval step does; its features are then gathered, and the
  layer runs on the whole probe batch, which under every scope equals its multi-device result.
  """
  graphdef, other = parts.graphdef, parts.other

  def local(params, stats, other, images):
    return nnx.merge(graphdef, params, stats, other).probe_features(images)

  features = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), P(), P(AXIS)),
                           out_specs=P(AXIS))
  group_K = jnp.asarray(group_of_class_K)
  whole = jax.sharding.NamedSharding(mesh, P())

  def fn(state, batch, step):
    feats_BxC = jax.sharding.reshard(
        features(state["params"], state["stats"], other, batch["image"]), whole)
    labels_B = jax.sharding.reshard(batch["label"], whole)
    model = nnx.merge(graphdef, state["params"], state["stats"], other)

    def rows_loss(f_BxC):
      return parts.loss_fn(model.head(on_whole_batch(model.bf, f_BxC)), labels_B, step)

    share_GxG = probe_lib.gradient_share(rows_loss, feats_BxC, group_K[labels_B])
    return attention_maps(model.bf, feats_BxC), share_GxG, labels_B

  return jax.jit(fn)


class Prober:
  """Probes a run's state and writes what it finds into the workdir."""

  def __init__(self, config, dataset: data.Data, parts, mesh: jax.sharding.Mesh,
               workdir: str | pathlib.Path):
    self.config, self.mesh, self.workdir = config, mesh, epath.Path(workdir)
    self.counts_K = np.asarray(dataset.train_class_counts)
    self.group_K = probe_lib.group_of_class(self.counts_K)
    self.batches = probe_batches(config, dataset, config.probe.batches)
    self.fn = make_probe_fn(parts, mesh, self.group_K)
    self.group_size = scope_to_group_size(config.bf.scope, config.batch_size // mesh.devices.size)

  def measure(self, state: dict, step: int) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """(the mean record over the probe batches, the first batch's maps and labels)."""
    records, first = [], None
    for batch in self.batches:
      maps, share, labels = jax.device_get(
          self.fn(state, sharding.put_batch(batch, self.mesh), np.int32(step)))
      group_B = self.group_K[labels]
      visible = probe_lib.visible_keys(len(labels), self.group_size)
      records.append(probe_lib.summarize(maps, share, labels, group_B, visible))
      if first is None:
        first = (maps, labels)
    record = probe_lib.mean_records(records)
    record["scope"] = self.config.bf.scope
    return record, *first

  def record(self, state: dict, step: int, writer: writers.MetricWriter | None,
             out: epath.Path | None = None) -> dict[str, Any]:
    """Measures, then writes probe.json, the two pictures and the TensorBoard scalars."""
    record, maps, labels = self.measure(state, step)
    out = self.workdir if out is None else out
    probe_lib.write(out, step, record)
    if writer is not None:
      writer.write(step, probe_lib.scalars(record), prefix="probe/")
    if jax.process_index() == 0:
      name = f"{self.config.data.name}, step {step}, scope {self.config.bf.scope}"
      rank_K = np.argsort(np.argsort(-self.counts_K, kind="stable"), kind="stable")
      plots.plot_attention(maps, labels, rank_K, self.group_K[labels], probe_lib.GROUPS,
                           out / "attention.png", f"{name}: probe batch 0")
      plots.plot_gradient_share(record["gradient_share"], record["batch_fraction"],
                                probe_lib.GROUPS, out / "gradient_share.png",
                                f"Gradient of each group's BatchFormer-stream loss\n{name}, "
                                f"{len(self.batches)} probe batches")
    attn = record["attention"][-1]
    log.info("probe step %d: attention self %.3f, same class %.3f, other class %.3f (%s)",
             step, attn["self"], attn["same_class"], attn["other_class"], out / probe_lib.FILE)
    return record


def inspect(config, workdir: str | pathlib.Path, out: str | pathlib.Path | None = None
            ) -> dict[str, Any]:
  """Probes the newest checkpoint of a classifier run (``config`` is its config.json, probe
  fields as wanted); writes into ``out`` (default: the workdir) and returns the record."""

  if not config.bf.enabled:
    raise ValueError(f"{workdir} trained without BatchFormer (bf.enabled=False): there is no "
                     f"layer to probe; inspect the run of the same seed with bf.enabled=True.")
  config.probe.enabled = True
  checks.validate(config)
  mesh, dataset = setup.prepare(config)
  parts = build.build(config, mesh, dataset)
  ckpt = checkpointing.Checkpointer(workdir, 0, config.ckpt.keep)
  try:
    step, state = ckpt.restore_latest(parts.state)
  finally:
    ckpt.close()
  if step == 0:
    raise FileNotFoundError(f"{workdir} holds no checkpoint yet (checkpoints/ is empty): train "
                            f"it first, or give the workdir of a run that saved one.")
  out = epath.Path(workdir if out is None else out)
  out.mkdir(parents=True, exist_ok=True)
  record = Prober(config, dataset, parts, mesh, workdir).record(state, step, None, out)
  return {"step": step, **record}

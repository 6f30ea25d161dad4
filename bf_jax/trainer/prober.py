"""Runs the BatchFormer probe (``probe.py``'s tables) on a run's state and writes what it finds:
``probe.json``, ``attention.png``, ``gradient_share.png`` and ``probe/*`` TensorBoard scalars.

Works on any model with ``probe_features(images)`` (the layer's input, eval mode), ``bf`` and a
per-row ``head`` (``bf_jax/models/classifier.py``); the task gives the probe batches, drawn as
its training batches are, and its loss. The backbone runs sharded, as the eval step does; its
features are then gathered and the layer runs on the whole probe batch, which under global and
group scope equals its multi-device result.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import nnx
from jax.sharding import PartitionSpec as P

from bf_jax.data.long_tail import group_names
from bf_jax.layer.attention_maps import attention_maps, on_whole_batch
from bf_jax.models import bf_config
from bf_jax.trainer import plots, probe_stats, sharding, writers
from bf_jax.trainer.sharding import AXIS

log = logging.getLogger("bf_jax")


def wanted(config) -> bool:
  """``probe.enabled`` with a BatchFormer to look at: a bf-off run skips the probe."""
  return bool(config.probe.enabled and config.bf.enabled)


def make_probe_fn(graphdef: nnx.GraphDef, other: dict, loss_fn: Callable,
                  mesh: jax.sharding.Mesh, group_of_class_K: np.ndarray) -> Callable:
  """(state, batch, step) -> ([layers, B, B] attention, [3, 3] gradient share, labels [B])."""

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
      return loss_fn(model.head(on_whole_batch(model.bf, f_BxC)), labels_B, step)

    share_GxG = probe_stats.gradient_share(rows_loss, feats_BxC, group_K[labels_B])
    return attention_maps(model.bf, feats_BxC), share_GxG, labels_B

  return jax.jit(fn)


class Prober:
  """Probes a run's state on fixed probe batches and writes what it finds into the workdir.

  ``batches``: this process's part of each global probe batch; ``train_counts_K``: training
  images per class (the groups of ``data.class_groups``). The layer's scope comes from
  ``config.bf``.
  """

  def __init__(self, config, batches: list[dict[str, np.ndarray]], train_counts_K: np.ndarray,
               graphdef: nnx.GraphDef, other: dict, loss_fn: Callable, mesh: jax.sharding.Mesh,
               workdir: str | pathlib.Path, name: str):
    self.batches, self.mesh, self.workdir, self.name = batches, mesh, epath.Path(workdir), name
    self.scope = config.bf.scope
    self.group_size = bf_config.group_size(config.bf, config.batch_size // mesh.devices.size)
    self.counts_K = np.asarray(train_counts_K)
    self.group_K = probe_stats.group_of_class(self.counts_K, config.data.class_groups)
    self.group_names = group_names(config.data.class_groups)
    self.fn = make_probe_fn(graphdef, other, loss_fn, mesh, self.group_K)

  def measure(self, state: dict, step: int) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """(the mean record over the probe batches, the first batch's maps and labels)."""
    records, first = [], None
    for batch in self.batches:
      maps, share, labels = jax.device_get(
          self.fn(state, sharding.put_batch(batch, self.mesh), np.int32(step)))
      visible = probe_stats.visible_keys(len(labels), self.group_size)
      records.append(probe_stats.summarize(maps, share, labels, self.group_K[labels], visible,
                                           self.group_names))
      if first is None:
        first = (maps, labels)
    record = probe_stats.mean_records(records)
    record["scope"] = self.scope
    return record, *first

  def record(self, state: dict, step: int, writer: writers.MetricWriter | None,
             out: epath.Path | None = None) -> dict[str, Any]:
    """Measures, then writes probe.json, the two pictures and the TensorBoard scalars."""
    record, maps, labels = self.measure(state, step)
    out = self.workdir if out is None else epath.Path(out)
    probe_stats.write(out, step, record)
    if writer is not None:
      writer.write(step, probe_stats.scalars(record), prefix="probe/")
    if jax.process_index() == 0:
      name = f"{self.name}, step {step}, scope {self.scope}"
      rank_K = np.argsort(np.argsort(-self.counts_K, kind="stable"), kind="stable")
      plots.plot_attention(maps, labels, rank_K, self.group_K[labels], self.group_names,
                           out / "attention.png", f"{name}: probe batch 0")
      plots.plot_gradient_share(record["gradient_share"], record["batch_fraction"],
                                self.group_names, out / "gradient_share.png",
                                f"Gradient of each group's BatchFormer-stream loss\n{name}, "
                                f"{len(self.batches)} probe batches")
    attn = record["attention"][-1]
    log.info("probe step %d: attention self %.3f, same class %.3f, other class %.3f (%s)",
             step, attn["self"], attn["same_class"], attn["other_class"], out / probe_stats.FILE)
    return record

"""What a trained BatchFormer does on a probe batch: where each group's attention goes, and where
the gradient of each group's loss lands (the paper's "head classes help tail classes" argument).

Task-independent: a task gives the probe batch's BatchFormer input features, labels and each
sample's group (many/medium/few or head/mid/tail, ``data.class_groups``), the layer, and a per-row
loss of the BatchFormer stream. Everything is computed on the whole (gathered) probe batch, where
the layer's global and group scopes are what it computes across devices.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from bf_jax.data.long_tail import class_groups, group_names

GROUPS = group_names("shots")  # a record names its own groups (``data.class_groups``)
FILE = "probe.json"


def group_of_class(train_counts_K: np.ndarray, rule: str = "shots") -> np.ndarray:
  """[K] index into the groups of ``rule`` of each class, from its training images
  (data.long_tail.class_groups)."""
  out, masks = np.zeros(len(train_counts_K), np.int32), class_groups(train_counts_K, rule)
  for i, name in enumerate(masks):
    out[masks[name]] = i
  return out


def visible_keys(batch: int, group_size: int | None) -> np.ndarray:
  """[B, B] which keys a query can attend to: all, or its group of consecutive samples."""
  if group_size is None:
    return np.ones((batch, batch), bool)
  ids = np.arange(batch) // group_size
  return ids[:, None] == ids[None, :]


def attention_tables(attn_BxB: np.ndarray, labels_B: np.ndarray, group_B: np.ndarray,
                     n_groups: int = len(GROUPS)) -> dict[str, Any]:
  """One layer's attention (rows: queries, summing to 1) summarized by groups and classes.

  ``group_to_group[g][h]``: the mean over group g's queries of the attention mass on group h's
  keys (None where the batch has no query of g). ``self`` / ``same_class`` (other samples of the
  query's class) / ``other_class``: mean masses over all queries.
  """
  attn_BxB = np.asarray(attn_BxB, np.float64)
  labels_B, group_B = np.asarray(labels_B), np.asarray(group_B)
  onehot_BxG = group_B[:, None] == np.arange(n_groups)[None, :]
  mass_BxG = attn_BxB @ onehot_BxG  # each query's mass per key group
  table = []
  for g in range(n_groups):
    rows = group_B == g
    table.append([float(v) for v in mass_BxG[rows].mean(0)] if rows.any() else None)
  same_BxB = labels_B[:, None] == labels_B[None, :]
  self_mass = np.diag(attn_BxB)
  same_mass = (attn_BxB * same_BxB).sum(1) - self_mass
  return {"group_to_group": table, "self": float(self_mass.mean()),
          "same_class": float(same_mass.mean()), "other_class": float(1.0 - (self_mass +
                                                                            same_mass).mean())}


def uniform_attention(visible_BxB: np.ndarray) -> np.ndarray:
  """Attention spread evenly over the keys each query sees: the tables' chance level."""
  visible = np.asarray(visible_BxB, np.float64)
  return visible / visible.sum(1, keepdims=True)


def gradient_share(rows_loss_fn: Callable[[jax.Array], jax.Array], feats_Bx: jax.Array,
                   group_B: jax.Array, n_groups: int = len(GROUPS)) -> jax.Array:
  """[n_groups, n_groups]: row g is how the gradient of group g's summed loss spreads over the
  samples' input features: entry h is the share of the per-sample gradient norms that falls on
  group h's samples (rows sum to 1; NaN where group g has no sample).

  ``rows_loss_fn(feats) -> [B]`` is the loss of each row of the BatchFormer stream. Rows couple
  only through the layer, so everything outside group g's own rows reaches them through it.
  """
  loss_B, vjp = jax.vjp(rows_loss_fn, feats_Bx)
  onehot_GxB = (group_B[None, :] == jnp.arange(n_groups)[:, None]).astype(loss_B.dtype)
  grads_GxBx = jax.vmap(lambda ct: vjp(ct)[0])(onehot_GxB)
  norms_GxB = jnp.sqrt(jnp.sum(jnp.square(grads_GxBx.reshape(n_groups, feats_Bx.shape[0], -1)),
                               axis=-1))
  to_group_GxG = norms_GxB @ onehot_GxB.T
  return to_group_GxG / to_group_GxG.sum(axis=1, keepdims=True)


def batch_fractions(group_B: np.ndarray, n_groups: int = len(GROUPS)) -> list[float]:
  group_B = np.asarray(group_B)
  return [float((group_B == g).mean()) for g in range(n_groups)]


def summarize(maps_LxBxB: np.ndarray, grad_share_GxG: np.ndarray, labels_B: np.ndarray,
              group_B: np.ndarray, visible_BxB: np.ndarray,
              names: Sequence[str] = GROUPS) -> dict[str, Any]:
  """The JSON record of one probe batch: per layer the attention tables (and their chance
  level), the gradient-share table, and the batch's group fractions (groups called ``names``)."""
  uniform = attention_tables(uniform_attention(visible_BxB), labels_B, group_B)
  share = [[None if np.isnan(v) else float(v) for v in row] for row in np.asarray(grad_share_GxG)]
  return {"groups": list(names), "batch_fraction": batch_fractions(group_B),
          "attention": [attention_tables(m, labels_B, group_B) for m in maps_LxBxB],
          "uniform_attention": uniform, "gradient_share": share}


def mean_records(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """The mean of several probe batches' records (entries missing in a batch are left out)."""

  def mean(*values):
    if isinstance(values[0], (list, tuple)) or any(v is None for v in values):
      if all(v is None for v in values):
        return None
      present = [v for v in values if v is not None]
      if isinstance(present[0], (list, tuple)):
        return [mean(*parts) for parts in zip(*present)]
      return float(np.mean(present))
    if isinstance(values[0], dict):
      return {k: mean(*(v[k] for v in values)) for k in values[0]}
    if isinstance(values[0], str):
      return values[0]
    return float(np.mean(values))

  return {**mean(*records), "probe_batches": len(records)}


def scalars(record: dict[str, Any]) -> dict[str, float]:
  """Flat TensorBoard scalars of a record: ``attn/few_to_many``, ``grad/few_to_many``, ...
  (the last layer's attention; ``layer{i}/`` prefixes when the layer is a stack)."""
  out, names = {}, record["groups"]
  layers = record["attention"]
  for i, tables in enumerate(layers):
    prefix = "attn/" if len(layers) == 1 else f"layer{i}/attn/"
    for g, row in enumerate(tables["group_to_group"]):
      for h, v in enumerate(row or ()):
        out[f"{prefix}{names[g]}_to_{names[h]}"] = v
    for k in ("self", "same_class", "other_class"):
      out[f"{prefix}{k}"] = tables[k]
  for g, row in enumerate(record["gradient_share"]):
    for h, v in enumerate(row):
      if v is not None:
        out[f"grad/{names[g]}_to_{names[h]}"] = v
  return out


def write(workdir: str | pathlib.Path, step: int, record: dict[str, Any]) -> None:
  """Adds ``record`` at ``step`` to the workdir's probe.json (process 0 only)."""
  if jax.process_index() != 0:
    return
  path = epath.Path(workdir) / FILE
  history = json.loads(path.read_text()) if path.exists() else {}
  history[str(step)] = record
  path.write_text(json.dumps(history, indent=1))


def markdown(record: dict[str, Any]) -> str:
  """The last layer's 3x3 attention table and the gradient-share table, as Markdown."""
  present = [g for g, f in enumerate(record["batch_fraction"]) if f > 0]
  names = record["groups"]

  def table(title: str, rows, note: str) -> list[str]:
    head = f"| {title} | " + " | ".join(names[h] for h in present) + " |"
    lines = [head, "|" + "---|" * (len(present) + 1)]
    for g in present:
      cells = " | ".join("-" if rows[g] is None or rows[g][h] is None else f"{rows[g][h]:.3f}"
                         for h in present)
      lines.append(f"| {names[g]} | {cells} |")
    return lines + ["", note, ""]

  attn, uniform = record["attention"][-1], record["uniform_attention"]
  frac = ", ".join(f"{names[g]} {record['batch_fraction'][g]:.3f}" for g in present)
  lines = table("queries \\ keys", attn["group_to_group"],
                "Attention mass of each group's queries (rows) on each group's keys; spread "
                f"evenly it would be {_rows(uniform['group_to_group'], present, names)}.")
  lines += [f"Self {attn['self']:.3f}, same class {attn['same_class']:.3f}, other class "
            f"{attn['other_class']:.3f} (evenly spread: {uniform['self']:.3f}, "
            f"{uniform['same_class']:.3f}, {uniform['other_class']:.3f}).", ""]
  lines += table("loss of \\ features of", record["gradient_share"],
                 "Share of the gradient of each group's BatchFormer-stream loss (rows) that lands "
                 f"on each group's input features; the batch is {frac}.")
  return "\n".join(lines)


def _rows(rows, present, names) -> str:
  cells = [", ".join(f"{rows[g][h]:.3f}" for h in present) for g in present if rows[g] is not None]
  if len(set(cells)) == 1:
    return f"{cells[0]} in every row"
  return "; ".join(f"{names[g]}: " + ", ".join(f"{rows[g][h]:.3f}" for h in present)
                   for g in present if rows[g] is not None)

"""Plots a run writes: per-class accuracy against class size (where BatchFormer helps the tail),
metric curves over steps, and the probe's pictures; ``pyplot`` and ``save`` for a task's own."""

from __future__ import annotations

import io
import pathlib
from typing import Sequence

import numpy as np
from etils import epath


def pyplot():
  """matplotlib.pyplot on the Agg backend, imported on first use (no screen needed)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def save(fig, path: str | pathlib.Path) -> None:
  """Writes ``fig`` as a PNG to ``path`` (local or an object store) and closes it."""
  png = io.BytesIO()  # via bytes, so a gs:// path works too
  fig.savefig(png, format="png")
  pyplot().close(fig)
  epath.Path(path).write_bytes(png.getvalue())


def plot_curves(runs: dict[str, tuple[list[float], list[float]]], path: str | pathlib.Path,
                ylabel: str, title: str, xlabel: str = "step", x_scale: float = 1.0) -> None:
  """``runs``: label -> (x, values in [0, 1]); one line each, values in percent, x times
  ``x_scale``; writes a PNG."""
  fig, ax = pyplot().subplots(figsize=(6, 3.8), dpi=120)
  for label, (xs, values) in runs.items():
    ax.plot(x_scale * np.asarray(xs), 100 * np.asarray(values), marker="o", label=label)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  save(fig, path)


def plot_per_class(runs: dict[str, tuple[np.ndarray, np.ndarray]], path: str | pathlib.Path,
                   title: str = "Per-class test accuracy vs training images per class") -> None:
  """``runs``: label -> (train counts per class, test accuracy per class); writes a PNG."""
  fig, ax = pyplot().subplots(figsize=(7, 4.2), dpi=120)
  markers = "os^dv"
  for i, (label, (counts, acc)) in enumerate(runs.items()):
    counts, acc = np.asarray(counts), np.asarray(acc)
    order = [j for j in np.argsort(-counts, kind="stable") if counts[j] > 0]  # log axis
    ax.plot(counts[order], 100 * acc[order], marker=markers[i % 5], label=label, alpha=0.85)
  ax.set_xscale("log")
  ax.set_xlabel("training images of the class (log scale)")
  ax.set_ylabel("test accuracy of the class (%)")
  smallest = min(min(c for c in counts if c > 0) for counts, _ in runs.values())
  ax.set_xlim(left=smallest / 1.3)
  if smallest < 20:  # the long-tail literature's few-shot classes
    ax.axvspan(smallest / 1.3, 20, color="0.92", zorder=0)
    ax.text(0.02, 0.02, "few-shot (<20)", transform=ax.transAxes, color="0.4", fontsize=8)
  ax.set_title(title, fontsize=10)
  ax.grid(alpha=0.3, which="both")
  ax.legend()
  fig.tight_layout()
  save(fig, path)


def plot_attention(maps_LxBxB: np.ndarray, labels_B: np.ndarray, rank_K: np.ndarray,
                   group_B: np.ndarray, group_names: Sequence[str], path: str | pathlib.Path,
                   title: str) -> None:
  """Each layer's head-averaged attention over a probe batch, samples sorted by class (classes
  in ``rank_K`` order, e.g. most training images first), group boundaries drawn and named."""
  labels_B, group_B = np.asarray(labels_B), np.asarray(group_B)
  order = np.lexsort((np.arange(len(labels_B)), np.asarray(rank_K)[labels_B]))
  plt = pyplot()
  n = len(maps_LxBxB)
  fig, axes = plt.subplots(1, n, figsize=(5.6 * n, 5.2), dpi=120, squeeze=False)
  for i, ax in enumerate(axes[0]):
    m = np.asarray(maps_LxBxB[i])[np.ix_(order, order)]
    im = ax.imshow(m, cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="attention (heads averaged)")
    cls, grp = labels_B[order], group_B[order]
    for b in np.flatnonzero(cls[1:] != cls[:-1]) + 0.5:
      ax.axhline(b, color="w", lw=0.3, alpha=0.5)
      ax.axvline(b, color="w", lw=0.3, alpha=0.5)
    edges = [0, *(np.flatnonzero(grp[1:] != grp[:-1]) + 1), len(grp)]
    for b in edges[1:-1]:
      ax.axhline(b - 0.5, color="r", lw=1.2)
      ax.axvline(b - 0.5, color="r", lw=1.2)
    mids = [(lo + hi - 1) / 2 for lo, hi in zip(edges[:-1], edges[1:])]
    names = [group_names[grp[lo]] for lo in edges[:-1]]
    ax.set_xticks(mids, names)
    ax.set_yticks(mids, names, rotation=90, va="center")
    ax.set_xlabel("keys (samples attended to), sorted by class")
    ax.set_ylabel("queries, sorted by class")
    ax.set_title(f"layer {i}" if n > 1 else "BatchFormer attention", fontsize=9)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  save(fig, path)


def plot_gradient_share(share_GxG: Sequence[Sequence[float | None]], fractions: Sequence[float],
                        group_names: Sequence[str], path: str | pathlib.Path, title: str) -> None:
  """Bars: for each group's loss, the share of its gradient on each group's features, next to
  that group's share of the batch (the dotted marks)."""
  plt = pyplot()
  present = [g for g, f in enumerate(fractions) if f > 0]
  fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=120)
  width = 0.8 / max(len(present), 1)
  for j, h in enumerate(present):
    xs = np.arange(len(present)) + (j - (len(present) - 1) / 2) * width
    vals = [100 * (share_GxG[g][h] or 0.0) for g in present]
    ax.bar(xs, vals, width, label=f"on {group_names[h]} features", color=f"C{j}")
    ax.hlines(np.full(len(xs), 100 * fractions[h]), xs - width / 2, xs + width / 2, colors="k",
              linestyles=":", linewidth=1.5, zorder=3)
  ax.set_xticks(np.arange(len(present)), [f"{group_names[g]} loss" for g in present])
  ax.set_ylabel("share of the gradient (%)")
  ax.set_title(title + "\n(dotted: that feature group's share of the batch)", fontsize=9)
  ax.grid(alpha=0.3, axis="y")
  ax.legend(fontsize=8)
  fig.tight_layout()
  save(fig, path)

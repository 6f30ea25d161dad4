"""Plots a run writes: per-class accuracy against class size (where BatchFormer helps the tail),
and metric curves over steps (the kNN monitor of pre-training)."""

from __future__ import annotations

import io
import pathlib

import numpy as np
from etils import epath


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def _save(fig, path: str | pathlib.Path) -> None:
  png = io.BytesIO()  # via bytes, so a gs:// path works too
  fig.savefig(png, format="png")
  _pyplot().close(fig)
  epath.Path(path).write_bytes(png.getvalue())


def plot_curves(runs: dict[str, tuple[list[float], list[float]]], path: str | pathlib.Path,
                ylabel: str, title: str, xlabel: str = "step", x_scale: float = 1.0) -> None:
  """``runs``: label -> (x, values in [0, 1]); one line each, values in percent, x times
  ``x_scale``; writes a PNG."""
  fig, ax = _pyplot().subplots(figsize=(6, 3.8), dpi=120)
  for label, (xs, values) in runs.items():
    ax.plot(x_scale * np.asarray(xs), 100 * np.asarray(values), marker="o", label=label)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  _save(fig, path)


def plot_per_class(runs: dict[str, tuple[np.ndarray, np.ndarray]], path: str | pathlib.Path,
                   title: str = "Per-class test accuracy vs training images per class") -> None:
  """``runs``: label -> (train counts per class, test accuracy per class); writes a PNG."""
  fig, ax = _pyplot().subplots(figsize=(7, 4.2), dpi=120)
  markers = "os^dv"
  for i, (label, (counts, acc)) in enumerate(runs.items()):
    counts, acc = np.asarray(counts), np.asarray(acc)
    order = [j for j in np.argsort(-counts, kind="stable") if counts[j] > 0]  # log axis
    ax.plot(counts[order], 100 * acc[order], marker=markers[i % 5], label=label, alpha=0.85)
  ax.set_xscale("log")
  ax.set_xlabel("training images of the class (log scale)")
  ax.set_ylabel("test accuracy of the class (%)")
  smallest = min(min(c for c in counts if c > 0) for counts, _ in runs.values())
  ax.axvspan(smallest / 1.3, 20, color="0.92", zorder=0)
  ax.set_xlim(left=smallest / 1.3)
  ax.text(0.02, 0.02, "few-shot (<20)", transform=ax.transAxes, color="0.4", fontsize=8)
  ax.set_title(title, fontsize=10)
  ax.grid(alpha=0.3, which="both")
  ax.legend()
  fig.tight_layout()
  _save(fig, path)


def plot_swad(history: list[dict], swad_eval: dict | None, path: str | pathlib.Path,
              title: str) -> None:
  """A domain-generalization run: validation loss (left) and accuracies (right) over steps,
  SWAD's averaged steps shaded and its test accuracy as a dashed line; writes a PNG."""
  steps = [h["step"] for h in history]
  fig, (loss_ax, acc_ax) = _pyplot().subplots(1, 2, figsize=(10, 3.8), dpi=120)
  loss_ax.plot(steps, [h["val_loss"] for h in history], marker="o", label="validation loss")
  loss_ax.set_ylabel("loss (training domains' out-splits)")
  for key, label in (("val_acc", "validation"), ("test_in", "test domain (in-split)")):
    acc_ax.plot(steps, [100 * h[key] for h in history], marker="o", label=label)
  acc_ax.set_ylabel("accuracy (%)")
  if swad_eval is not None:
    for ax in (loss_ax, acc_ax):
      ax.axvspan(swad_eval["first_step"], swad_eval["last_step"], color="0.9", zorder=0,
                 label="SWAD averages these steps")
    acc_ax.axhline(100 * swad_eval["test_in"], color="C3", linestyle="--",
                   label=f"SWAD, test domain ({100 * swad_eval['test_in']:.1f})")
  for ax in (loss_ax, acc_ax):
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  _save(fig, path)

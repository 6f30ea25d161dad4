"""Per-class accuracy against training-set class size: where BatchFormer helps the tail."""

from __future__ import annotations

import io
import pathlib

import numpy as np
from etils import epath


def plot_per_class(runs: dict[str, tuple[np.ndarray, np.ndarray]], path: str | pathlib.Path,
                   title: str = "Per-class test accuracy vs training images per class") -> None:
  """``runs``: label -> (train counts per class, test accuracy per class); writes a PNG."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
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
  png = io.BytesIO()  # via bytes, so a gs:// path works too
  fig.savefig(png, format="png")
  plt.close(fig)
  epath.Path(path).write_bytes(png.getvalue())

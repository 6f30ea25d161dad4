"""The picture of one leave-one-domain-out run: its validation loss, and SWAD's window."""

from __future__ import annotations

import pathlib

from bf_jax.trainer import plots


def plot_val_loss(history: list[dict], swad_eval: dict | None, path: str | pathlib.Path,
              title: str) -> None:
  """A domain-generalization run: validation loss (left) and accuracies (right) over steps,
  SWAD's averaged steps shaded and its test accuracy as a dashed line; writes a PNG."""
  steps = [h["step"] for h in history]
  fig, (loss_ax, acc_ax) = plots.pyplot().subplots(1, 2, figsize=(10, 3.8), dpi=120)
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
  plots.save(fig, path)

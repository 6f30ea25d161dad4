"""The Markdown tables of docs/fashion_mnist.md from the cells tools/fashion_mnist_tables.sh ran.

  python tools/fashion_mnist_report.py runs/fmnist > runs/fmnist/report.md

Reads each cell's compare.json (bf_jax.demo) and the balanced run's per_class.json; a cell not
run yet is left out. Differences are +BatchFormer - baseline in percentage points with their 95%
t interval over the paired seeds.
"""

import json
import pathlib
import sys

CLASSES = ("T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
           "bag", "ankle boot")
CELLS = (("if100_ce", "IF 100, cross-entropy", "loss=ce"),
         ("if100_bs", "IF 100, Balanced Softmax", "loss=balanced_softmax"),
         ("if100_ldam", "IF 100, LDAM-DRW", "loss=ldam_drw"),
         ("if10_bs", "IF 10, Balanced Softmax", "loss=balanced_softmax,imbalance=10"))
GROUPS = (("if100_bs_g8", "8"), ("if100_bs_g32", "32"), ("if100_bs_g128", "128"),
          ("if100_bs", "256 (the batch)"))
METRICS = (("acc", "overall"), ("head_acc", "head"), ("mid_acc", "mid"), ("tail_acc", "tail"))


def _load(runs: pathlib.Path, cell: str) -> dict | None:
  path = runs / cell / "compare.json"
  return json.loads(path.read_text()) if path.exists() else None


def _diff(s: dict) -> str:
  k = s["scale"]
  return (f"{k * s['mean']:+.2f} [{k * s['ci_low']:+.2f}, {k * s['ci_high']:+.2f}] "
          f"{s['wins']}/{s['ties']}/{s['losses']}, p={s['t_p']:.2g}")


def _main_table(runs: pathlib.Path) -> list[str]:
  lines = ["| cell | metric | baseline | +BatchFormer | difference [95% CI] W/T/L, paired t p |",
           "|---|---|---|---|---|"]
  for cell, title, _ in CELLS:
    report = _load(runs, cell)
    if report is None:
      continue
    for key, name in METRICS:
      s = report["metrics"][key]
      lines.append(f"| {title} ({len(report['pairs'])} seeds) | {name} | "
                   f"{100 * s['baseline_mean']:.2f} | {100 * s['treatment_mean']:.2f} | "
                   f"{_diff(s)} |")
  return lines


def _times(runs: pathlib.Path) -> list[str]:
  lines = ["| cell | command | seconds per run: baseline, +BatchFormer |", "|---|---|---|"]
  for cell, title, arg in CELLS:
    report = _load(runs, cell)
    if report is None:
      continue
    secs = report.get("seconds_per_run", {})
    lines.append(f"| {title} | `python -m bf_jax.demo --config configs/fashion_mnist_lt.py "
                 f"--arg {arg} --seeds 10 --keep --per_class --workdir runs/fmnist/{cell}` | "
                 + ", ".join("-" if secs.get(a) is None else f"{secs[a]:.0f}"
                             for a in ("baseline", "+BatchFormer")) + " |")
  return lines


def _per_class(runs: pathlib.Path) -> list[str]:
  reports = [(title, r) for cell, title, _ in CELLS if (r := _load(runs, cell)) is not None]
  if not reports:
    return []
  lines = ["| class | " + " | ".join(title for title, _ in reports) + " |",
           "|---|" + "---|" * len(reports)]
  for c, name in enumerate(CLASSES):
    cells = []
    for _, r in reports:
      s = r["metrics"][f"class{c}_acc"]
      cells.append(f"{100 * s['baseline_mean']:.1f} -> {100 * s['treatment_mean']:.1f} "
                   f"({100 * s['mean']:+.2f} [{100 * s['ci_low']:+.2f}, "
                   f"{100 * s['ci_high']:+.2f}])")
    lines.append(f"| {c} {name} | " + " | ".join(cells) + " |")
  return lines


def _groups(runs: pathlib.Path) -> list[str]:
  lines = ["| attention group | " + " | ".join(name for _, name in METRICS) + " |",
           "|---|" + "---|" * len(METRICS)]
  for cell, size in GROUPS:
    report = _load(runs, cell)
    if report is not None:
      lines.append(f"| {size} | " + " | ".join(_diff(report["metrics"][k]) for k, _ in METRICS)
                   + " |")
  return lines


def _balanced(runs: pathlib.Path) -> list[str]:
  path = runs / "balanced" / "per_class.json"
  if not path.exists():
    return []
  info = json.loads(path.read_text())
  per_class = ", ".join(f"{c} {100 * a:.1f}" for c, a in enumerate(info["test_acc"]))
  return [f"Balanced set (60,000 images, seed 0, no BatchFormer): test accuracy "
          f"**{100 * info['acc']:.2f}%**; per class: {per_class}."]


def main() -> None:
  runs = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "runs/fmnist")
  for title, lines in (("Sanity", _balanced(runs)), ("Long-tailed", _main_table(runs)),
                       ("Per class (baseline -> +BatchFormer (difference [95% CI]))",
                        _per_class(runs)),
                       ("Attention group (IF 100, Balanced Softmax, batch 256)", _groups(runs)),
                       ("Commands and time per run", _times(runs))):
    print(f"### {title}\n")
    print("\n".join(lines) + "\n")


if __name__ == "__main__":
  main()

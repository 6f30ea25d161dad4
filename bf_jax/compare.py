"""Paired comparison of two arms of runs (e.g. baseline vs +BatchFormer), seed by seed.

  python -m bf_jax.compare --baseline 'runs/demo/bf_off_seed*' --treatment 'runs/demo/bf_on_seed*'

An arm is glob patterns or folders; every folder under them holding a ``result.json`` is a run.
Runs pair by seed (and by test domain and trial for DomainBed sweeps); a run without a partner
is reported, not dropped silently. For every final metric both arms wrote: the mean paired
difference (treatment - baseline), its standard error, a 95% t interval, wins/ties/losses, the
paired-t and sign-test p-values and one sentence. It also checks that each pair is a real pair:
both runs of a pair trained the same config apart from the BatchFormer's fields, and started
from the same parameters in every module they have in common (``init.json``).
Writes ``compare.md``, ``compare.json`` and ``paired_differences.png`` to ``--out``.
"""

from __future__ import annotations

import dataclasses
import glob
import itertools
import json
import math
import pathlib
from typing import Any

import numpy as np
from scipy import stats

from bf_jax.trainer import plots, run_record

# Bookkeeping fields of a result, not metrics.
_NOT_METRICS = {"step", "preempted", "selected_step", "seed", "trial_seed", "history", "swad_eval"}
# Config fields that may differ between arms: the treatment itself (bf.*), and the fields that
# never change the math (run_record.MATH_FREE: the probe, remat, resume_changes).
_TREATMENT = "bf."


@dataclasses.dataclass
class Run:
  path: pathlib.Path
  config: dict[str, Any]
  result: dict[str, Any]
  init: dict[str, str]

  @property
  def key(self) -> tuple:
    """What pairs runs: the seed, and a DomainBed run's test domain and trial."""
    return (self.config.get("seed"), self.result.get("test_domain"),
            self.result.get("trial_seed"))


def key_name(key: tuple) -> str:
  seed, domain, trial = key
  return f"seed {seed}" + (f", test domain {domain}, trial {trial}" if domain is not None else "")


def find_runs(patterns: list[str]) -> list[Run]:
  """Every run folder (one with a result file) matching or under ``patterns``."""
  folders: set[pathlib.Path] = set()
  for pattern in patterns:
    matches = [pathlib.Path(p) for p in sorted(glob.glob(pattern))]
    if not matches:
      raise FileNotFoundError(f"{pattern!r} matches nothing; give run folders or a sweep's "
                              f"parent folder (quote a glob so the shell does not expand it).")
    for m in matches:
      if m.is_dir():
        folders.update(p.parent for p in m.rglob(run_record.RESULT_FILE))
  runs = []
  for folder in sorted(folders):
    config_path = folder / run_record.CONFIG
    init_path = folder / run_record.INIT_FILE
    run = Run(folder, json.loads(config_path.read_text()) if config_path.exists() else {},
              json.loads((folder / run_record.RESULT_FILE).read_text()),
              json.loads(init_path.read_text()) if init_path.exists() else {})
    claimed, step = run.config.get("total_steps"), run.result.get("step")
    if claimed is not None and step is not None and step != claimed:
      raise ValueError(f"{folder / run_record.RESULT_FILE} is from step {step}, but the run's "
                       f"{run_record.CONFIG} says total_steps={claimed}: the run went on after "
                       f"it; finish it (the same command resumes) or leave it out.")
    runs.append(run)
  if not runs:
    raise FileNotFoundError(f"no finished run (a folder with {run_record.RESULT_FILE}) under "
                            f"{patterns}; a run writes it when it reaches total_steps.")
  return runs


def metrics_of(result: dict[str, Any], prefix: str = "") -> dict[str, float]:
  """The result's numeric scalars, nested names joined by dots."""
  out = {}
  for name, value in result.items():
    if name in _NOT_METRICS or name.endswith("_step"):  # e.g. the selected step
      continue
    if isinstance(value, dict):
      out.update(metrics_of(value, f"{prefix}{name}."))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      out[f"{prefix}{name}"] = float(value)
  return out


def paired_stats(diffs: np.ndarray, level: float = 0.95) -> dict[str, float]:
  """Mean, standard error, t interval, wins/ties/losses and two p-values of paired differences."""
  n = len(diffs)
  mean = float(diffs.mean())
  se = float(diffs.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
  wins, losses = int((diffs > 0).sum()), int((diffs < 0).sum())
  out = {"n": n, "mean": mean, "se": se, "wins": wins, "ties": n - wins - losses,
         "losses": losses, "ci_low": math.nan, "ci_high": math.nan, "t_p": math.nan}
  if n > 1:
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    out.update(ci_low=mean - half, ci_high=mean + half)
    if se > 0:
      out["t_p"] = float(2 * stats.t.sf(abs(mean) / se, n - 1))
    else:  # every pair differs by the same amount
      out["t_p"] = 1.0 if mean == 0 else 0.0
  decided = wins + losses  # the sign test drops ties
  out["sign_p"] = (float(stats.binomtest(wins, decided, 0.5).pvalue) if decided else 1.0)
  return out


def sentence(metric: str, s: dict[str, float], names: tuple[str, str], scale: float,
             alpha: float = 0.05) -> str:
  diff = f"{names[1]} - {names[0]} = {scale * s['mean']:+.2f}"
  if s["n"] < 2:
    return f"{metric}: {diff} from 1 pair; no interval from a single pair."
  interval = (f"95% CI {scale * s['ci_low']:+.2f} to {scale * s['ci_high']:+.2f}, n={s['n']}, "
              f"paired t p={s['t_p']:.3g}, sign test p={s['sign_p']:.3g}")
  if s["t_p"] < alpha:
    side = "better" if s["mean"] > 0 else "worse"
    return (f"{metric}: {diff} ({interval}): distinguishable from zero at the 5% level; "
            f"{names[1]} is {side} (for an error or loss, lower is better).")
  return f"{metric}: {diff} ({interval}): not distinguishable from zero at the 5% level."


def _math_differences(a: dict, b: dict) -> set[str]:
  """The config fields two runs differ in, leaving out those that never change the math."""
  return set(run_record.differences(a, b)) - set(run_record.MATH_FREE)


def _config_differences(a: dict, b: dict) -> set[str]:
  """What a pair differs in beyond the treatment (bf.*)."""
  return {name for name in _math_differences(a, b) if not name.startswith(_TREATMENT)}


def compare(baseline: list[Run], treatment: list[Run],
            names: tuple[str, str] = ("baseline", "treatment")) -> dict[str, Any]:
  """Pairs the runs, checks the pairs and computes every metric's paired statistics."""
  for arm, runs in zip(names, (baseline, treatment)):
    keys = [r.key for r in runs]
    twice = sorted({k for k in keys if keys.count(k) > 1}, key=str)
    if twice:
      raise ValueError(f"{arm}: more than one run for {[key_name(k) for k in twice]} "
                       f"({[str(r.path) for r in runs if r.key in twice]}); give each arm "
                       f"one run per seed.")
  both = sorted({r.path for r in baseline} & {r.path for r in treatment})
  if both:
    raise ValueError(f"the same runs are in both arms: {[str(p) for p in both]}; give each arm "
                     f"its own folders.")
  base, treat = {r.key: r for r in baseline}, {r.key: r for r in treatment}
  keys = sorted(set(base) & set(treat), key=str)
  unpaired = {names[0]: [key_name(k) for k in sorted(set(base) - set(treat), key=str)],
              names[1]: [key_name(k) for k in sorted(set(treat) - set(base), key=str)]}
  if not keys:
    raise ValueError(f"no seed is in both arms: {names[0]} has "
                     f"{[key_name(k) for k in base]}, {names[1]} {[key_name(k) for k in treat]}.")
  checks = {"config_differs": {}, "config_missing": [], "init_same": {}, "init_differs": {},
            "init_missing": [], "varies": {}}
  if all(base[k].config and treat[k].config and
         not _math_differences(base[k].config, treat[k].config) for k in keys):
    raise ValueError(f"{names[0]} and {names[1]} trained the same config (no bf.* or other field "
                     f"differs in any pair): there is no treatment to compare; check the arms' "
                     f"folders.")
  for arm, runs in zip(names, ([base[k] for k in keys], [treat[k] for k in keys])):
    varies = sorted({f for r in runs[1:] for f in _math_differences(runs[0].config, r.config)
                     if f != "seed"}) if all(r.config for r in runs) else []
    if varies:
      checks["varies"][arm] = varies
  for k in keys:
    b, t = base[k], treat[k]
    fields = _config_differences(b.config, t.config)
    if not b.config or not t.config:
      checks["config_missing"].append(key_name(k))
    elif fields:
      checks["config_differs"][key_name(k)] = sorted(fields)
    if not b.init or not t.init:
      checks["init_missing"].append(key_name(k))
      continue
    for group in sorted(set(b.init) & set(t.init)):
      bucket = "init_same" if b.init[group] == t.init[group] else "init_differs"
      checks[bucket].setdefault(group, []).append(key_name(k))
  per_metric = {}
  for metric in sorted(set.intersection(*(set(metrics_of(r.result)) for r in
                                          [base[k] for k in keys] + [treat[k] for k in keys]))):
    b_vals = np.array([metrics_of(base[k].result)[metric] for k in keys])
    t_vals = np.array([metrics_of(treat[k].result)[metric] for k in keys])
    # Accuracies stored as fractions are shown in percentage points.
    scale = 100.0 if np.all(np.abs(np.concatenate([b_vals, t_vals])) <= 1.0) else 1.0
    s = paired_stats(t_vals - b_vals)
    per_metric[metric] = {**s, "scale": scale, "baseline_mean": float(b_vals.mean()),
                          "treatment_mean": float(t_vals.mean()),
                          "diffs": (t_vals - b_vals).tolist(),
                          "sentence": sentence(metric, s, names, scale)}
  return {"names": list(names), "pairs": [key_name(k) for k in keys], "unpaired": unpaired,
          "checks": checks, "metrics": per_metric}


def pair_lines(report: dict[str, Any]) -> list[str]:
  """Plain sentences on what the pairs share and where that does not hold."""
  checks, n = report["checks"], len(report["pairs"])
  lines = []
  checked = n - len(checks["config_missing"])
  if checks["config_differs"]:
    lines.append(f"WARNING: paired runs differ in more than the BatchFormer's fields: "
                 f"{checks['config_differs']}; the pairs need not share data split and order.")
  elif checked:
    lines.append(f"Every pair trained the same config apart from bf.* (same data split, data "
                 f"order and schedule): {checked} of {n} pairs.")
  for arm, fields in checks["varies"].items():
    lines.append(f"WARNING: the {arm} runs differ from pair to pair in {fields}: the pooled "
                 f"pairs mix these settings.")
  if checks["config_missing"]:
    lines.append(f"No config.json to check the configs of {checks['config_missing']}.")
  same = {g: len(v) for g, v in checks["init_same"].items()}
  if same:
    lines.append("Same initial parameters in both arms: " +
                 ", ".join(f"{g} ({c} of {n} pairs)" for g, c in same.items()) + ".")
  if checks["init_differs"]:
    lines.append(f"WARNING: different initial parameters for the same seed in "
                 f"{checks['init_differs']}: the pairs do not share their initialization.")
  if checks["init_missing"]:
    lines.append(f"No init.json to check the initialization of {checks['init_missing']}.")
  for arm, keys in report["unpaired"].items():
    if keys:
      lines.append(f"Unpaired, left out: {arm} has {keys} without a partner.")
  return lines


def markdown(report: dict[str, Any]) -> str:
  """The paired table, then the sentences on the pairs and on every metric."""
  base, treat = report["names"]
  header = (f"| metric | {base} | {treat} | paired difference | 95% CI | W/T/L | paired t p "
            f"| sign test p |")
  rows = [header, "|---|---|---|---|---|---|---|---|"]
  for metric, s in report["metrics"].items():
    k = s["scale"]
    rows.append(f"| {metric} | {k * s['baseline_mean']:.2f} | {k * s['treatment_mean']:.2f} | "
                f"{k * s['mean']:+.2f} +- {k * s['se']:.2f} | {k * s['ci_low']:+.2f} to "
                f"{k * s['ci_high']:+.2f} | {s['wins']}/{s['ties']}/{s['losses']} | "
                f"{s['t_p']:.3g} | {s['sign_p']:.3g} |")
  n = len(report["pairs"])
  listed = ", ".join(report["pairs"]) if n <= 6 else "listed in compare.json"
  notes = [(f"{n} pairs ({listed}); difference = {treat} - {base}, +- its standard error; "
            f"accuracies in percentage points.")]
  notes += pair_lines(report)
  notes += [s["sentence"] for s in report["metrics"].values()]
  return "\n".join(rows) + "\n\n" + "\n".join(f"- {line}" for line in notes) + "\n"


def plot_differences(report: dict[str, Any], path: str | pathlib.Path) -> None:
  """Each pair's difference per metric (dots), the mean and its 95% interval (bar)."""
  plt = plots.pyplot()
  metrics = list(report["metrics"])
  fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(metrics) + 1.5), 3.8), dpi=120)
  for i, metric in enumerate(metrics):
    s = report["metrics"][metric]
    k = s["scale"]
    jitter = np.linspace(-0.15, 0.15, len(s["diffs"])) if len(s["diffs"]) > 1 else [0.0]
    ax.scatter(i + np.asarray(jitter), k * np.asarray(s["diffs"]), s=14, color="tab:blue",
               alpha=0.6)
    if s["n"] > 1:
      ax.errorbar(i + 0.3, k * s["mean"], yerr=[[k * (s["mean"] - s["ci_low"])],
                                                [k * (s["ci_high"] - s["mean"])]],
                  fmt="o", color="black", capsize=4)
  ax.axhline(0.0, color="gray", lw=0.8)
  ax.set_xticks(range(len(metrics)), metrics, rotation=30, ha="right", fontsize=8)
  base, treat = report["names"]
  ax.set_ylabel(f"{treat} - {base}\n(accuracies in percentage points)", fontsize=9)
  ax.set_title(f"Paired differences over {len(report['pairs'])} pairs (mean, 95% CI)",
               fontsize=10)
  ax.grid(alpha=0.3, axis="y")
  fig.tight_layout()
  plots.save(fig, path)


def plot_gains(folders: list[str | pathlib.Path], labels: list[str], metrics: list[str],
               path: str | pathlib.Path, xlabel: str = "") -> dict[str, list[dict[str, float]]]:
  """One comparison per folder (its ``compare.json``): each metric's mean paired difference and
  its 95% interval against ``labels`` (e.g. BatchFormer's group size), one line per metric;
  returns the points, by metric."""
  if len(folders) != len(labels):
    raise ValueError(f"{len(folders)} comparison folders but {len(labels)} labels; give one "
                     f"label per folder.")
  metrics = list(dict.fromkeys(metrics))  # each once
  points: dict[str, list[dict[str, float]]] = {m: [] for m in metrics}
  for folder in folders:
    file = pathlib.Path(folder) / "compare.json"
    if not file.exists():
      raise FileNotFoundError(f"{file} does not exist; give folders a comparison was written to "
                              f"(python -m bf_jax.demo or python -m bf_jax.compare --out).")
    stats_of = json.loads(file.read_text())["metrics"]
    for metric in metrics:
      if metric not in stats_of:
        raise ValueError(f"{file} has no metric {metric!r}; it has {sorted(stats_of)}.")
      s = stats_of[metric]
      points[metric].append({k: s["scale"] * s[k] for k in ("mean", "ci_low", "ci_high")} |
                            {"n": s["n"]})
  plt = plots.pyplot()
  fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(labels) + 2.0), 3.6), dpi=120)
  width = 0.5 / len(metrics)  # the metrics' points side by side at each label
  for i, (metric, pts) in enumerate(points.items()):
    x = np.arange(len(labels)) + (i - (len(metrics) - 1) / 2) * width
    means = np.array([p["mean"] for p in pts])
    ax.errorbar(x, means, yerr=[means - [p["ci_low"] for p in pts],
                                [p["ci_high"] for p in pts] - means],
                fmt="o-", capsize=3, label=metric)
  ax.axhline(0.0, color="gray", lw=0.8)
  ax.set_xticks(np.arange(len(labels)), labels)
  ax.set_xlabel(xlabel, fontsize=9)
  ax.set_ylabel("paired difference\n(percentage points, 95% CI)", fontsize=9)
  ax.set_title(f"{points[metrics[0]][0]['n']} paired seeds per point", fontsize=10)
  if len(metrics) > 1:
    ax.legend(fontsize=8)
  ax.grid(alpha=0.3, axis="y")
  fig.tight_layout()
  plots.save(fig, path)
  return points


def write(report: dict[str, Any], out: str | pathlib.Path) -> pathlib.Path:
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  (out / "compare.md").write_text(markdown(report))
  (out / "compare.json").write_text(json.dumps(report, indent=1))
  plot_differences(report, out / "paired_differences.png")
  return out


def default_out(parent: pathlib.Path) -> pathlib.Path:
  """``parent/compare``, or the first ``compare_N`` that holds no comparison yet."""
  for n in itertools.count(1):
    out = parent / ("compare" if n == 1 else f"compare_{n}")
    if not (out / "compare.md").exists():
      return out


def main(argv: list[str] | None = None) -> None:
  import argparse
  parser = argparse.ArgumentParser(prog="python -m bf_jax.compare", description=__doc__.split(
      "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--baseline", nargs="+", help="runs of the baseline arm")
  parser.add_argument("--treatment", nargs="+", help="runs of the treatment arm")
  parser.add_argument("--gains", nargs="+", default=None, help="instead: folders holding a "
                      "compare.json each, plotted as one metric's gain against --labels into "
                      "--out (a .png)")
  parser.add_argument("--labels", default="", help="--gains: one label per folder, comma-separated")
  parser.add_argument("--metrics", default="acc", help="--gains: the metrics plotted, "
                      "comma-separated (one line each)")
  parser.add_argument("--xlabel", default="", help="--gains: the x axis' title")
  parser.add_argument("--names", default="baseline,+BatchFormer", help="the arms' names")
  parser.add_argument("--out", default=None, help="folder for compare.md/.json/.png (default: "
                      "compare/ beside the first baseline pattern, or compare_2/, ... when that "
                      "holds one: never over an earlier comparison)")
  args = parser.parse_args(argv)
  if args.gains:
    if not args.out or not args.out.endswith(".png"):
      parser.error(f"--gains needs --out FILE.png (got --out={args.out})")
    try:
      points = plot_gains(args.gains, args.labels.split(","), args.metrics.split(","), args.out,
                          args.xlabel)
    except (FileNotFoundError, ValueError) as e:
      parser.exit(2, f"error: {e}\n")
    for metric, pts in points.items():
      for label, p in zip(args.labels.split(","), pts):
        print(f"{label}: {metric} {p['mean']:+.2f} (95% CI {p['ci_low']:+.2f} to "
              f"{p['ci_high']:+.2f}, n={p['n']})")
    print(f"wrote {args.out}")
    return
  if not args.baseline or not args.treatment:
    parser.error("give --baseline and --treatment (or --gains)")
  names = tuple(args.names.split(","))
  if len(names) != 2:
    parser.error(f"--names={args.names!r} must be two names separated by a comma")
  try:
    report = compare(find_runs(args.baseline), find_runs(args.treatment), names)
  except (FileNotFoundError, ValueError) as e:
    parser.exit(2, f"error: {e}\n")
  out = write(report, args.out or default_out(pathlib.Path(args.baseline[0]).parent))
  print(markdown(report))
  print(f"wrote {out / 'compare.md'}, compare.json and paired_differences.png")


if __name__ == "__main__":
  main()

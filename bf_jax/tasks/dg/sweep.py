"""run(config, workdir): the leave-one-domain-out sweep of ``task="dg"``, and its result table.

Runs every (test domain, trial seed) pair of the config in ``<workdir>/<domain>/trial<k>/``.
A pair whose ``result.json`` exists is done and is read, not rerun; an unfinished one resumes
from its checkpoint, so rerunning the same command after a preemption continues the sweep.
When all pairs are done it writes ``results.json`` and ``results.md`` to ``workdir``: per test
domain the mean (and standard deviation) over trial seeds, and the mean over test domains.

Compare sweeps (e.g. without and with BatchFormer) with:

  python -m bf_jax.tasks.dg.sweep runs/dg_pacs_off runs/dg_pacs_bf
"""

from __future__ import annotations

import json
import logging
import pathlib
import sys
from typing import Any, Sequence

import jax
import numpy as np
from etils import epath

from bf_jax.tasks.dg import checks
from bf_jax.tasks.dg.domains import load_meta
from bf_jax.tasks.dg.train import train_one
from bf_jax.trainer import sharding
from bf_jax.trainer.run import check_config, finished_result

log = logging.getLogger("bf_jax")
SELECTIONS = {"erm_val": "ERM, training-domain validation", "erm_last": "ERM, last step",
              "swad": "SWAD"}


def run_dir(workdir, domain: str, trial_seed: int) -> epath.Path:
  return epath.Path(workdir) / domain.replace(" ", "_") / f"trial{trial_seed}"


def run(config, workdir: str | pathlib.Path, devices: Sequence[jax.Device] | None = None,
        stop_at: int | None = None) -> dict[str, Any]:
  """Trains every pending (test domain, trial seed) run, then tabulates all of them."""
  checks.validate(config)
  sharding.make_mesh(devices, config)  # its loud checks, before the first run
  domains = list(load_meta(config.data.name, config.data.data_dir)["domains"])
  test_domains = list(config.dg.test_domains) or domains
  for domain in test_domains:  # every run's record first: a changed config stops the whole sweep
    for trial in config.dg.trial_seeds:
      check_config(config, run_dir(workdir, domain, trial))
  results = []
  for domain in test_domains:
    for trial in config.dg.trial_seeds:
      directory = run_dir(workdir, domain, trial)
      done = finished_result(directory)
      if done is not None:
        log.info("dg: %s / trial %d is done (%s); not rerun.", domain, trial, directory)
        results.append(done)
        continue
      result = train_one(config, directory, domain, trial, devices, stop_at)
      if result["preempted"]:
        log.warning("dg: stopped in %s / trial %d at step %d; rerun the same command to resume.",
                    domain, trial, result["step"])
        return {"preempted": True, "step": result["step"], "test_domain": domain}
      results.append(result)
  table = tabulate(results, [d for d in domains if d in test_domains])
  text = format_table(table, title=f"{config.data.name}, {config.model.name}, "
                      f"{'+ BatchFormer' if config.bf.enabled else 'no BatchFormer'}")
  if jax.process_index() == 0:
    print(text, flush=True)
    out = epath.Path(workdir)
    (out / "results.json").write_text(json.dumps(
        {**table, "runs": [{k: v for k, v in r.items() if k != "history"} for r in results]},
        indent=1))
    (out / "results.md").write_text(text + "\n")
  return {"preempted": False, **table}


def tabulate(results: list[dict], domains: list[str]) -> dict[str, Any]:
  """{selection: {domain: {"mean", "std", "n"}, "avg": {...}}} in percent.

  The average over test domains is taken per trial seed, then its mean and standard deviation
  over seeds are reported (DomainBed's convention), for the seeds that ran every domain.
  """
  table: dict[str, Any] = {"domains": domains, "selections": {}}
  for key in SELECTIONS:
    if not all(key in r for r in results):
      continue
    row: dict[str, Any] = {}
    for d in domains:
      accs = [100 * r[key] for r in results if r["test_domain"] == d]
      row[d] = _stats(accs)
    seeds = sorted({r["trial_seed"] for r in results})
    per_seed = []
    for s in seeds:
      accs = {r["test_domain"]: 100 * r[key] for r in results if r["trial_seed"] == s}
      if all(d in accs for d in domains):
        per_seed.append(float(np.mean([accs[d] for d in domains])))
    row["avg"] = _stats(per_seed)
    table["selections"][key] = row
  return table


def _stats(values: list[float]) -> dict[str, float]:
  if not values:
    return {"mean": float("nan"), "std": float("nan"), "n": 0}
  return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def format_table(table: dict[str, Any], title: str) -> str:
  """A Markdown table: one row per selection, test domains then the average as columns."""
  domains = table["domains"]
  head = ["selection", *domains, "avg"]
  lines = [f"**{title}** (test accuracy %, mean ± std over trial seeds)", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for key, row in table["selections"].items():
    cells = [f"{row[c]['mean']:.1f} ± {row[c]['std']:.1f}" if row[c]["n"] else "-"
             for c in (*domains, "avg")]
    lines.append("| " + " | ".join([SELECTIONS[key], *cells]) + " |")
  return "\n".join(lines)


def main(argv: Sequence[str]) -> None:
  """Prints the table of each finished sweep workdir given (e.g. without / with BatchFormer)."""
  if not argv:
    raise SystemExit("usage: python -m bf_jax.tasks.dg.sweep WORKDIR [WORKDIR ...]")
  for workdir in argv:
    path = epath.Path(workdir) / "results.json"
    if not path.exists():
      raise SystemExit(f"{path} does not exist: the sweep in {workdir} has not finished; rerun "
                       f"its command to complete it.")
    print(format_table(json.loads(path.read_text()), title=workdir) + "\n")


if __name__ == "__main__":
  main(sys.argv[1:])

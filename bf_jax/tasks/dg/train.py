"""train_one(config, workdir, test_domain, trial_seed): one leave-one-domain-out run.

ERM (+ BatchFormer) on the training domains' in-splits with per-domain balanced batches; every
``eval_every_steps`` the model is evaluated on the training domains' out-splits (validation:
accuracy and loss, mean over domains) and on the test domain. SWAD averages the weights of every
step inside the window that the validation loss picks (``bf_jax/tasks/dg/swad.py``) and is
evaluated once at the end. Reported, as SWAD/DomainBed report them, on the test domain's in-split:

* ``erm_val``: the evaluation with the best validation accuracy (training-domain validation),
* ``erm_last``: the last evaluation,
* ``swad``: the averaged weights (``dg.algorithm="swad"``).

Checkpoints hold the SWAD sums and the evaluation history, so a preempted run resumes exactly.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bf_jax.models.classifier import build_model
from bf_jax.tasks.dg.data import DGData, balanced_index_batches, load_dg
from bf_jax.tasks.dg.plots import plot_val_loss
from bf_jax.tasks.dg.swad import SwadAverager
from bf_jax.trainer import feed, sharding, supervised, train_state
from bf_jax.trainer.run import Run

log = logging.getLogger("bf_jax")


def _sums(eval_step, state, source, data: DGData, config, mesh) -> np.ndarray:
  """[correct, total, summed cross-entropy] over every example of ``source``, once."""
  sums = np.zeros(3)
  for batch in feed.eval_batches(source, config.eval_batch_size, data.preprocess,
                                 data.num_classes, mesh):
    sums += [float(x.sum()) for x in jax.device_get(eval_step(state, batch))]
  return sums


def evaluate_all(eval_step, state, data: DGData, config, mesh) -> dict[str, float]:
  """val_acc / val_loss (means over the training domains' out-splits, each domain weighted
  equally, as DomainBed), test_in / test_out / test_all accuracies, per-domain val accuracy."""
  val = {d: _sums(eval_step, state, s, data, config, mesh) for d, s in data.val_sources.items()}
  test = {p: _sums(eval_step, state, s, data, config, mesh) for p, s in data.test_sources.items()}
  test["all"] = test["in"] + test["out"]
  out = {"val_acc": float(np.mean([c / t for c, t, _ in val.values()])),
         "val_loss": float(np.mean([l / t for _, t, l in val.values()]))}
  out.update({f"test_{p}": float(c / max(t, 1.0)) for p, (c, t, _) in test.items()})
  out.update({f"val_acc/{d}": float(c / t) for d, (c, t, _) in val.items()})
  return out


def _averaged_state(state: dict, averaged_params: Any) -> dict:
  params = jax.tree.map(lambda avg, p: avg.astype(p.dtype), averaged_params, state["params"])
  return {**state, "params": params}


def _sums_target(params: Any):
  """What one SWAD sum of these params looks like (float32 or wider, same sharding)."""
  return jax.tree.map(lambda p: jax.ShapeDtypeStruct(
      p.shape, jnp.promote_types(p.dtype, jnp.float32), sharding=p.sharding), params)


def window_steps(averager: SwadAverager, eval_every: int, last_step: int) -> dict[str, int]:
  """The training steps SWAD averaged: evaluation i follows step (i + 1) * eval_every, so
  segment i is steps i * eval_every + 1 .. (i + 1) * eval_every (swad.py's definitions)."""
  if averager.t_s is None:  # the fallback: every step after the first evaluation
    return {"first_step": eval_every + 1, "last_step": last_step}
  last = last_step if averager.t_e is None else averager.t_e * eval_every
  return {"first_step": averager.t_s * eval_every + 1, "last_step": last}


def summarize(history: list[dict], swad_eval: dict | None) -> dict[str, Any]:
  """The run's reported numbers from its evaluation history (and SWAD's evaluation)."""
  best = max(history, key=lambda h: h["val_acc"])  # the first of equals, as argmax
  out = {"erm_val": best["test_in"], "erm_val_step": best["step"],
         "erm_last": history[-1]["test_in"], "oracle": max(history, key=lambda h: h["test_out"])
         ["test_in"]}
  if swad_eval is not None:
    out["swad"] = swad_eval["test_in"]
  return out


def train_one(config, workdir: str | pathlib.Path, test_domain: str, trial_seed: int,
              devices: Sequence[jax.Device] | None = None,
              stop_at: int | None = None) -> dict[str, Any]:
  """Trains with ``test_domain`` held out; resumes from ``workdir``; returns the run's result.

  The config was validated by the caller (``dg.sweep.run``).
  """
  mesh = sharding.make_mesh(devices)
  data = load_dg(config.data, config.dg, test_domain, trial_seed)
  seed = config.seed + trial_seed
  log.info("dg %s: test domain %s, trial %d; training on %s (%s in-split images), validating on "
           "%s out-split images", config.data.name, test_domain, trial_seed, data.train_domains,
           [len(g) for g in data.train_groups], [len(s) for s in data.val_sources.values()])

  # ---------------------------------------------------------------- model, optimizer, steps
  local_batch = config.batch_size // mesh.devices.size
  model = build_model(config.model, config.bf, data.num_classes, data.image_shape, local_batch,
                      seed)
  built = train_state.init(config, model, mesh)
  graphdef, other, state = built.graphdef, built.other, built.state
  loss_fn = supervised.build_loss(config.loss, data.train_class_counts, 0)
  train_step = supervised.make_train_step(graphdef, other, built.tx, loss_fn, mesh, seed,
                                          skip_nonfinite=config.optim.skip_nonfinite > 0)
  eval_step = supervised.make_eval_step(graphdef, other, data.num_classes, mesh)

  def stream(seed: int, start_step: int = 0):  # the per-domain balanced batches
    return feed.train_batches(
        data.train_source, np.concatenate(data.train_groups), config.batch_size, data.preprocess,
        data.num_classes, seed, start_step,
        index_batches=balanced_index_batches(data.train_groups, config.dg.batch_per_domain, seed))

  # ---------------------------------------------------------------- SWAD, history, resume
  cfg = config.dg
  use_swad = cfg.algorithm == "swad"
  kept = {"swad": SwadAverager(cfg.swad_n_converge, cfg.swad_n_tolerance,
                               cfg.swad_tolerance_ratio) if use_swad else None,
          "history": []}

  def extras() -> tuple[dict, dict]:
    info, arrays = kept["swad"].checkpoint_parts() if use_swad else (None, {})
    return {"swad": info, "history": kept["history"]}, arrays

  def extras_target(info: dict) -> dict:
    names = SwadAverager.sum_names(info["swad"]) if info.get("swad") else []
    return {name: _sums_target(state["params"]) for name in names}

  with Run(config, workdir, mesh, state, extras, extras_target) as run:
    run.probe(stream, data.train_class_counts, graphdef, other, loss_fn,
              f"{config.data.name}, test domain {test_domain}")
    if run.restored_extras is not None:
      info, arrays = run.restored_extras
      kept["history"] = list(info["history"])
      if use_swad:
        kept["swad"] = SwadAverager.from_checkpoint_parts(info["swad"], arrays)

    # -------------------------------------------------------------- train loop
    def evaluate(state, step: int, selected) -> dict:
      metrics = evaluate_all(eval_step, state, data, config, mesh)
      if kept["history"] and kept["history"][-1]["step"] == step:
        return metrics  # a resumed finished run evaluates its last step again: already counted
      kept["history"].append({"step": step, **metrics})
      if use_swad:
        kept["swad"].end_segment(metrics["val_loss"])
        metrics["swad_averaged_steps"] = kept["swad"].n_averaged
      log.info("eval step %d: val acc %.2f loss %.4f | test %s in %.2f (all %.2f)", step,
               100 * metrics["val_acc"], metrics["val_loss"], test_domain,
               100 * metrics["test_in"], 100 * metrics["test_all"])
      run.writer.write(step, metrics, prefix="eval/")
      return metrics

    on_step = (lambda s: kept["swad"].add_step(s["params"])) if use_swad else None
    state, step, _ = run.train(stream(seed, run.start_step), train_step, evaluate,
                               built.schedule, stop_at, on_step)
  if not run.finished:
    return {"step": step, "preempted": True}

  # ---------------------------------------------------------------- wrap up
  swad_eval = None
  if use_swad:
    averager = kept["swad"]
    swad_eval = evaluate_all(eval_step, _averaged_state(state, averager.averaged()), data,
                             config, mesh)
    swad_eval.update(window_steps(averager, config.eval_every_steps, step),
                     t_s=averager.t_s, t_e=averager.t_e)
    log.info("SWAD averaged steps %d..%d (evaluations t_s=%s, t_e=%s) -> test %s in %.2f",
             swad_eval["first_step"], swad_eval["last_step"], averager.t_s, averager.t_e,
             test_domain, 100 * swad_eval["test_in"])
  result = {"test_domain": test_domain, "trial_seed": trial_seed, "seed": seed,
            "step": step, "preempted": False, **summarize(kept["history"], swad_eval),
            "swad_eval": swad_eval, "history": kept["history"]}
  run.finish(result)
  if jax.process_index() == 0:
    plot_val_loss(kept["history"], swad_eval, run.workdir / "val_loss.png",
                  f"{config.data.name}, test domain {test_domain}, trial {trial_seed}")
  return result

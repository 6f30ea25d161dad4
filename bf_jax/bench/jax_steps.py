"""One benchmark case: build the model and the real train/eval steps of bf_jax, time them."""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Callable, Sequence

import jax
import numpy as np

from bf_jax.models.classifier import build_model
from bf_jax.trainer import optim, sharding, supervised, train_state
from bf_jax.trainer.config_base import base_config

# (image size, classes) each backbone is benchmarked at: its recipe's input.
RECIPES = {"resnet32": (32, 100), "resnet10": (224, 1000), "resnet50": (224, 1000),
           "mlp": (8, 10)}


@dataclasses.dataclass(frozen=True)
class Case:
  backbone: str
  batch: int  # global
  bf: bool
  scope: str = "global"
  dtype: str = "float32"
  devices: int = 1

  @property
  def name(self) -> str:
    bf = f"bf-{self.scope}" if self.bf else "no-bf"
    return f"{self.backbone}/b{self.batch}/{bf}/{self.dtype}/{self.devices}dev"


def _config(case: Case):
  c = base_config()
  size, classes = RECIPES[case.backbone]
  c.model.name, c.model.dtype = case.backbone, case.dtype
  c.bf.enabled, c.bf.scope = case.bf, case.scope
  c.batch_size = case.batch
  return c, size, classes


def build(case: Case, devices: Sequence[jax.Device] | None = None):
  """(train_step, eval_step, state, batch, eval_batch) for ``case`` on the first n devices."""
  devices = list(devices or jax.devices())[:case.devices]
  mesh = sharding.make_mesh(devices)
  c, size, classes = _config(case)
  model = build_model(c.model, c.bf, classes, (size, size, 3), case.batch // len(devices), c.seed)
  graphdef, params, stats, other = train_state.split_model(model)
  tx, _ = optim.build_optimizer(c.optim, c.bf, 1000)
  loss_fn = supervised.build_loss(c.loss, np.ones(classes))
  state = sharding.replicate({"params": params, "stats": stats, "opt_state": tx.init(params)},
                             mesh)
  train_step = supervised.make_train_step(graphdef, other, tx, loss_fn, mesh, c.seed)
  eval_step = supervised.make_eval_step(graphdef, other, classes, mesh)
  rng = np.random.default_rng(0)
  images = rng.standard_normal((case.batch, size, size, 3), np.float32)
  labels = rng.integers(0, classes, case.batch).astype(np.int32)
  batch = sharding.put_batch({"image": images, "label": labels}, mesh)
  eval_batch = sharding.put_batch({"image": images, "label": labels,
                                   "mask": np.ones(case.batch, np.float32)}, mesh)
  return train_step, eval_step, state, batch, eval_batch


def median_ms(fn: Callable[[], object], warmup: int, iters: int) -> float:
  """Median wall time of ``fn`` (which must block until its result is ready), in ms."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(iters):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return 1e3 * statistics.median(times)


def time_case(case: Case, warmup: int = 2, iters: int = 5,
              devices: Sequence[jax.Device] | None = None) -> dict:
  """Median train-step and eval-step milliseconds of ``case`` (compile excluded)."""
  train_step, eval_step, state, batch, eval_batch = build(case, devices)
  holder = {"state": state}
  step = np.int32(0)

  def train():  # the state is donated: carry it from call to call
    holder["state"], metrics = train_step(holder["state"], batch, step)
    jax.block_until_ready(metrics)

  t = time.perf_counter()
  train()
  compile_s = time.perf_counter() - t
  train_ms = median_ms(train, warmup, iters)
  eval_ms = median_ms(lambda: jax.block_until_ready(eval_step(holder["state"], eval_batch)),
                      warmup, iters)
  return {"case": case.name, **dataclasses.asdict(case), "train_ms": round(train_ms, 2),
          "eval_ms": round(eval_ms, 2), "train_img_s": round(case.batch / train_ms * 1e3, 1),
          "eval_img_s": round(case.batch / eval_ms * 1e3, 1),
          "first_call_s": round(compile_s, 2)}


def compiled_text(step, *args) -> str:
  """Optimized HLO of a jitted step without metadata (source lines, names), for comparison."""
  return _strip(step.lower(*args).compile().as_text())


def eval_programs_equal(backbone: str, batch: int) -> bool:
  """Whether the compiled eval step with BatchFormer configured is the program without it.

  Compared on the optimized HLO with metadata (source lines, names) removed.
  """
  texts = []
  for bf in (False, True):
    _, eval_step, state, _, eval_batch = build(Case(backbone, batch, bf))
    texts.append(compiled_text(eval_step, state, eval_batch))
  return texts[0] == texts[1]


_SOURCE_TABLES = ("FileNames", "FunctionNames", "FileLocations", "StackFrames")


def _strip(hlo: str) -> str:
  import re
  hlo = re.sub(r", metadata=\{[^}]*\}", "", hlo)
  hlo = re.sub(r"^HloModule \S+", "HloModule m", hlo, flags=re.M)
  # The source-location tables XLA prints after the module line: their order follows the order
  # of tracing, which a cached executable need not share with a fresh compile.
  kept, in_table = [], False
  for line in hlo.splitlines():
    in_table = line in _SOURCE_TABLES or (in_table and line != "")
    if not in_table:
      kept.append(line)
  return "\n".join(kept)


def paired_overhead(case: Case, pairs: int = 10, warmup: int = 2,
                    devices: Sequence[jax.Device] | None = None) -> dict:
  """BatchFormer's train-step overhead for ``case`` measured in alternating pairs.

  Steps with and without the layer run back to back, ``pairs`` times; the overhead is the median
  of the per-pair time ratios, which cancels the slow drift of a shared machine that separate
  medians (minutes apart) do not.
  """
  runners = []
  for bf in (False, True):
    train_step, _, state, batch, _ = build(dataclasses.replace(case, bf=bf), devices)
    holder = {"state": state}

    def run(train_step=train_step, holder=holder, batch=batch):
      holder["state"], metrics = train_step(holder["state"], batch, np.int32(0))
      jax.block_until_ready(metrics)

    for _ in range(warmup + 1):
      run()
    runners.append(run)
  ratios, times = [], {False: [], True: []}
  for i in range(pairs):
    order = (False, True) if i % 2 == 0 else (True, False)  # neither always goes first
    took = {}
    for bf in order:
      t = time.perf_counter()
      runners[bf]()
      took[bf] = time.perf_counter() - t
      times[bf].append(took[bf])
    ratios.append(took[True] / took[False])
  return {"case": dataclasses.replace(case, bf=True).name, "check": "paired_bf_overhead",
          "pairs": pairs, "overhead": round(statistics.median(ratios) - 1.0, 4),
          "ratio_min": round(min(ratios), 4), "ratio_max": round(max(ratios), 4),
          "train_ms_without": round(1e3 * statistics.median(times[False]), 2),
          "train_ms_with": round(1e3 * statistics.median(times[True]), 2)}

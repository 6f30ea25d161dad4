"""Device memory of the real compiled train step of a config, with and without BatchFormer.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m bf_jax.bench.memory
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m bf_jax.bench.memory --crossover
  XLA_FLAGS=--xla_force_host_platform_device_count=32 python -m bf_jax.bench.memory --crossover \
      --devices 32 --batch 4096 --only small

Each case compiles (never runs) the train step a config builds at the config's own shapes: the
per-device program of the sharded step on the devices given, its batch abstract, so an ImageNet
shape costs no image memory. ``Compiled.memory_analysis()`` gives temp bytes (activations kept
for the backward pass, workspace) and argument bytes (state + batch); XLA's CPU compiler
schedules like its accelerator ones but fuses differently, so the figures are this backend's.
Compiled FLOPs are XLA's cost analysis, which counts a loop's body once (chunked attention).
``--crossover`` compiles the V2 configs at global scope over growing batches with the whole
attention and with chunks of queries, beside the layer's own (auto) choice.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import importlib.util
import pathlib
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bf_jax.data import mixup
from bf_jax.layer import attention
from bf_jax.models.classifier import build_model
from bf_jax.trainer import optim, sharding, supervised, train_state
from bf_jax.trainer.sharding import AXIS

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"
MiB = 2 ** 20


@dataclasses.dataclass(frozen=True)
class Case:
  config: str  # a file in configs/
  arg: str  # its config arg (bf=on|off, scope=..., ...)
  batch: int | None = None  # None: the config's own global batch
  streams_only: bool = False  # V2: the two streams with the BatchFormer layers as identities
  attention: str = "auto"  # the layers' own rule, or forced: "whole" or "chunks" (global scope)
  scan_layers: bool | None = None  # model.scan_layers; None: the config's own
  sets: tuple[str, ...] = ()  # "field=value" overrides after the config's own, e.g. data.mixup=0

  @property
  def name(self) -> str:
    return (f"{self.config}:{self.arg}" + "".join(f" {s}" for s in self.sets)
            + (f" batch {self.batch}" if self.batch else "")
            + (" (layers as identity)" if self.streams_only else "")
            + (f" ({self.attention} attention)" if self.attention != "auto" else ""))


class _Identity(nnx.Module):
  """Stands in for a BatchFormer at a V2 insertion point: the batch still doubles into two
  streams, so the step shows the method's cost apart from the layer's."""

  def __call__(self, x: jax.Array, **_) -> jax.Array:
    return x


def load_config(name: str, arg: str, sets: Sequence[str] = ()):
  """configs/``name``'s config for ``arg``, then each "field=value" of ``sets`` (a Python
  literal, else a string)."""
  spec = importlib.util.spec_from_file_location("bench_config", CONFIGS / name)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config(arg)
  for item in sets:
    field, sep, text = item.partition("=")
    if not sep:
      raise ValueError(f"{item!r} must be field=value, e.g. data.mixup=0")
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    *parents, leaf = field.split(".")
    node = c
    for name_ in parents:
      node = node[name_]
    if leaf not in node:
      raise ValueError(f"{item!r}: the config has no field {field}")
    node[leaf] = value
  return c


def compiled_step(case: Case, devices: Sequence[jax.Device]):
  """(compiled train step, config, the BatchFormers) of ``case`` on ``devices``."""
  step, state, batch, c, bfs = train_step(case, devices)
  return step.lower(state, batch, np.int32(0)).compile(), c, bfs


def train_step(case: Case, devices: Sequence[jax.Device]):
  """(jitted train step, its replicated state, the batch's abstract shapes, config, the
  BatchFormers) of ``case`` on ``devices``."""
  c = load_config(case.config, case.arg, case.sets)
  if case.scan_layers is not None:  # bf_jax/bench/compile.py compares the two
    c.model.scan_layers = case.scan_layers
  if case.batch:
    c.batch_size = case.batch
  mesh = sharding.make_mesh(list(devices))
  size = c.data.image_size or (32 if c.data.name.startswith("cifar") else 224)
  classes = c.data.num_classes
  model = build_model(c.model, c.bf, classes, (size, size, 3), c.batch_size // len(devices),
                      c.seed)
  if case.streams_only:
    for point in list(model.bfs.keys()):
      model.bfs[point] = _Identity()
  bfs = [] if case.streams_only else list(getattr(model, "bfs", {}).values())
  if case.attention != "auto":
    force_attention(bfs, case.attention, c.batch_size // len(devices), c.batch_size)
  graphdef, params, stats, other = train_state.split_model(model)
  tx, _ = optim.build_optimizer(c.optim, c.bf, max(c.total_steps, 1))
  loss_fn = supervised.build_loss(c.loss, np.ones(classes), c.model.experts)
  mix = mixup.MixConfig(c.data.mixup, c.data.cutmix, c.data.mix_switch_prob,
                        c.data.label_smoothing, classes)
  step = supervised.make_train_step(graphdef, other, tx, loss_fn, mesh, c.seed,
                               mix_fn=functools.partial(mixup.mix, cfg=mix) if mix.active else None)
  state = sharding.replicate({"params": params, "stats": stats, "opt_state": tx.init(params)},
                             mesh)
  batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(AXIS))
  batch = {"image": jax.ShapeDtypeStruct((c.batch_size, size, size, 3), jnp.float32,
                                         sharding=batch_sharding),
           "label": jax.ShapeDtypeStruct((c.batch_size,), jnp.int32, sharding=batch_sharding)}
  return step, state, batch, c, bfs


def measure(case: Case, devices: Sequence[jax.Device]) -> dict:
  t = time.perf_counter()
  compiled, c, bfs = compiled_step(case, devices)
  mem = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost  # older JAX: one dict per program
  queries, keys = c.batch_size // len(devices), c.batch_size
  return {"case": case.name, "model": c.model.name, "dtype": c.model.dtype,
          "attention": case.attention, "auto": auto_choice(bfs[0], queries, keys) if bfs else "-",
          "keys_per_dim": bfs[0].num_heads * keys / bfs[0].dim if bfs else None,
          "batch": c.batch_size, "devices": len(devices),
          "bf": bool(c.bf.enabled), "streams_only": case.streams_only,
          "scope": c.bf.scope if c.bf.enabled else "-",
          "temp_mib": mem.temp_size_in_bytes / MiB, "gflops": cost.get("flops", 0.0) / 1e9,
          "argument_mib": mem.argument_size_in_bytes / MiB,
          "compile_s": time.perf_counter() - t}


def _auto_chunk(bf, queries: int, keys: int, remat: bool) -> int:
  """Queries per chunk the layer's auto rule picks for a big global-scope call of ``bf``."""
  return attention.chunk_rows(queries, bf.num_heads, keys, bf.dim,
                              attention.MIN_CHUNKED_ENTRIES + 1, None, remat)


def auto_choice(bf, queries: int, keys: int) -> str:
  """What the layer's own rule runs for a global-scope call of V2 tokens (under remat)."""
  c = _auto_chunk(bf, queries, keys, remat=True)
  return "whole" if c == queries else f"chunks of {c}"


def force_attention(bfs, mode: str, queries: int, keys: int) -> None:
  """Sets every layer's ``query_chunk``: 0 for "whole", else the chunks the rule without remat
  sizes to the layer's input."""
  if mode not in ("whole", "chunks"):
    raise ValueError(f"attention={mode!r} must be 'auto', 'whole' or 'chunks'.")
  for bf in bfs:
    chunk = 0 if mode == "whole" else _auto_chunk(bf, queries, keys, remat=False)
    for layer in bf.layers:
      layer.query_chunk = chunk


# Each V2 config at its own shape in the paper's groups and globally, and with the blocks on
# both streams recomputed in the backward pass; V1 ResNet-50 batch 256.
V2 = ("cifar100_deit_tiny_v2.py", "imagenet_deit_small_v2.py")
CASES = (
    [case for v2 in V2 for case in (
        Case(v2, "bf=off"), Case(v2, "bf=on", streams_only=True), Case(v2, "bf=on"),
        Case(v2, "bf=on,scope=global"), Case(v2, "bf=on,remat=streams"),
        Case(v2, "bf=on,scope=global,remat=streams"), Case(v2, "bf=off,remat=all"))]
    + [Case("imagenet_lt_balanced_softmax_r50.py", a, batch=256)
       for a in ("bf=off", "bf=on")])


# V2 at global scope over growing batches: whole attention against chunks, where they cross.
CROSSOVER = [Case(v2, "bf=on,scope=global", batch=b, attention=a)
             for v2, batches in (("cifar100_deit_tiny_v2.py", (256, 1024, 1536, 2048)),
                                 ("imagenet_deit_small_v2.py", (1024, 2048, 3072, 3584, 4096)))
             for b in batches for a in ("whole", "chunks")]


def crossover_table(rows: list[dict]) -> str:
  """Markdown: per config and batch, whole vs chunks temp MiB and what auto picks."""
  pairs: dict[tuple, dict] = {}
  for r in rows:
    key = (r["case"].split(":")[0], r["batch"], r["devices"])
    pairs.setdefault(key, {"r": r})[r["attention"]] = r["temp_mib"]
  out = ["| config | batch / devices | H x G / C | whole MiB | chunks MiB | smaller | auto |",
         "|---|---|---|---|---|---|---|"]
  cell = lambda v: "-" if v is None else f"{v:,.1f}"
  for (config, batch, devices), p in pairs.items():
    whole, chunks = p.get("whole"), p.get("chunks")
    smaller = "-" if None in (whole, chunks) else ("whole" if whole <= chunks else "chunks")
    out.append(f"| {config} | {batch} / {devices} | {p['r']['keys_per_dim']:.1f} | "
               f"{cell(whole)} | {cell(chunks)} | {smaller} | {p['r']['auto']} |")
  return "\n".join(out)


def table(rows: list[dict]) -> str:
  """Markdown: each case's temp and argument MiB, its temp over the same config's plain bf=off
  step and over its two streams, and its compiled FLOPs over bf=off's."""
  config = lambda r: r["case"].split(":")[0]
  arg = lambda r: r["case"].split(":", 1)[1].split(" ")[0]
  base = {config(r): r for r in rows if arg(r) == "bf=off"}
  streams = {config(r): r for r in rows if r["streams_only"]}
  out = ["| config (arg) | model | batch / devices | temp MiB | x no-BF | x two streams | "
         "argument MiB | x no-BF FLOPs |", "|---|---|---|---|---|---|---|---|"]

  def ratio(r, ref, field="temp_mib"):
    return f"{r[field] / ref[field]:.2f}" if ref and ref is not r and ref[field] else "-"

  for r in rows:
    b, s = base.get(config(r)), streams.get(config(r))
    out.append(f"| {r['case']} | {r['model']} {r['dtype']} | {r['batch']} / {r['devices']} | "
               f"{r['temp_mib']:,.1f} | {ratio(r, b)} | {ratio(r, s) if r['bf'] else '-'} | "
               f"{r['argument_mib']:,.1f} | {ratio(r, b, 'gflops')} |")
  return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--devices", type=int, default=8)
  p.add_argument("--only", default="", help="run the cases whose name contains this")
  p.add_argument("--crossover", action="store_true",
                 help="whole attention vs chunks at global scope over growing batches")
  p.add_argument("--batch", type=int, default=0, help="every case at this global batch")
  args = p.parse_args(argv)
  devices = jax.devices()[:args.devices]
  if len(devices) < args.devices:
    raise SystemExit(f"--devices={args.devices} but JAX sees {len(jax.devices())}; set "
                     f"XLA_FLAGS=--xla_force_host_platform_device_count={args.devices}.")
  rows = []
  cases = CROSSOVER if args.crossover else CASES
  if args.batch:
    cases = list(dict.fromkeys(dataclasses.replace(c, batch=args.batch) for c in cases))
  for case in cases:
    if args.only in case.name:
      rows.append(measure(case, devices))
      print(f"# {rows[-1]['case']}: temp {rows[-1]['temp_mib']:,.1f} MiB "
            f"(compiled in {rows[-1]['compile_s']:.0f} s)", flush=True)
  print(f"\n{jax.devices()[0].platform}, JAX {jax.__version__}\n")
  print(crossover_table(rows) if args.crossover else table(rows))


if __name__ == "__main__":
  main()

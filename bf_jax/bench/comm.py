"""Bytes each device sends per train step for the BatchFormer's collectives, by arithmetic,
checked against the compiled program on the forced CPU devices.

  python -m bf_jax.bench.comm            # the table of docs/performance.md
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m bf_jax.bench.comm --check

Per layer and insertion point the layer all-gathers its input once forward and reduce-scatters
its gradient once backward (tests/layer/test_sharding.py counts them); V2 tokens run under
remat by default, whose backward pass gathers the keys again (tests/layer/test_attention.py).
In a ring over g devices each device sends (g - 1) of the g shards each pass: p (g - 1) b R
bytes, p the passes (2 for V1, 3 for V2), b the per-device batch and R a sample's bytes (C
values for V1, L x C for V2). g is every device for global scope, k / b devices for a group of
whole device batches, and 1 (nothing) for device scope or groups inside a device; groups that
straddle devices unevenly gather the whole batch.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re

# name -> (values a sample sends per insertion point, BatchFormer layers at that point, ring
# passes per layer: forward gather + backward reduce-scatter, + the backward's re-gather under
# the remat V2 tokens get by default)
MODELS = {"V1 ResNet-50 (C 2048)": (2048, 1, 2),
          "V2 DeiT-S (197 x 384, 1 point)": (197 * 384, 1, 3)}
# Training FLOPs per sample: 3 x the forward's, 2 FLOPs per multiply-add (ResNet-50 4.1 G and
# DeiT-S 4.6 G multiply-adds per 224 px image, as their papers count them).
TRAIN_FLOPS = {"V1 ResNet-50 (C 2048)": 3 * 2 * 4.1e9,
               "V2 DeiT-S (197 x 384, 1 point)": 3 * 2 * 4.6e9}


@dataclasses.dataclass(frozen=True)
class Chip:
  peak_flops: float  # bf16 FLOP/s
  bandwidth: float  # bytes/s one chip moves in a collective (within a node, if it has nodes)
  node: int | None = None  # chips a node holds; rings past it run at ``across_nodes``
  across_nodes: float | None = None


# Published per chip (Cloud TPU docs, tpu/docs/v4 and tpu/docs/v5e): peak bf16 FLOP/s, and the
# pod's all-reduce bandwidth divided by its chips (v4: 1.1 PB/s over 4,096; v5e: 51.2 TB/s
# over 256) as the bytes per second one chip moves in a collective.
# H100 SXM: 989 TFLOP/s dense bf16 (NVIDIA's datasheet: 1,979 with sparsity); inside an
# 8-GPU node NVLink 4 (900 GB/s both ways, 450 GB/s each way), across nodes one 400 Gb/s
# InfiniBand NIC per GPU (DGX H100 / HGX rail-optimized fabric): 50 GB/s each way, which bounds
# a ring that spans nodes.
HARDWARE = {"TPU v4": Chip(275e12, 1.1e15 / 4096), "TPU v5e": Chip(197e12, 51.2e12 / 256),
            "H100": Chip(989e12, 450e9, node=8, across_nodes=50e9)}


def bandwidth(chip: str, devices: int) -> float:
  """Bytes per second one device moves in a collective over ``devices`` chips."""
  c = HARDWARE[chip]
  return c.across_nodes if c.node and devices > c.node else c.bandwidth


def gather_devices(scope: str, per_device: int, devices: int) -> int:
  """How many devices one BatchFormer gather spans (1: no communication)."""
  if scope == "global":
    return devices
  if scope == "device":
    return 1
  k = int(scope)
  if k <= per_device and per_device % k == 0:
    return 1
  return k // per_device if k % per_device == 0 else devices


def bytes_per_step(values: int, per_device: int, devices: int, scope: str,
                   dtype_bytes: int = 2, layers: int = 1, passes: int = 2) -> int:
  """Bytes one device sends per train step over ``passes`` ring collectives per layer."""
  g = gather_devices(scope, per_device, devices)
  return passes * (g - 1) * per_device * values * dtype_bytes * layers


def step_fraction(model: str, per_device: int, devices: int, scope: str, chip: str) -> float:
  """The BatchFormer's communication time over (that + the step's FLOPs at peak): an upper bound
  on its share of a step, since a real step runs below peak and may overlap the transfer."""
  values, layers, passes = MODELS[model]
  comm_s = (bytes_per_step(values, per_device, devices, scope, layers=layers, passes=passes)
            / bandwidth(chip, devices))
  compute_s = per_device * TRAIN_FLOPS[model] / HARDWARE[chip].peak_flops
  return comm_s / (comm_s + compute_s)


def fraction_table(batch: int = 65536, device_counts=(8, 256, 2048),
                   scopes=("global", "256")) -> list[dict]:
  rows = []
  for model in MODELS:
    for n in device_counts:
      row = {"model": model, "global batch": batch, "devices": n}
      for chip in HARDWARE:
        for scope in scopes:
          share = step_fraction(model, batch // n, n, scope, chip)
          row[f"{chip}, scope {scope}"] = f"{100 * share:.2f}%"
      rows.append(row)
  return rows


def _markdown(rows: list[dict]) -> str:
  keys = list(rows[0])
  lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
  return "\n".join(lines + ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows])


def table(batches=(256, 4096, 65536), device_counts=(8, 256, 2048),
          scopes=("global", "256", "device")) -> list[dict]:
  rows = []
  for model, (values, layers, passes) in MODELS.items():
    for batch in batches:
      for n in device_counts:
        if batch % n:
          continue
        b = batch // n
        row = {"model": model, "global batch": batch, "devices": n, "per device": b}
        for scope in scopes:
          if scope.isdigit() and batch % int(scope):
            row[f"scope {scope}"] = "-"
            continue
          mb = bytes_per_step(values, b, n, scope, layers=layers, passes=passes) / 2 ** 20
          row[f"scope {scope}"] = f"{mb:,.1f} MiB"
        rows.append(row)
  return rows


def check(per_device: int = 4, dim: int = 16, positions: int = 3
          ) -> list[tuple[str, int, int]]:
  """(case, bytes by arithmetic, bytes from the compiled program) on this process's devices,
  float32: the all-gathers' and reduce-scatters' shapes and replica groups. V1 features [B, C]
  in every scope, and V2 tokens [B, L, C] (remat on by default) at global scope."""
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  from bf_jax.layer.batchformer import BatchFormer

  n = jax.device_count()
  mesh = jax.make_mesh((n,), ("data",))
  cases = [(scope, (dim,), 2) for scope in ("global", str(2 * per_device), "device",
                                            str(per_device // 2))]
  cases.append(("V2 global", (positions, dim), 3))
  out = []
  for name, row_shape, passes in cases:
    scope = name.split()[-1]
    x = jax.device_put(jnp.ones((n * per_device, *row_shape)), NamedSharding(mesh, P("data")))
    group = None if scope == "global" else per_device if scope == "device" else int(scope)
    bf = BatchFormer(dim, axis_name="data", group_size=group, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(bf, nnx.Param, ...)

    def train(params, x_loc):
      # Squared, so the backward pass needs the forward's output (a plain sum would let XLA
      # drop the forward layer and its gather, leaving only the remat recompute).
      def loss(p, x_loc):
        return jnp.sum(jnp.square(nnx.merge(graphdef, p, rest)(x_loc, deterministic=True)))
      return jax.grad(loss, argnums=(0, 1))(params, x_loc)

    hlo = jax.jit(jax.shard_map(train, mesh=mesh, in_specs=(P(), P("data")),
                                out_specs=(P(), P("data")))).lower(params, x).compile().as_text()
    lowered = 0
    for line in hlo.splitlines():
      op = re.search(r"= f32\[([\d,]+)\]\S* (all-gather|reduce-scatter)\(", line)
      if not op:
        continue
      values = math.prod(int(d) for d in op.group(1).split(","))
      listed = re.search(r"replica_groups=\{\{([\d,]+)\}", line)
      iota = re.search(r"replica_groups=\[\d+,(\d+)\]", line)
      g = len(listed.group(1).split(",")) if listed else int(iota.group(1)) if iota else n
      shard = values // g if op.group(2) == "all-gather" else values  # values one device holds
      lowered += (g - 1) * shard * 4  # (g - 1) shards leave each device
    want = bytes_per_step(math.prod(row_shape), per_device, n, scope, dtype_bytes=4,
                          passes=passes)
    out.append((name, want, lowered))
  return out


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog="python -m bf_jax.bench.comm", description=__doc__)
  parser.add_argument("--check", action="store_true",
                      help="compare the arithmetic with the compiled program on these devices")
  args = parser.parse_args(argv)
  if args.check:
    for case, want, got in check():
      print(f"{case:>9}: arithmetic {want} B, compiled program {got} B")
    return
  print(_markdown(table()))
  print("\nUpper bound on the BatchFormer's share of a step (its transfer at the chip's "
        "all-reduce bandwidth against the step's FLOPs at peak):\n")
  print(_markdown(fraction_table()))


if __name__ == "__main__":
  main()

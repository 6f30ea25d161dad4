"""Convolutions inside a lax.scan on this backend: a chain of residual conv blocks, unrolled
against scanned over stacked kernels, forward only and forward + backward.

  python benchmarks/conv_scan.py [--batch 16 --size 16 --channels 16 --blocks 8]

Why ResNets keep model.scan_layers off on a CPU (docs/v2.md): XLA's CPU backend runs the
backward convolutions of a scanned block far slower than unrolled ones.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np


def block(x, w):
  conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return jax.nn.relu(x + conv(jax.nn.relu(conv(x, w)), 0.5 * w))


def unrolled(ws, x):
  for w in ws:
    x = block(x, w)
  return jnp.mean(x ** 2)


def scanned(ws, x):
  x, _ = jax.lax.scan(lambda x, w: (block(x, w), None), x, ws)
  return jnp.mean(x ** 2)


def timed(fn, *args, iters: int = 5) -> tuple[float, float]:
  """(compile seconds, median step milliseconds)."""
  t0 = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  compile_s = time.perf_counter() - t0
  jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(iters):
    t = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t)
  return compile_s, 1000 * float(np.median(times))


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--size", type=int, default=16)
  p.add_argument("--channels", type=int, default=16)
  p.add_argument("--blocks", type=int, default=8)
  a = p.parse_args()
  jax.config.update("jax_enable_compilation_cache", False)
  rng = np.random.default_rng(0)
  ws = jnp.asarray(rng.normal(size=(a.blocks, 3, 3, a.channels, a.channels)) * 0.05, jnp.float32)
  x = jnp.asarray(rng.normal(size=(a.batch, a.size, a.size, a.channels)), jnp.float32)
  print(f"JAX {jax.__version__}, {jax.devices()[0].device_kind}; {a.blocks} blocks of two 3x3 "
        f"convs, batch {a.batch}, {a.size}x{a.size}x{a.channels}\n")
  print("| program | unrolled compile s | scanned compile s | unrolled step ms | scanned step ms |")
  print("|---|---|---|---|---|")
  for name, wrap in (("forward", lambda f: f),
                     ("forward + backward (both)", lambda f: jax.value_and_grad(f)),
                     ("forward + input gradient", lambda f: jax.grad(f, argnums=1))):
    (cu, su), (cs, ss) = timed(wrap(unrolled), ws, x), timed(wrap(scanned), ws, x)
    print(f"| {name} | {cu:.2f} | {cs:.2f} | {su:.1f} | {ss:.1f} |", flush=True)


if __name__ == "__main__":
  main()

"""One-shot accelerator check of the layer and the loop; prints figures and writes JSON.

  python tools/gpu_check.py --out DIR

1. Parity with the committed PyTorch golden data at JAX's default matmul precision and at
   'highest' (TF32 vs full fp32 on NVIDIA GPUs).
2. BatchFormer V1 train step (forward + backward, dropout on) at C=2048, 4 heads, for a few
   batch sizes, fp32 and bf16; beside PyTorch's nn.TransformerEncoderLayer when torch imports.
3. The digits demo config end to end on the accelerator (baseline and +BatchFormer, one seed).
4. (--parts resnet) the ImageNet-LT ResNet-50 train step at batch 256, 224x224, bf16 and fp32,
   with and without BatchFormer: step time and images/s on synthetic data.
"""

import argparse
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bf_jax import BatchFormer, load_torch_state_dict  # noqa: E402
from bf_jax.bench.jax_steps import median_ms  # noqa: E402


def parity() -> dict:
  golden = np.load(ROOT / "tests" / "golden" / "torch_encoder_layer.npz")
  out = {}
  for case, (dim, layers) in {"c48": (48, 1), "c256": (256, 1), "stack2_c64": (64, 2)}.items():
    bf = BatchFormer(dim, num_layers=layers, rngs=nnx.Rngs(0))
    load_torch_state_dict(bf, {k.split("/param/")[1]: golden[k] for k in golden.files
                               if k.startswith(f"{case}/param/")})
    for feed in ("v1", "v2"):
      x, dy = golden[f"{case}/{feed}/x"], golden[f"{case}/{feed}/dy"]
      for precision in ("default", "highest"):
        with jax.default_matmul_precision(precision):
          f = jax.jit(lambda x: jax.vjp(lambda x: bf(x, deterministic=True), x))
          y, vjp = f(x)
          dx = vjp(jnp.asarray(dy))[0]
        out[f"{case}/{feed}/{precision}"] = {
            "max_abs_err_y": float(np.abs(np.asarray(y) - golden[f"{case}/{feed}/y"]).max()),
            "max_abs_err_dx": float(np.abs(np.asarray(dx) - golden[f"{case}/{feed}/dx"]).max())}
  return out


def layer_timing(dim=2048, batches=(256, 1024, 4096)) -> list[dict]:
  rows = []
  for dtype_name, dtype in (("float32", jnp.float32), ("bfloat16", jnp.bfloat16)):
    bf = BatchFormer(dim, dtype=dtype, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(bf, nnx.Param, ...)

    @jax.jit
    def step(params, x, key):
      def loss(params):
        return jnp.sum(nnx.merge(graphdef, params, rest)(x, deterministic=False, rngs=key)
                       .astype(jnp.float32) ** 2)
      return jax.grad(loss)(params)

    for b in batches:
      x = jax.random.normal(jax.random.key(b), (b, dim), dtype)
      ms = median_ms(lambda: jax.block_until_ready(step(params, x, jax.random.key(1))), 1, 20)
      rows.append({"impl": "jax", "dtype": dtype_name, "batch": b, "dim": dim, "ms": ms})
  try:
    import torch
  except ImportError:
    return rows
  layer = torch.nn.TransformerEncoderLayer(dim, 4, dim, 0.5).cuda().train()
  for dtype_name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
    for b in batches:
      x = torch.randn(b, 1, dim, device="cuda")

      def run():
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is torch.bfloat16):
          y = layer(x)
        (y.float() ** 2).sum().backward()
        torch.cuda.synchronize()

      rows.append({"impl": "torch", "dtype": dtype_name, "batch": b, "dim": dim,
                   "ms": median_ms(run, 1, 20), "torch": torch.__version__})
  return rows


def resnet_step_timing(batch: int = 256, image_size: int = 224) -> list[dict]:
  """ResNet-50 + Balanced Softmax train step (the ImageNet-LT config), with/without BatchFormer."""
  import importlib.util

  from bf_jax.models.classifier import build_model
  from bf_jax.trainer import optim, sharding, supervised, train_state
  spec = importlib.util.spec_from_file_location(
      "cfg", ROOT / "configs" / "imagenet_lt_balanced_softmax_r50.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  rows = []
  for dtype in ("bfloat16", "float32"):
    for bf in ("off", "on"):
      cfg = module.get_config(f"bf={bf}")
      cfg.model.dtype = dtype
      mesh = sharding.make_mesh()
      model = build_model(cfg.model, cfg.bf, 1000, (image_size, image_size, 3), batch, 0)
      graphdef, params, stats, other = train_state.split_model(model)
      tx, _ = optim.build_optimizer(cfg.optim, cfg.bf, 1000)
      loss_fn = supervised.build_loss(cfg.loss, np.ones(1000))
      state = sharding.replicate({"params": params, "stats": stats, "opt_state": tx.init(params)},
                                 mesh)
      step_fn = supervised.make_train_step(graphdef, other, tx, loss_fn, mesh, 0)
      rng = np.random.default_rng(0)
      data = sharding.put_batch({
          "image": rng.standard_normal((batch, image_size, image_size, 3), np.float32),
          "label": rng.integers(0, 1000, batch).astype(np.int32)}, mesh)
      box = {"state": state}

      def run():
        box["state"], m = step_fn(box["state"], data, np.int32(0))
        jax.block_until_ready(m["loss"])

      ms = median_ms(run, 1, 15)
      rows.append({"model": "resnet50", "dtype": dtype, "bf": bf, "batch": batch, "ms": ms,
                   "images_per_s": batch / ms * 1e3})
      del box, state, data
  return rows


def demo_runs(workdir: pathlib.Path) -> list[dict]:
  import importlib.util

  from bf_jax.tasks import classify
  spec = importlib.util.spec_from_file_location("cfg", ROOT / "configs" / "digits_lt.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  out = []
  for bf in ("off", "on"):
    t = time.perf_counter()
    result = classify.run(module.get_config(f"bf={bf}"), workdir / f"bf_{bf}")
    out.append({"bf": bf, "seconds": time.perf_counter() - t, **result})
  return out


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="gpu_check_out")
  parser.add_argument("--parts", nargs="+", default=["parity", "layer_timing", "demo"],
                      help="any of: parity layer_timing demo resnet")
  args = parser.parse_args()
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  report = {"jax": jax.__version__, "devices": [str(d) for d in jax.devices()]}
  print(report, flush=True)
  parts = {"parity": parity, "layer_timing": layer_timing, "resnet": resnet_step_timing,
           "demo": lambda: demo_runs(out / "runs")}
  for name in args.parts:
    fn = parts[name]
    t = time.perf_counter()
    try:
      report[name] = fn()
    except Exception as e:  # report and go on: one failing part must not hide the others
      report[name] = {"error": f"{type(e).__name__}: {e}"}
    print(f"== {name} ({time.perf_counter() - t:.0f}s)\n{json.dumps(report[name], indent=1)}",
          flush=True)
  (out / "gpu_check.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
  main()

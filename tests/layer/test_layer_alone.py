"""The layer works without the training stack: a fresh interpreter whose import hook refuses
every training dependency imports bf_jax and runs the whole layer API."""

import subprocess
import sys
import textwrap

from helpers import ROOT

# What `pip install 'bf_jax[train]'` adds; flax's own imports (optax, absl, ...) stay allowed.
TRAINING_STACK = ("orbax", "grain", "tensorflow_datasets", "tensorflow", "array_record",
                  "ml_collections", "chex", "sklearn", "matplotlib", "tensorboardX", "etils.epath",
                  "PIL")

SCRIPT = textwrap.dedent("""
    import importlib.abc, sys
    REFUSED = {refused!r}

    class Refuse(importlib.abc.MetaPathFinder):
      def find_spec(self, name, path=None, target=None):
        if any(name == r or name.startswith(r + ".") for r in REFUSED):
          raise ImportError(f"the layer imported {{name}}, which is the training stack's")

    sys.meta_path.insert(0, Refuse())
    import jax, jax.numpy as jnp, numpy as np
    from flax import linen as nn, nnx

    import bf_jax
    from bf_jax import BatchFormer, load_torch_state_dict, two_stream
    from bf_jax.layer import v2
    import bf_jax.linen, bf_jax.layer.linen

    bf = BatchFormer(8, num_heads=2, dropout=0.0, rngs=nnx.Rngs(0))
    x = jnp.ones((6, 8))
    assert bf(x, deterministic=True).shape == (6, 8)
    feats, labels = two_stream(x, jnp.arange(6), bf, deterministic=True)
    assert feats.shape == (12, 8) and labels.shape == (12,)
    sd = {{"self_attn.in_proj_weight": np.zeros((24, 8)), "self_attn.in_proj_bias": np.zeros(24),
          "self_attn.out_proj.weight": np.zeros((8, 8)), "self_attn.out_proj.bias": np.zeros(8),
          "linear1.weight": np.zeros((8, 8)), "linear1.bias": np.zeros(8),
          "linear2.weight": np.zeros((8, 8)), "linear2.bias": np.zeros(8),
          "norm1.weight": np.ones(8), "norm1.bias": np.zeros(8),
          "norm2.weight": np.ones(8), "norm2.bias": np.zeros(8)}}
    load_torch_state_dict(bf, sd)
    assert float(jnp.abs(bf.layers[0].linear1.kernel.value).sum()) == 0.0
    bfs = v2.make_batchformers(8, (0,), shared=True, dropout=0.0, rngs=nnx.Rngs(0))
    assert len(bfs) == 1
    lin = bf_jax.linen.BatchFormer(dim=8, num_heads=2, dropout=0.0)
    params = lin.init(jax.random.key(0), x, deterministic=True)
    assert lin.apply(params, x, deterministic=True).shape == (6, 8)
    loaded = [r for r in REFUSED if r in sys.modules]
    assert not loaded, loaded
    print("layer alone: ok")
""")


def _run(code: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                        timeout=300, env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"})


def test_layer_imports_and_runs_without_the_training_stack():
  out = _run(SCRIPT.format(refused=TRAINING_STACK))
  assert out.returncode == 0, out.stderr[-3000:]
  assert "layer alone: ok" in out.stdout


def test_the_hook_refuses_what_it_names():
  """The guard itself works: importing the trainer under it fails on a refused package."""
  code = SCRIPT.format(refused=TRAINING_STACK).replace(
      'print("layer alone: ok")', 'import bf_jax.trainer.checkpointing')
  out = _run(code)
  assert out.returncode != 0 and "which is the training stack's" in out.stderr, out.stderr[-2000:]

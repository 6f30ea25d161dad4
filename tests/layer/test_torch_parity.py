"""The layer equals torch.nn.TransformerEncoderLayer(C, 4, C, 0.5) fed the BatchFormer way.

Golden data: tools/make_torch_golden.py (torch is not a dependency).
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bf_jax import BatchFormer, load_torch_state_dict
from bf_jax.layer.torch_weights import _LAYER_MAP

GOLDEN = np.load(pathlib.Path(__file__).parents[1] / "golden" / "torch_encoder_layer.npz")
CASES = {"c48": (48, 1), "c64": (64, 1), "c256": (256, 1), "stack2_c64": (64, 2)}


def _loaded(case: str) -> BatchFormer:
  dim, num_layers = CASES[case]
  bf = BatchFormer(dim, num_heads=4, dropout=0.5, num_layers=num_layers, rngs=nnx.Rngs(1))
  sd = {k.split("/param/")[1]: GOLDEN[k] for k in GOLDEN.files if k.startswith(f"{case}/param/")}
  load_torch_state_dict(bf, sd)
  return bf


def _our_grad_name(torch_name: str):
  """'layers.1.linear1.weight' -> (layer index, module, param, transpose)."""
  parts = torch_name.split(".")
  idx = int(parts[1]) if parts[0] == "layers" else 0
  leaf = ".".join(parts[2:]) if parts[0] == "layers" else torch_name
  return (idx, *_LAYER_MAP[leaf])


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("feed", ["v1", "v2"])
def test_matches_torch_forward_and_gradients(case, feed):
  bf = _loaded(case)
  pre = f"{case}/{feed}"
  x, dy = jnp.asarray(GOLDEN[f"{pre}/x"]), jnp.asarray(GOLDEN[f"{pre}/dy"])
  graphdef, params, rest = nnx.split(bf, nnx.Param, ...)

  def objective(params, x):
    y = nnx.merge(graphdef, params, rest)(x, deterministic=True)
    return jnp.sum(y * dy), y

  # One compiled program: op by op, each op of each shape compiles on its own.
  grads = jax.jit(jax.value_and_grad(objective, argnums=(0, 1), has_aux=True))
  (_, y), (dparams, dx) = grads(params, x)
  np.testing.assert_allclose(y, GOLDEN[f"{pre}/y"], atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(dx, GOLDEN[f"{pre}/dx"], atol=1e-5, rtol=1e-5)

  grad_keys = [k for k in GOLDEN.files if k.startswith(f"{pre}/grad/")]
  if case != "c256":
    assert len(grad_keys) == 12 * CASES[case][1]
  for key in grad_keys:
    idx, module, param, transpose = _our_grad_name(key.split("/grad/")[1])
    ours = np.asarray(dparams["layers"][idx][module][param][...])
    np.testing.assert_allclose(ours.T if transpose else ours, GOLDEN[key], atol=1e-5, rtol=1e-5,
                               err_msg=key)


def test_load_rejects_mismatched_state_dicts():
  sd = {k.split("/param/")[1]: GOLDEN[k] for k in GOLDEN.files if k.startswith("c48/param/")}
  with pytest.raises(ValueError, match="shape"):
    load_torch_state_dict(BatchFormer(64, rngs=nnx.Rngs(0)), sd)
  with pytest.raises(ValueError, match="num_layers=1"):
    load_torch_state_dict(BatchFormer(48, num_layers=2, rngs=nnx.Rngs(0)), sd)
  with pytest.raises(ValueError, match="lacks"):
    load_torch_state_dict(BatchFormer(48, rngs=nnx.Rngs(0)),
                          {k: v for k, v in sd.items() if k != "norm2.bias"})
  with pytest.raises(ValueError, match="Unexpected keys.*'head.weight'"):
    load_torch_state_dict(BatchFormer(48, rngs=nnx.Rngs(0)), {**sd, "head.weight": sd["norm2.bias"]})
  bf = BatchFormer(48, rngs=nnx.Rngs(0))
  load_torch_state_dict(bf, {f"encoder.{k}": v for k, v in sd.items()}, prefix="encoder.")
  np.testing.assert_array_equal(bf.layers[0].linear1.kernel[...], sd["linear1.weight"].T)

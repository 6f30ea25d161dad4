"""The layer's modules before they moved to bf_jax/layer/ still import, with one warning."""

import importlib
import sys

import pytest


@pytest.mark.parametrize("name", ["batchformer", "v2", "torch_weights"])
def test_an_old_path_warns_and_is_the_moved_module(name, monkeypatch):
  monkeypatch.delitem(sys.modules, f"bf_jax.{name}", raising=False)
  with pytest.warns(FutureWarning, match=rf"bf_jax.{name} moved to bf_jax.layer.{name}"):
    old = importlib.import_module(f"bf_jax.{name}")
  assert old is importlib.import_module(f"bf_jax.layer.{name}")


def test_the_old_from_imports_work(monkeypatch):
  for name in ("batchformer", "v2"):
    monkeypatch.delitem(sys.modules, f"bf_jax.{name}", raising=False)
  with pytest.warns(FutureWarning):
    from bf_jax import v2
    from bf_jax.batchformer import BatchFormer
  assert v2.make_batchformers is importlib.import_module("bf_jax.layer.v2").make_batchformers
  assert BatchFormer is importlib.import_module("bf_jax.layer").BatchFormer

"""The usage examples of README.md and docs/*.md run as written; README stays short, and the
measured tables it keeps match docs/demo.md's."""

import pathlib
import re

ROOT = pathlib.Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
README_MAX_LINES = 250  # the details live in docs/; README is the overview


def python_blocks(text: str) -> list[str]:
  return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def test_readme_examples_run():
  section = README.split("## Using the layer in your own JAX project")[1].split("\n## ")[0]
  blocks = python_blocks(section)
  assert len(blocks) == 3, "expected the NNX, multi-device and Linen examples"
  namespace: dict = {}
  for block in blocks:  # later blocks build on earlier ones, as a reader would run them
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 (the page's own code)
  assert namespace["out"].shape == (64, 64)
  kernel = namespace["grads"]["BatchFormer_0"]["nnx"]["layers"]["0"]["linear1"]["kernel"]
  assert kernel.shape == (64, 64)


def test_layer_page_example_runs():
  (block,) = python_blocks((ROOT / "docs" / "layer.md").read_text())
  namespace: dict = {}
  exec(compile(block, "docs/layer.md", "exec"), namespace)  # noqa: S102 (the page's own code)
  assert namespace["a"].shape == (16, 64)


# The names docs/v2.md's snippet leaves to the reader: a width, a stack of blocks, tokens, labels.
V2_SETUP = """
import jax
import jax.numpy as jnp
from flax import nnx
dim = 16
blocks = [nnx.Linear(dim, dim, rngs=nnx.Rngs(i)) for i in range(12)]
tokens_BxLxC = jnp.ones((4, 3, dim))
labels_B = jnp.arange(4)
dropout_key = jax.random.key(0)
"""


def test_v2_example_runs():
  (block,) = python_blocks((ROOT / "docs" / "v2.md").read_text())
  namespace: dict = {}
  exec(compile(V2_SETUP, "V2_SETUP", "exec"), namespace)  # noqa: S102 (this file's own code)
  exec(compile(block, "docs/v2.md", "exec"), namespace)  # noqa: S102 (the page's own code)
  assert namespace["x"].shape == (8, 3, 16)  # [2B, L, C]: the two streams
  assert namespace["labels_2B"].shape == (8,)


def test_every_python_block_of_the_pages_is_run():
  """A new ```python block in a page must be run by a test here (or this count updated)."""
  counts = {page.name: len(python_blocks(page.read_text()))
            for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}
  run_here = {"README.md": 3, "layer.md": 1, "layout.md": 1, "v2.md": 1}
  assert {k: v for k, v in counts.items() if v} == run_here, (
      f"python blocks per page {counts}; run the new ones in tests/docs/test_readme.py")


def test_readme_is_short():
  n = len(README.splitlines())
  assert n <= README_MAX_LINES, (
      f"README.md has {n} lines (at most {README_MAX_LINES}); move details to a page under docs/")


def tables(text: str) -> list[str]:
  """Each markdown table of a page, its rows joined by newlines."""
  return ["\n".join(m.group(0).split("\n")[:-1])
          for m in re.finditer(r"^(?:\|.*\|\n)+", text, flags=re.MULTILINE)]


def test_readme_measured_tables_match_the_pages_that_measured_them():
  """README repeats measured tables of docs/demo.md and docs/fashion_mnist.md: a copy that
  drifts would misreport."""
  pages = "".join((ROOT / "docs" / name).read_text() for name in ("demo.md", "fashion_mnist.md"))
  measured = [t for t in tables(README) if not t.startswith("| task |")]
  assert len(measured) == 4, "expected the demo, attention, Fashion-MNIST and PaCo tables"
  stale = [t.split("\n")[0] for t in measured if t not in pages]
  assert not stale, f"these README tables differ from the docs pages that measured them: {stale}"

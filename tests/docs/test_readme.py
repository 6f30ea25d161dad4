"""The README's usage examples run as written."""

import pathlib
import re

README = (pathlib.Path(__file__).parents[2] / "README.md").read_text()


def test_readme_examples_run():
  section = README.split("## Using the layer in your own JAX project")[1].split("\n## ")[0]
  blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
  assert len(blocks) == 3, "expected the NNX, multi-device and Linen examples"
  namespace: dict = {}
  for block in blocks:  # later blocks build on earlier ones, as a reader would run them
    exec(compile(block, "README.md", "exec"), namespace)
  assert namespace["out"].shape == (64, 64)
  assert namespace["grads"]["BatchFormer_0"]["nnx"]["layers"][0]["linear1"]["kernel"].shape == (64, 64)

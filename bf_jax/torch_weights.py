"""``bf_jax.torch_weights``: the old import path of ``bf_jax.layer.torch_weights``.

The layer moved to bf_jax/layer/; importing this warns once and hands back the module itself, so
old code keeps working."""

import sys
import warnings

from bf_jax.layer import torch_weights as _moved

warnings.warn("bf_jax.torch_weights moved to bf_jax.layer.torch_weights; import it from there "
              "(this alias will go).", FutureWarning, stacklevel=2)
sys.modules[__name__] = _moved

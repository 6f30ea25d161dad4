"""``bf_jax.v2``: the old import path of ``bf_jax.layer.v2``.

The layer moved to bf_jax/layer/; importing this warns once and hands back the module itself, so
old code keeps working."""

import sys
import warnings

from bf_jax.layer import v2 as _moved

warnings.warn("bf_jax.v2 moved to bf_jax.layer.v2; import it from there "
              "(this alias will go).", FutureWarning, stacklevel=2)
sys.modules[__name__] = _moved

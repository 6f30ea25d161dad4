"""bf_jax: BatchFormer (CVPR 2022) in JAX/Flax.

The layer API is importable with jax, flax and numpy alone; the training system
(``bf_jax.trainer``, ``bf_jax.tasks``) needs ``pip install 'bf_jax[train]'``.
"""

from bf_jax.layer import BatchFormer, load_torch_state_dict, two_stream

__all__ = ["BatchFormer", "two_stream", "load_torch_state_dict"]
__version__ = "0.1.0"

"""bf_jax: BatchFormer (CVPR 2022) in JAX/Flax."""

from bf_jax.batchformer import BatchFormer, two_stream

__all__ = ["BatchFormer", "two_stream"]
__version__ = "0.1.0"

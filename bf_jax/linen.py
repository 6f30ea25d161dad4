"""``bf_jax.linen.BatchFormer``: the Linen wrapper, kept at its old import path."""

from bf_jax.layer.linen import BatchFormer, string_keys

__all__ = ["BatchFormer", "string_keys"]

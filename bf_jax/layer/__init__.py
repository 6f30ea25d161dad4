"""The importable layer: BatchFormer (V1, on features) and BatchFormerV2 (on tokens).

Imports jax, flax and numpy only (tests/test_layout.py and tests/layer/test_layer_alone.py hold
it to that), so ``pip install bf_jax`` brings nothing of the training system.
``batchformer.py``: the layer and ``two_stream``; ``v2.py``: insertion into a stack of blocks;
``linen.py``: a Linen wrapper; ``torch_weights.py``: weights of a PyTorch
``nn.TransformerEncoderLayer``; ``attention_maps.py``: what a trained layer attends to.
"""

from bf_jax.layer.attention_maps import attention_maps
from bf_jax.layer.batchformer import MODES, BatchFormer, EncoderLayer, two_stream
from bf_jax.layer.torch_weights import load_torch_state_dict

__all__ = ["BatchFormer", "EncoderLayer", "two_stream", "load_torch_state_dict", "MODES",
           "attention_maps"]

"""``task="moco"``: MoCo v3 (+ BatchFormer) self-supervised pre-training.

``train.py``: the run, with a kNN monitor (``knn.py``) as its evaluation; ``model.py``: the
online and momentum networks; ``steps.py``: the jitted contrastive step; ``contrastive.py``: the
loss and which streams are contrasted (``moco.pairing``); ``checks.py``: the config checks. The
linear probe that follows is a ``task="classify"`` run (``configs/moco_linear_probe.py``).
"""

from bf_jax.tasks.moco.checks import validate
from bf_jax.tasks.moco.train import run

__all__ = ["validate", "run"]

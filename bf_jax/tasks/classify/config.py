"""``config.paco``: PaCo (bf_jax/tasks/classify/paco/), supervised contrast against a queue of
momentum keys with the linear classifier's logits as the class centers. The task registry adds
the block to every config."""

import ml_collections


def paco() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      enabled=False,
      alpha=0.05, beta=1.0, gamma=1.0,  # same-class samples / the true center, in the numerator;
      # gamma: the samples' weight in the denominator
      temperature=0.2,  # of the sample similarities (the centers' logits are divided by supt)
      supt=1.0,
      queue=8192,  # keys (with labels) in the queue; at least the global batch
      dim=128,  # the projector's output width
      momentum=0.999,  # of the key encoder (constant, as PaCo)
      bf_branches="centers"))  # "centers": BatchFormer's stream through the classifier only;
  # "both": its stream is also projected and contrasted (tasks/classify/paco/model.py)


BLOCKS = {"paco": paco}

"""``config.moco``: MoCo v3 pre-training's own fields (bf_jax/tasks/moco/contrastive.py has the
pairings); the task registry adds the block to every config."""

import ml_collections


def moco() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      dim=256, mlp_dim=4096, projector_layers=2, predictor_layers=2,  # MoCo v3 ResNet heads
      temperature=1.0, momentum=0.99, momentum_cosine=True,  # m: base -> 1 along a half cosine
      pairing="matched",  # "matched" | "orig_keys" | "all" (upstream's 8 terms, / 4)
      momentum_bf="ema",  # "ema": the momentum model's own BatchFormer copy | "none"
      knn_k=200, knn_temperature=0.1,
      knn_bank=0, knn_queries=0))  # examples in the kNN bank (train) / queries (test); 0: all


BLOCKS = {"moco": moco}

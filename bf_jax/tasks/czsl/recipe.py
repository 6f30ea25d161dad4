"""The closed-world CZSL recipe every ``configs/czsl_*.py`` builds on (CGE / CompCos + BatchFormer).

The czsl codebase's settings as the BatchFormer code ran them: ResNet-18 from ImageNet weights,
fine-tuned with lr 5e-6 (the heads 5e-5), Adam with weight decay 5e-5 (ours decoupled, AdamW),
constant lr; batch 128 (C-GQA 256); 100 epochs (C-GQA 200), validation every epoch, model
selection on val AUC; RandomResizedCrop(224) + flip, eval resize 256 + centre crop 224. CGE: a
2-layer GCN (hidden 4096) over attributes, objects and pairs, 512-d embeddings; CompCos: cosine
compatibility, temperature 0.05. BatchFormer on the 512-d image feature, two streams (features
and pair labels duplicated), its lr x ``bf_lr`` (default 0.02, i.e. 1e-6: the lr that upstream's
test.py checkpoint names carry; its flag default was 5e-5).
"""

from __future__ import annotations

import ml_collections

from bf_jax.trainer.config_base import base_config, paper_scope, parse_arg

# Documented args of every configs/czsl_*.py, and their defaults.
ARGS = dict(bf=True, smoke=False, seed=0, bf_lr=0.02, weights="", word_vectors="",
            data_dir="~/czsl_data", scope="paper")
# The czsl code ran on one GPU: the layer attended over the whole batch (128, C-GQA 256).
PAPER_SCOPE = "global"
SCHEDULE = {"mit_states": (128, 100), "ut_zappos": (128, 100), "cgqa": (256, 200)}


def czsl_config(dataset: str, model: str, arg: str | None) -> ml_collections.ConfigDict:
  """The config of ``configs/czsl_<dataset>_<model>.py`` for its ``arg`` string (see ARGS)."""
  arg = parse_arg(arg, **ARGS)
  batch, epochs = SCHEDULE[dataset]
  c = base_config()
  c.task, c.seed = "czsl", arg.seed
  c.data.update(name=dataset, data_dir=arg.data_dir, image_size=224, augment="inception",
                crop_min=0.08, imbalance=1.0)
  c.model.update(name="resnet18")
  c.init.pretrained = arg.weights
  c.bf.update(enabled=arg.bf, mode="shared", num_heads=4, dropout=0.5, lr_mult=arg.bf_lr)
  c.czsl.update(model=model, emb_dim=512, hidden=4096, img_layers=2,
                word_vectors=arg.word_vectors, temperature=0.05, epochs=epochs,
                eval_every_epochs=1)
  c.batch_size, c.eval_batch_size = batch, 256
  c.log_every_steps = 50
  c.optim.update(name="adamw", lr=5e-5, weight_decay=5e-5, schedule="constant", warmup_steps=0,
                 backbone_lr_mult=0.1)
  c.ckpt.update(every_steps=2000, keep=1)
  if arg.smoke:
    c.czsl.update(epochs=0, emb_dim=16, hidden=32)
    c.batch_size, c.eval_batch_size, c.data.image_size = 8, 16, 32
    c.total_steps, c.eval_every_steps, c.log_every_steps, c.ckpt.every_steps = 2, 1, 1, 0
  c.bf.scope = paper_scope(arg.scope, PAPER_SCOPE, c.batch_size)
  return c

"""The config schema every task shares, and big_vision-style ``arg`` parsing for config files.

Tools and sweeps can rely on these fields existing in every config under ``configs/``.
"""

from __future__ import annotations

import math

import ml_collections


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """``'bf=off,smoke,seed=3'`` -> ConfigDict over ``defaults`` (types follow the defaults).

  A bare name sets a boolean to True; ``on/off``, ``true/false`` and ``1/0`` are booleans.
  """
  out = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, _, value = item.partition("=")
    if key not in defaults:
      raise ValueError(f"config arg {key!r} is unknown; known args: {sorted(defaults)}.")
    kind = type(defaults[key])
    if kind is bool:
      if value == "":
        out[key] = True
      elif value.lower() in ("on", "true", "1", "off", "false", "0"):
        out[key] = value.lower() in ("on", "true", "1")
      else:
        raise ValueError(f"config arg {key}={value!r} must be on/off.")
    else:
      try:
        out[key] = kind(value)
      except ValueError:
        raise ValueError(f"config arg {key}={value!r} is not a {kind.__name__}.") from None
  return ml_collections.ConfigDict(out)


def base_config() -> ml_collections.ConfigDict:
  """Every field, with defaults; task configs override what they need."""
  c = ml_collections.ConfigDict()
  c.task = "classify"  # a name of bf_jax/tasks/__init__.py REGISTRY: classify | moco | dg | czsl
  c.seed = 0
  c.batch_size = 128  # global, over all devices of all processes
  c.eval_batch_size = 128
  c.total_steps = 1000
  c.eval_every_steps = 500  # 0: only at the end
  c.log_every_steps = 50
  c.ckpt = ml_collections.ConfigDict(dict(every_steps=500, keep=2))  # every_steps 0: end only
  # Fields a restart may change against the workdir's config.json, comma-separated, e.g.
  # "total_steps,eval_every_steps" (trainer/run_record.py); any other difference stops the run.
  c.resume_changes = ""

  c.bf = ml_collections.ConfigDict(dict(
      enabled=True,
      scope="global",  # "global" | "device" | a group size such as "16"
      mode="shared",  # "shared" (two streams, shared head) | "bf_only"
      num_layers=1, num_heads=4, dropout=0.5,
      lr_mult=1.0, wd_mult=1.0,
      insert_after=(),  # ViTs (BatchFormerV2): blocks after which a layer acts, e.g. (8,)
      shared_layers=True))  # ViTs: one layer for every insertion point, or one each

  c.data = ml_collections.ConfigDict(dict(
      name="digits", num_classes=10,
      imbalance=50.0, profile="exp",  # long-tail profile; imbalance 1 and n_max 0: split as is
      n_max=0,  # images of the head class; 0: the dataset's default
      split_seed=0,  # which examples form the long-tailed subset (fixed across model seeds)
      augment="none",  # "none" | "crop_flip" | "inception" | "inception_jitter" | "two_view*"
      crop_min=0.08,  # smallest crop area fraction of the random resized crops
      sampler="instance",  # "instance" | "class_balanced" (decoupled classifier re-training)
      image_size=0,  # 0: the dataset's default (as stored; 224 for ImageNet-style sets)
      data_dir="", train_split="train", eval_split="test",
      val_split="",  # TFDS split for best-on-val model selection; "" for none
      train_list="", val_list="", test_list="",  # split files (ImageNet-LT, Places-LT)
      mixup=0.0, cutmix=0.0, mix_switch_prob=0.5,  # on device (data/mixup.py); alpha 0: off
      label_smoothing=0.0))

  c.model = ml_collections.ConfigDict(dict(
      name="mlp",  # "mlp" | "cnn" | a ResNet of models/resnet.py ARCHS | a ViT of models/vit.py
      width=128, depth=2,  # mlp / cnn only
      width_mult=1.0,  # ResNets: stage width multiplier (RIDE's reduced dims)
      dtype="float32",  # compute dtype; "bfloat16" on accelerators
      head="linear", head_scale=30.0,  # "cosine": scale * cos(feature, class weight)
      experts=0,  # > 0: RIDE with this many experts (cosine heads, ResNet model.name)
      freeze_bn=False,  # BatchNorm on running statistics in training (DomainBed's ResNets)
      patch=16, drop_path=0.0,  # ViTs (model.name deit_tiny | deit_small | deit_base)
      # ViTs, what the backward pass recomputes instead of keeping: "none", "streams" (the
      # blocks that run on both V2 streams) or "all" (every block).
      remat="none"))

  c.optim = ml_collections.ConfigDict(dict(
      name="sgd",  # "sgd" | "adamw" | "lars"
      lr=0.1, momentum=0.9, nesterov=False, b1=0.9, b2=0.999,
      trust_coefficient=0.001,  # LARS only
      weight_decay=5e-4, schedule="cosine", warmup_steps=0,
      step_fractions=(0.8, 0.9), step_factor=0.1, grad_clip=0.0,
      skip_nonfinite=0,  # 0: a NaN/Inf loss stops the run; N: skip such steps, stop after N in a row
      backbone_lr_mult=1.0,  # the backbone's lr x this (a fine-tuned extractor, e.g. 0.1)
      ema_decay=0.0))  # > 0: an EMA of the weights, evaluated too (eval_ema/*; DeiT 0.99996)

  # Decoupled second stage: start from another run's weights, optionally with the backbone frozen.
  c.init = ml_collections.ConfigDict(dict(
      from_workdir="",  # a bf_jax workdir whose latest checkpoint provides the initial weights
      parts=("backbone",),  # top-level parameter groups taken from it
      freeze_backbone=False,  # backbone fixed: no gradient, BatchNorm on running statistics
      pretrained=""))  # .npz of a torchvision ResNet state_dict (ImageNet weights) for the backbone

  # task="moco": MoCo v3 pre-training (see bf_jax/tasks/moco/contrastive.py for the pairings).
  c.moco = ml_collections.ConfigDict(dict(
      dim=256, mlp_dim=4096, projector_layers=2, predictor_layers=2,  # MoCo v3 ResNet heads
      temperature=1.0, momentum=0.99, momentum_cosine=True,  # m: base -> 1 along a half cosine
      pairing="matched",  # "matched" | "orig_keys" | "all" (upstream's 8 terms, / 4)
      momentum_bf="ema",  # "ema": the momentum model's own BatchFormer copy | "none"
      knn_k=200, knn_temperature=0.1,
      knn_bank=0, knn_queries=0))  # examples in the kNN bank (train) / queries (test); 0: all

  # task="dg": DomainBed-style leave-one-domain-out (bf_jax/tasks/dg/); data.name a DG dataset
  # prepared under data.data_dir (python -m bf_jax.tasks.dg.domains prepare ...).
  c.dg = ml_collections.ConfigDict(dict(
      test_domains=(),  # held-out domains, one run each; (): every domain of the dataset
      trial_seeds=(0,),  # one run per (test domain, trial seed): split, init, data order
      holdout_fraction=0.2,  # of each domain, held out for model selection (and test_out)
      batch_per_domain=32,  # batch_size must be this x (number of domains - 1)
      algorithm="swad",  # "erm" | "swad" (ERM's selections are reported in both)
      swad_n_converge=3, swad_n_tolerance=6, swad_tolerance_ratio=0.3))

  # task="czsl": closed-world compositional zero-shot learning (bf_jax/tasks/czsl/); data.name a
  # CZSL dataset prepared under data.data_dir (python -m bf_jax.tasks.czsl.data prepare ...).
  c.czsl = ml_collections.ConfigDict(dict(
      model="cge",  # "cge" (graph convolution over attrs/objs/pairs) | "compcos"
      emb_dim=512,  # joint image / pair embedding width
      hidden=4096,  # CGE: GCN hidden width; CompCos: primitive embedding width without vectors
      img_layers=2,  # image embedder MLP depth
      word_vectors="",  # GloVe-style text file for the node / primitive embeddings; "": learned
      temperature=0.05,  # CompCos: cosine logits / temperature
      epochs=0,  # > 0: total_steps = epochs x training images / batch_size, set at the start
      eval_every_epochs=1))  # with epochs > 0: eval_every_steps in epochs

  # task="classify" with PaCo (bf_jax/tasks/classify/paco/): supervised contrast against a queue
  # of momentum keys, with the linear classifier's logits as the class centers.
  c.paco = ml_collections.ConfigDict(dict(
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

  # What the trained layer attends to and where gradients flow, at every evaluation
  # (bf_jax/trainer/probe.py); changing it on resume is allowed: it does not touch training.
  c.probe = ml_collections.ConfigDict(dict(
      enabled=False,
      batches=4,  # probe batches of batch_size, drawn as training batches are; averaged
      seed=0))  # the probe stream's seed (not the run's: paired arms probe the same samples)

  c.loss = ml_collections.ConfigDict(dict(
      name="ce",  # "ce" | "balanced_softmax" | "logit_adjusted" | "ldam"
      tau=1.0,  # logit adjustment strength
      ldam_max_margin=0.5, ldam_scale=30.0,
      drw_beta=0.9999, drw_start_step=-1,  # LDAM deferred re-weighting; -1: never
      diversity_factor=-0.2, diversity_temperature=1.0))  # RIDE's expert diversity term
  return c


def paper_scope(arg_scope: str, paper: str, batch_size: int) -> str:
  """``bf.scope`` for a paper config's ``scope`` arg: ``"paper"`` gives ``paper``, the samples one
  attention spanned in the paper's run (upstream never attended across GPUs: each replica's
  batch, or the whole batch where the layer ran outside DataParallel); any other value
  ('global', 'device', '16') is taken as given. A paper group that does not divide a smoke
  batch shrinks to their greatest common divisor, so the smoke still runs grouped attention."""
  if arg_scope != "paper":
    return arg_scope
  if paper.isdigit() and batch_size % int(paper):
    return str(math.gcd(int(paper), batch_size))
  return paper


def shrink_for_smoke(c: ml_collections.ConfigDict, image_size: int = 0) -> None:
  """A config's `smoke` variant: the same code paths for 2 steps on tiny batches."""
  c.batch_size, c.eval_batch_size, c.total_steps, c.log_every_steps = 16, 16, 2, 1
  c.eval_every_steps, c.ckpt.every_steps, c.optim.warmup_steps = 0, 0, 0
  if image_size:
    c.data.image_size = image_size

"""The config schema every task shares, and big_vision-style ``arg`` parsing for config files.

Tools and sweeps can rely on these fields existing in every config under ``configs/``. A task's
own fields live in its package (``bf_jax/tasks/<task>/config.py``); the task registry adds each
task's block here when it is imported, so every config holds every block and a ``config.json``
written before a task's block moved reads the same.
"""

from __future__ import annotations

import math
from typing import Callable

import ml_collections

_TASKS: list[str] = []  # registered task names; the first is config.task's default
_BLOCKS: dict[str, Callable[[], ml_collections.ConfigDict]] = {}


def add_task(name: str, blocks: dict[str, Callable[[], ml_collections.ConfigDict]]) -> None:
  """Registers a task and its config blocks ``config.<block>`` (the task registry calls this)."""
  for block, defaults in blocks.items():
    if block in _BLOCKS and _BLOCKS[block] is not defaults:
      raise ValueError(f"config block {block!r} is registered twice")
    _BLOCKS[block] = defaults
  if name not in _TASKS:
    _TASKS.append(name)


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
  c.task = _TASKS[0] if _TASKS else ""  # a name of the registry (bf_jax/tasks/__init__.py)
  c.seed = 0
  c.batch_size = 128  # global, over all devices of all processes
  c.eval_batch_size = 128
  c.total_steps = 1000
  c.eval_every_steps = 500  # 0: only at the end
  c.log_every_steps = 50
  # Train steps per dispatch to the devices (a lax.scan over that many batches): fewer round
  # trips for small steps. Must divide total_steps and the log, eval and checkpoint intervals.
  c.steps_per_dispatch = 1
  c.ckpt = ml_collections.ConfigDict(dict(every_steps=500, keep=2))  # every_steps 0: end only
  # Fields a restart may change against the workdir's config.json, comma-separated, e.g.
  # "total_steps,eval_every_steps" (trainer/run_record.py); any other difference stops the run.
  c.resume_changes = ""
  # JAX's persistent compilation cache (trainer/compile_cache.py): a restarted run loads its
  # programs instead of compiling them. Programs go in a subfolder per jax version and CPU model;
  # "" compiles without. JAX_COMPILATION_CACHE_DIR, where set, wins.
  c.compile_cache_dir = "~/.cache/bf_jax/jax"

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
      # The three class groups results report: "shots" (many > 100, few < 20 training images)
      # or "rank:H,M" (the H largest classes head, the next M-H mid, the rest tail).
      class_groups="shots",
      augment="none",  # "none" | "crop_flip" | "inception" | "inception_jitter" | "two_view*"
      crop_min=0.08,  # smallest crop area fraction of the random resized crops
      sampler="instance",  # "instance" | "class_balanced" (decoupled classifier re-training)
      workers=-1,  # host worker processes; -1: one per core but one for encoded images, else 0
      image_size=0,  # 0: the dataset's default (as stored; 224 for ImageNet-style sets)
      data_dir="", train_split="train", eval_split="test",
      val_split="",  # TFDS split for best-on-val model selection; "" for none
      train_list="", val_list="", test_list="",  # split files (ImageNet-LT, Places-LT)
      mixup=0.0, cutmix=0.0, mix_switch_prob=0.5,  # on device (data/mixup.py); alpha 0: off
      label_smoothing=0.0))

  c.model = ml_collections.ConfigDict(dict(
      # "mlp" | "cnn" | "convnet" | a ResNet of models/resnet.py ARCHS | a ViT of models/vit.py
      name="mlp",
      width=128, depth=2,  # mlp / cnn / convnet only
      width_mult=1.0,  # ResNets: stage width multiplier (RIDE's reduced dims)
      dtype="float32",  # compute dtype; "bfloat16" on accelerators
      head="linear", head_scale=30.0,  # "cosine": scale * cos(feature, class weight)
      experts=0,  # > 0: RIDE with this many experts (cosine heads, ResNet model.name)
      freeze_bn=False,  # BatchNorm on running statistics in training (fine-tuned ResNets)
      patch=16, drop_path=0.0,  # ViTs (model.name deit_tiny | deit_small | deit_base)
      # ViTs, what the backward pass recomputes instead of keeping: "none", "streams" (the
      # blocks that run on both V2 streams) or "all" (every block).
      remat="none",
      # ViTs: each run of blocks between bf.insert_after points as one scan over stacked
      # parameters (compiles one block per run); the checkpoint layout differs (models/vit.py).
      scan_layers=False))

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

  # What the trained layer attends to and where gradients flow, at every evaluation
  # (bf_jax/trainer/probe_stats.py); changing it on resume is allowed: it does not touch training.
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
  for name, defaults in _BLOCKS.items():
    if name in c:
      raise ValueError(f"a task's config block {name!r} shadows a shared field")
    c[name] = defaults()
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

"""The data of one leave-one-domain-out run: DomainBed's splits and per-domain balanced batches.

Every domain ``d`` is split once per trial seed into ``in`` (80%) and ``out`` (20%) parts
(``domains.in_out_split``, seeded by (trial seed, d), so a domain's split does not depend on which
domain is held out). With test domain ``t``:

* training draws only from the ``in`` parts of the other domains, ``batch_per_domain`` images
  from each per step, concatenated in domain order: the BatchFormer then attends over the whole
  mixed batch (every training domain), as in SWAD + BatchFormer;
* model selection ("training-domain validation") reads the ``out`` parts of the training
  domains: accuracy and loss are averaged over those domains, each weighted equally;
* the reported test accuracy is on ``t``'s ``in`` part (SWAD/DomainBed's ``test_in``); its
  ``out`` part and the whole domain are reported too.
"""

from __future__ import annotations

import dataclasses
import sys

import grain
import numpy as np

from bf_jax.data import IMAGENET_MEAN, IMAGENET_STD
from bf_jax.data.pipeline import Preprocess
from bf_jax.data.split_files import Subset
from bf_jax.tasks.dg.domains import DG_DATASETS, domain_source, in_out_split, load_meta


class Concat:
  """Random-access concatenation of sources; global index = domain offset + local index."""

  def __init__(self, sources: list):
    self.sources = sources
    self.offsets = np.cumsum([0] + [len(s) for s in sources])

  def __len__(self) -> int:
    return int(self.offsets[-1])

  def __getitem__(self, i: int):
    d = int(np.searchsorted(self.offsets, i, side="right")) - 1
    return self.sources[d][int(i) - int(self.offsets[d])]


@dataclasses.dataclass
class DGData:
  """Sources of one (test domain, trial seed) run; ``train_groups`` index ``train_source``."""
  domains: list[str]  # every domain, in the dataset's order
  test_domain: str
  train_domains: list[str]
  classes: list[str]
  train_source: Concat  # every domain, whole: train_groups hold the in-split indices into it
  train_groups: list[np.ndarray]  # per training domain: its in-split, as train_source indices
  val_sources: dict[str, Subset]  # training domain -> its out split
  test_sources: dict[str, Subset]  # the "in" and "out" parts of the test domain
  train_class_counts: np.ndarray
  preprocess: Preprocess
  image_shape: tuple[int, int, int]

  @property
  def num_classes(self) -> int:
    return len(self.classes)


def split_seed(trial_seed: int, domain_index: int) -> list[int]:
  """The in/out split seed of a domain: fixed by the trial seed and the domain alone."""
  return [int(trial_seed), int(domain_index)]


def load_dg(data_cfg, dg_cfg, test_domain: str, trial_seed: int) -> DGData:
  """Opens the prepared dataset ``data_cfg.name`` under ``data_cfg.data_dir`` for one run."""
  meta = load_meta(data_cfg.name, data_cfg.data_dir)
  domains = list(meta["domains"])
  if test_domain not in domains:
    raise ValueError(f"dg.test_domains names {test_domain!r}, which is not a domain of "
                     f"{data_cfg.name}; its domains are {domains}.")
  sources = [domain_source(data_cfg.name, data_cfg.data_dir, d) for d in domains]
  if len(meta["classes"]) != data_cfg.num_classes:
    raise ValueError(f"data.num_classes={data_cfg.num_classes} but the prepared {data_cfg.name} "
                     f"has {len(meta['classes'])} classes; set data.num_classes="
                     f"{len(meta['classes'])}.")
  concat = Concat(sources)
  groups, val, test, train_labels = [], {}, {}, []
  for d, (name, source) in enumerate(zip(domains, sources)):
    in_idx, out_idx = in_out_split(len(source), dg_cfg.holdout_fraction,
                                   split_seed(trial_seed, d))
    if name == test_domain:
      test = {"in": Subset(source, in_idx, source.labels[in_idx]),
              "out": Subset(source, out_idx, source.labels[out_idx])}
      continue
    if len(in_idx) < dg_cfg.batch_per_domain or len(out_idx) == 0:
      raise ValueError(f"domain {name!r} of {data_cfg.name} has {len(source)} images: "
                       f"{len(in_idx)} to train on, {len(out_idx)} held out; it needs at least "
                       f"dg.batch_per_domain={dg_cfg.batch_per_domain} to train and 1 to hold "
                       f"out; lower dg.batch_per_domain or dg.holdout_fraction.")
    groups.append(in_idx + int(concat.offsets[d]))
    train_labels.append(source.labels[in_idx])
    val[name] = Subset(source, out_idx, source.labels[out_idx])
  counts = np.bincount(np.concatenate(train_labels), minlength=len(meta["classes"]))
  size = data_cfg.image_size
  preprocess = Preprocess(IMAGENET_MEAN, IMAGENET_STD, 255.0, data_cfg.augment, size,
                          eval_resize="squash")  # DomainBed's eval transform: Resize((S, S))
  return DGData(domains, test_domain, [d for d in domains if d != test_domain],
                list(meta["classes"]), concat, groups, val, test, counts, preprocess,
                (size, size, 3))  # prepare() stores RGB


def _stream_seed(seed: int, group: int) -> int:
  return int(np.random.SeedSequence([seed, 2, group]).generate_state(1)[0])


def balanced_index_batches(groups: list[np.ndarray], per_group: int,
                           seed: int) -> grain.MapDataset:
  """Global batch ``s`` -> ``per_group`` indices from each group, concatenated in group order.

  Each group is its own endless stream of seeded shuffled epochs (a domain's epoch ends when
  that domain is exhausted, independently of the others, as DomainBed's per-domain loaders), so
  batch ``s`` is a pure function of (groups, per_group, seed, s): resuming at step ``s`` reads
  the same batches an uninterrupted run would.
  """
  streams = [grain.MapDataset.range(len(g)).shuffle(seed=_stream_seed(seed, i)).repeat()
             .map(lambda j, g=g: g[j]).batch(per_group) for i, g in enumerate(groups)]

  def batch(step: int) -> np.ndarray:
    return np.concatenate([stream[step] for stream in streams])

  return grain.MapDataset.range(sys.maxsize // (per_group * 4)).map(batch)


def known_domains(name: str) -> tuple[str, ...]:
  """The registry's domains of a DG dataset (config checks run before any data is opened)."""
  return DG_DATASETS[name].domains

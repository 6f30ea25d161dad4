"""Long-tail subsets, the embedded digits split, and the per-process batch plumbing."""

import numpy as np
import pytest

from bf_jax.data import long_tail, pipeline
from bf_jax.data.digits import load_digits_lt
from bf_jax.data.sources import ArraySource


def test_cifar100_lt_class_counts_match_the_literature():
  if100 = np.array(long_tail.class_counts(100, 500, 100, "exp"))
  assert if100.sum() == 10847 and if100[0] == 500 and if100[-1] == 5
  groups = long_tail.class_groups(if100)
  assert [groups[g].sum() for g in ("many", "medium", "few")] == [35, 35, 30]
  assert sum(long_tail.class_counts(100, 500, 200, "exp")) == 9502
  step = long_tail.class_counts(10, 5000, 100, "step")
  assert step == [5000] * 5 + [50] * 5
  with pytest.raises(ValueError, match="profile='linear'"):
    long_tail.class_counts(10, 500, 10, "linear")


def test_rank_groups_split_classes_by_size_where_shot_groups_leave_one_empty():
  if100 = np.array(long_tail.class_counts(10, 6000, 100, "exp"))  # Fashion-MNIST-LT
  shots = long_tail.class_groups(if100)
  assert [shots[g].sum() for g in ("many", "medium", "few")] == [8, 2, 0]
  ranks = long_tail.class_groups(if100, "rank:3,7")
  assert list(ranks) == ["head", "mid", "tail"] == list(long_tail.group_names("rank:3,7"))
  assert [np.flatnonzero(ranks[g]).tolist() for g in ranks] == [[0, 1, 2], [3, 4, 5, 6],
                                                                [7, 8, 9]]
  # By size, not index; ties keep class order (a balanced set splits by index).
  shuffled = long_tail.class_groups(np.array([5, 50, 1, 9]), "rank:1,3")
  assert [np.flatnonzero(shuffled[g]).tolist() for g in shuffled] == [[1], [0, 3], [2]]
  balanced = long_tail.class_groups(np.full(10, 6000), "rank:3,7")
  assert np.flatnonzero(balanced["head"]).tolist() == [0, 1, 2]
  for bad in ("rank:7,3", "rank:3", "rank:0,4", "rank:3,10", "thirds", "rank:a,b"):
    with pytest.raises(ValueError, match=rf"data.class_groups='{bad}' is not 'shots'.*'rank:H,M' "
                                         rf"with 0 < H < M < 10 classes"):
      long_tail.class_groups(if100, bad)


def test_long_tail_indices_are_seeded_and_exact():
  labels = np.repeat(np.arange(5), 40)
  counts = long_tail.class_counts(5, 40, 10)
  a = long_tail.long_tail_indices(labels, counts, seed=1)
  np.testing.assert_array_equal(np.bincount(labels[a]), counts)
  np.testing.assert_array_equal(a, long_tail.long_tail_indices(labels, counts, seed=1))
  assert not np.array_equal(a, long_tail.long_tail_indices(labels, counts, seed=2))
  with pytest.raises(ValueError, match="class 0 has 40 examples but .* asks for 41"):
    long_tail.long_tail_indices(labels, [41, 1, 1, 1, 1], seed=0)


def test_digits_split_balanced_test_and_long_tailed_train():
  train, test, counts = load_digits_lt(50)
  np.testing.assert_array_equal(np.bincount(test.labels), [50] * 10)
  np.testing.assert_array_equal(np.bincount(train.labels, minlength=10), counts)
  assert counts[0] / counts[-1] >= 50 * 0.9 and counts == sorted(counts, reverse=True)
  assert train.images.shape[1:] == (8, 8, 1) and 0 <= train.images.min() and train.images.max() <= 1
  # Test images never leak into training (all 1,797 digits images are distinct).
  seen = {x.tobytes() for x in test.images}
  assert not any(x.tobytes() in seen for x in train.images)


def _source(n=23, shape=(4, 4, 1)):
  images = np.arange(n, dtype=np.float32)[:, None, None, None] * np.ones(shape, np.float32)
  return ArraySource(images, np.arange(n) % 3)


@pytest.mark.parametrize("processes", [1, 2, 3])
def test_eval_counts_every_example_once_over_processes(processes):
  src = _source()
  prep = pipeline.Preprocess((0.0,), (1.0,), 1.0)
  seen, n_batches = [], set()
  for p in range(processes):
    batches = list(pipeline.eval_batches(src, 6 * processes, prep, 3, p, processes))
    n_batches.add(len(batches))
    for b in batches:
      seen += b["image"][b["mask"] > 0, 0, 0, 0].astype(int).tolist()
  assert len(n_batches) == 1  # every process runs the same number of eval steps
  assert sorted(seen) == list(range(23))


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_train_batches_do_not_depend_on_process_count_and_resume_by_step(workers):
  src = _source(30, (6, 6, 1))
  prep = pipeline.Preprocess((0.0,), (1.0,), 1.0, augmentation="crop_flip")
  kw = dict(source=src, indices=np.arange(30), batch_size=8, preprocess=prep, num_classes=3,
            seed=5, workers=workers)
  whole = pipeline.train_batches(**kw, start_step=0, process_index=0, process_count=1)
  first = [next(whole) for _ in range(6)]  # crosses an epoch boundary (30 / 8)
  halves = [pipeline.train_batches(**kw, start_step=0, process_index=p, process_count=2)
            for p in range(2)]
  for step in range(6):
    joined = np.concatenate([next(h)["image"] for h in halves])
    np.testing.assert_array_equal(joined, first[step]["image"])
  resumed = pipeline.train_batches(**kw, start_step=4, process_index=0, process_count=1)
  np.testing.assert_array_equal(next(resumed)["label"], first[4]["label"])
  # Each epoch visits every example once before any repeats.
  plain = pipeline.train_batches(**{**kw, "preprocess": pipeline.Preprocess((0.0,), (1.0,), 1.0)},
                                 start_step=0, process_index=0, process_count=1)
  ids = np.concatenate([next(plain)["image"][:, 0, 0, 0] for _ in range(4)]).astype(int)
  assert sorted(ids[:30].tolist()) == list(range(30))


def test_small_uint8_sets_are_read_into_memory_in_the_order_asked(monkeypatch):
  from bf_jax.data import sources

  rng = np.random.default_rng(0)
  records = [{"image": rng.integers(0, 256, (4, 4, 3), np.uint8), "label": np.int64(i % 3)}
             for i in range(10)]
  kept = sources.in_memory(records, np.array([7, 2, 5]))
  np.testing.assert_array_equal(kept.images, [records[i]["image"] for i in (7, 2, 5)])
  assert kept.labels.tolist() == [1, 2, 2]
  mixed = records + [{"image": np.zeros((5, 4, 3), np.uint8), "label": 0}]
  assert sources.in_memory(mixed, np.arange(11)) is None  # several sizes: left as it is
  floats = [{"image": np.zeros((4, 4, 3), np.float32), "label": 0}]
  assert sources.in_memory(floats, np.arange(1)) is None
  monkeypatch.setattr(sources, "IN_MEMORY_MAX_BYTES", 2 * 48)
  assert sources.in_memory(records, np.arange(3)) is None  # 3 x 48 bytes: over the bound

"""CZSL folders (czsl layout) -> per-split array_record -> sources; the .t7 -> JSON converter."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import pickle
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from bf_jax.tasks.czsl import data
from bf_jax.tasks.czsl.metrics import Pairs

ROOT = pathlib.Path(__file__).parents[3]
SPLIT = data.DEFAULT_SPLIT
TRAIN = [("red", "ball"), ("red", "box"), ("blue", "ball"), ("green", "box")]
VAL = [("red", "ball"), ("blue", "box")]  # blue box unseen
TEST = [("green", "box"), ("green", "ball")]  # green ball unseen
# (set, attr, obj, kept): metadata order, sets interleaved; dropped ones have no image file.
INSTANCES = [
    ("train", "red", "ball", True), ("val", "red", "ball", True), ("test", "green", "ball", True),
    ("train", "NA", "ball", False),  # attr_na
    ("train", "red", "box", True), ("NA", "red", "ball", False),  # set
    ("val", "blue", "box", True), ("train", "blue", "box", False),  # pair_other_split (a val pair)
    ("train", "blue", "ball", True), ("test", "red", "cube", False),  # pair_unlisted
    ("train", "green", "box", True), ("test", "green", "box", True), ("train", "red", "ball", True),
    ("test", "green", "ball", True),
]
DROPPED = {"set": 1, "attr_na": 1, "pair_unlisted": 1, "pair_other_split": 1}


def _write_pairs(path: pathlib.Path, pairs) -> None:
  path.write_text("".join(f"{a} {o}\n" for a, o in pairs))


def make_dataset(root: pathlib.Path, seed: int = 0) -> dict[str, np.ndarray]:
  """Writes the tiny dataset; returns the RGB pixels of each kept image by relative path."""
  rng = np.random.default_rng(seed)
  (root / SPLIT).mkdir(parents=True)
  for name, pairs in (("train", TRAIN), ("val", VAL), ("test", TEST)):
    _write_pairs(root / SPLIT / f"{name}_pairs.txt", pairs)
  records, pixels = [], {}
  for i, (s, a, o, kept) in enumerate(INSTANCES):
    rel = f"{a}_{o}/img {i}.png"  # a space, as some dataset file names
    records.append({"image": rel, "attr": a, "obj": o, "set": s})
    if kept:
      (root / "images" / f"{a}_{o}").mkdir(parents=True, exist_ok=True)
      pixels[rel] = rng.integers(0, 256, (int(rng.integers(5, 10)), int(rng.integers(5, 10)), 3),
                                 np.uint8)
      Image.fromarray(pixels[rel]).save(root / "images" / rel, format="PNG")
  (root / f"metadata_{SPLIT}.json").write_text(json.dumps(records))
  return pixels


def _kept(split: str) -> list[tuple[str, str, str]]:
  return [(f"{a}_{o}/img {i}.png", a, o) for i, (s, a, o, k) in enumerate(INSTANCES)
          if k and s == split]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  """(data_dir, pixels by relative path, meta, log lines) of the dataset prepared as PNG."""
  tmp = tmp_path_factory.mktemp("czsl")
  pixels = make_dataset(tmp / "mit-states")
  lines = []
  meta = data.prepare("mit_states", tmp / "mit-states", tmp / "out", image_format="png",
                      log=lines.append)
  return tmp / "out", pixels, meta, lines


def test_labels_are_pair_indices_in_metadata_order(prepared):
  out, _, _, _ = prepared
  pairs = Pairs.from_splits(TRAIN, VAL, TEST)
  for s in data.SPLITS:
    expected = pairs.index([(a, o) for _, a, o in _kept(s)])
    labels = np.load(out / "mit_states" / f"{s}.labels.npy")
    assert labels.dtype == np.int64 and labels.tolist() == expected.tolist()


def test_meta_counts_dropped_and_split_pairs(prepared):
  _, _, meta, lines = prepared
  assert meta["counts"] == {s: len(_kept(s)) for s in data.SPLITS} == {"train": 5, "val": 2,
                                                                         "test": 3}
  assert meta["dropped"] == DROPPED
  assert any("pair_other_split=1" in line for line in lines)
  assert meta["attrs"] == ["blue", "green", "red"] and meta["objs"] == ["ball", "box"]
  assert meta["pairs"] == [[a, o] for a in ("blue", "green", "red") for o in ("ball", "box")]
  assert meta["split_pairs"] == {"train": [list(p) for p in TRAIN], "val": [list(p) for p in VAL],
                                 "test": [list(p) for p in TEST]}
  assert meta["image_format"] == "png" and meta["image_size"] is None
  on_disk = data.load_meta("mit_states", prepared[0])
  assert on_disk == json.loads(json.dumps(meta))
  pairs = data.pairs_from_meta(on_disk)
  seen = dict(zip(map(tuple, meta["pairs"]), pairs.seen_mask))
  assert [seen[p] for p in VAL] == [True, False] and [seen[p] for p in TEST] == [True, False]


def test_source_round_trips_png_pixels_and_pickles(prepared):
  out, pixels, _, _ = prepared
  czsl = data.load_czsl("mit_states", out)
  assert set(czsl.sources) == set(data.SPLITS)
  for s, source in czsl.sources.items():
    assert len(source) == len(_kept(s))
    for i, (rel, a, o) in enumerate(_kept(s)):
      item = source[i]
      assert source.file_name(i) == rel
      assert item["label"] == czsl.pairs.index([(a, o)])[0] == source.labels[i]
      np.testing.assert_array_equal(item["image"], pixels[rel])
  src = czsl.sources["val"]
  again = pickle.loads(pickle.dumps(src))
  np.testing.assert_array_equal(again[-1]["image"], src[-1]["image"])
  with pytest.raises(IndexError):
    src[len(src)]
  # train images per pair: red ball x2, red box, blue ball, green box; unseen pairs 0.
  expected = dict.fromkeys(czsl.pairs.pairs, 0) | {("red", "ball"): 2, ("red", "box"): 1,
                                                   ("blue", "ball"): 1, ("green", "box"): 1}
  assert czsl.train_pair_counts.tolist() == [expected[p] for p in czsl.pairs.pairs]


def test_default_jpeg_and_resize(tmp_path):
  make_dataset(tmp_path / "ds", seed=1)
  meta = data.prepare("cgqa", tmp_path / "ds", tmp_path / "out", image_size=4)
  assert meta["image_format"] == "jpeg" and meta["image_size"] == 4
  source = data.CZSLSource("cgqa", tmp_path / "out", "test")
  image = source[0]["image"]
  assert image.dtype == np.uint8 and image.ndim == 3 and min(image.shape[:2]) == 4


def test_missing_pairs_file(tmp_path):
  make_dataset(tmp_path / "ds")
  (tmp_path / "ds" / SPLIT / "val_pairs.txt").unlink()
  with pytest.raises(FileNotFoundError, match="val_pairs.txt.*download the dataset's "
                                              "compositional split"):
    data.prepare("mit_states", tmp_path / "ds", tmp_path / "out")


def test_malformed_pair_line(tmp_path):
  make_dataset(tmp_path / "ds")
  path = tmp_path / "ds" / SPLIT / "test_pairs.txt"
  path.write_text("green box\n\ngreen big ball\n")
  with pytest.raises(ValueError, match=r"test_pairs.txt line 3.*'green big ball'"):
    data.prepare("mit_states", tmp_path / "ds", tmp_path / "out")


def test_read_pairs_tolerates_blank_lines_and_crlf(tmp_path):
  path = tmp_path / "p.txt"
  path.write_bytes(b"red ball\r\n\r\nblue box\r\n")
  assert data.read_pairs(path) == [("red", "ball"), ("blue", "box")]


def test_missing_image_is_named_before_writing(tmp_path):
  make_dataset(tmp_path / "ds")
  (tmp_path / "ds" / "images" / "blue_box" / "img 6.png").unlink()
  with pytest.raises(FileNotFoundError, match=r"1 of 10 listed images are missing.*img 6.png"):
    data.prepare("mit_states", tmp_path / "ds", tmp_path / "out")
  assert not (tmp_path / "out" / "mit_states").exists()


def test_t7_only_metadata_prints_converter_command(tmp_path):
  make_dataset(tmp_path / "ds")
  js = tmp_path / "ds" / f"metadata_{SPLIT}.json"
  shutil.move(js, js.with_suffix(".t7"))
  with pytest.raises(FileNotFoundError) as e:
    data.prepare("mit_states", tmp_path / "ds", tmp_path / "out")
  assert f"python tools/czsl_metadata_to_json.py {js.with_suffix('.t7')}" in str(e.value)
  js.with_suffix(".t7").unlink()
  with pytest.raises(FileNotFoundError, match="neither .* download"):
    data.prepare("mit_states", tmp_path / "ds", tmp_path / "out")


def test_load_meta_unprepared_prints_prepare_command(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"python -m bf_jax.tasks.czsl.data prepare --dataset "
                                              r"ut_zappos --root data/ut-zap50k"):
    data.load_meta("ut_zappos", tmp_path)
  with pytest.raises(FileNotFoundError, match="unknown"):
    data.load_meta("nope", tmp_path)


def _converter():
  spec = importlib.util.spec_from_file_location("czsl_metadata_to_json",
                                                ROOT / "tools" / "czsl_metadata_to_json.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_converter_pure_function():
  conv = _converter()
  got = conv.to_json_records([{"image": "a_b/1.jpg", "attr": "a", "obj": "b", "set": "train",
                               "extra": 3},
                              {"image": b"x_y/2.jpg", "attr": "NA", "obj": "y", "set": "NA"}])
  assert got == [{"image": "a_b/1.jpg", "attr": "a", "obj": "b", "set": "train"},
                 {"image": "x_y/2.jpg", "attr": "NA", "obj": "y", "set": "NA"}]
  assert json.loads(json.dumps(got)) == got
  with pytest.raises(ValueError, match=r"record 1 lacks key\(s\) \['set'\]"):
    conv.to_json_records([got[0], {"image": "i", "attr": "a", "obj": "o"}])
  with pytest.raises(ValueError, match="list of dicts"):
    conv.to_json_records({"image": "i"})
  assert conv.json_path("/d/metadata_x.t7") == pathlib.Path("/d/metadata_x.json")


def test_cli_prints_counts(tmp_path, capsys):
  make_dataset(tmp_path / "ds")
  meta = data.main(["prepare", "--dataset", "ut_zappos", "--root", str(tmp_path / "ds"),
                    "--out", str(tmp_path / "out"), "--format", "png"])
  text = capsys.readouterr().out
  assert meta["counts"]["train"] == 5
  assert "3 attrs, 2 objs, 6 pairs" in text
  assert "train        5 images      4 pairs" in text
  assert "val          2 images      2 pairs (1 seen, 1 unseen)" in text
  assert "test         3 images      2 pairs (1 seen, 1 unseen)" in text
  assert "dropped 4 instances" in text


def test_converter_main_with_a_stub_torch(tmp_path, monkeypatch, capsys):
  """The command end to end: torch.load is stubbed (torch is not a dependency), then absent."""
  conv = _converter()
  t7 = tmp_path / f"metadata_{SPLIT}.t7"
  t7.write_bytes(b"not read by the stub")
  records = [{"image": "a_b/1.jpg", "attr": "a", "obj": "b", "set": "test"}]
  calls = []

  class StubTorch:
    @staticmethod
    def load(path, map_location=None, weights_only=None):
      calls.append(weights_only)
      return records

  monkeypatch.setitem(sys.modules, "torch", StubTorch)
  out = conv.main([str(t7)])
  assert out == t7.with_suffix(".json") and json.loads(out.read_text()) == records
  assert calls == [True] and "wrote 1 records" in capsys.readouterr().out
  monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
  with pytest.raises(SystemExit, match="needs PyTorch"):
    conv.main([str(t7)])
  with pytest.raises(SystemExit, match="does not exist"):
    conv.main([str(tmp_path / "missing.t7")])


def test_colored_digits_pairs_and_images(tmp_path):
  from bf_jax.tasks.czsl import digits

  pairs = digits.split_pairs()
  seen = set(pairs["train"])
  unseen_val = [p for p in pairs["val"] if p not in seen]
  unseen_test = [p for p in pairs["test"] if p not in seen]
  assert (len(seen), len(unseen_val), len(unseen_test)) == (28, 6, 6)
  assert not set(unseen_val) & set(unseen_test)
  assert {a for a, _ in seen} == set(digits.COLORS) and {o for _, o in seen} == set(digits.DIGITS)
  counts = digits.write_folders(tmp_path)
  records = json.loads((tmp_path / f"metadata_{SPLIT}.json").read_text())
  assert sum(counts.values()) == len(records)
  for r in records[:50]:  # each image is its digit, tinted with its colour
    assert (r["attr"], r["obj"]) in set(pairs[r["set"]])
    pixels = np.asarray(Image.open(tmp_path / "images" / r["image"]), np.float32)
    channel_means = pixels.reshape(-1, 3).mean(0)
    strongest = {"red": 0, "green": 1, "blue": 2, "yellow": 0}[r["attr"]]
    assert channel_means.argmax() == strongest

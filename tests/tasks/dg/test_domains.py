"""Domain-generalization folders -> per-domain array_record -> random-access sources."""

import json
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from bf_jax.tasks.dg import domains
from bf_jax.tasks.dg.domains import DomainSetInfo

ROOT = pathlib.Path(__file__).parents[3]
DOMAINS = ("d0", "d1", "d 2")  # a space, as OfficeHome's "Real World"
CLASSES = ("dog", "Cat", "elephant")  # sorted (Python order): Cat, dog, elephant
INFO = DomainSetInfo(DOMAINS, len(CLASSES))
# (file name, kind): lossless kinds are checked pixel for pixel against the generating array.
FILES = (("b.png", "rgb"), ("a.PNG", "gray"), ("c.jpg", "jpeg"), ("D.bmp", "rgb"),
         ("e.png", "rgba"))


def _write(path: pathlib.Path, kind: str, rng: np.random.Generator) -> np.ndarray:
  """Writes a random image of a random size; returns its expected RGB pixels."""
  h, w = int(rng.integers(5, 14)), int(rng.integers(5, 14))
  if kind == "gray":
    a = rng.integers(0, 256, (h, w), np.uint8)
    Image.fromarray(a, "L").save(path, format="PNG")
    return np.repeat(a[..., None], 3, axis=-1)
  if kind == "smooth":  # a photo-like gradient, where JPEG is meant to be close
    y, x = np.mgrid[:h, :w]
    a = np.stack([x * 255 // w, y * 255 // h, (x + y) * 127 // (h + w) + 60], -1).astype(np.uint8)
    Image.fromarray(a).save(path, format="PNG")
    return a
  if kind == "rgba":
    a = rng.integers(0, 256, (h, w, 4), np.uint8)
    Image.fromarray(a, "RGBA").save(path, format="PNG")
    return a[..., :3]
  a = rng.integers(0, 256, (h, w, 3), np.uint8)
  if kind == "jpeg":
    Image.fromarray(a).save(path, format="JPEG")
    with Image.open(path) as im:  # lossy: the stored pixels are what Pillow decodes
      return np.asarray(im.convert("RGB"))
  Image.fromarray(a).save(path, format="BMP" if path.suffix == ".bmp" else "PNG")
  return a


def make_tree(root: pathlib.Path, seed: int = 0, domain_names=DOMAINS, classes=CLASSES,
              files=FILES) -> dict:
  """``root/<domain>/<class>/<files>`` plus clutter that must be ignored; returns
  {domain: {(class, file name): expected pixels}}."""
  rng = np.random.default_rng(seed)
  expected = {}
  (root / "splits").mkdir(parents=True)  # a folder that is no domain
  (root / "notes.txt").write_text("not a domain")
  for d in domain_names:
    expected[d] = {}
    (root / d / ".ipynb_checkpoints").mkdir(parents=True)  # hidden: no class
    (root / d / "readme.txt").write_text("a file, not a class")
    for c in classes:
      (root / d / c).mkdir()
      (root / d / c / ".DS_Store").write_bytes(b"\0garbage")  # hidden: not an image
      for j in rng.permutation(len(files)):  # creation order must not matter
        name, kind = files[j]
        expected[d][(c, name)] = _write(root / d / c / name, kind, rng)
  return expected


def _order(expected_domain: dict) -> list[tuple[str, str]]:
  """The documented record order: sorted class, then sorted file name."""
  return sorted(expected_domain)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  root = tmp_path_factory.mktemp("raw") / "tiny"
  expected = make_tree(root)
  out = tmp_path_factory.mktemp("out")
  meta = domains.prepare("tiny", root, out, info=INFO)
  return root, out, expected, meta


def _records(out: pathlib.Path, name: str, domain: str) -> list[bytes]:
  from array_record.python import array_record_module
  reader = array_record_module.ArrayRecordReader(str(out / name / f"{domain}.array_record"))
  try:
    return list(reader.read_all())
  finally:
    reader.close()


def test_registry_matches_the_conventional_domains():
  reg = domains.DG_DATASETS
  assert reg["pacs"] == DomainSetInfo(("art_painting", "cartoon", "photo", "sketch"), 7)
  assert reg["vlcs"] == DomainSetInfo(("Caltech101", "LabelMe", "SUN09", "VOC2007"), 5)
  assert reg["office_home"] == DomainSetInfo(("Art", "Clipart", "Product", "Real World"), 65)
  assert reg["terra_incognita"] == DomainSetInfo(
      ("location_38", "location_43", "location_46", "location_100"), 10)
  assert reg["domain_net"] == DomainSetInfo(
      ("clipart", "infograph", "painting", "quickdraw", "real", "sketch"), 345)


def test_round_trip_is_lossless_in_sorted_order(prepared):
  _, out, expected, meta = prepared
  classes = sorted(CLASSES)
  assert meta["classes"] == classes and meta["domains"] == list(DOMAINS)
  assert meta["image_size"] is None and meta["image_format"] == "png"
  assert json.loads((out / "tiny" / "meta.json").read_text()) == meta
  for d in DOMAINS:
    order = _order(expected[d])
    src = domains.domain_source("tiny", out, d)
    assert len(src) == len(order) == meta["counts"][d]
    assert meta["class_counts"][d] == [sum(c == k for c, _ in order) for k in classes]
    assert src.labels.dtype == np.int64
    for i, (c, f) in enumerate(order):
      record = src[i]
      assert record["label"] == classes.index(c) == src.labels[i]
      assert src.file_name(i) == f"{c}/{f}"
      assert record["image"].dtype == np.uint8 and record["image"].shape[-1] == 3
      np.testing.assert_array_equal(record["image"], expected[d][(c, f)], err_msg=f"{d}/{c}/{f}")
    np.testing.assert_array_equal(src.labels, [src[i]["label"] for i in range(len(src))])
    np.testing.assert_array_equal(src[-1]["image"], src[len(src) - 1]["image"])
    with pytest.raises(IndexError, match=str(len(src))):
      src[len(src)]


def test_source_pickles_for_worker_processes(prepared):
  _, out, _, _ = prepared
  src = domains.domain_source("tiny", out, "d 2")
  copy = pickle.loads(pickle.dumps(src))
  np.testing.assert_array_equal(copy.labels, src.labels)
  for i in (0, len(src) - 1):
    np.testing.assert_array_equal(copy[i]["image"], src[i]["image"])


def test_prepare_is_deterministic(prepared, tmp_path):
  root, out, _, meta = prepared
  again = domains.prepare("tiny", root, tmp_path, info=INFO)
  assert again == meta
  for d in DOMAINS:
    assert _records(tmp_path, "tiny", d) == _records(out, "tiny", d)


def test_resize_sets_the_shorter_side_and_keeps_aspect(prepared, tmp_path):
  root, _, expected, _ = prepared
  size = 7
  meta = domains.prepare("tiny", root, tmp_path, image_size=size, info=INFO)
  assert meta["image_size"] == size
  for d in DOMAINS:
    src = domains.domain_source("tiny", tmp_path, d)
    for i, key in enumerate(_order(expected[d])):
      h0, w0 = expected[d][key].shape[:2]
      h, w = src[i]["image"].shape[:2]
      assert min(h, w) == size, (key, (h0, w0), (h, w))
      if h0 == w0:
        assert h == w
      else:  # the longer side scales by the same factor, to the nearest pixel
        assert (h > w) == (h0 > w0)
        assert abs(max(h, w) - max(h0, w0) * size / min(h0, w0)) <= 0.5


def test_jpeg_format_is_close(tmp_path):
  expected = make_tree(tmp_path / "raw", files=(("s.png", "smooth"), ("t.png", "smooth")))
  meta = domains.prepare("tiny", tmp_path / "raw", tmp_path, image_format="jpeg", info=INFO)
  assert meta["image_format"] == "jpeg"
  src = domains.domain_source("tiny", tmp_path, "d0")
  for i, key in enumerate(_order(expected["d0"])):
    image, want = src[i]["image"], expected["d0"][key]
    assert image.shape == want.shape
    diff = np.abs(image.astype(int) - want.astype(int)).mean()
    assert diff < 4, (key, diff)  # quality 95 on a smooth image; tens if the colors were off


def test_registered_dataset_and_cli_match_the_function(tmp_path, capsys):
  pacs = domains.DG_DATASETS["pacs"]
  classes = [f"class{k}" for k in range(pacs.num_classes)]
  expected = make_tree(tmp_path / "PACS", 1, pacs.domains, classes, (("x.png", "rgb"),))
  meta = domains.prepare("pacs", tmp_path / "PACS", tmp_path / "fn", image_size=9)
  capsys.readouterr()
  cli = domains.main(["prepare", "--dataset", "pacs", "--root", str(tmp_path / "PACS"),
                      "--out", str(tmp_path / "cli"), "--image_size", "9"])
  printed = capsys.readouterr().out
  assert cli == meta and meta["domains"] == list(pacs.domains) and meta["classes"] == classes
  for d in pacs.domains:
    assert _records(tmp_path / "cli", "pacs", d) == _records(tmp_path / "fn", "pacs", d)
    assert meta["counts"][d] == len(expected[d])
    assert any(d in line and str(len(expected[d])) in line for line in printed.splitlines())


def test_module_command_prepares(tmp_path):
  """The documented ``python -m bf_jax.tasks.dg.domains prepare`` runs as a program."""
  pacs = domains.DG_DATASETS["pacs"]
  make_tree(tmp_path / "PACS", 2, pacs.domains, [f"c{k}" for k in range(7)], (("x.png", "rgb"),))
  run = subprocess.run([sys.executable, "-m", "bf_jax.tasks.dg.domains", "prepare", "--dataset",
                        "pacs", "--root", str(tmp_path / "PACS"), "--out", str(tmp_path / "o")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert run.returncode == 0, run.stderr
  assert "photo" in run.stdout and (tmp_path / "o" / "pacs" / "meta.json").is_file()
  assert len(domains.domain_source("pacs", tmp_path / "o", "sketch")) == 7


# ------------------------------------------------------------------------------------ errors


def test_prepare_errors_name_the_problem(tmp_path):
  with pytest.raises(ValueError, match=r"'nope'.*domain_net.*pacs"):
    domains.prepare("nope", tmp_path, tmp_path / "out")
  with pytest.raises(FileNotFoundError, match="missing_root"):
    domains.prepare("tiny", tmp_path / "missing_root", tmp_path / "out", info=INFO)

  root = tmp_path / "raw"
  make_tree(root, files=(("x.png", "rgb"),))
  with pytest.raises(ValueError, match="image_size"):
    domains.prepare("tiny", root, tmp_path / "out", image_size=0, info=INFO)
  with pytest.raises(ValueError, match="gif"):
    domains.prepare("tiny", root, tmp_path / "out", image_format="gif", info=INFO)
  with pytest.raises(ValueError, match=r"tiny has 4 classes.*hold 3 class folders"):
    domains.prepare("tiny", root, tmp_path / "out", info=DomainSetInfo(DOMAINS, 4))

  (root / "d1").rename(root / "D1")
  with pytest.raises(FileNotFoundError, match=r"\['d1'\].*found.*'D1'.*expected.*'d0', 'd1'"):
    domains.prepare("tiny", root, tmp_path / "out", info=INFO)
  (root / "D1").rename(root / "d1")

  (root / "d1" / "dog").rename(root / "d1" / "wolf")
  with pytest.raises(ValueError, match=r"'d1'.*lacks \['dog'\].*extra \['wolf'\]"):
    domains.prepare("tiny", root, tmp_path / "out", info=INFO)
  (root / "d1" / "wolf").rename(root / "d1" / "dog")

  (root / "d 2" / "Cat" / "x.png").unlink()  # only the hidden .DS_Store is left
  with pytest.raises(ValueError, match=r"d 2/Cat.*no images"):
    domains.prepare("tiny", root, tmp_path / "out", info=INFO)
  _write(root / "d 2" / "Cat" / "x.png", "rgb", np.random.default_rng(0))

  (root / "d0" / "dog" / "nested").mkdir()
  with pytest.raises(ValueError, match=r"d0/dog.*nested"):
    domains.prepare("tiny", root, tmp_path / "out", info=INFO)
  (root / "d0" / "dog" / "nested").rmdir()


def test_unreadable_image_fails_and_leaves_no_prepared_folder(tmp_path):
  root = tmp_path / "raw"
  make_tree(root, files=(("x.png", "rgb"),))
  out = tmp_path / "out"
  domains.prepare("tiny", root, out, info=INFO)
  assert len(domains.domain_source("tiny", out, "d1")) == len(CLASSES)
  bad = root / "d1" / "elephant" / "y.jpg"
  bad.write_bytes(b"this is not a jpeg")
  with pytest.raises(ValueError, match=r"d1/elephant/y\.jpg.*UnidentifiedImageError"):
    domains.prepare("tiny", root, out, info=INFO)
  # A failed re-prepare must not leave a folder that reads as prepared (stale or partial).
  with pytest.raises(FileNotFoundError, match="not prepared"):
    domains.domain_source("tiny", out, "d0")
  assert not list((out / "tiny").glob("*.tmp*"))
  Image.new("RGB", (12, 10)).save(bad, format="PNG")  # a PNG named .jpg: Pillow reads content
  truncated = root / "d0" / "dog" / "z.png"
  truncated.write_bytes(bad.read_bytes()[:40])
  with pytest.raises(ValueError, match=r"d0/dog/z\.png"):
    domains.prepare("tiny", root, out, info=INFO)
  truncated.unlink()
  assert domains.prepare("tiny", root, out, info=INFO)["counts"]["d1"] == len(CLASSES) + 1


def test_source_errors(prepared, tmp_path):
  _, out, _, _ = prepared
  with pytest.raises(FileNotFoundError) as e:
    domains.domain_source("pacs", tmp_path / "dg", "photo")
  command = e.value.args[0].splitlines()[1].strip()
  assert command.startswith("python -m bf_jax.tasks.dg.domains prepare --dataset pacs --root ")
  assert command.endswith(f"--out {tmp_path / 'dg'}")
  assert "art_painting/" in str(e.value)
  with pytest.raises(FileNotFoundError, match=r"'nope'.*domain_net.*pacs"):
    domains.domain_source("nope", tmp_path, "x")
  with pytest.raises(ValueError, match=r"'d3'.*\['d0', 'd1', 'd 2'\]"):
    domains.domain_source("tiny", out, "d3")


def test_cli_prints_usage_and_rejects_unknown_dataset(capsys):
  with pytest.raises(SystemExit):
    domains.main(["prepare", "--dataset", "nope", "--root", "r", "--out", "o"])
  assert "pacs" in capsys.readouterr().err
  assert "python -m bf_jax.tasks.dg.domains prepare --dataset pacs" in domains.__doc__


# ----------------------------------------------------------------------------- in/out split


@pytest.mark.parametrize("n,fraction", [(0, 0.2), (1, 0.2), (7, 0.2), (100, 0.2), (101, 0.35),
                                        (50, 0.0), (9, 0.99)])
def test_in_out_split_partitions(n, fraction):
  inn, out = domains.in_out_split(n, fraction, seed=3)
  assert len(out) == int(n * fraction) and len(inn) == n - len(out)
  assert not set(inn.tolist()) & set(out.tolist())
  assert sorted(inn.tolist() + out.tolist()) == list(range(n))
  again = domains.in_out_split(n, fraction, seed=3)
  np.testing.assert_array_equal(again[0], inn)
  np.testing.assert_array_equal(again[1], out)


def test_in_out_split_is_random_and_seeded():
  outs = [domains.in_out_split(200, 0.2, seed=s)[1] for s in range(3)]
  assert not np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[1], outs[2])
  assert not np.array_equal(outs[0], np.arange(40))  # not simply the first examples
  assert outs[0].max() > 100  # drawn from the whole range
  for bad in (-0.1, 1.0, 1.5):
    with pytest.raises(ValueError, match="holdout_fraction"):
      domains.in_out_split(10, bad)
  with pytest.raises(ValueError, match="num_examples"):
    domains.in_out_split(-1)

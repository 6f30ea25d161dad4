"""The catalogue of bad input: each stops with a clear error naming the value and the fix, before
anything in the workdir changes."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, load_config

from bf_jax.data import pipeline
from bf_jax.data.sources import ArraySource, read_labels
from bf_jax.data.split_files import read_split_file
from bf_jax.tasks import classify


def _smoke():
  return load_config("digits_lt", "smoke")


@pytest.mark.parametrize("field,value,match", [
    ("batch_size", 60, r"batch_size=60 is not divisible by the 8 devices .* e\.g\. 56 or 64"),
    ("data.name", "imagenet_x", r"data\.name='imagenet_x' must be one of"),
    ("loss.name", "focal", r"loss\.name='focal' must be one of"),
    ("optim.lr", -0.1, r"optim\.lr=-0\.1 must be a finite number > 0"),
    ("optim.lr", 0.0, r"optim\.lr=0\.0 must be a finite number > 0"),
    ("bf.scope", "gloabl", r"bf\.scope='gloabl' must be 'global', 'device', or a group size"),
    ("bf.mode", "both", r"bf\.mode='both' must be one of"),
    ("total_steps", 0, r"total_steps=0 must be an integer >= 1"),
    ("model.name", "vgg", r"model\.name='vgg' must be one of"),
    ("data.num_classes", 100, r"data\.num_classes=100 but digits has 10 classes"),
    ("ckpt.keep", 0, r"ckpt\.keep=0 must be an integer >= 1"),
    ("eval_batch_size", 0, r"eval_batch_size=0 must be an integer >= 1"),
    ("bf.dropout", 1.5, r"bf\.dropout=1\.5 must be a finite number >= 0\.0 and <= 1\.0"),
    ("data.imbalance", 0.5, r"data\.imbalance=0\.5 must be a finite number >= 1\.0"),
    ("optim.warmup_steps", 30, r"optim\.warmup_steps=30 must be below total_steps=30"),
    ("optim.skip_nonfinite", -1, r"optim\.skip_nonfinite=-1 must be an integer >= 0"),
    ("optim.lr", float("inf"), r"optim\.lr=inf must be a finite number > 0"),
    ("optim.lr", float("nan"), r"optim\.lr=nan must be a finite number > 0"),
    ("optim.grad_clip", float("inf"), r"optim\.grad_clip=inf must be a finite number >= 0"),
    ("bf.num_heads", 3, r"config\.bf\.num_heads=3 does not divide the backbone's feature width "
                        r"128; set --config\.bf\.num_heads to one of \[1, 2, 4, 8, 16, 32, 64\], "
                        r"or change the width \(--config\.model\.width"),
    ("resume_changes", "total_step", r"resume_changes='total_step' names \['total_step'\], which "
                                     r"are not config fields"),
    ("seed", 2**32, r"config\.seed=4294967296 must be an integer >= 0 and <= 4294967295"),
])
def test_bad_config_values(tmp_path, field, value, match):
  config = _smoke()
  group, _, leaf = field.rpartition(".")
  setattr(config[group] if group else config, leaf, value)
  with pytest.raises(ValueError, match=match):
    classify.run(config, tmp_path)
  assert not list(tmp_path.iterdir())  # failed before writing anything into the workdir


def _listing(root):
  return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                for p in root.rglob("*") if p.is_file())


def test_bad_config_on_an_existing_run_changes_nothing(tmp_path):
  config = _smoke()
  config.total_steps, config.eval_every_steps, config.optim.warmup_steps = 2, 0, 0
  classify.run(config, tmp_path)
  before = _listing(tmp_path)
  config.optim.lr = -1.0
  with pytest.raises(ValueError, match=r"optim\.lr=-1\.0"):
    classify.run(config, tmp_path)
  assert _listing(tmp_path) == before


def test_wrong_types_are_refused():
  config = _smoke()
  with pytest.raises(TypeError, match="Could not override field 'batch_size'"):
    config.batch_size = "64"  # ml_collections keeps each field's type
  config.optim.lr = 1  # an int where a float is expected is fine
  with pytest.raises(TypeError):
    config.bf.enabled = "yes"


def test_batch_larger_than_training_set(tmp_path):
  config = _smoke()
  config.batch_size = 512
  with pytest.raises(ValueError, match=r"342 examples, fewer than one global batch"):
    classify.run(config, tmp_path)


def test_group_scope_not_dividing_batch(tmp_path):
  config = _smoke()
  config.bf.scope = "5"
  with pytest.raises(ValueError, match=r"group_size=5 does not divide the global batch of 64"):
    classify.run(config, tmp_path)


def test_labels_out_of_range_in_the_data(tmp_path, monkeypatch):
  images = np.zeros((100, 8, 8, 1), np.float32)
  labels = np.arange(100) % 10
  labels[37] = 12
  with pytest.raises(ValueError, match=r"label 12 at example 37 is outside \[0, 10\)"):
    read_labels(ArraySource(images, labels), 10, "train split")
  # The same data reaching the pipeline stops training at the batch that holds it.
  prep = pipeline.Preprocess((0.0,), (1.0,), 1.0)
  batches = pipeline.train_batches(ArraySource(images, labels), np.arange(100), 100, prep, 10,
                                   seed=0, start_step=0, process_index=0, process_count=1)
  with pytest.raises(ValueError, match=r"label 12 of training example 37 is outside \[0, 10\)"):
    next(batches)
  evals = pipeline.eval_batches(ArraySource(images, labels), 64, prep, 10, 0, 1)
  with pytest.raises(ValueError, match=r"label 12 of eval example 37"):
    list(evals)


def test_missing_tfds_dataset_names_the_preparation_command(tmp_path):
  config = load_config("cifar_lt", "smoke")
  config.data.data_dir = str(tmp_path / "no_data_here")
  with pytest.raises(FileNotFoundError, match=r"tfds build cifar100 --file_format=array_record"):
    classify.run(config, tmp_path / "run")


def test_missing_data_directory(tmp_path):
  config = load_config("cifar_lt", "smoke")
  config.data.data_dir = str(tmp_path / "not_there")
  with pytest.raises(FileNotFoundError, match=r"data_dir='.*not_there' does not exist; point "
                                              r"--config\.data\.data_dir to the folder"):
    classify.run(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_unreadable_split_files(tmp_path):
  binary = tmp_path / "train.txt"
  binary.write_bytes(bytes(range(256)) * 4)  # e.g. a download that saved an archive
  with pytest.raises(ValueError, match=r"train\.txt cannot be read as a text list"):
    read_split_file(str(binary))
  with pytest.raises(FileNotFoundError, match=r"is a directory, not a list"):
    read_split_file(str(tmp_path))
  garbled = tmp_path / "val.txt"
  garbled.write_text("train/a.JPEG 0\ntrain/b.JPEG\n")
  with pytest.raises(ValueError, match=r"line 2 of .*val\.txt is 'train/b\.JPEG'"):
    read_split_file(str(garbled))


def _cli(tmp_path, *args, workdir=None, config="configs/digits_lt.py:smoke", env=None
         ) -> subprocess.Popen:
  env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu", **(env or {})}
  workdir = tmp_path / "run" if workdir is None else workdir
  return subprocess.Popen([sys.executable, "-m", "bf_jax.main", "--config", config,
                           f"--workdir={workdir}", *args],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


@pytest.fixture
def busy_port():
  with socket.socket() as s:
    s.bind(("", 0))
    s.listen()
    yield s.getsockname()[1]


@pytest.mark.slow  # processes of the command line
def test_command_line_errors_end_in_one_message(tmp_path, busy_port):
  """Exit 2, the value and the fix on stderr, no traceback, nothing written (issue 17, item 5)."""
  a_file = tmp_path / "a_file"
  a_file.write_text("the user's")
  trained = tmp_path / "trained"  # a workdir with a checkpoint, trained at another lr (item 2)
  config = _smoke()
  config.total_steps, config.eval_every_steps, config.optim.warmup_steps = 2, 0, 0
  classify.run(config, trained)
  short = ["--config.total_steps=2", "--config.eval_every_steps=0", "--config.optim.warmup_steps=0"]
  bad_config = tmp_path / "bad_config.py"
  bad_config.write_text("def get_config(:\n")
  empty_config, none_config = tmp_path / "empty.py", tmp_path / "returns_none.py"
  empty_config.write_text("")
  none_config.write_text("def get_config(arg=None):\n  pass\n")
  colon_dir = tmp_path / "a:b"
  colon_dir.mkdir()
  (colon_dir / "digits.py").write_text((ROOT / "configs" / "digits_lt.py").read_text())
  cases = [
      (["--config.optim.lr=-1"], {}, "config.optim.lr=-1.0 must be a finite number > 0"),
      (["--config.optim.lr=inf"], {}, "config.optim.lr=inf must be a finite number > 0"),
      (["--config.batch_size=abc"], {}, "--config.batch_size=abc: invalid literal for int()"),
      (["--config.batchsize=32"], {}, "--config.batchsize=32: the config has no field "
                                      "'batchsize'. Did you mean \"batch_size\""),
      (["--config.bf.enabled=maybe"], {}, "a boolean flag takes true/false, on/off, yes/no"),
      ([], {"config": "configs/no_such.py"}, "--config=configs/no_such.py: no such file"),
      ([], {"config": "configs/digits_lt.py:smok"}, "config arg 'smok' is unknown; known args"),
      ([], {"config": str(bad_config)}, "does not parse: invalid syntax at line 1"),
      ([], {"workdir": a_file}, f"{a_file} is a file, not a directory; give a directory path"),
      ([], {"workdir": a_file / "sub"}, f"{a_file} is a file, not a directory"),
      ([], {"workdir": "/proc/bf_jax_run"}, "--workdir=/proc/bf_jax_run cannot be written"),
      ([*short, "--config.optim.lr=0.5"], {"workdir": trained},
       f"optim.lr: {config.optim.lr!r} (recorded) -> 0.5 (now)"),
      ([f"--coordinator_address=127.0.0.1:{busy_port}", "--num_processes=2", "--process_id=0"],
       {}, f"port {busy_port} cannot be opened on this machine (Address already in use)"),
      (["--coordinator_address=127.0.0.1:1234"], {},
       "--num_processes=None --process_id=None: with --coordinator_address give both"),
      # Issue 33: what used to run something else, or end in a traceback.
      (["--config.bf.enabled", "false"], {},
       "unexpected argument 'false' after --config.bf.enabled: write --config.bf.enabled=false"),
      ([":smoke"], {"config": "configs/digits_lt.py"}, "unexpected argument ':smoke': the "
                                                       "config's args follow its path"),
      ([], {"workdir": ""}, "--workdir is empty (an unset shell variable?)"),
      ([], {"config": str(empty_config)}, "the file defines no get_config(arg=None)"),
      ([], {"config": str(none_config)}, "get_config() returned None (a missing return?)"),
      ([], {"config": str(colon_dir / "digits.py")}, "the path is cut at its first ':'"),
  ]
  before = _listing(tmp_path)
  procs = [_cli(tmp_path, *args, **kw) for args, kw, _ in cases]
  for (args, kw, message), proc in zip(cases, procs):
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 2 and message in err, (args, kw, err[-2000:])
    # One error line; other lines may be JAX's warnings (e.g. a compilation-cache entry that
    # a parallel process was still writing, which JAX then compiles afresh).
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in err and len(errors) == 1, err
  assert _listing(tmp_path) == before and not (tmp_path / "run").exists()
  assert a_file.read_text() == "the user's"


@pytest.mark.slow  # processes of the command line
def test_debug_shows_the_traceback(tmp_path):
  for args, env in ([["--debug"], {}], [[], {"BF_JAX_DEBUG": "1"}]):
    proc = _cli(tmp_path, "--config.batchsize=32", *args, env=env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" in err and "batchsize" in err, err[-2000:]
    assert proc.returncode == 2  # the traceback, and still the exit code of bad input


@pytest.mark.slow  # processes of the command line
def test_boolean_overrides_take_the_config_arg_spellings(tmp_path):
  """--config.bf.enabled=off as :bf=off takes it; strings that read 'off' stay strings."""
  from bf_jax.main import spell_booleans
  assert spell_booleans(["--config.bf.enabled=off", "--config.bf.enabled=Yes", "--workdir=off",
                         "--config.data.name=no", "--config.init.freeze_backbone=ON"]) == [
      "--config.bf.enabled=false", "--config.bf.enabled=true", "--workdir=off",
      "--config.data.name=no", "--config.init.freeze_backbone=true"]
  proc = _cli(tmp_path, "--config.bf.enabled=off")
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-2000:]
  assert "no BatchFormer" in err

"""config.compile_cache_dir: a restarted run loads its programs; a folder per jax and CPU."""

import os
import subprocess
import sys

import jax
import pytest
from helpers import ROOT

from bf_jax.trainer import compile_cache


def test_the_folder_names_the_versions_and_the_cpu(monkeypatch):
  here = compile_cache.key()
  assert here.startswith(f"jax-{jax.__version__}_jaxlib-")
  monkeypatch.setattr(compile_cache, "cpu_model", lambda: "x86_64 another CPU [sse2]")
  assert compile_cache.key() != here  # another CPU model never reads this one's entries
  assert compile_cache.key().rpartition("-")[0] == here.rpartition("-")[0]


def test_a_folder_it_cannot_make_is_one_message_and_changes_nothing(tmp_path, monkeypatch):
  # As if this module had set JAX's folder, so the check is reached under the suite's cache.
  before = jax.config.jax_compilation_cache_dir
  monkeypatch.setattr(compile_cache, "_ours", before)
  (tmp_path / "file").write_text("the user's")
  with pytest.raises(ValueError, match=r"config.compile_cache_dir='.*/file': cannot make .*/file/"
                                       r"jax-.*give a folder you can write, or "
                                       r"--config.compile_cache_dir='' to compile without"):
    compile_cache.setup(str(tmp_path / "file"))
  assert (tmp_path / "file").read_text() == "the user's"
  assert jax.config.jax_compilation_cache_dir == before


def test_a_folder_jax_was_given_wins(monkeypatch):
  monkeypatch.setattr(compile_cache, "_ours", None)
  current = jax.config.jax_compilation_cache_dir
  if not current:
    pytest.skip("the suite runs without a cache (BF_JAX_TEST_CACHE=off)")
  assert compile_cache.setup("/nonexistent/elsewhere") == current


@pytest.mark.slow  # two training processes
def test_a_second_start_loads_the_programs_the_first_compiled(tmp_path):
  # Without the suite's settings: JAX's default stores only programs that took 1 s to compile,
  # and the smoke's are all faster than that; the run itself stores every one.
  env = {k: v for k, v in os.environ.items()
         if k not in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")}
  env.update(XLA_FLAGS="", JAX_PLATFORMS="cpu")
  cache = tmp_path / "cache"

  def start(workdir):
    cmd = [sys.executable, "-m", "bf_jax.main", "--config", "configs/digits_lt.py:smoke",
           f"--workdir={tmp_path / workdir}", f"--config.compile_cache_dir={cache}"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr

  log = start("first")
  [folder] = cache.iterdir()
  assert f"compilation cache: {folder}" in log and (folder / "key.json").exists()
  entries = {p.name for p in folder.iterdir()} - {"key.json"}
  assert any(name.endswith("-cache") for name in entries), entries
  start("second")  # a fresh run of the same config: the same programs, read back
  assert {p.name for p in folder.iterdir()} - {"key.json"} == entries

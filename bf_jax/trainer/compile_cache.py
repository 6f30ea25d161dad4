"""JAX's persistent compilation cache for runs: a restarted or resumed run loads its compiled
programs from disk instead of compiling them again (docs/training.md).

``config.compile_cache_dir`` is the parent folder; the programs go in a subfolder named after the
jax and jaxlib versions and this machine's CPU. JAX's own cache key holds the jaxlib version,
the platform, XLA's flags and the device kind, but not the host CPU, whose instruction set
XLA:CPU compiles for: a folder per CPU model means an entry from another CPU or jax version is
never used. The entries are machine code run as they are: a cache others can write to lets them
run code in your jobs, so keep it private.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import platform

import jax
import jaxlib
from jax.experimental.compilation_cache import compilation_cache

_ours: str | None = None  # the folder this module gave JAX, if any


def cpu_model() -> str:
  """The host CPU's model name and instruction-set flags (Linux's /proc/cpuinfo where it has
  them; elsewhere what the platform module says)."""
  try:
    lines = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
  except OSError:
    lines = []
  fields = {}
  for line in lines:
    name, _, value = line.partition(":")
    fields.setdefault(name.strip(), value.strip())  # the first core's
  model = fields.get("model name") or platform.processor() or "unknown"
  flags = fields.get("flags") or fields.get("Features") or ""
  return f"{platform.machine()} {model} [{flags}]"


def key() -> str:
  """The subfolder name: jax and jaxlib versions, and a hash of the CPU model and flags."""
  cpu = hashlib.sha256(cpu_model().encode()).hexdigest()[:12]
  return f"jax-{jax.__version__}_jaxlib-{jaxlib.__version__}_{platform.machine()}-{cpu}"


def setup(cache_dir: str) -> str | None:
  """Points JAX's compilation cache at ``cache_dir``/key(), every program stored however fast it
  compiled (unless ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` says otherwise); the folder
  in use, or None.

  A folder JAX was already given elsewhere (``JAX_COMPILATION_CACHE_DIR``, or
  ``jax.config.update`` by the user) is left as it is. ``cache_dir`` "" turns the cache off.
  """
  global _ours
  current = jax.config.jax_compilation_cache_dir
  if current and current != _ours:
    logging.getLogger("bf_jax").info("compilation cache: %s (set outside the config)", current)
    return current
  if not cache_dir:
    if _ours is not None:
      jax.config.update("jax_compilation_cache_dir", None)
      compilation_cache.reset_cache()
      _ours = None
    return None
  folder = pathlib.Path(cache_dir).expanduser() / key()
  try:
    folder.mkdir(parents=True, exist_ok=True)
    info = folder / "key.json"
    if not info.exists():  # for whoever wonders what a folder is for
      info.write_text(json.dumps({"jax": jax.__version__, "jaxlib": jaxlib.__version__,
                                  "cpu": cpu_model()}, indent=1))
  except OSError as e:
    raise ValueError(f"config.compile_cache_dir={cache_dir!r}: cannot make {folder} "
                     f"({e.strerror}); give a folder you can write, or "
                     f"--config.compile_cache_dir='' to compile without a cache.") from None
  if str(folder) != current:
    if current:  # another run of this process used another folder
      compilation_cache.reset_cache()
    jax.config.update("jax_compilation_cache_dir", str(folder))
    _ours = str(folder)
  if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
    # JAX stores only programs that took 1 s to compile by default; a run's many smaller ones
    # (its eval step, the data path's, the probe's) add up to most of a restart's compile.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  logging.getLogger("bf_jax").info("compilation cache: %s", folder)
  return str(folder)

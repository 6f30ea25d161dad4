"""Runs every test on 8 forced CPU devices, with an XLA compilation cache kept across sessions on
this machine; must act before JAX starts a backend."""

import atexit
import logging
import os
import shutil
import tempfile

# Two xdist workers share 2 cores: XLA:CPU's own threads (Eigen inside a step, parallel LLVM
# codegen in a compile) only contend with the other worker (suite 450.7 s -> 409.9 s with both
# off, back to back). Subprocesses inherit the flags unless a test sets XLA_FLAGS itself.
# Appended after any flags set by hand (XLA takes the last of a name), once.
for _f in ("--xla_force_host_platform_device_count=8", "--xla_cpu_multi_thread_eigen=false",
           "--xla_cpu_parallel_codegen_split_count=1"):
  if _f not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _f).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
# The tests' programs run a few tiny steps, where XLA's optimization passes cost more compile
# time than they save (238 s -> 162 s on tests/{layer,trainer,tasks/czsl}, test_models.py); results
# agree up to float rounding and every comparison in a test runs under one setting. Tests about
# the optimized program itself are marked xla_optimized. JAX_DISABLE_MOST_OPTIMIZATIONS=0 runs
# the whole suite optimized.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

# Most of the suite's time is XLA compiling. JAX's persistent cache compiles each program once:
# across both xdist workers, resumed runs and relaunched CLI processes, and across sessions on
# this machine, from ~/.cache/bf_jax/tests/<jax, jaxlib, CPU> (the subfolder name runs use,
# bf_jax/trainer/compile_cache.py). An entry is found by a hash of the program, XLA's flags and
# the versions, so a program a checkout changed is compiled afresh. The controller picks the
# folder before it starts the workers, which (and every subprocess) inherit it.
# BF_JAX_TEST_CACHE=DIR uses DIR, =fresh a new folder removed at exit, =off none.
_cache = os.environ.get("BF_JAX_TEST_CACHE", "")
if _cache == "off":
  os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
elif "PYTEST_XDIST_WORKER" not in os.environ:
  if _cache == "fresh":
    _cache = tempfile.mkdtemp(prefix="bf_jax_xla_")
    atexit.register(shutil.rmtree, _cache, True)
  elif not _cache:
    from bf_jax.trainer import compile_cache  # imports jax: after every JAX_ setting above
    _cache = os.path.join(os.path.expanduser("~/.cache/bf_jax/tests"), compile_cache.key())
    try:
      os.makedirs(_cache, exist_ok=True)
      # Past 2 GiB it starts over. Not JAX's own cap (jax_compilation_cache_max_size): that
      # reads the whole folder at every store, and took the cold suite from 729 s to 1284 s.
      if sum(e.stat().st_size for e in os.scandir(_cache) if e.is_file()) > 2 * 2 ** 30:
        shutil.rmtree(_cache)
        os.makedirs(_cache)
    except OSError:  # a home one cannot write (some CI sandboxes): a fresh folder instead
      _cache = tempfile.mkdtemp(prefix="bf_jax_xla_")
      atexit.register(shutil.rmtree, _cache, True)
  os.makedirs(_cache, exist_ok=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache

import jax  # noqa: E402

if os.environ.get("JAX_COMPILATION_CACHE_DIR"):  # jax may have been imported before it was set
  jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
assert jax.device_count() == 8, f"expected 8 forced CPU devices, got {jax.devices()}"

# Orbax saves a replicated array replica-parallel on CPU: each of the 8 devices writes a slice,
# a compiled program per array shape and device (763 in one suite run, from the compile report)
# to split work that one process does anyway. Checked: the same files (OCDBT layout, metadata)
# and the same arrays restored. Multi-process tests run their own processes with Orbax's defaults.
import orbax.checkpoint as ocp  # noqa: E402
from orbax.checkpoint._src.metadata import array_metadata_store  # noqa: E402

_absl = logging.getLogger("absl")
_level = _absl.level
_absl.setLevel(logging.ERROR)  # no "overriding jax.Array" warning in every run's output
ocp.type_handlers.register_type_handler(
    jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False,
                                              array_metadata_store=array_metadata_store.Store()),
    override=True)
_absl.setLevel(_level)


import pytest  # noqa: E402

pytest_plugins = ["compile_report"]  # BF_JAX_COMPILE_REPORT=DIR: compile time per test


def pytest_configure(config):
  config.addinivalue_line("markers", "xla_optimized: runs with XLA's optimization passes on "
                                     "(the suite's default is off, see conftest.py)")
  config.addinivalue_line("markers", "slow: subprocesses, several processes or whole-config "
                                     "smokes; make test-fast leaves them out")


@pytest.fixture(autouse=True)
def _xla_optimized(request):
  if request.node.get_closest_marker("xla_optimized") is None:
    yield
    return
  before = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", False)
  yield
  jax.config.update("jax_disable_most_optimizations", before)

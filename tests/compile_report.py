"""``BF_JAX_COMPILE_REPORT=DIR pytest ...``: what each test compiled, from JAX's own timing events.

Each pytest process (xdist worker) writes ``DIR/compiles-<worker>.jsonl``, one line per test:
seconds of tracing and of XLA compiling, how many programs were compiled (by name) and how many
came from the persistent compilation cache. The controller prints the tests that spent most time
compiling and the programs compiled most often. Off (nothing registered) unless the variable is
set; runs in this process only, so subprocesses a test starts are not counted.
"""

import collections
import json
import os
import pathlib

import pytest

_DIR = os.environ.get("BF_JAX_COMPILE_REPORT")
_TRACE = "/jax/core/compile/jaxpr_trace_duration"
_COMPILE = "/jax/core/compile/backend_compile_duration"
_HIT = "/jax/compilation_cache/cache_hits"


class _Counts:
  def __init__(self):
    self.reset()

  def reset(self):
    self.trace_s = self.compile_s = 0.0
    self.hits = 0
    self.programs = collections.Counter()

  def on_duration(self, event: str, secs: float, fun_name: str = "", **_):
    if event == _TRACE:
      self.trace_s += secs
    elif event == _COMPILE:
      self.compile_s += secs  # includes a cache read when the program came from the cache
      self.programs[fun_name] += 1

  def on_event(self, event: str, **_):
    if event == _HIT:
      self.hits += 1


_counts = _Counts()
_rows: list[dict] = []


def pytest_configure(config):
  if not _DIR:
    return
  if os.environ.get("PYTEST_XDIST_WORKER") is None:  # before any worker writes: no stale rows
    for old in pathlib.Path(_DIR).glob("compiles-*.jsonl"):
      old.unlink()
  from jax import monitoring

  monitoring.register_event_duration_secs_listener(_counts.on_duration)
  monitoring.register_event_listener(_counts.on_event)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
  _counts.reset()
  yield
  if _DIR:
    _rows.append({"test": item.nodeid, "trace_s": round(_counts.trace_s, 3),
                  "compile_s": round(_counts.compile_s, 3), "cache_hits": _counts.hits,
                  "programs": dict(_counts.programs)})


def pytest_sessionfinish(session):
  if not _DIR:
    return
  out = pathlib.Path(_DIR)
  out.mkdir(parents=True, exist_ok=True)
  worker = os.environ.get("PYTEST_XDIST_WORKER")
  if worker is not None or _rows:
    name = f"compiles-{worker or 'main'}.jsonl"
    (out / name).write_text("".join(json.dumps(r) + "\n" for r in _rows))
  if worker is None:
    _summarize(out)


def _summarize(out: pathlib.Path, top: int = 30) -> None:
  rows = [json.loads(line) for f in sorted(out.glob("compiles-*.jsonl"))
          for line in f.read_text().splitlines()]
  if not rows:
    return
  total = collections.Counter()
  for r in rows:
    total.update(r["programs"])
  lines = [f"compile report ({out}): {len(rows)} tests, "
           f"{sum(r['compile_s'] for r in rows):.1f} s compiling, "
           f"{sum(r['trace_s'] for r in rows):.1f} s tracing, {sum(total.values())} programs, "
           f"{sum(r['cache_hits'] for r in rows)} from the cache",
           "  compile_s  trace_s  programs  hits  test"]
  for r in sorted(rows, key=lambda r: -(r["compile_s"] + r["trace_s"]))[:top]:
    lines.append(f"  {r['compile_s']:9.1f}  {r['trace_s']:7.1f}  {sum(r['programs'].values()):8d}"
                 f"  {r['cache_hits']:4d}  {r['test']}")
  lines.append("  most compiled programs: " + ", ".join(
      f"{name} x{n}" for name, n in total.most_common(12)))
  print("\n" + "\n".join(lines))

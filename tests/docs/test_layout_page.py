"""docs/layout.md names every module under bf_jax/, so the page cannot fall behind the tree.

(That every path it names exists is tests/docs/test_cited_paths.py's check.)
"""

from __future__ import annotations

import re

from doc_names import expand_braces
from doc_pages import ROOT

PAGE = ROOT / "docs" / "layout.md"
# A module path as the page writes it: bf_jax/..., with {a,b} groups (expanded below).
_MODULE = re.compile(r"(?<![\w/.])(bf_jax/(?:[\w.-]|/|\{[^{}\s]*\})+)")


def named_modules(text: str) -> set[str]:
  """Every ``bf_jax/...`` path ``text`` names, braces expanded, trailing punctuation dropped."""
  out = set()
  for m in _MODULE.finditer(text):
    out.update(path.rstrip(".,;:") for path in expand_braces(m.group(1)))
  return out


def test_layout_page_lists_every_module():
  modules = {str(p.relative_to(ROOT)) for p in (ROOT / "bf_jax").rglob("*.py")}
  missing = sorted(modules - named_modules(PAGE.read_text()))
  assert not missing, (f"{PAGE.relative_to(ROOT)} does not name these modules; add a line to "
                       f"its file list for each, saying what it holds: {missing}")


def test_the_module_finder_reads_lines_and_brace_groups():
  """Guards the finder: if it stopped finding paths, the test above would fail on every module
  (or, finding too much, pass on a page that lists none)."""
  text = ("bf_jax/layer/v2.py      insertion\n"
          "see `bf_jax/trainer/{optim,writers}.py`, and bf_jax/main.py.\n"
          "not a module: runs/bf_jax/x.py")
  assert named_modules(text) == {"bf_jax/layer/v2.py", "bf_jax/trainer/optim.py",
                                 "bf_jax/trainer/writers.py", "bf_jax/main.py"}

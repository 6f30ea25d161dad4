"""Every path that code or a page cites names a file or folder of the repository.

Scanned: the whole source text of every .py file under bf_jax/, tests/, configs/, tools/ and
benchmarks/ (docstrings, comments, strings), the shell scripts beside them, and README.md, the
other top-level pages and docs/*.md. A cite is a token starting with a repository folder
(``bf_jax/``, ``configs/``, ``tests/``, ``docs/``, ``tools/``, ``launch/``, ``benchmarks/``) or
an upper-case top-level page name ending in ``.md``. Read sanely: ``configs/digits_lt.py:smoke``,
``tests/test_layout.py::test_x`` and ``path:line`` name the file; trailing punctuation is dropped;
``{a,b}`` expands; ``*`` globs; ``<task>``, ``{name}`` (a format field), ``$VAR``, ``...`` and
an upper-case component such as ``configs/X.py`` are placeholders, not cites.
"""

from __future__ import annotations

import pathlib
import re

from doc_names import expand_braces
from doc_pages import ROOT

REPO_DIRS = ("bf_jax", "configs", "tests", "docs", "tools", "launch", "benchmarks")
SOURCE_DIRS = ("bf_jax", "tests", "configs", "tools", "benchmarks", "launch")
# A path starts a token (not inside runs/x/tests/ or a URL) and runs through name characters,
# slashes, globs, {a,b} groups and <placeholders>; ':' ends it (a config's :ARG, a ::test).
_PATH = re.compile(
    rf"(?<![\w/.~$@-])((?:{'|'.join(REPO_DIRS)})/(?:[\w.*-]|/|\{{[^{{}}\n]*\}}|<[^<>\s]*>)*)")
_PAGE = re.compile(r"(?<![\w/.<$@-])([A-Z][A-Z0-9_]*\.md)\b")
# A test's made-up path (a fixture of bad input, such as configs/no_such.py) spells this, so
# that it is not a cite; only under tests/, so that nothing else can hide a stale cite behind it.
FIXTURE_MARK = "no_such"


def scanned_files() -> list[pathlib.Path]:
  files = [p for d in SOURCE_DIRS for p in (ROOT / d).rglob("*")
           if p.suffix in (".py", ".sh", ".sbatch") and p.is_file()
           and "__pycache__" not in p.parts]
  return sorted({*files, *ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md")})


def _is_placeholder(path: str) -> bool:
  """``<task>``, ``$VAR``, ``...``, a format field ``{name}``, or an upper-case part (``X.py``)."""
  if re.search(r"[<>$]|\.\.\.|\{[^,{}]*\}", path):
    return True
  stems = (part.split(".")[0] for part in path.split("/")[1:])
  return any(re.fullmatch(r"[A-Z][A-Z0-9_]*", stem) for stem in stems)


def check_cite(token: str) -> str | None:
  """Why a cited path names nothing in the repository, or None (it exists, or is a placeholder)."""
  token = token.rstrip(".,;")
  if _is_placeholder(token):
    return None
  for path in expand_braces(token):
    found = list(ROOT.glob(path.rstrip("/"))) if "*" in path else (ROOT / path).exists()
    if not found:
      return f"{path} does not exist"
  return None


def find_bad_cites(text: str, fixture: bool = False) -> list[tuple[int, str]]:
  """(line, problem) for each cite of ``text`` that names nothing; ``fixture``: a test file,
  whose made-up paths spell FIXTURE_MARK."""
  out = []
  for pattern in (_PATH, _PAGE):
    for m in pattern.finditer(text):
      if fixture and FIXTURE_MARK in m.group(1):
        continue
      if problem := check_cite(m.group(1)):
        out.append((text.count("\n", 0, m.start()) + 1, problem))
  return sorted(out)


def test_every_cited_path_exists():
  problems = []
  for path in scanned_files():
    name = str(path.relative_to(ROOT))
    for line, problem in find_bad_cites(path.read_text(), fixture=name.startswith("tests/")):
      problems.append(f"{name}:{line}: {problem}")
  assert not problems, ("these cite files that are not in the repository; point them at the file "
                        "as it is named now (or drop the cite):\n" + "\n".join(problems))


def test_the_scanner_covers_the_tree():
  """Guards the file list: if it found nothing, the test above would pass vacuously."""
  names = {str(p.relative_to(ROOT)) for p in scanned_files()}
  assert {"README.md", "docs/classify.md", "bf_jax/layer/__init__.py", "configs/digits_lt.py",
          "tests/test_layout.py", "launch/local.sh"} <= names, sorted(names)[:20]


# Stale cites, filled in by format() so that this file's own text cites nothing missing (the
# scan reads {GONE} as a placeholder) and needs no FIXTURE_MARK.
GONE, PAGE = "nonexistent", "DESIGN"
ROTTED = f"""
# tests/layer/test_{GONE}.py holds the layer to that; the rule: {PAGE}.md section 4.
# docs/{GONE}.md, configs/{GONE}.py:smoke, tests/{GONE}.py::test_x, bf_jax/{GONE}/x.py:12.
# bf_jax/trainer/{{optim,{GONE}}}.py and tests/*/test_{GONE}_*.py
"""
FINE = """
# tests/layer/test_layer_alone.py, configs/digits_lt.py:smoke, tests/test_layout.py::test_x,
# bf_jax/layer/batchformer.py:12, docs/classify.md. bf_jax/layer/{batchformer,linen}.py,
# tests/*/test_*.py, README.md; placeholders: bf_jax/tasks/<task>/, configs/X.py, configs/{name}.py,
# bf_jax/..., $ROOT/bf_jax/x.py; outputs: runs/x/tests/y.py, gs://b/docs/z.md.
"""


def test_the_scanner_reports_each_stale_cite():
  got = find_bad_cites(ROTTED)
  expected = [
      (2, f"tests/layer/test_{GONE}.py does not exist"),
      (2, f"{PAGE}.md does not exist"),
      (3, f"docs/{GONE}.md does not exist"),
      (3, f"configs/{GONE}.py does not exist"),
      (3, f"tests/{GONE}.py does not exist"),
      (3, f"bf_jax/{GONE}/x.py does not exist"),
      (4, f"bf_jax/trainer/{GONE}.py does not exist"),
      (4, f"tests/*/test_{GONE}_*.py does not exist"),
  ]
  assert got == sorted(expected), got
  assert find_bad_cites(FINE) == []

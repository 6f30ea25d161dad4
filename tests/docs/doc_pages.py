"""Reading README.md and docs/*.md for tests/docs: code blocks, shell lines, inline code."""

from __future__ import annotations

import dataclasses
import pathlib
import re
import shlex

ROOT = pathlib.Path(__file__).parents[2]
SHELL_LANGS = {"bash", "sh", "shell", "console"}
SEPARATORS = {";", "&&", "||", "|", "&", "(", ")"}
# What a page writes for "fill in" (<dataset>) once tokenized; never checked as a name.
PLACEHOLDER = "__placeholder__"


def pages() -> list[pathlib.Path]:
  return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclasses.dataclass(frozen=True)
class Snippet:
  line: int  # 1-based line of the page where it starts
  text: str  # continuation lines joined, whitespace of inline spans collapsed


@dataclasses.dataclass
class Page:
  shell: list[Snippet]  # logical lines of the shell blocks
  python: list[Snippet]  # whole ```python blocks
  listings: list[Snippet]  # lines of ```text blocks (file listings: a path, then what it holds)
  spans: list[Snippet]  # inline code
  prose: str  # the page with its code blocks blanked (line numbers kept)


def parse_page(text: str) -> Page:
  shell, python, listings, prose_lines = [], [], [], []
  lang, block, start = None, [], 0
  for n, line in enumerate(text.split("\n"), 1):
    fence = re.match(r"^\s*```\s*([\w+-]*)\s*$", line)
    if lang is None and fence:
      lang, block, start = fence.group(1) or "text", [], n
      prose_lines.append("")
      continue
    if lang is not None:
      if fence and not fence.group(1):
        if lang in SHELL_LANGS:
          shell += _logical_lines(block, console=lang == "console")
        elif lang == "python":
          python.append(Snippet(start + 1, "\n".join(line for _, line in block)))
        elif lang == "text":
          listings += [Snippet(n, line) for n, line in block]
        lang = None
      else:
        block.append((n, line))
      prose_lines.append("")
      continue
    prose_lines.append(line)
  prose = "\n".join(prose_lines)
  spans = []
  for m in re.finditer(r"(?<!`)`([^`]+)`(?!`)", prose):
    if "\n\n" not in m.group(1):
      spans.append(Snippet(prose.count("\n", 0, m.start()) + 1, " ".join(m.group(1).split())))
  return Page(shell, python, listings, spans, prose)


def _logical_lines(block: list[tuple[int, str]], console: bool) -> list[Snippet]:
  """Joins ``\\`` continuations; in console blocks only ``$ `` lines (and their continuations)."""
  out, current, start, continued = [], [], 0, False
  for n, line in block:
    if not continued:
      stripped = line.lstrip()
      if stripped.startswith("$ "):
        line = stripped[2:]
      elif console:
        continue  # output, not a command
      start = n
    continued = line.rstrip().endswith("\\")
    current.append(line.rstrip()[:-1] if continued else line)
    if not continued:
      out.append(Snippet(start, " ".join(current)))
      current = []
  if current:
    out.append(Snippet(start, " ".join(current)))
  return out


def tokenize(text: str) -> list[str] | None:
  text = re.sub(r"<[^<>\s]+>", PLACEHOLDER, text)  # configs/dg_<dataset>.py is no redirection
  lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
  lexer.whitespace_split = True  # only blanks and ;&|() split: keeps ${x}_$y, a:b=c,d whole
  try:
    return list(lexer)
  except ValueError:
    return None


def segments(tokens: list[str]) -> list[list[str]]:
  out, current = [], []
  for token in tokens:
    if token in SEPARATORS:
      out.append(current)
      current = []
    else:
      current.append(token)
  return [s for s in out + [current] if s]


def github_slugs(markdown: str) -> set[str]:
  """The #anchors a renderer gives the headings of a page (GitHub's rule, duplicates -1, -2)."""
  seen: dict[str, int] = {}
  out = set()
  for line in parse_page(markdown).prose.split("\n"):
    if m := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line):
      slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
      out.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
      seen[slug] = seen.get(slug, 0) + 1
  return out

"""The codebase's shape, read from its source without running it: no file of mgjax/ or
experiments/ over 400 lines, no function over 60 lines (its docstring aside), no import cycle
among mgjax's modules, and nothing in mgjax/ that imports the lab (experiments/)."""

import ast
from pathlib import Path

from paths import ROOT

MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
SOURCES = sorted([*(ROOT / "mgjax").rglob("*.py"), *(ROOT / "experiments").rglob("*.py")])


def _module(path: Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _function_lines(node: ast.AST) -> int:
  """Lines of a def from its first line (decorators aside) to its last, its docstring aside."""
  lines = node.end_lineno - node.lineno + 1
  body = node.body
  if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
    if isinstance(body[0].value.value, str):
      lines -= body[0].end_lineno - body[0].lineno + 1
  return lines


def _imports(path: Path) -> set[str]:
  """The modules that `path` imports, absolute (relative imports resolved)."""
  package = _module(path).split(".")
  if path.name != "__init__.py":
    package = package[:-1]
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
      found.add(base)
      found.update(f"{base}.{a.name}" for a in node.names)
  return found


def test_no_file_over_400_lines():
  long = {
    str(p.relative_to(ROOT)): n
    for p in SOURCES
    if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES
  }
  assert not long, long


def test_no_function_over_60_lines():
  long = {}
  for path in SOURCES:
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        if (n := _function_lines(node)) > MAX_FUNCTION_LINES:
          long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = n
  assert not long, long


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """An import cycle of `graph` (module -> the modules it imports) as a path, or None. A
  package importing its own submodules (an __init__ handing their names on) is no cycle."""
  state = dict.fromkeys(graph, 0)  # 0 unseen, 1 on the path, 2 done

  def visit(node, path):
    state[node] = 1
    for nxt in sorted(graph[node]):
      if nxt.startswith(node + "."):
        continue
      if state[nxt] == 1:
        return [*path, nxt]
      if state[nxt] == 0 and (found := visit(nxt, [*path, nxt])):
        return found
    state[node] = 2
    return None

  for node in graph:
    if state[node] == 0 and (found := visit(node, [node])):
      return found
  return None


def test_the_library_imports_no_lab_code_and_has_no_import_cycle():
  files = {_module(p): p for p in SOURCES if p.is_relative_to(ROOT / "mgjax")}
  graph = {}
  for name, path in files.items():
    imported = _imports(path)
    lab = {m for m in imported if m.split(".")[0] in ("lab", "experiments")}
    assert not lab, (name, lab)
    graph[name] = {m for m in imported if m in files and m != name}
  assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_checks_see_what_they_look_for():
  # The readers find long functions, relative imports, the lab and cycles where they are.
  source = "def f():\n  '''doc\n  doc'''\n" + "  x = 1\n" * 61
  (fn,) = ast.parse(source).body
  assert _function_lines(fn) == 62
  assert "mgjax.models.fitting" in _imports(ROOT / "mgjax" / "models" / "ensemble.py")
  assert "mgjax.algorithms.base" in _imports(ROOT / "mgjax" / "algorithms" / "mg.py")
  lab_script = ROOT / "experiments" / "lab" / "sac_speed.py"
  assert "lab" in {m.split(".")[0] for m in _imports(lab_script)}
  assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert _cycle({"p": {"p.m"}, "p.m": {"p"}}) is None  # a package and its own submodule
  assert _cycle({"a": {"b"}, "b": set()}) is None

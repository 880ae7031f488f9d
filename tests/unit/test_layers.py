"""The layers as docs/architecture.md draws them, checked against every import of the code.

The doc's "who may import whom" table is the source: each row names files (`from`) and what they may import
(`may import`: modules of kilo_bridge by dotted name, a package standing for all its modules; `base` for the
base modules). Every import in layers/kilo_bridge, agent_task/ and functions/ (lazy ones inside functions and
type-only ones included) must be allowed by a row that covers its file; a file no row covers fails too. Besides
the table, a few rules hold whatever the table says: no cycle between packages, the terminal client imports no
feature, generation imports nothing of jobs, nothing imports functions/, and the diagram draws every feature.
"""

from __future__ import annotations

import ast
import os
import re
from collections import defaultdict
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "layers" / "kilo_bridge"
DOC = ROOT / "docs" / "architecture.md"
SECTION = "## Who may import whom"
# Packages of kilo_bridge that are not features: the levels drawn apart in the diagram.
NOT_FEATURES = {"platform", "web", "client"}


def _section() -> str:
    text = DOC.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end > 0 else len(text)]


@cache
def _rows() -> tuple[tuple[tuple[str, ...], frozenset[str]], ...]:
    """(files, allowed modules) per row of the table, `base` expanded."""
    lines = _section().splitlines()
    head = next(i for i, line in enumerate(lines) if re.match(r"\|\s*from\s*\|\s*may import\s*\|", line))
    raw: list[tuple[str, str]] = []
    for line in lines[head + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        raw.append((cells[0], cells[1]))
    base = next(tuple(re.findall(r"`([^`]+)`", f)) for f, _ in raw if f.startswith("base"))
    base_modules = frozenset(_module_of(name) for name in base)
    rows = []
    for frm, may in raw:
        allowed = {t for t in re.findall(r"`([^`]+)`", may)}
        if re.search(r"(^|[^`\w])base\b", re.sub(r"`[^`]*`", "", may)):
            allowed |= base_modules
        rows.append((tuple(re.findall(r"`([^`]+)`", frm)), frozenset(allowed)))
    return tuple(rows)


def _module_of(file_name: str) -> str:
    """`config.py` → `config`; `__init__.py` (the package itself) → ``."""
    return "" if file_name == "__init__.py" else file_name.removesuffix(".py").replace("/", ".")


@cache
def _files() -> tuple[Path, ...]:
    found = []
    for top in (PKG, ROOT / "agent_task", ROOT / "functions"):
        for folder, dirs, names in os.walk(top):
            dirs[:] = [d for d in dirs if d not in ("node_modules", "__pycache__")]  # the pinned CLI's own tree
            found += [Path(folder, n) for n in names if n.endswith(".py")]
    return tuple(sorted(found))


def _covers(pattern: str, path: Path) -> bool:
    target = ROOT / pattern if pattern.startswith(("functions/", "agent_task")) else PKG / pattern
    return path == target or (not pattern.endswith(".py") and path.is_relative_to(target))


def _own(path: Path) -> str | None:
    """The kilo_bridge package (or top-level module) a file belongs to: its imports of itself are free."""
    if path.is_relative_to(ROOT / "agent_task"):
        return "agent_task"
    if not path.is_relative_to(PKG):
        return None
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else _module_of(rel.name)


def _is_module(dotted: str) -> bool:
    base = PKG.joinpath(*dotted.split(".")) if dotted else PKG
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of ours in a file, as dotted names under kilo_bridge ('' is the package),
    and `functions…` or `agent_task…` for an import of those."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module.split(".")[0] == "kilo_bridge":  # `from kilo_bridge.jobs import store` is jobs.store
                sub = node.module.removeprefix("kilo_bridge").lstrip(".")
                subs = [f"{sub}.{a.name}".lstrip(".") for a in node.names]
                names = [f"kilo_bridge.{m}" if _is_module(m) else node.module for m in subs]
        else:
            continue
        for name in names:
            if name == "kilo_bridge":
                found.append((node.lineno, ""))
            elif name.startswith("kilo_bridge."):
                found.append((node.lineno, name.removeprefix("kilo_bridge.")))
            elif name.split(".")[0] in ("functions", "agent_task"):
                found.append((node.lineno, name))
    return found


def _allowed(module: str, tokens: frozenset[str]) -> bool:
    return any(module == t or module.startswith(t + ".") for t in tokens)


def _where(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_doc_table_has_rows_and_base() -> None:
    rows = _rows()
    assert len(rows) > 10
    assert any("config.py" in frm for frm, _ in rows)


def test_every_import_is_allowed_by_the_doc_table() -> None:
    rows = _rows()
    uncovered, refused = [], []
    for path in _files():
        mine = [allowed for files, allowed in rows if any(_covers(f, path) for f in files)]
        if not mine:
            uncovered.append(_where(path))
            continue
        allowed = frozenset().union(*mine)
        own = _own(path)
        for line, module in _imports(path):
            if own is not None and (module == own or module.startswith(own + ".")):
                continue
            if not _allowed(module, allowed):
                refused.append(f"{_where(path)}:{line} imports {module or 'kilo_bridge'}")
    assert not uncovered, f"no row of docs/architecture.md's table covers: {uncovered}"
    assert not refused, "imports the table does not allow:\n" + "\n".join(refused)


@cache
def _package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in _files():
        own = _own(path)
        if own is None:
            continue
        for _line, module in _imports(path):
            target = module.split(".")[0]
            if target != own:
                graph[own].add(target)
    return graph


def test_no_package_imports_back() -> None:
    graph = _package_graph()
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in trail:
                cycles.append(" → ".join([*trail[trail.index(nxt) :], nxt]))
            elif len(trail) < 20:
                visit(nxt, [*trail, nxt])

    for start in sorted(graph):
        visit(start, [start])
    assert not cycles, f"import cycles between packages: {sorted(set(cycles))[:10]}"


def _features() -> set[str]:
    return {p.parent.name for p in PKG.glob("*/__init__.py")} - NOT_FEATURES


def test_the_terminal_client_imports_no_feature() -> None:
    graph = _package_graph()
    assert not graph["client"] & (_features() | NOT_FEATURES | {"services", "scheduled_tasks"})


def test_generation_imports_nothing_of_jobs() -> None:
    assert "jobs" not in _package_graph()["generation"]


def test_nothing_imports_the_entry_points() -> None:
    found = [f"{_where(p)}:{line}" for p in _files() for line, m in _imports(p) if m.startswith("functions")]
    assert not found


def test_the_diagram_draws_every_feature() -> None:
    diagram = _section().split("```")[1]
    missing = sorted(f for f in _features() if f"{f}/" not in diagram)
    assert not missing, f"feature packages missing from the diagram: {missing}"

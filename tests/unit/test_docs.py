"""Docs that cannot drift: every file path, `Class.method`, make target, setting and failure reason the README
and docs/ name exists in the code, and every failure reason the code can produce is in the README's list.

The failure reasons are read from one place, `jobs/reasons.py FAILURE_REASONS`; a scan of the code (the runner's
`JobEnded`, the store's Lua, `fail_unfinished`, `reason=` literals) finds each reason it can produce, so a new one
fails here until it is listed there and documented in the README."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from kilo_bridge.config import Settings
from kilo_bridge.jobs.reasons import FAILURE_REASONS, EndReason

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "layers" / "kilo_bridge"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CODE_DIRS = [ROOT / "agent_task", LIB, ROOT / "functions", ROOT / "scripts"]


def _code_files(suffix: str) -> Iterator[Path]:
    for top in CODE_DIRS:
        for path in top.rglob(f"*{suffix}"):
            if "node_modules" not in path.parts:
                yield path


def _ticked(text: str) -> list[str]:
    """The `code spans` of a markdown text (fenced blocks left out: they are examples, tested elsewhere)."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.findall(r"`([^`\n]+)`", prose)


# -- failure reasons ---------------------------------------------------------------------------------------


def _str(node: ast.AST | None) -> str | None:
    """A string literal, or a member of `EndReason` (`EndReason.CLONE_FAILED`) as the value it stands for."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "EndReason":
        return EndReason[node.attr].value
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _reasons_in_python(tree: ast.AST) -> Iterator[str]:  # noqa: C901 - one branch per way the code names a reason
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("JobEnded", "fail_unfinished") and len(node.args) > 1 and (r := _str(node.args[1])):
                yield r
            for kw in node.keywords:
                if kw.arg == "reason" and (r := _str(kw.value)):
                    yield r
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if _str(key) == "reason" and (r := _str(value)):
                    yield r
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id.endswith("REASONS") and isinstance(node.value, ast.Dict):
                    yield from (r for v in node.value.values if (r := _str(v)))
                elif isinstance(target, ast.Name) and target.id == "reason" and (r := _str(node.value)):
                    yield r
                elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    for t, v in zip(target.elts, node.value.elts, strict=False):
                        if isinstance(t, ast.Name) and t.id == "reason" and (r := _str(v)):
                            yield r


def _reasons_in_lua(text: str) -> Iterator[str]:
    for line in text.splitlines():
        line = line.split("--")[0]
        if "local reason" in line:
            yield from re.findall(r"'([a-z_]+)'", line)
        yield from re.findall(r"reason\s*=\s*'([a-z_]+)'", line)


def produced_reasons() -> dict[str, str]:
    """Each reason the code can end a job with → where it was found."""
    found: dict[str, str] = {}
    for path in _code_files(".py"):
        if path.name == "reasons.py":
            continue
        for reason in _reasons_in_python(ast.parse(path.read_text(), str(path))):
            found.setdefault(reason, str(path.relative_to(ROOT)))
    for path in _code_files(".lua"):
        for reason in _reasons_in_lua(path.read_text()):
            found.setdefault(reason, str(path.relative_to(ROOT)))
    return found


def documented_reasons() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(":", readme.index("A failed job says why"))
    paragraph = readme[start : readme.index("- **", start)]
    return [t for t in re.findall(r"`([^`]+)`", paragraph) if re.fullmatch(r"[a-z]+(_[a-z]+)*", t)]


def test_the_scan_finds_the_reasons_the_code_produces() -> None:
    """The scan itself works: reasons each producer is known to write are found where they are written."""
    found = produced_reasons()
    assert found["clone_failed"].startswith("agent_task/")  # the runner, whichever of its modules
    assert found["heartbeat_lost"].endswith("reap.lua") and found["worker_lost"].endswith("claim.lua")
    assert found["task_stopped"].endswith("ecs.py") and "gateway_rate_limited" in found


def test_every_reason_the_code_produces_is_listed_in_one_place() -> None:
    missing = {r: where for r, where in produced_reasons().items() if r not in FAILURE_REASONS}
    assert not missing, f"add these to layers/kilo_bridge/jobs/reasons.py FAILURE_REASONS and the README: {missing}"


def test_every_failure_reason_is_documented_and_nothing_else() -> None:
    documented = documented_reasons()
    assert sorted(set(FAILURE_REASONS) - set(documented)) == [], "reasons missing from the README's list"
    assert sorted(set(documented) - set(FAILURE_REASONS)) == [], "the README lists reasons nothing produces"
    assert len(documented) == len(set(documented))


# -- paths -------------------------------------------------------------------------------------------------

PATH_ROOTS = (ROOT, LIB, ROOT / "layers", ROOT / "agent_task")
EXTENSIONS = (
    ".py",
    ".lua",
    ".md",
    ".toml",
    ".yaml",
    ".yml",
    ".json",
    ".sh",
    ".mk",
    ".txt",
    ".html",
    ".js",
    ".css",
    ".png",
)
OUR_CODE = (".py", ".lua", ".sh", ".mk")


def _is_path(token: str) -> bool:
    """A token that names a file or folder of this repository: its first part is one of ours (a top-level
    folder, a package, a file). Routes (`/v1`), MIME types, model ids and a user's files are not."""
    if not re.fullmatch(r"[\w.-]+(/[\w.-]*)*", token) or token.startswith((".git", ".run", ".venv")):
        return False
    if "node_modules" in token.split("/"):  # what `make install` puts there: absent from a fresh clone
        return False
    if "/" not in token:
        return token.endswith(OUR_CODE) and not token.startswith(".")
    first = token.split("/")[0]
    return any((base / first).exists() for base in PATH_ROOTS)


def _exists(token: str) -> bool:
    bare = token.rstrip("/")
    if any((base / bare).exists() for base in PATH_ROOTS):
        return True
    if "/" not in bare:  # a file named by its own name where its package was said already (`record.py` in `jobs/`)
        return any(p.name == bare for p in [*_code_files(Path(bare).suffix), *(ROOT / "tests").rglob(bare)])
    module, _, attr = bare.rpartition(".")
    if attr and f".{attr}" not in EXTENSIONS:  # `platform/security.json_depth_exceeds`: a module's function
        return any(
            (base / f"{module}.py").is_file()
            and re.search(rf"^(async )?def {attr}\b|^{attr}\b", (base / f"{module}.py").read_text(), re.M)
            for base in PATH_ROOTS
        )
    return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_path_named_exists(doc: Path) -> None:
    missing = sorted({t for t in _ticked(doc.read_text()) if _is_path(t) and not _exists(t)})
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"


# -- Class.method ------------------------------------------------------------------------------------------


def _definitions() -> dict[str, set[str]]:
    """Class name → the names defined in its body (methods, attributes), over all the code."""
    out: dict[str, set[str]] = {}
    for path in [*_code_files(".py"), *(ROOT / "tests").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                names = out.setdefault(node.name, set())
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        names.add(item.name)
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        names.add(item.target.id)
                    elif isinstance(item, ast.Assign):
                        names.update(t.id for t in item.targets if isinstance(t, ast.Name))
                for sub in ast.walk(node):  # `self.hot = …` in a method
                    if (
                        isinstance(sub, ast.Attribute)
                        and isinstance(sub.ctx, ast.Store)
                        and isinstance(sub.value, ast.Name)
                        and sub.value.id == "self"
                    ):
                        names.add(sub.attr)
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_class_method_named_exists(doc: Path) -> None:
    classes = _definitions()
    text = " ".join(_ticked(doc.read_text()))
    named = {
        (c, m)
        for c, m in re.findall(r"\b([A-Z][a-z][A-Za-z0-9]*)\.([a-z_][a-z0-9_]*)\b", text)
        if f".{m}" not in EXTENSIONS
    }
    missing = sorted(f"{c}.{m}" for c, m in named if c in classes and m not in classes[c])
    unknown = sorted(f"{c}.{m}" for c, m in named if c not in classes)
    assert not missing, f"{doc.name} names methods that do not exist: {missing}"
    assert not unknown, f"{doc.name} names classes that do not exist: {unknown}"


# -- make targets ------------------------------------------------------------------------------------------


def _make_targets() -> set[str]:
    text = "\n".join(p.read_text() for p in [ROOT / "Makefile", *(ROOT / "mk").glob("*.mk")])
    return {m for line in re.findall(r"^([\w-][\w .-]*):(?!=)", text, re.M) for m in line.split()}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_make_target_named_exists(doc: Path) -> None:
    targets = _make_targets()
    named = set(re.findall(r"(?:`|^\s*)make ([a-z][\w-]*)", doc.read_text(), re.M))
    assert not named - targets, f"{doc.name} names make targets that do not exist: {sorted(named - targets)}"


# -- settings ----------------------------------------------------------------------------------------------


def _configuration_table() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration") : readme.index("A bad value stops the server")]
    names: list[str] = []
    for row in table.splitlines():
        if row.startswith("| `"):
            names += re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])
    return names


SETTINGS = {name for cls in Settings.__mro__ for name in getattr(cls, "__annotations__", {})}
# Upper-case names the docs use that belong to others: AWS's (a `sam deploy` capability).
NOT_OURS = {"CAPABILITY_IAM"}


def test_every_setting_in_the_configuration_table_is_a_setting() -> None:
    read = "".join(p.read_text() for p in (LIB / "config.py", LIB / "cli.py"))  # `HOST` is serve's, from getenv
    names = _configuration_table()
    assert len(names) > 40
    missing = [n for n in names if n.lower() not in SETTINGS and f'"{n}"' not in read]
    assert not missing, f"the README's configuration table names settings that do not exist: {missing}"


def test_every_upper_case_name_in_the_docs_exists() -> None:
    """A setting, an environment variable or a constant the docs name (`JOB_STALE_S`, `KILO_BRIDGE_KEY`,
    `STATUS_BY_CODE`) is a setting, or appears in the code, or in the docs' own examples."""
    code = "".join(
        p.read_text(errors="replace")
        for pattern in ("*.py", "*.lua", "*.sh", "*.mk", "*.json")
        for top in [*CODE_DIRS, ROOT / "tests", ROOT / "mk"]
        for p in top.rglob(pattern)
        if "node_modules" not in p.parts
    )
    code += (ROOT / "Makefile").read_text() + (ROOT / "template.yaml").read_text()
    examples = "".join("".join(re.findall(r"```.*?```", d.read_text(), re.S)) for d in DOCS)
    unknown = {
        name: doc.name
        for doc in DOCS
        for name in re.findall(r"`([A-Z][A-Z0-9]*_[A-Z0-9_]+)`", re.sub(r"```.*?```", "", doc.read_text(), flags=re.S))
        if name.lower() not in SETTINGS and name not in code and name not in examples and name not in NOT_OURS
    }
    assert not unknown, f"the docs name settings or constants that do not exist: {unknown}"


# -- the package tree --------------------------------------------------------------------------------------


def test_every_package_is_in_the_readme_tree_and_the_architecture_table() -> None:
    packages = sorted(p.name for p in LIB.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    readme = (ROOT / "README.md").read_text()
    tree = readme[readme.index("layers/kilo_bridge/   the library") : readme.index("agent_task/           the runner")]
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    assert [p for p in packages if f"  {p}/" not in tree] == [], "packages missing from the README's tree"
    assert [p for p in packages if f"| `{p}/` |" not in architecture] == [], "packages missing from architecture.md"

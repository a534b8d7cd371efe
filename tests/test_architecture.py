# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
The shape of the code (README, "Architecture"): modules of one job under 600 lines, no import circles, the batch
sub-package free of the command line, the command line's parsing kept in the command line (typed options below it),
and one identity (the package never loads a model folder's code).
"""

import ast
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 600
ROOT_MODULES = sorted(path.stem for path in REPO_ROOT.glob("*.py"))


def source_files():
    """Every Python file of the project outside tests/ and benchmarks/ (and local model folders, virtual envs)."""
    skipped = {"tests", "benchmarks", "models", "outputs", ".venv", ".git"}
    for directory, subdirectories, names in os.walk(REPO_ROOT):
        subdirectories[:] = sorted(name for name in subdirectories if name not in skipped and not name.startswith("."))
        for name in sorted(names):
            if name.endswith(".py"):
                yield Path(directory) / name


def module_name(path):
    relative = path.relative_to(REPO_ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path, module, known, top_level_only):
    """The project modules that `module` (the file at `path`) imports, resolved to names in `known`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    # Module-level `try: from .x import ...` / `except ImportError: from x import ...` (the Hub files' pattern).
    if top_level_only:
        for node in tree.body:
            if isinstance(node, ast.Try):
                nodes = nodes + node.body + [item for handler in node.handlers for item in handler.body]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                prefix = ".".join(base + ([node.module] if node.module else []))
                if not prefix:  # `from . import x` at the repository root: the Hub files' relative form
                    prefix = ""
            else:
                prefix = node.module or ""
            names = [f"{prefix}.{alias.name}" if prefix else alias.name for alias in node.names] + [prefix]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def imported_modules_of(path):
    """Every module `path` imports, by its top-level name (the standard library's and third parties' included)."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            imported.add(node.module.split(".")[0])
    return imported


def import_graph(top_level_only=True):
    files = {module_name(path): path for path in source_files()}
    known = set(files)
    return {module: imported_modules(path, module, known, top_level_only) for module, path in files.items()}


def find_cycle(graph):
    """One import cycle of `graph` as a list of modules, or None."""
    state = {}

    def visit(module, stack):
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state:
                cycle = visit(target, stack)
                if cycle:
                    return cycle
        stack.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [])
            if cycle:
                return cycle
    return None


def test_no_source_file_is_over_600_lines():
    long_files = {
        str(path.relative_to(REPO_ROOT)): count
        for path in source_files()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long_files == {}


def test_modules_import_each_other_without_circles():
    assert find_cycle(import_graph(top_level_only=True)) is None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_relative_and_hub_style_imports():
    graph = import_graph()
    assert "vocabulary_orcahello" in graph["pipeline_orcahello"]  # `try: from .x` / `except: from x`
    assert "orcahello.detect" in graph["orcahello.cli"]  # `from . import detect`


@pytest.mark.parametrize("module", ["orcahello.batch"])
def test_the_batch_package_never_imports_the_command_line(module):
    graph = import_graph(top_level_only=False)
    batch_modules = [name for name in graph if name == module or name.startswith(module + ".")]
    assert len(batch_modules) > 3
    assert {
        name: sorted(graph[name] & {"orcahello.cli"}) for name in batch_modules if "orcahello.cli" in graph[name]
    } == {}


def test_argparse_ends_at_the_command_line():
    """Only `orcahello.cli` and `orcahello.options` parse arguments; everything below them takes typed options."""
    importers = sorted(
        str(path.relative_to(REPO_ROOT))
        for path in source_files()
        if path.relative_to(REPO_ROOT).parts[0] != "scripts"  # stand-alone scripts have their own small parsers
        and "argparse" in imported_modules_of(path)
    )
    assert importers == ["orcahello/cli.py", "orcahello/options.py"]


def test_only_the_command_line_imports_the_detect_command_and_the_option_definitions():
    """What several commands share lives in modules of its own (`orcahello.runs`), not in a command's."""
    graph = import_graph(top_level_only=False)
    importers = {
        target: sorted(module for module, imported in graph.items() if target in imported)
        for target in ("orcahello.detect", "orcahello.options")
    }
    assert importers == {"orcahello.detect": ["orcahello.cli"], "orcahello.options": ["orcahello.cli"]}


def test_the_architecture_checks_see_what_they_check():
    assert "argparse" in imported_modules_of(REPO_ROOT / "orcahello" / "cli.py")
    graph = import_graph(top_level_only=False)
    assert "orcahello.runs" in graph["orcahello.batch.sources"]  # `from .. import inputs, runs`


def test_the_package_never_runs_a_model_folders_code():
    """One identity: the commands build the pipeline from the package's classes (remote code is for Hub users)."""
    offenders = []
    for path in source_files():
        relative = path.relative_to(REPO_ROOT)
        if relative.parts[0] != "orcahello" or relative.parts[:2] == ("orcahello", "conversion"):
            continue  # the converter checks the Hub path of the folders it writes, on purpose
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                offenders.append(f"{relative}:{node.value.lineno}")
    assert offenders == []


def test_the_vocabulary_imports_the_standard_library_only():
    tree = ast.parse((REPO_ROOT / "vocabulary_orcahello.py").read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            imported.add(node.module.split(".")[0])
    assert imported <= {"contextlib", "ctypes", "functools", "os", "sys", "tempfile"}, imported

# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
The shape of the code (README, "Architecture"): modules of one job under 600 lines, no import circles, the batch
sub-package free of the command line, the command line's parsing kept in the command line (typed options below it),
and one identity (the package never loads a model folder's code).
"""

import ast
import os
import re
import sys
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
    """Only `orcahello.cli` and `orcahello.options` (with its value types, `orcahello.option_values`) parse
    arguments; everything below them takes typed options."""
    importers = sorted(
        str(path.relative_to(REPO_ROOT))
        for path in source_files()
        if path.relative_to(REPO_ROOT).parts[0] != "scripts"  # stand-alone scripts have their own small parsers
        and "argparse" in imported_modules_of(path)
    )
    assert importers == ["orcahello/cli.py", "orcahello/option_values.py", "orcahello/options.py"]


def test_only_the_command_line_imports_the_detect_command_and_the_option_definitions():
    """What several commands share lives in modules of its own (`orcahello.runs`), not in a command's."""
    graph = import_graph(top_level_only=False)
    importers = {
        target: sorted(module for module, imported in graph.items() if target in imported)
        for target in ("orcahello.detect", "orcahello.options", "orcahello.option_values")
    }
    assert importers == {
        "orcahello.detect": ["orcahello.cli"],
        "orcahello.options": ["orcahello.cli"],
        "orcahello.option_values": ["orcahello.options"],
    }


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
        elif isinstance(node, ast.ImportFrom):
            imported.add("." if node.level else node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names), imported


# Calls a module may make at its top level and still have no effect when imported: building values.
PURE_BUILTINS = {"tuple", "list", "dict", "set", "frozenset", "max", "min", "sorted", "len"}


def effects_at_import(path):
    """The top-level statements of the module at `path` that do something when it is imported (beyond defining
    names and values): any call but a pure builtin's, decorators, loops, conditionals, bare expressions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    effects = []
    for index, node in enumerate(tree.body):
        if index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.decorator_list:
            defaults = node.args.defaults + node.args.kw_defaults if isinstance(node, ast.FunctionDef) else []
            if not any(isinstance(call, ast.Call) for default in defaults if default for call in ast.walk(default)):
                continue
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.Import, ast.ImportFrom)):
            calls = [call for call in ast.walk(node) if isinstance(call, ast.Call)]
            if all(isinstance(call.func, ast.Name) and call.func.id in PURE_BUILTINS for call in calls):
                continue
        effects.append(f"line {node.lineno}: {ast.unparse(node).splitlines()[0]}")
    return effects


def test_the_vocabulary_does_nothing_when_imported():
    """Names and values only (it once read the umask at import, by setting it: `os.umask`)."""
    assert effects_at_import(REPO_ROOT / "vocabulary_orcahello.py") == []


def test_the_import_effect_finder_finds_effects(tmp_path):
    module = tmp_path / "module.py"
    module.write_text(
        '"""Doc."""\nimport os\nNAMES = tuple(sorted({"b", "a"}))\nUMASK = os.umask(0o022)\nos.umask(UMASK)\n'
        "def pure(value=NAMES):\n    return os.getcwd()\n"
    )
    assert effects_at_import(module) == ["line 4: UMASK = os.umask(18)", "line 5: os.umask(UMASK)"]


# What reaching into a pipeline's internals looks like: a private attribute of a variable holding one.
PRIVATE_PIPELINE_ATTRIBUTE = re.compile(
    r"\b(?:\w*pipe(?:line)?|detector|self\.pipe(?:line)?)\._[a-z]\w*|\._sanitize_parameters\b"
)


def python_files_outside_the_pipeline():
    """Every Python file of the project, tests and benchmarks included, but the pipeline's own and this one."""
    files = (
        list(source_files())
        + sorted((REPO_ROOT / "tests").glob("*.py"))
        + sorted((REPO_ROOT / "benchmarks").glob("*.py"))
    )
    return [path for path in files if path.name != "pipeline_orcahello.py" and path != Path(__file__).resolve()]


def test_nothing_outside_the_pipeline_uses_its_private_attributes():
    """The pipeline's public methods (`resolve_parameters`, `batch_size`, `score_windows`, `score_features`...)
    are the way in: `_sanitize_parameters`, `_batch_size`, `_scorers`... are its own business."""
    uses = []
    for path in python_files_outside_the_pipeline():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if PRIVATE_PIPELINE_ATTRIBUTE.search(line):
                uses.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert uses == []


@pytest.mark.parametrize(
    "line",
    [
        "batch_size = int(batch_size or pipe._batch_size or 8)",
        "preprocess_parameters = pipe._sanitize_parameters(**pipeline_parameters)[0]",
        "defaults = self.pipeline._sanitize_parameters(**preset)[0]",
        "assert {scorer.name for scorer in detector._scorers.values()} == set(ENGINES)",
        "assert any(scorer.content_frames is None for scorer in tiny_pipeline._scorers.values())",
        "frontend = resnet50_pipeline._sanitize_parameters(preset=preset)[0]",
    ],
)
def test_the_private_attribute_finder_finds_them(line):
    assert PRIVATE_PIPELINE_ATTRIBUTE.search(line)


def test_the_private_attribute_finder_leaves_public_names_and_other_objects_alone():
    for line in ("pipe.resolve_parameters(preset=preset).preprocess", "self._scorers = ModelScorers(...)",
                 "pipe.score_windows(source)", "pipeline_module = remote_code_module(pipe, 'x')"):  # fmt: skip
        assert not PRIVATE_PIPELINE_ATTRIBUTE.search(line), line


def test_every_hub_module_goes_into_model_folders_and_the_package():
    """A flat `*_orcahello.py` module left out of a model folder breaks remote code loading (transformers copies the
    files a module imports from the folder); left out of `py-modules`, an installed package lacks it."""
    tomllib = pytest.importorskip("tomllib")
    from orcahello.conversion.model_folder import CUSTOM_CODE_FILES

    hub_modules = {path.name for path in REPO_ROOT.glob("*_orcahello.py")}
    assert set(CUSTOM_CODE_FILES) == hub_modules
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert {f"{name}.py" for name in project["tool"]["setuptools"]["py-modules"]} == hub_modules


def typed_files():
    """The Hub API files (`*_orcahello.py`, `handler.py`) and the `orcahello` package: what mypy checks in CI."""
    return (
        sorted(REPO_ROOT.glob("*_orcahello.py"))
        + [REPO_ROOT / "handler.py"]
        + sorted((REPO_ROOT / "orcahello").rglob("*.py"))
    )


def unannotated_public_functions(source, name):
    """
    `"<name>:<line> <function>: <what is missing>"` for each public function and method of the module text `source`
    (its name does not start with `_`, or it is `__init__`; functions inside functions are not public) with a
    parameter (other than self/cls) or its return left unannotated.
    """
    found = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if child.name.startswith("_") and child.name != "__init__":
                    continue
                arguments = child.args
                parameters = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
                missing = [
                    parameter.arg
                    for index, parameter in enumerate(parameters)
                    if parameter.annotation is None and not (index == 0 and prefix and parameter.arg in ("self", "cls"))
                ]
                missing += [
                    f"{stars}{parameter.arg}"
                    for stars, parameter in (("*", arguments.vararg), ("**", arguments.kwarg))
                    if parameter is not None and parameter.annotation is None
                ]
                what = [f"parameter{'s' if len(missing) > 1 else ''} {', '.join(missing)}"] if missing else []
                what += ["return"] if child.returns is None else []
                if what:
                    found.append(f"{name}:{child.lineno} {prefix}{child.name}: {' and '.join(what)}")

    visit(ast.parse(source), "")
    return found


def test_every_public_function_of_the_hub_files_and_the_package_is_annotated():
    """Type hints on every public function (CONTRIBUTING.md), so that mypy checks what they are called with."""
    offenders = []
    for path in typed_files():
        offenders += unannotated_public_functions(path.read_text(encoding="utf-8"), path.relative_to(REPO_ROOT))
    assert offenders == []


def test_the_annotation_finder_names_each_function_and_what_it_lacks():
    source = (
        "def typed(a: int, *args: str, b: str = '', **kwargs: int) -> int: ...\n"
        "def untyped_parameter(a, b: int) -> None: ...\n"
        "def no_return(a: int): ...\n"
        "def _private(a): ...\n"
        "class Thing:\n"
        "    def __init__(self, a, *args, **kwargs) -> None: ...\n"
        "    @classmethod\n"
        "    def build(cls, size: int) -> 'Thing': ...\n"
        "    def method(self): ...\n"
        "    def __repr__(self): ...\n"
        "def outer(self) -> None:\n"
        "    def inner(a): ...\n"
    )
    assert unannotated_public_functions(source, "module.py") == [
        "module.py:2 untyped_parameter: parameter a",
        "module.py:3 no_return: return",
        "module.py:6 Thing.__init__: parameters a, *args, **kwargs",
        "module.py:9 Thing.method: return",
        "module.py:11 outer: parameter self",
    ]


def test_ci_type_checks_the_files_the_annotations_cover():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["tool"]["mypy"]["files"] == ["*_orcahello.py", "handler.py", "orcahello"]
    assert "\n.venv/bin/mypy\n" in (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_reaggregate_decides_saved_results_without_torch(tmp_path):
    """`orcahello reaggregate` re-decides without the model: with torch made unimportable, it still runs."""
    import json
    import subprocess

    from results_orcahello import build_file_result

    info = {"name": "clip.wav", "sampling_rate": 20000, "num_samples": 200000, "num_channels": 1, "num_windows": 9,
            "window_seconds": 2.0, "hop_seconds": 1.0, "timeline": None}  # fmt: skip
    result = build_file_result(info, [0.1, 0.2, 0.9, 0.95, 0.97, 0.8, 0.3, 0.2, 0.1], return_timestamps=True)
    saved = {"file": "clip.wav", **result, "preset": "fastai", "model": {"name_or_path": "gone"}, "run_hash": "x"}
    saved["parameters"] = {**result["parameters"], "preset": "fastai", "batch_size": 8, "device": "cpu"}
    (tmp_path / "clip.orcahello.json").write_text(json.dumps(saved))
    code = (
        "import sys; sys.modules['torch'] = None\n"  # `import torch` now raises ImportError
        "from orcahello.cli import main\n"
        f"status = main(['reaggregate', {str(tmp_path)!r}, '--output-dir', {str(tmp_path / 'out')!r}, "
        "'--min-positive-seconds', '6'])\n"
        "print(sorted(name for name in ('torch',) if sys.modules.get(name)), status)\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().splitlines()[-1] == "[] 0"
    redecided = json.loads((tmp_path / "out" / "clip.orcahello.json").read_text())
    # Smoothed rows 0.55, 0.925, 0.96, 0.885, 0.55 are above 0.5: five seconds, fewer than the 6 now asked for.
    assert (result["global_prediction"], redecided["global_prediction"]) == (1, 0)
    assert redecided["parameters"]["min_positive_seconds"] == 6 and sum(redecided["local_predictions"]) == 5

"""
The manual (docs/, mkdocs.yml) builds with `mkdocs build --strict` without a single warning, as CI builds it: every
page in the nav, every internal link and anchor resolving. The card and the manual stand alone: no Markdown file of
the repository points to the `../shared` folder beside a development checkout (only scripts and CI may name it, as one
local source of the test data), and every relative link of the card (README.md) points to a file of the repository.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from conftest import REPO_ROOT
from markdown.extensions.toc import slugify

# Material for MkDocs prints a notice about MkDocs 2 on every build; it is not a warning about the manual.
BUILD_ENVIRONMENT = dict(os.environ, NO_MKDOCS_2_WARNING="1")
# Files that may name ../shared: they fetch or set up the test data on a development machine.
ALLOWED_TO_NAME_SHARED = ("scripts/", ".ci/")
# Folders of a checkout that hold no tracked files (used when the repository is not a git checkout).
UNTRACKED_FOLDERS = {".git", ".venv", "models", "outputs", "site", "test-data", "node_modules", "__pycache__"}
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def build_manual(config_folder, site_folder):
    """`mkdocs build --strict` of the manual whose mkdocs.yml is in `config_folder`, run there as CI runs it."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_folder)],
        cwd=config_folder,
        env=BUILD_ENVIRONMENT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def warnings_in(output):
    return [line for line in output.splitlines() if line.startswith(("WARNING", "ERROR"))]


def test_the_manual_builds_strictly_without_a_warning(tmp_path):
    completed = build_manual(REPO_ROOT, tmp_path / "site")
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-4000:]
    assert warnings_in(output) == []
    # Every page of docs/ became a page of the site (omitted pages would have been a warning).
    for page in (REPO_ROOT / "docs").glob("*.md"):
        built = "index.html" if page.stem == "index" else f"{page.stem}/index.html"
        assert (tmp_path / "site" / built).is_file(), f"{page.name} was not built"
    # The contributor notes and the changelog are shown from the root files, not from copies.
    contributing = (tmp_path / "site" / "contributing" / "index.html").read_text(encoding="utf-8")
    assert "fetch_test_data.py" in contributing


def test_a_broken_link_or_anchor_fails_the_build(tmp_path):
    """The strict build is the check: a link to a missing page and an anchor no page has are each an error."""
    for name in ("mkdocs.yml", "CONTRIBUTING.md", "CHANGELOG.md"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / "docs", tmp_path / "docs")
    with open(tmp_path / "docs" / "index.md", "a", encoding="utf-8") as handle:
        handle.write("\n[a page](no-such-page.md) and [a section](cli.md#no-such-section)\n")
    completed = build_manual(tmp_path, tmp_path / "site")
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0
    assert any("no-such-page.md" in line for line in warnings_in(output)), output[-4000:]
    assert any("no-such-section" in line for line in warnings_in(output)), output[-4000:]


def tracked_markdown_files():
    """The repository's Markdown files, relative to its root: in a checkout, those git tracks or would (not ignored),
    else every one on disk."""
    if (REPO_ROOT / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "*.md"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return sorted(name for name in listed.split("\0") if name and (REPO_ROOT / name).is_file())
    found = []
    for directory, subdirectories, names in os.walk(REPO_ROOT):
        subdirectories[:] = [name for name in subdirectories if name not in UNTRACKED_FOLDERS]
        found += [str((Path(directory) / name).relative_to(REPO_ROOT)) for name in names if name.endswith(".md")]
    return sorted(found)


def test_no_markdown_file_points_to_the_shared_folder():
    files = tracked_markdown_files()
    assert "README.md" in files and "docs/index.md" in files
    offenders = [
        f"{name}:{number}"
        for name in files
        if not name.startswith(ALLOWED_TO_NAME_SHARED)
        for number, line in enumerate((REPO_ROOT / name).read_text(encoding="utf-8").splitlines(), start=1)
        if "../shared" in line
    ]
    assert offenders == []


def links_outside_code(text):
    """The targets of the Markdown links and images of `text`, leaving out fenced code blocks and inline code."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    return MARKDOWN_LINK.findall(prose)


def headings_anchors(markdown_file):
    text = re.sub(r"^```.*?^```", "", markdown_file.read_text(encoding="utf-8"), flags=re.DOTALL | re.MULTILINE)
    return {slugify(heading.strip(), "-") for heading in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}


def test_every_relative_link_of_the_card_points_to_a_file_of_the_repository():
    targets = links_outside_code((REPO_ROOT / "README.md").read_text(encoding="utf-8"))
    relative = [target for target in targets if not urlparse(target).scheme and not target.startswith("#")]
    assert any(target.startswith("docs/") for target in relative), "the card links no page of the manual"
    problems = []
    for target in relative:
        path, _, anchor = unquote(target).partition("#")
        resolved = (REPO_ROOT / path).resolve()
        if not resolved.is_relative_to(REPO_ROOT.resolve()) or not resolved.exists():
            problems.append(f"{target}: no such file in the repository")
        elif anchor and resolved.suffix == ".md" and anchor not in headings_anchors(resolved):
            problems.append(f"{target}: {path} has no section #{anchor}")
    assert problems == []


def test_the_link_check_sees_links_and_skips_code():
    text = '[a](docs/a.md) ![b](b.png "title") `[c](c.md)` [d](https://example.org)\n```sh\n[e](e.md)\n```\n'
    assert links_outside_code(text) == ["docs/a.md", "b.png", "https://example.org"]


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Parity with the port", "parity-with-the-port"),
        ("Production's samples", "productions-samples"),
        ("The shipped tables: `site_thresholds/`", "the-shipped-tables-site_thresholds"),
    ],
)
def test_anchors_are_the_ones_mkdocs_makes(heading, anchor, tmp_path):
    page = tmp_path / "page.md"
    page.write_text(f"# Title\n\n## {heading}\n", encoding="utf-8")
    assert anchor in headings_anchors(page)


def code_blocks(text):
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def manual_pages():
    return ["README.md", *sorted(str(path.relative_to(REPO_ROOT)) for path in (REPO_ROOT / "docs").glob("*.md"))]


def test_no_command_names_a_model_folder_the_offline_setup_never_makes():
    """Offline, scripts/setup.sh makes the stand-in's folder, not models/orcahello-srkw-detector-v1: a command
    naming that folder fails for a new user; the commands use the default model or `fetch_model.py --print-path`."""
    offenders = [
        name
        for name in manual_pages()
        for block in code_blocks((REPO_ROOT / name).read_text(encoding="utf-8"))
        if "models/orcahello-srkw-detector-v1" in block
    ]
    assert offenders == []


def test_a_bare_pip_install_line_says_which_environment():
    """uv's .venv has no pip: a bare `pip install` installs into some other Python. Lines say which environment."""
    offenders = [
        f"{name}: {line.strip()}"
        for name in manual_pages()
        for block in code_blocks((REPO_ROOT / name).read_text(encoding="utf-8"))
        for line in block.splitlines()
        if re.match(r"\s*pip install", line)
    ]
    assert offenders == []


def test_what_the_commands_write_in_a_checkout_is_git_ignored():
    """The manual's commands, run from the checkout, write results there: never files git offers to commit."""
    written = {
        # A folder as git sees one (its trailing "/"), a file (metrics.json) as it is.
        match.group(1).split("/")[0] + ("/" if "/" in match.group(1) or "." not in match.group(1) else "")
        for name in manual_pages()
        for block in code_blocks((REPO_ROOT / name).read_text(encoding="utf-8"))
        for match in re.finditer(r"--output(?:-dir)? ([^\s`\]]+)", block)
        if not match.group(1).isupper() and not match.group(1).startswith(("/", "$", "<", "~"))
    }
    assert "results/" in written and "live_results/" in written
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *sorted(written)], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.split()
    assert sorted(set(written) - set(ignored)) == []

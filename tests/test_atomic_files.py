"""
`orcahello.atomic_files`: outputs written through a temporary file beside them, with the mode any new file of the
process gets under its umask at the time, and a name the cleanup of a killed run recognizes.
"""

import os
import stat
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from orcahello import writers
from orcahello.atomic_files import PARTIAL_SUFFIX, temporary_file_beside, write_atomically

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes and umasks are POSIX")


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_get_the_mode_open_gives_under_the_current_umask(tmp_path, umask):
    """The umask set after the module was imported is the one that counts (it was once read only at import)."""
    previous = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w") as handle:
            handle.write("made by open()")
        write_atomically(tmp_path / "output.txt", "made atomically")
        with temporary_file_beside(tmp_path / "table.parquet") as temporary_path:
            temporary_mode = mode_of(temporary_path)
    finally:
        os.umask(previous)
    assert mode_of(tmp_path / "output.txt") == mode_of(tmp_path / "plain.txt") == 0o666 & ~umask
    assert temporary_mode == 0o666 & ~umask
    assert (tmp_path / "output.txt").read_text() == "made atomically"


def test_importing_it_leaves_the_umask_alone(tmp_path):
    """Reading the umask with `os.umask` sets it, racing with other threads: the module never calls it."""
    script = (
        "import os, sys\n"
        "calls = []\n"
        "real_umask = os.umask\n"
        "os.umask = lambda mask: calls.append(mask) or real_umask(mask)\n"
        f"sys.path.insert(0, {str(REPO_ROOT)!r})\n"
        "import vocabulary_orcahello, process_memory_orcahello\n"
        "from orcahello import atomic_files\n"
        "atomic_files.write_atomically(sys.argv[1], 'x')\n"
        "print(calls)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "output.txt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_a_temporary_file_is_new_hidden_and_known_to_the_cleanup(tmp_path):
    target = tmp_path / "clip.orcahello.json"
    target.write_text("the finished output")
    with temporary_file_beside(target) as first, temporary_file_beside(target) as second:
        assert first != second and os.path.dirname(first) == str(tmp_path)
        name = os.path.basename(first)
        assert name.startswith(".clip.orcahello.json.") and name.endswith(PARTIAL_SUFFIX)
        assert os.path.getsize(first) == 0 and target.read_text() == "the finished output"
        assert writers.partial_files_of(target) == sorted([first, second])
    assert writers.partial_files_of(target) == []  # removed with the block


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "summary.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with temporary_file_beside(target) as temporary_path:
            with open(temporary_path, "w") as handle:
                handle.write("half")
            raise RuntimeError("killed midway")
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["summary.csv"]

"""
One safe way to open output files (issue 30: F16, F18's `embed` half): no command writes through a symbolic link it
did not create (the lock file, a log it appends to, a model folder's files), and every command that writes holds its
folder's lock, so that a second run into the same folder is refused with a one-line message naming the first.
"""

import json
import os

import pytest

from orcahello import EXIT_CANNOT_RUN, cli, live_outputs, run_lock
from orcahello.conversion import model_folder


@pytest.fixture
def victim(tmp_path):
    """A file someone else owns, that a planted symbolic link points to: it must come out of every run unchanged."""
    path = tmp_path / "victim.txt"
    path.write_text("precious\n")
    return path


def test_a_planted_lock_symlink_is_refused_and_its_target_untouched(tmp_path, victim):
    # F16: detect and batch opened the lock file through the link, then truncated and rewrote its target.
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / run_lock.LOCK_FILE_NAME).symlink_to(victim)
    with pytest.raises(run_lock.SymlinkedOutput, match="is a symbolic link: orcahello never writes through one"):
        run_lock.OutputFolderLock(folder, "orcahello detect").acquire()
    assert victim.read_text() == "precious\n"
    # A dangling link (to a file the run would create) is refused too.
    dangling = tmp_path / "dangling"
    dangling.mkdir()
    (dangling / run_lock.LOCK_FILE_NAME).symlink_to(tmp_path / "created-by-the-run")
    with pytest.raises(run_lock.SymlinkedOutput):
        run_lock.OutputFolderLock(dangling, "orcahello detect").acquire()
    assert not (tmp_path / "created-by-the-run").exists()


def test_appending_never_follows_a_symlink(tmp_path, victim):
    # F16: live appended its windows to whatever a symlinked windows.jsonl pointed at.
    log = tmp_path / "windows.jsonl"
    log.symlink_to(victim)
    with pytest.raises(run_lock.SymlinkedOutput):
        live_outputs.append_lines(str(log), [{"start": 0}])
    with pytest.raises(run_lock.SymlinkedOutput):
        live_outputs.drop_partial_last_line(str(log))
    assert victim.read_text() == "precious\n"
    plain = tmp_path / "plain.jsonl"
    live_outputs.append_lines(str(plain), [{"start": 0}, {"start": 1}])
    assert [json.loads(line) for line in plain.read_text().splitlines()] == [{"start": 0}, {"start": 1}]


def test_a_model_folder_is_written_around_symlinks(tmp_path, victim):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "README.md").symlink_to(victim)
    (folder / "handler.py").symlink_to(victim)
    model_folder.refresh_custom_code(str(folder))
    assert victim.read_text() == "precious\n"
    assert not (folder / "handler.py").is_symlink() and "EndpointHandler" in (folder / "handler.py").read_text()


@pytest.mark.parametrize(
    "arguments",
    [
        ["embed", "clip.wav", "--output-dir", "{folder}"],
        ["calibrate", "labels.csv", "--target-precision", "0.9", "--output", "{folder}/sites.json"],
        ["evaluate", "results", "--annotations", "a.csv", "--output", "{folder}/metrics.json"],
        ["search", "tables", "--query-clip", "clip.wav", "--output", "{folder}/hits.csv"],
        ["adapt", "a.csv", "--recordings", "r", "--output-dir", "{folder}/adapted"],
        ["reaggregate", "results", "--output-dir", "{folder}"],
    ],
    ids=lambda arguments: arguments[0],
)
def test_every_writing_command_holds_its_folder(tmp_path, capsys, victim, arguments):
    # F18: embed (and calibrate, evaluate, search, adapt, reaggregate) took no lock: two runs into one folder mixed their files.
    folder = tmp_path / "out"
    argv = [argument.replace("{folder}", str(folder)) for argument in arguments]
    with run_lock.OutputFolderLock(folder, "the first run"):
        assert cli.main(argv) == EXIT_CANNOT_RUN
        message = capsys.readouterr().err.strip()
        assert message.startswith("ERROR: ") and "in use by another run (the first run, pid" in message
        assert "\n" not in message
    # A planted lock symlink: refused the same way, its target untouched, the folder left as it was.
    (folder / run_lock.LOCK_FILE_NAME).symlink_to(victim)
    assert cli.main(argv) == EXIT_CANNOT_RUN
    assert "is a symbolic link" in capsys.readouterr().err
    assert victim.read_text() == "precious\n" and os.listdir(folder) == [run_lock.LOCK_FILE_NAME]


def test_a_folder_the_lock_created_is_removed_when_the_run_writes_nothing(tmp_path):
    folder = tmp_path / "new" / "out"
    with run_lock.holding_output_folders([folder, str(folder)], "orcahello embed") as locks:
        assert len(locks) == 1 and (folder / run_lock.LOCK_FILE_NAME).exists()
    assert not folder.exists()


def test_an_output_folder_that_cannot_be_written_is_a_one_line_refusal(tmp_path, capsys):
    # F13/N12: an unwritable output folder (here a file where the folder would be) was a traceback.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(run_lock.OutputFolderRefused, match=r"^cannot write into .*a-file/out: Not a directory; choose"):
        run_lock.OutputFolderLock(blocker / "out", "orcahello detect").acquire()
    assert cli.main(["embed", "clip.wav", "--output-dir", str(blocker / "out")]) == EXIT_CANNOT_RUN
    message = capsys.readouterr().err.strip()
    assert message.startswith("ERROR: cannot write into") and "\n" not in message

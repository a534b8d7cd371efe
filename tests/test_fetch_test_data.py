"""
The test-data set (`scripts/fetch_test_data.py`, `tests/test_data.json`): installed from a local folder or the Hub
dataset at the pinned revision, every file checked, all at once; published by a maintainer; and the tests that need
it skipped, each by name, without it. `scripts/fetch_model.py` makes a marked random model when it has neither the
Hub nor the set. No network: the Hub is a stand-in object here.
"""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, TEST_DATA_MANIFEST, load_script

fetch_test_data = load_script("fetch_test_data")
fetch_model = load_script("fetch_model")

# sha256 of b"abc" and of b"" (FIPS 180-2's example and the empty message).
ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
GROUPS = [
    {"folder": "fixtures/small", "source": "made here", "licence": "MIT"},
    {"folder": "audio/real", "source": "elsewhere", "licence": "see SOURCES.md"},
]


def make_source(folder):
    """A small set laid out as the real one, with a file outside its groups that must be left out."""
    files = {
        "fixtures/small/abc.txt": b"abc",
        "fixtures/small/nested/empty.bin": b"",
        "audio/real/SOURCES.md": b"# sources\n",
        "audio/real/clip.wav": bytes(range(256)) * 3,
        "legacy_src/not_in_the_set.py": b"print()\n",
        "fixtures/small/.hidden": b"left out",
    }
    for relative, content in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(content)
    return folder


@pytest.fixture(autouse=True)
def no_source_from_the_environment(monkeypatch):
    """CI exports ORCAHELLO_TEST_DATA_SOURCE (the set beside the clone); these tests name their own sources."""
    monkeypatch.delenv("ORCAHELLO_TEST_DATA_SOURCE", raising=False)
    monkeypatch.delenv("ORCAHELLO_TEST_DATA", raising=False)


@pytest.fixture()
def small_set(tmp_path):
    """`(source folder, manifest path, manifest)` for a small set whose manifest was written from the folder."""
    source = make_source(tmp_path / "source")
    manifest_path = tmp_path / "test_data.json"
    hub = {"repo_id": "someone/some-test-data", "repo_type": "dataset", "revision": "v7"}
    manifest_path.write_text(json.dumps({"hub": hub, "groups": GROUPS, "files": []}))
    manifest = fetch_test_data.write_manifest(source, manifest_path)
    return source, manifest_path, manifest


def quiet(message):
    pass


def replace_file(path, content):
    """Give `path` new content as a new file (a hard link to the old one keeps the old content)."""
    path.with_name(path.name + ".new").write_bytes(content)
    os.replace(path.with_name(path.name + ".new"), path)


# ---------------------------------------------------------------------------------------------------------------
# The manifest
# ---------------------------------------------------------------------------------------------------------------


def test_the_manifest_lists_every_file_of_the_groups_with_its_size_and_sha256(small_set):
    _, manifest_path, manifest = small_set
    assert {entry["path"]: (entry["size"], entry["sha256"]) for entry in manifest["files"]} == {
        "audio/real/SOURCES.md": (10, fetch_test_data.file_sha256(small_set[0] / "audio/real/SOURCES.md")),
        "audio/real/clip.wav": (768, fetch_test_data.file_sha256(small_set[0] / "audio/real/clip.wav")),
        "fixtures/small/abc.txt": (3, ABC_SHA256),
        "fixtures/small/nested/empty.bin": (0, EMPTY_SHA256),
    }
    assert [entry["path"] for entry in manifest["files"]] == sorted(entry["path"] for entry in manifest["files"])
    assert json.loads(manifest_path.read_text())["hub"]["revision"] == "v7"  # kept as it was


def test_a_folder_without_a_group_is_refused(small_set, tmp_path):
    _, manifest_path, _ = small_set
    incomplete = make_source(tmp_path / "incomplete")
    for path in sorted((incomplete / "audio").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    with pytest.raises(fetch_test_data.InvalidTestDataError, match="does not hold the group 'audio/real'"):
        fetch_test_data.write_manifest(incomplete, manifest_path)


def test_the_committed_manifest_is_the_project_data_and_keeps_the_licences():
    paths = [entry["path"] for entry in TEST_DATA_MANIFEST["files"]]
    folders = [group["folder"] for group in TEST_DATA_MANIFEST["groups"]]
    assert folders == ["fixtures/legacy", "fixtures/hub_v1_layout", "audio/real", "data/moderator_labels"]
    assert paths == sorted(set(paths)) and len(paths) == 90
    assert all(any(path.startswith(folder + "/") for folder in folders) for path in paths)
    assert not [path for path in paths if path.startswith(("legacy_src/", "fixtures/upstream_live/"))]
    for notes in ("audio/real/SOURCES.md", "data/moderator_labels/LICENSE", "data/moderator_labels/SOURCES.md"):
        assert notes in paths
    assert all(group["source"] and group["licence"] for group in TEST_DATA_MANIFEST["groups"])
    hub = TEST_DATA_MANIFEST["hub"]
    assert (hub["repo_id"], hub["repo_type"]) == ("orcasound/orcahello-test-data", "dataset") and hub["revision"]
    assert all(len(entry["sha256"]) == 64 and entry["size"] > 0 for entry in TEST_DATA_MANIFEST["files"])


def test_the_default_place_is_no_hidden_folder():
    """pyarrow.dataset (and pandas, Spark) skip every path with a part starting with "." or "_": the batch tests
    read window tables whose folders mirror the recordings' paths."""
    relative = fetch_test_data.DEFAULT_DESTINATION.relative_to(REPO_ROOT)
    assert relative.parts == ("test-data",)


# ---------------------------------------------------------------------------------------------------------------
# Installing from a local folder
# ---------------------------------------------------------------------------------------------------------------


def test_a_local_source_is_installed_as_hard_links_checked_and_marked_complete(small_set, tmp_path):
    source, manifest_path, manifest = small_set
    destination = tmp_path / "project" / "test-data"
    assert "it is not in" in fetch_test_data.missing_reason(destination, manifest_path)
    fetch_test_data.fetch(source, destination, manifest, log=quiet)
    installed = sorted(path.relative_to(destination).as_posix() for path in destination.rglob("*") if path.is_file())
    assert installed == [".complete", *(entry["path"] for entry in manifest["files"])]
    assert os.path.samefile(destination / "fixtures/small/abc.txt", source / "fixtures/small/abc.txt")
    assert fetch_test_data.missing_reason(destination, manifest_path) is None
    # Nothing left beside it but the lock; a second run finds it installed and changes nothing.
    assert sorted(path.name for path in destination.parent.iterdir()) == [".test-data.lock", "test-data"]
    marker = (destination / ".complete").stat()
    messages = []
    fetch_test_data.fetch(source, destination, manifest, log=messages.append)
    assert messages == [f"the test data is already installed in {destination}"]
    assert (destination / ".complete").stat().st_mtime_ns == marker.st_mtime_ns


def test_files_are_copied_where_hard_links_are_refused(small_set, tmp_path, monkeypatch):
    source, _, manifest = small_set

    def cross_device(source_path, target_path):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(fetch_test_data.os, "link", cross_device)
    destination = tmp_path / "data"
    fetch_test_data.install(source, destination, manifest, log=quiet)
    copied = destination / "audio/real/clip.wav"
    assert copied.read_bytes() == (source / "audio/real/clip.wav").read_bytes()
    assert not os.path.samefile(copied, source / "audio/real/clip.wav")
    assert fetch_test_data.is_installed(destination, manifest)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda path: replace_file(path, b"abd"), f"has sha256 .* the manifest says {ABC_SHA256}"),
        (lambda path: replace_file(path, b"abcd"), "is 4 bytes, the manifest says 3"),
        (lambda path: path.unlink(), "fixtures/small/abc.txt is missing from"),
    ],
    ids=["content", "size", "missing"],
)
def test_a_file_that_is_not_the_manifests_installs_nothing_and_keeps_the_installed_set(
    small_set, tmp_path, damage, message
):
    source, _, manifest = small_set
    destination = tmp_path / "data"
    fetch_test_data.install(source, destination, manifest, log=quiet)
    newer = json.loads(json.dumps(manifest))
    newer["files"].append({"path": "audio/real/new.wav", "size": 3, "sha256": ABC_SHA256})
    (source / "audio/real/new.wav").write_bytes(b"abc")
    damage(source / "fixtures/small/abc.txt")
    with pytest.raises(fetch_test_data.InvalidTestDataError, match=message):
        fetch_test_data.install(source, destination, newer, log=quiet)
    assert fetch_test_data.is_installed(destination, manifest)  # the set that was there, whole
    assert (destination / "fixtures/small/abc.txt").read_bytes() == b"abc"
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".data")) == [".data.lock"]


def test_a_killed_install_leaves_the_previous_set_and_the_next_one_cleans_up(small_set, tmp_path, monkeypatch):
    source, manifest_path, manifest = small_set
    destination = tmp_path / "data"
    fetch_test_data.install(source, destination, manifest, log=quiet)
    (source / "audio/real/new.wav").write_bytes(b"")
    newer = fetch_test_data.write_manifest(source, manifest_path)
    assert "an older or unfinished copy is in" in fetch_test_data.missing_reason(destination, manifest_path)
    (tmp_path / ".data.partial-from-a-killed-run").mkdir()  # what SIGKILL leaves behind

    checked = []

    def interrupted(path, entry):
        checked.append(entry["path"])
        if len(checked) == 3:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(fetch_test_data, "check_file", interrupted)
        with pytest.raises(KeyboardInterrupt):
            fetch_test_data.install(source, destination, newer, log=quiet)
    assert fetch_test_data.is_installed(destination, manifest)
    fetch_test_data.install(source, destination, newer, log=quiet)
    assert fetch_test_data.missing_reason(destination, manifest_path) is None
    assert (destination / "audio/real/new.wav").exists()
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".data")) == [".data.lock"]


def test_the_command_line_takes_its_source_and_destination_from_the_environment(small_set, tmp_path):
    source, manifest_path, _ = small_set
    destination = tmp_path / "installed"
    environment = dict(
        os.environ, ORCAHELLO_TEST_DATA_SOURCE=str(source), ORCAHELLO_TEST_DATA=str(destination), PYTHONPATH=""
    )
    command = [sys.executable, str(REPO_ROOT / "scripts" / "fetch_test_data.py"), "--manifest", str(manifest_path)]
    completed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "installed 4 files of the test data" in completed.stdout and "every sha256 checked" in completed.stdout
    assert (destination / ".complete").exists()
    replace_file(source / "audio/real/clip.wav", b"tampered")
    broken = subprocess.run(
        [*command, "--destination", str(tmp_path / "other")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert broken.returncode == fetch_test_data.EXIT_INVALID
    assert broken.stderr.strip() == "fetch_test_data: audio/real/clip.wav is 8 bytes, the manifest says 768"
    assert not (tmp_path / "other").exists()


# ---------------------------------------------------------------------------------------------------------------
# The Hub dataset
# ---------------------------------------------------------------------------------------------------------------


class FakeHub:
    """`snapshot_download` as the Hub answers it: a snapshot folder of links into a blob store, or failures."""

    def __init__(self, tmp_path, source):
        self.calls, self.sleeps, self.failures, self.source, self.tmp_path = [], [], [], source, tmp_path

    def snapshot_download(self, repo_id, **options):
        self.calls.append((repo_id, options))
        if self.failures:
            raise self.failures.pop(0)
        snapshot = self.tmp_path / "hub-cache" / "snapshots" / "abc123"
        for pattern in options["allow_patterns"]:
            blob = self.tmp_path / "hub-cache" / "blobs" / pattern.replace("/", "_")
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes((self.source / pattern).read_bytes())
            (snapshot / pattern).parent.mkdir(parents=True, exist_ok=True)
            (snapshot / pattern).symlink_to(blob)
        return str(snapshot)


@pytest.fixture()
def fake_hub(small_set, tmp_path, monkeypatch):
    import huggingface_hub

    hub = FakeHub(tmp_path, small_set[0])
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)
    monkeypatch.setattr(fetch_test_data, "hub_resolves", lambda: True)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(fetch_test_data.time, "sleep", hub.sleeps.append)  # the backoff, recorded
    return hub


def test_without_a_source_the_pinned_revision_of_the_hub_dataset_is_installed(small_set, fake_hub, tmp_path):
    _, _, manifest = small_set
    destination = tmp_path / "from-hub"
    fetch_test_data.fetch(None, destination, manifest, log=quiet)
    assert fake_hub.calls == [
        (
            "someone/some-test-data",
            {
                "repo_type": "dataset",
                "revision": "v7",
                "allow_patterns": [entry["path"] for entry in manifest["files"]],
            },
        )
    ]
    assert fetch_test_data.is_installed(destination, manifest)
    # Linked to the cache's blobs, not to its snapshot links.
    installed = destination / "fixtures/small/abc.txt"
    assert not installed.is_symlink() and installed.read_bytes() == b"abc"


def test_a_hub_that_fails_is_retried_with_backoff_then_one_line(small_set, fake_hub, tmp_path, monkeypatch, capsys):
    _, manifest_path, _ = small_set
    fake_hub.failures = [TimeoutError("read timed out\nmore detail")] * 3
    status = fetch_test_data.main(["--manifest", str(manifest_path), "--destination", str(tmp_path / "none")])
    assert status == fetch_test_data.EXIT_UNAVAILABLE
    assert len(fake_hub.calls) == 3 and fake_hub.sleeps == [2.0, 4.0]
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith(
        "fetch_test_data: cannot download someone/some-test-data@v7 after 3 attempts (TimeoutError: read timed out)"
    )
    assert "--source DIR" in error and not (tmp_path / "none").exists()
    # A transient failure is retried into a success.
    fake_hub.failures = [ConnectionError("reset")]
    assert fetch_test_data.main(["--manifest", str(manifest_path), "--destination", str(tmp_path / "one")]) == 0


def test_a_missing_revision_is_not_retried_and_no_dns_is_not_tried(small_set, fake_hub, tmp_path, monkeypatch):
    from huggingface_hub.errors import RevisionNotFoundError

    _, _, manifest = small_set
    missing = RevisionNotFoundError.__new__(RevisionNotFoundError)  # as raised, without an HTTP response to build
    Exception.__init__(missing, "404: no revision v7")
    fake_hub.failures = [missing]
    with pytest.raises(fetch_test_data.HubUnavailableError, match=r"the Hub has no someone/some-test-data@v7"):
        fetch_test_data.fetch(None, tmp_path / "none", manifest, log=quiet)
    assert len(fake_hub.calls) == 1
    monkeypatch.setattr(fetch_test_data, "hub_resolves", lambda: False)
    with pytest.raises(fetch_test_data.HubUnavailableError, match=r"^the Hub is not reachable \(no DNS for"):
        fetch_test_data.fetch(None, tmp_path / "none", manifest, log=quiet)
    assert len(fake_hub.calls) == 1


# ---------------------------------------------------------------------------------------------------------------
# Publishing
# ---------------------------------------------------------------------------------------------------------------


class RecordingApi:
    """`huggingface_hub.HfApi`'s calls that publishing makes, recorded."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **options):
        self.calls.append(("create_repo", repo_id, options))

    def create_commit(self, repo_id, **options):
        self.calls.append(("create_commit", repo_id, options))
        return type("CommitInfo", (), {"oid": "f" * 40})()

    def create_tag(self, repo_id, **options):
        self.calls.append(("create_tag", repo_id, options))


def test_publishing_is_a_dry_run_unless_asked_then_one_tagged_commit(small_set):
    source, _, manifest = small_set
    api, printed = RecordingApi(), []
    assert fetch_test_data.publish(source, manifest, api=api, log=printed.append) is None
    assert api.calls == [] and any("create_tag('someone/some-test-data'" in line for line in printed)
    assert fetch_test_data.publish(source, manifest, run=True, api=api, log=quiet) == "f" * 40
    assert [call[0] for call in api.calls] == ["create_repo", "create_commit", "create_tag"]
    assert api.calls[0][2] == {"repo_type": "dataset", "exist_ok": True}
    operations = api.calls[1][2]["operations"]
    assert [operation.path_in_repo for operation in operations] == [
        *(entry["path"] for entry in manifest["files"]),
        "README.md",
    ]
    card = operations[-1].path_or_fileobj.decode()
    assert "## `audio/real`" in card and "Licence: see SOURCES.md" in card
    assert api.calls[2][2] == {"repo_type": "dataset", "tag": "v7", "revision": "f" * 40}


def test_a_groups_licence_text_is_published_and_installed_with_it(small_set, tmp_path):
    # fixtures/hub_v1_layout holds two files of an MIT-licensed repository but not its notice, which must go with
    # copies: the group names the text in this repository, and it travels as <folder>/LICENSE.
    source, _, manifest = small_set
    manifest = json.loads(json.dumps(manifest))
    manifest["groups"][0]["licence_file"] = "tests/test_data_licences/orcasound-aifororcas-livesystem.LICENSE"
    licence = (REPO_ROOT / manifest["groups"][0]["licence_file"]).read_bytes()
    api = RecordingApi()
    fetch_test_data.publish(source, manifest, run=True, api=api, log=quiet)
    operations = {operation.path_in_repo: operation.path_or_fileobj for operation in api.calls[1][2]["operations"]}
    assert Path(operations["fixtures/small/LICENSE"]).read_bytes() == licence
    destination = tmp_path / "installed"
    fetch_test_data.install(source, destination, manifest, log=quiet)
    assert (destination / "fixtures/small/LICENSE").read_bytes() == licence
    assert fetch_test_data.is_installed(destination, manifest)


def test_the_hub_v1_layout_group_carries_the_mit_notice_of_its_origin():
    (group,) = [group for group in TEST_DATA_MANIFEST["groups"] if group["folder"] == "fixtures/hub_v1_layout"]
    notice = (REPO_ROOT / group["licence_file"]).read_text()
    assert notice.startswith("MIT License\n\nCopyright (c) 2021 Orcasound\n")
    assert "The above copyright notice and this permission notice shall be included" in notice
    assert [path for path, _ in fetch_test_data.licence_files(TEST_DATA_MANIFEST)] == ["fixtures/hub_v1_layout/LICENSE"]


def test_a_set_that_is_not_the_manifests_is_never_published(small_set):
    source, _, manifest = small_set
    replace_file(source / "audio/real/SOURCES.md", b"# edited\n\n")
    api = RecordingApi()
    with pytest.raises(fetch_test_data.InvalidTestDataError, match="audio/real/SOURCES.md has sha256"):
        fetch_test_data.publish(source, manifest, run=True, api=api, log=quiet)
    assert api.calls == []


# ---------------------------------------------------------------------------------------------------------------
# Without the set: the tests that need it are skipped by name, the rest run
# ---------------------------------------------------------------------------------------------------------------


def test_without_the_set_its_tests_are_skipped_by_name_with_how_to_get_it(tmp_path):
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "import pytest\n\n"
        "def test_converts_the_learner(resnet50_folder):\n    raise AssertionError('ran')\n\n"
        "@pytest.mark.needs_test_data\n"
        "def test_reads_a_wav():\n    raise AssertionError('ran')\n\n"
        "def test_needs_nothing():\n    assert sum([1, 1]) == 2\n"
    )
    environment = dict(
        os.environ,
        ORCAHELLO_TEST_DATA=str(tmp_path / "nothing-here"),
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "tests"), str(REPO_ROOT)]),
    )
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "conftest", "-p", "no:cacheprovider", str(probe)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    how = f"needs the test data (it is not in {tmp_path / 'nothing-here'}): get it with `python scripts/fetch_test_data.py`"
    skipped = sorted(line for line in completed.stdout.splitlines() if line.startswith("SKIPPED [1] test_probe.py"))
    assert [line.partition(": ")[2] for line in skipped] == [
        f"test_converts_the_learner {how}",
        f"test_reads_a_wav {how}",
    ]
    assert "1 passed, 2 skipped" in completed.stdout


# ---------------------------------------------------------------------------------------------------------------
# scripts/fetch_model.py without the Hub
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture()
def models_folder(tmp_path, monkeypatch):
    """fetch_model's folders under tmp_path, offline."""
    for name in ("HUB_FOLDER", "STANDIN_FOLDER", "RANDOM_FOLDER"):
        monkeypatch.setattr(fetch_model, name, str(tmp_path / "models" / Path(getattr(fetch_model, name)).name))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "models"


def test_with_neither_hub_nor_test_data_the_model_is_random_production_architecture_marked_synthetic(
    models_folder, tmp_path, monkeypatch, capsys
):
    import torch
    from transformers import AutoModelForAudioClassification

    import vocabulary_orcahello

    monkeypatch.setenv("ORCAHELLO_TEST_DATA", str(tmp_path / "no-test-data"))
    monkeypatch.setattr(sys, "argv", ["fetch_model.py", "--print-path"])
    fetch_model.main()
    output = capsys.readouterr()
    folder = models_folder / "random-resnet50-synthetic-weights"
    assert output.out.strip() == str(folder)
    assert "RANDOMLY INITIALISED" in output.err and "scripts/fetch_test_data.py" in output.err
    config = json.loads((folder / "config.json").read_text())
    assert config[vocabulary_orcahello.SYNTHETIC_WEIGHTS_KEY] is True
    model = AutoModelForAudioClassification.from_pretrained(str(folder), trust_remote_code=True, local_files_only=True)
    assert sum(parameter.numel() for parameter in model.parameters()) == 25_609_666  # production's ResNet50
    with torch.inference_mode():
        assert model(torch.zeros(1, 1, 256, 312)).logits.shape == (1, 2)
    assert sorted(path.name for path in models_folder.iterdir()) == ["random-resnet50-synthetic-weights"]


@pytest.mark.needs_test_data
def test_offline_with_the_test_data_the_standin_learner_is_converted(models_folder, capsys):
    folder = fetch_model.choose_folder(offline=True)
    assert folder == str(models_folder / "standin-resnet50-synthetic-weights")
    assert fetch_model.is_model_folder(folder)
    assert sorted(path.name for path in models_folder.iterdir()) == ["standin-resnet50-synthetic-weights"]

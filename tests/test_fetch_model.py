"""
`scripts/fetch_model.py` downloads a pinned commit and checks what it gets (issue 30, F15): it took whatever the Hub
repo's default branch held. No test reaches the Hub: the download is replaced by local snapshot folders laid out as
huggingface_hub's cache lays them out (`snapshots/<commit>/<file>` linking to `blobs/<etag>`).
"""

import hashlib
import os
import sys

import pytest
from conftest import load_script

fetch_model = load_script("fetch_model")

COMMIT = "0123456789abcdef0123456789abcdef01234567"
CONTENTS = {"config.json": b'{"model": {}}\n', "config.yaml": b"model: {}\n", "model.safetensors": b"\x08" * 4096}
# How the Hub names each file in its cache: the weights are in Git LFS (sha256), the configs in git (object id).
LFS_FILES = {"model.safetensors"}


def git_object_id(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def hub_cache_snapshot(root, contents=CONTENTS, tamper=None):
    """A snapshot folder as huggingface_hub leaves it; `tamper` names a file whose blob is altered after download."""
    blobs, snapshot = root / "blobs", root / "snapshots" / COMMIT
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for name, data in contents.items():
        etag = hashlib.sha256(data).hexdigest() if name in LFS_FILES else git_object_id(data)
        (blobs / etag).write_bytes(data + b"!" if name == tamper else data)
        os.symlink(os.path.join("..", "..", "blobs", etag), snapshot / name)
    return snapshot


def sha256s(contents=CONTENTS):
    return {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}


def test_a_clean_download_passes_both_checks(tmp_path):
    snapshot = hub_cache_snapshot(tmp_path)
    assert fetch_model.verify_snapshot(str(snapshot), fetch_model.HUB_FILES, sha256s()) == sha256s()


@pytest.mark.parametrize("tampered", ["model.safetensors", "config.yaml"])
def test_bytes_that_are_not_the_ones_the_hub_named_are_refused(tmp_path, tampered):
    snapshot = hub_cache_snapshot(tmp_path, tamper=tampered)
    kind = "sha256" if tampered in LFS_FILES else "git object id"
    with pytest.raises(fetch_model.SnapshotVerificationError, match=f"{tampered}: downloaded bytes have {kind}"):
        fetch_model.verify_snapshot(str(snapshot), fetch_model.HUB_FILES)


def test_a_file_the_server_named_consistently_but_not_the_reviewed_one_is_refused(tmp_path):
    # A server that lies about both the bytes and their etag passes the cache's check; the manifest stops it.
    replaced = dict(CONTENTS, **{"model.safetensors": b"\x09" * 4096})
    snapshot = hub_cache_snapshot(tmp_path, contents=replaced)
    fetch_model.verify_snapshot(str(snapshot), fetch_model.HUB_FILES)
    with pytest.raises(fetch_model.SnapshotVerificationError, match="model.safetensors: sha256 .* not the reviewed"):
        fetch_model.verify_snapshot(str(snapshot), fetch_model.HUB_FILES, sha256s())


def test_a_missing_file_is_refused(tmp_path):
    snapshot = hub_cache_snapshot(tmp_path, contents={"config.json": CONTENTS["config.json"]})
    with pytest.raises(fetch_model.SnapshotVerificationError, match="config.yaml: missing"):
        fetch_model.verify_snapshot(str(snapshot), fetch_model.HUB_FILES)


@pytest.fixture()
def recorded_downloads(tmp_path, monkeypatch):
    """`hub_snapshot` replaced: records its calls and returns a clean local snapshot."""
    calls = []
    snapshot = hub_cache_snapshot(tmp_path / "cache")

    def fake_hub_snapshot(repo_id, **options):
        calls.append((repo_id, options))
        return snapshot

    monkeypatch.setattr(fetch_model, "hub_snapshot", fake_hub_snapshot)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return calls


def test_without_a_pinned_revision_nothing_is_downloaded(recorded_downloads, monkeypatch, capsys):
    monkeypatch.setattr(fetch_model, "HUB_REVISION", None)
    assert fetch_model.download_hub_folder() is None
    assert recorded_downloads == []
    assert "no pinned revision" in capsys.readouterr().err


def test_the_pinned_commit_is_downloaded_and_checked_against_the_manifest(recorded_downloads, monkeypatch):
    monkeypatch.setattr(fetch_model, "HUB_REVISION", COMMIT)
    monkeypatch.setattr(fetch_model, "HUB_FILE_SHA256", sha256s())
    snapshot = fetch_model.download_hub_folder()
    assert snapshot.endswith(COMMIT)
    assert recorded_downloads == [
        (fetch_model.HUB_REPO_ID, {"revision": COMMIT, "allow_patterns": list(fetch_model.HUB_FILES)})
    ]
    monkeypatch.setattr(fetch_model, "HUB_FILE_SHA256", dict(sha256s(), **{"model.safetensors": "0" * 64}))
    with pytest.raises(SystemExit, match="not the reviewed file"):
        fetch_model.download_hub_folder()


def test_an_overriding_commit_is_downloaded_and_checked_against_the_hubs_hashes(recorded_downloads, capsys):
    other = "f" * 40
    assert fetch_model.download_hub_folder(other) is not None
    assert recorded_downloads[0][1]["revision"] == other
    assert "the Hub's own hashes only" in capsys.readouterr().err


@pytest.mark.parametrize("revision", ["main", "v1.0", "0123456789abcdef", COMMIT.upper()])
def test_a_revision_that_can_move_is_refused_on_the_command_line(monkeypatch, capsys, revision):
    monkeypatch.setattr(sys, "argv", ["fetch_model.py", "--revision", revision])
    with pytest.raises(SystemExit) as exited:
        fetch_model.main()
    assert exited.value.code == 2
    assert "--revision must be a full 40-character commit" in capsys.readouterr().err

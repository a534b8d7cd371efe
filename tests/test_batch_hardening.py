"""
`orcahello batch` against an attacker and an unlucky operator: a model copy planted in the shared temporary folder,
manifest URLs with `..` segments, the user's own temporary files in the output folder, jobs killed with SIGKILL at
several points, two jobs into one folder at once, and a resume with nothing to do.
"""

import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest
import soundfile
from conftest import LEGACY, REPO_ROOT

pytest.importorskip("ray")
pytest.importorskip("pyarrow")

import orcahello
import vocabulary_orcahello
from orcahello import batch, inputs, models, run_lock, writers  # noqa: E402

# ---------------------------------------------------------------------------------------------------------------
# The model copy on the workers
# ---------------------------------------------------------------------------------------------------------------


def planted_code(marker):
    return f"open({str(marker)!r}, 'w').write('planted code ran')\n"


def test_a_model_copy_planted_in_the_temporary_folder_never_runs(tiny_model_folder, tmp_path, monkeypatch):
    # A model folder with a name of its own, so that transformers' module cache never mixes it with other tests'.
    model = tmp_path / f"orcahello_cache_test_{os.getpid()}"
    shutil.copytree(tiny_model_folder, model)
    files = batch.read_model_folder(str(model))
    shared_tmp = tmp_path / "tmp"
    shared_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared_tmp))
    marker = tmp_path / "pwned"

    # Where the old code looked, under a name anyone can compute from the model's files: a folder with a
    # config.json and a modeling file that runs the attacker's code when imported.
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode("utf-8") + b"\0" + hashlib.sha256(files[name]).digest())
    planted = shared_tmp / "orcahello-batch-models" / digest.hexdigest()[:16] / model.name
    planted.mkdir(parents=True)
    for name, content in files.items():
        (planted / name).write_bytes(content)
    (planted / "modeling_orcahello.py").write_text(planted_code(marker) + files["modeling_orcahello.py"].decode())

    folder = batch.materialize_model_folder(model.name, files)
    assert os.path.commonpath([folder, str(planted)]) != str(planted)
    assert batch.folder_holds(folder, files)
    models.load_pipeline(folder, "cpu")  # what the model actor does next
    assert not marker.exists(), "the planted modeling_orcahello.py ran"

    # The private cache itself: a copy there whose code differs from what the driver sent is not used either.
    root = batch.model_cache_root()
    assert (os.stat(root).st_mode & 0o777, os.stat(root).st_uid) == (0o700, os.getuid())
    cached = os.path.join(root, digest.hexdigest()[:16], model.name)
    assert folder == cached
    with open(os.path.join(cached, "modeling_orcahello.py"), "a") as handle:
        handle.write(planted_code(marker))
    second = batch.materialize_model_folder(model.name, files)
    assert second != cached and batch.folder_holds(second, files)


def test_a_model_cache_folder_others_can_write_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    root = tmp_path / f"orcahello-batch-models-{os.getuid()}"
    root.mkdir(mode=0o777)
    os.chmod(root, 0o777)  # what another user could have made first (here: this user, with everyone's permissions)
    with pytest.raises(RuntimeError, match="not a private folder of this user"):
        batch.materialize_model_folder("model", {"config.json": b"{}"})
    os.rmdir(root)
    os.symlink(tmp_path, root)
    with pytest.raises(RuntimeError, match="not a private folder of this user"):
        batch.model_cache_root()


# ---------------------------------------------------------------------------------------------------------------
# Output names from URLs
# ---------------------------------------------------------------------------------------------------------------


def test_url_output_names_are_detects_and_never_climb_out():
    urls = [
        "http://127.0.0.1:8000/../../../victim/clip.wav",
        "http://127.0.0.1:8000/a/%2e%2e/%2E%2E/b%2Fc/clip.wav",
        "https://host.org/hls/1629919500/live.m3u8",
    ]
    planned = batch.plan_outputs(urls)
    expected = [os.path.splitext(inputs.url_relative_path(url))[0].replace(os.sep, "/") for url in urls]
    assert [source.output_stem for source in planned] == expected
    for source in planned:
        assert ".." not in source.output_stem.split("/"), source.output_stem
    assert planned[0].output_stem == "127.0.0.1_8000/victim/clip"


@pytest.fixture()
def wav_for_any_path():
    """A loopback HTTP server that answers every GET, whatever its path (`..` included), with one fixture WAV."""
    data = (LEGACY / "audio" / "edge_20k_6s.wav").read_bytes()
    requested = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requested.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requested
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.needs_test_data
def test_a_manifest_url_with_dot_dot_segments_writes_and_deletes_nothing_outside(
    ray_address, tiny_model_folder, wav_for_any_path, tmp_path
):
    base, requested = wav_for_any_path
    output_dir = tmp_path / "work" / "results"
    output_dir.mkdir(parents=True)
    # Where `<output>/windows/<host>/../../../victim/clip` and `<output>/json/<host>/../../../victim/clip` led.
    victims = [tmp_path / "work" / "victim" / "clip", tmp_path / "victim" / "clip"]
    for victim in victims:
        victim.mkdir(parents=True)
        (victim / "part-000000999.parquet").write_bytes(b"the user's own data")
    manifest = tmp_path / "sources.txt"
    manifest.write_text(f"{base}/../../../victim/clip.wav\n")
    before = sorted(str(path) for path in tmp_path.rglob("*") if output_dir not in path.parents)

    run = batch.run_batch([], output_dir, manifests=[str(manifest)], model=str(tiny_model_folder), num_workers=1)

    assert run["files"]["ok"] == 1, run["files"]
    assert requested, "the recording was never downloaded"
    after = sorted(str(path) for path in tmp_path.rglob("*") if output_dir not in path.parents)
    assert after == before, "the job wrote or deleted something outside --output-dir"
    for victim in victims:
        assert (victim / "part-000000999.parquet").read_bytes() == b"the user's own data"
    host = base.split("//")[1].replace(":", "_")
    assert (output_dir / "windows" / host / "victim" / "clip" / "part-000000000.parquet").is_file()


# ---------------------------------------------------------------------------------------------------------------
# Temporary files, kills, concurrent jobs, no-op resumes
# ---------------------------------------------------------------------------------------------------------------

OPTIONS = ["--num-workers", "1", "--batch-size", "4", "--partition-windows", "32"]


def result_files(output_dir):
    """Every file a job leaves in its output folder, by relative path: bytes (the run document, which records times
    and this run's counts, and the lock file are left out)."""
    found = {}
    for path in sorted(output_dir.rglob("*")):
        relative = path.relative_to(output_dir).as_posix()
        if path.is_file() and relative not in (batch.RUN_DOCUMENT, run_lock.LOCK_FILE_NAME):
            found[relative] = path.read_bytes()
    return found


def batch_process(recordings, output_dir, model, ray_address):
    arguments = ["batch", recordings, "--output-dir", output_dir, "--model", model, "--address", ray_address, *OPTIONS]
    return subprocess.Popen(
        [sys.executable, "-m", "orcahello.cli", *map(str, arguments)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def kill_when(process, condition, timeout=300):
    """SIGKILL `process` as soon as `condition()` holds; False when the process ended first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the job never reached the point where it is to be killed"
        time.sleep(0.005)
    process.kill()
    process.wait(timeout=60)
    process.stdout.close()
    return True


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hardening_recordings")
    rng = np.random.default_rng(5)
    samples = (rng.standard_normal(300 * 20000) * 2000).astype(np.int16)
    soundfile.write(str(folder / "long_5min_20k.wav"), samples, 20000)
    for name in ("edge_20k_6s.wav", "edge_stereo_48k_6s.wav"):
        shutil.copyfile(LEGACY / "audio" / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def reference(ray_address, tiny_model_folder, recordings, tmp_path_factory):
    """The job run once, uninterrupted."""
    output_dir = tmp_path_factory.mktemp("hardening_reference")
    run = batch.run_batch([str(recordings)], output_dir, model=str(tiny_model_folder), num_workers=1, batch_size=4,
                          partition_windows=32)  # fmt: skip
    assert run["files"]["ok"] == 3
    return result_files(output_dir)


def partitions(output_dir):
    return list((output_dir / batch.WINDOWS_FOLDER).rglob("part-*.parquet"))


@pytest.mark.needs_test_data
def test_killed_at_several_points_and_run_again_gives_the_same_bytes(
    ray_address, tiny_model_folder, recordings, reference, tmp_path
):
    output_dir = tmp_path / "results"
    output_dir.mkdir()
    # The user's own files, which look like temporary files of other programs: they stay.
    user_files = {output_dir / "notes.txt.tmp1": b"mine", output_dir / "json" / "draft.json.tmp4242": b"mine too"}
    for path, content in user_files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    def partial_files():
        return [path for path in output_dir.rglob("*") if path.name.endswith(writers.PARTIAL_SUFFIX)]

    kill_points = [
        ("while a first file is being written", lambda: partial_files() or partitions(output_dir)),
        ("after a few partitions", lambda: len(partitions(output_dir)) >= 4),
        ("after the first JSON", lambda: any((output_dir / batch.JSON_FOLDER).rglob("*.orcahello.json"))),
        ("after most partitions", lambda: len(partitions(output_dir)) >= 9),
    ]
    killed = []
    for description, condition in kill_points:
        process = batch_process(recordings, output_dir, tiny_model_folder, ray_address)
        if kill_when(process, condition):
            killed.append(description)
        else:
            output = process.stdout.read()
            assert process.returncode == 0, output
    assert len(killed) >= 3, f"the job was killed only {killed}"
    # What a kill in the middle of a write leaves, whether or not one of the kills above hit one.
    partition_folder = output_dir / batch.WINDOWS_FOLDER / "long_5min_20k"
    partition_folder.mkdir(parents=True, exist_ok=True)
    (partition_folder / f".part-000000288.parquet.abcd1234{writers.PARTIAL_SUFFIX}").write_bytes(b"half")
    (output_dir / f".files.parquet.x_y_z123{writers.PARTIAL_SUFFIX}").write_bytes(b"half")

    process = batch_process(recordings, output_dir, tiny_model_folder, ray_address)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output

    assert not partial_files(), "temporary files were left behind"
    for path, content in user_files.items():
        assert path.read_bytes() == content, f"the user's {path.name} was touched"
        path.unlink()
    finished = result_files(output_dir)
    assert sorted(finished) == sorted(reference)
    different = [name for name in reference if finished[name] != reference[name]]
    assert not different, f"different bytes from an uninterrupted run: {different}"


@pytest.mark.needs_test_data
def test_a_second_job_into_the_same_folder_is_refused(ray_address, tiny_model_folder, recordings, reference, tmp_path):
    output_dir = tmp_path / "results"
    output_dir.mkdir()
    with batch.output_folder_lock(str(output_dir)):  # a job running there now
        completed = subprocess.run(
            [sys.executable, "-m", "orcahello.cli", "batch", str(recordings), "--output-dir", str(output_dir),
             "--model", str(tiny_model_folder), "--address", ray_address, *OPTIONS],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert completed.returncode == orcahello.EXIT_CANNOT_RUN, completed.stderr
    assert f"ERROR: another orcahello run is writing into {output_dir}" in completed.stderr
    assert result_files(output_dir) == {}

    # Two jobs started together: each finishes or is refused with that message; the results are the same.
    first = batch_process(recordings, output_dir, tiny_model_folder, ray_address)
    second = batch_process(recordings, output_dir, tiny_model_folder, ray_address)
    outputs = [process.communicate(timeout=600)[0] for process in (first, second)]
    statuses = [first.returncode, second.returncode]
    assert 0 in statuses, outputs
    for status, output in zip(statuses, outputs):
        assert status == 0 or (status == orcahello.EXIT_CANNOT_RUN and "another orcahello run is writing" in output)
    assert result_files(output_dir) == reference


@pytest.mark.needs_test_data
def test_a_resume_with_nothing_to_do_starts_no_ray(tiny_model_folder, recordings, reference, tmp_path):
    output_dir = tmp_path / "results"
    output_dir.mkdir()
    for name, content in reference.items():
        (output_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (output_dir / name).write_bytes(content)
    # A fresh process with no Ray running and an address that does not exist: joining it would fail.
    completed = subprocess.run(
        [sys.executable, "-m", "orcahello.cli", "batch", str(recordings), "--output-dir", str(output_dir),
         "--model", str(tiny_model_folder), "--address", "127.0.0.1:9", *OPTIONS],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "0 partition(s) scored (0 windows), 12 reused" in completed.stdout
    assert result_files(output_dir) == reference


@pytest.mark.needs_test_data
def test_standin_results_say_so_in_every_batch_file(ray_address, tiny_model_folder, tmp_path):
    import pyarrow.parquet as pq

    model = tmp_path / "some-model"
    shutil.copytree(tiny_model_folder, model)
    config = json.loads((model / "config.json").read_text())
    config[vocabulary_orcahello.SYNTHETIC_WEIGHTS_KEY] = True  # as scripts/fetch_model.py marks the stand-in
    (model / "config.json").write_text(json.dumps(config))
    output_dir = tmp_path / "results"
    lines = []
    run = batch.run_batch([str(LEGACY / "audio" / "edge_20k_6s.wav")], output_dir, model=str(model), num_workers=1,
                          log=lines.append)  # fmt: skip
    assert run["model"]["synthetic_weights"] is True
    assert any("SYNTHETIC stand-in" in line for line in lines)
    for path in partitions(output_dir) + [output_dir / batch.FILES_TABLE]:
        metadata = json.loads(pq.read_schema(path).metadata[batch.PARQUET_METADATA_KEY])
        assert metadata["model"]["synthetic_weights"] is True, path
    row = pq.read_table(output_dir / batch.FILES_TABLE).to_pylist()[0]
    assert writers.STANDIN_WARNING in row["warnings"]
    document = json.loads((output_dir / row["json_path"]).read_text())
    assert document["warnings"][0] == writers.STANDIN_WARNING


@pytest.mark.needs_test_data
def test_ctrl_c_stops_a_batch_job_with_one_line(ray_address, tiny_model_folder, recordings, tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "orcahello.cli", "batch", str(recordings), "--output-dir", str(tmp_path / "out"),
         "--model", str(tiny_model_folder), "--address", ray_address, *OPTIONS],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as from a terminal
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not partitions(tmp_path / "out"):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == orcahello.EXIT_INTERRUPTED, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("Interrupted: the finished results are kept")


@pytest.mark.needs_test_data
def test_ray_prints_nothing_unexplained(ray_address, tiny_model_folder, tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "orcahello.cli", "batch", str(LEGACY / "audio" / "edge_20k_6s.wav"), "--output-dir",
         str(tmp_path / "out"), "--model", str(tiny_model_folder), "--num-cpus", "1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert not any("Token authentication is enabled" in line for line in lines), lines
    explained = False
    for line in lines:
        if line.startswith("NOTE: Ray may log"):
            explained = True
        elif "core_worker" in line or " E " in line:
            assert explained and "has constructor arguments in the object store" in line, lines


def test_a_sound_file_url_is_not_redirected_to_another_port():
    # F8 residue: batch followed a file server's redirect to any host and port (an internal service's answer was read
    # as the recording). The other port here serves a real WAV: only the redirect check refuses it.
    from audio_orcahello import AudioInputError
    from orcahello.batch.sources import open_source

    wav = (LEGACY / "audio" / "edge_20k_6s.wav").read_bytes() if LEGACY.exists() else None
    if wav is None:
        pytest.skip("needs the test data")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.server.target is None:  # the other service: a sound file
                self.send_response(200)
                self.send_header("Content-Length", str(len(wav)))
                self.end_headers()
                self.wfile.write(wav)
                return
            self.send_response(302)
            self.send_header("Location", self.server.target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *arguments):
            pass

    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in range(2)]
    other = f"http://127.0.0.1:{servers[1].server_address[1]}/internal.wav"
    servers[0].target, servers[1].target = other, None
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert open_source(other).num_samples > 0  # the other service does answer with audio
        with pytest.raises(AudioInputError) as raised:
            open_source(f"http://127.0.0.1:{servers[0].server_address[1]}/clip.wav")
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    message = str(raised.value)
    assert "cannot download" in message and "\n" not in message

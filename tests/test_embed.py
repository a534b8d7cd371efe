"""
`orcahello embed` and `orcahello.embed`: per-window embeddings equal to what `AutoModel` (and the head) compute for
the same windows, rows that are `detect`'s windows (UTC for HLS), resuming, bad input and streaming.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from conftest import LEGACY, REPO_ROOT, make_orcanode_hls, run_orcahello_cli

from orcahello import embed
from orcahello.atomic_files import PARTIAL_SUFFIX

pytest.importorskip("pyarrow")
import pyarrow.parquet as parquet  # noqa: E402

EPOCH = 1600000000
SHORT_WAV = LEGACY / "audio" / "edge_44k1_6s.wav"  # 44.1 kHz: the windows are resampled, as production does
STEREO_WAV = LEGACY / "audio" / "edge_stereo_48k_6s.wav"
TEN_SECONDS_WAV = LEGACY / "audio" / "edge_10s_48k.wav"


def run_embed_cli(*arguments):
    return subprocess.run(
        [sys.executable, "-m", "orcahello.cli", "embed", *map(str, arguments)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def windows_cut_by_hand(wav_path, window_seconds=2.0, hop_seconds=1.0):
    """Production's windows, cut here without the pipeline: samples [k * hop, k * hop + window) in the file's own
    sample type, as many whole windows as fit."""
    audio, rate = soundfile.read(wav_path, dtype="int16", always_2d=True)
    audio = audio.T
    window, hop = int(window_seconds * rate), int(hop_seconds * rate)
    count = (audio.shape[1] - window) // hop + 1
    return [audio[:, k * hop : k * hop + window] for k in range(count)], rate


def automodel_features(folder, wav_path):
    from transformers import AutoFeatureExtractor

    extractor = AutoFeatureExtractor.from_pretrained(str(folder), trust_remote_code=True)
    windows, rate = windows_cut_by_hand(wav_path)
    return extractor(windows, sampling_rate=rate, return_tensors="pt")


@pytest.mark.needs_test_data
def test_pooled_embeddings_equal_automodels_pooler_output(resnet50_folder, resnet50_pipeline):
    from transformers import AutoModel

    windows, embeddings, scores = embed.window_embeddings(resnet50_pipeline, str(SHORT_WAV), batch_size=3)
    model = AutoModel.from_pretrained(str(resnet50_folder), trust_remote_code=True).eval()
    with torch.inference_mode():
        expected = model(**automodel_features(resnet50_folder, SHORT_WAV)).pooler_output.numpy()
    assert embeddings.shape == expected.shape == (5, 4096)
    assert embeddings.dtype == np.float32
    np.testing.assert_allclose(embeddings, expected, rtol=0, atol=1e-3)

    # The rows are detect's windows, and the score of the same forward pass is the pipeline's P(call).
    detected = resnet50_pipeline(str(SHORT_WAV), return_timestamps=True)
    without_scores = [{key: value for key, value in window.items() if key != "score"} for window in detected["windows"]]
    assert windows == without_scores
    np.testing.assert_allclose(scores, [window["score"] for window in detected["windows"]], rtol=0, atol=1e-4)


@pytest.mark.needs_test_data
def test_head_embeddings_are_what_the_last_linear_layer_classifies(tiny_model_folder, tiny_pipeline):
    from transformers import AutoModel, AutoModelForAudioClassification

    _, embeddings, scores = embed.window_embeddings(tiny_pipeline, str(STEREO_WAV), layer="head", batch_size=2)
    classifier = AutoModelForAudioClassification.from_pretrained(str(tiny_model_folder), trust_remote_code=True).eval()
    body = AutoModel.from_pretrained(str(tiny_model_folder), trust_remote_code=True).eval()
    head = classifier.classifier
    with torch.inference_mode():
        pooled = body(**automodel_features(tiny_model_folder, STEREO_WAV)).pooler_output
        expected = head.hidden_norm(head.activation(head.dense(head.pooled_norm(pooled))))
        expected_scores = head.out_proj(expected).softmax(-1)[:, 1]
    assert embeddings.shape == (5, classifier.config.head_hidden_size)
    np.testing.assert_allclose(embeddings, expected.numpy(), rtol=0, atol=1e-3)
    np.testing.assert_allclose(scores, expected_scores.numpy(), rtol=0, atol=1e-5)


@pytest.mark.needs_test_data
def test_other_window_settings_give_the_pipelines_windows(tiny_pipeline, tmp_path):
    """The windows are the pipeline's own for any setting it takes (here a half-second hop): embed follows it."""
    windows, embeddings, scores = embed.window_embeddings(tiny_pipeline, str(TEN_SECONDS_WAV), hop_seconds=0.5)
    detected = tiny_pipeline(str(TEN_SECONDS_WAV), return_timestamps=True, hop_seconds=0.5)["windows"]
    assert len(windows) == len(detected) == 17 and embeddings.shape[0] == 17
    assert [(window["start"], window["end"]) for window in windows] == [(w["start"], w["end"]) for w in detected]
    np.testing.assert_allclose(scores, [window["score"] for window in detected], rtol=0, atol=1e-4)
    # Through embed_files too, where the setting is part of what a finished table must match.
    outcome = embed.embed_files(
        [TEN_SECONDS_WAV], tmp_path, pipe=tiny_pipeline, pipeline_parameters={"hop_seconds": 0.5}
    )
    table = parquet.read_table(outcome["written"][0])
    assert table.column("start").to_pylist() == [window["start"] for window in detected]
    assert embed.read_embeddings_metadata(outcome["written"][0])["parameters"]["hop_seconds"] == 0.5
    assert embed.embed_files([TEN_SECONDS_WAV], tmp_path, pipe=tiny_pipeline)["written"]  # the default hop: redone


@pytest.mark.needs_test_data
def test_unknown_layer_is_refused(tiny_pipeline):
    with pytest.raises(ValueError, match="layer must be one of"):
        next(embed.iter_window_embeddings(tiny_pipeline, str(SHORT_WAV), layer="logits"))


def test_windows_are_read_as_they_are_embedded(tiny_pipeline, monkeypatch):
    """Streaming: the first batch arrives after a few blocks were featurized, not the whole recording, and stopping
    early closes the recording."""
    rate = 20000
    hour = np.random.default_rng(0).normal(scale=1000, size=3600 * rate).astype(np.int16)
    featurized = []
    extractor = tiny_pipeline.feature_extractor

    class CountingExtractor:
        def __getattr__(self, name):
            return getattr(extractor, name)

        def __call__(self, windows, **kwargs):
            featurized.append(len(windows))
            return extractor(windows, **kwargs)

    monkeypatch.setattr(tiny_pipeline, "feature_extractor", CountingExtractor())
    blocks = embed.iter_window_embeddings(tiny_pipeline, hour, batch_size=4, sampling_rate=rate)
    first = next(blocks)
    assert first.window_indices == [0, 1, 2, 3]
    assert len(first.recording["windows"]) == 3599
    assert 0 < sum(featurized) <= 3 * 8  # the block scored, the one prefetched, at most one more
    blocks.close()


@pytest.mark.needs_test_data
def test_table_rows_match_detect_and_resume(tiny_model_folder, tmp_path, monkeypatch):
    """The command line on files, an HLS stream (UTC from its epoch folder) and a bad file; the rows equal detect's
    windows; a rerun skips finished tables, a leftover temporary file is not a table, another layer redoes them."""
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    shutil.copyfile(SHORT_WAV, recordings / "short.wav")
    shutil.copyfile(TEN_SECONDS_WAV, recordings / "ten.wav")
    (recordings / "bad.wav").write_bytes(np.random.default_rng(1).bytes(2048))
    make_orcanode_hls(TEN_SECONDS_WAV, recordings / "node" / "hls" / str(EPOCH), segment_seconds=4)
    output_dir, detect_dir = tmp_path / "embeddings", tmp_path / "detections"

    completed = run_embed_cli(recordings, "--recursive", "--output-dir", output_dir, "--model", tiny_model_folder)
    assert completed.returncode == 1, completed.stderr  # the bad file
    assert "ERROR" in completed.stderr and "bad.wav" in completed.stderr
    assert "3 table(s) written" in completed.stdout
    detected = run_orcahello_cli(recordings, "--recursive", "--output-dir", detect_dir, "--model", tiny_model_folder)
    assert detected.returncode == 1, detected.stderr

    tables = {
        "short": output_dir / "short.orcahello.embeddings.parquet",
        "ten": output_dir / "ten.orcahello.embeddings.parquet",
        "hls": output_dir / "node" / "hls" / str(EPOCH) / "live.orcahello.embeddings.parquet",
    }
    documents = {
        "short": detect_dir / "short.orcahello.json",
        "ten": detect_dir / "ten.orcahello.json",
        "hls": detect_dir / "node" / "hls" / str(EPOCH) / "live.orcahello.json",
    }
    for name, table_path in tables.items():
        table = parquet.read_table(table_path).to_pylist()
        document = json.loads(documents[name].read_text())
        assert len(table) == len(document["windows"]), name
        for row, window in zip(table, document["windows"]):
            assert row["file"] == document["file"]
            assert (row["start"], row["end"]) == (window["start"], window["end"])
            assert (row["start_utc"], row["end_utc"]) == (window.get("start_utc"), window.get("end_utc"))
            assert row["spans_gap"] == window.get("spans_gap", False)
            assert row["score"] == pytest.approx(window["score"], abs=1e-4)
            assert len(row["embedding"]) == 2 * 128  # the tiny model's concat pool
        assert [row["window_index"] for row in table] == list(range(len(table)))
    hls_rows = parquet.read_table(tables["hls"], columns=["start_utc"]).to_pylist()
    assert hls_rows[0]["start_utc"] == "2020-09-13T12:26:40.000Z"  # the epoch folder's time
    metadata = embed.read_embeddings_metadata(tables["hls"])
    assert metadata["layer"] == "pooled" and metadata["num_windows"] == len(hls_rows)
    assert metadata["recording"]["start_time_utc"] == "2020-09-13T12:26:40.000Z"
    run = json.loads((output_dir / embed.RUN_FILE).read_text())
    assert run["files"] == {"found": 4, "written": 3, "skipped": 0, "failed": 1}

    # Resume: the finished tables are kept; a table whose run was killed (only its temporary file) is redone.
    modified = {name: path.stat().st_mtime_ns for name, path in tables.items()}
    os.remove(tables["ten"])
    killed_partial = tables["ten"].parent / f".{tables['ten'].name}.abcd1234{PARTIAL_SUFFIX}"
    killed_partial.write_bytes(b"PAR1 half written")
    again = run_embed_cli(recordings, "--recursive", "--output-dir", output_dir, "--model", tiny_model_folder)
    assert "1 table(s) written, 2 skipped" in again.stdout, again.stdout + again.stderr
    assert tables["short"].stat().st_mtime_ns == modified["short"]
    assert tables["hls"].stat().st_mtime_ns == modified["hls"]
    assert parquet.read_metadata(tables["ten"]).num_rows == 9

    # Another layer changes what a finished table must be: every table is made again.
    head = run_embed_cli(
        recordings, "--recursive", "--output-dir", output_dir, "--model", tiny_model_folder, "--layer", "head"
    )
    assert "3 table(s) written" in head.stdout, head.stdout + head.stderr
    assert parquet.read_schema(tables["short"]).field("embedding").type.list_size == 512


@pytest.mark.needs_test_data
def test_row_groups_are_written_as_windows_come(tiny_pipeline, tmp_path, monkeypatch):
    monkeypatch.setattr(embed, "ROW_GROUP_WINDOWS", 4)
    output_path = tmp_path / "ten.parquet"
    written = embed.write_embeddings(tiny_pipeline, str(TEN_SECONDS_WAV), output_path, batch_size=2)
    metadata = parquet.read_metadata(output_path)
    assert metadata.num_rows == written["num_windows"] == 9
    assert metadata.num_row_groups == 3  # 4 + 4 + 1
    assert os.listdir(tmp_path) == ["ten.parquet"]  # no temporary file left beside it


@pytest.mark.needs_test_data
def test_a_write_that_fails_midway_leaves_neither_table_nor_temporary_file(tiny_pipeline, tmp_path, monkeypatch):
    monkeypatch.setattr(embed, "ROW_GROUP_WINDOWS", 4)
    written_row_groups = []

    def fail_after_the_first_row_group(windows):
        # A row group has been written to the temporary table by now: the failure comes with half a table made.
        written_row_groups.append(windows)
        if len(written_row_groups) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed.write_embeddings(
            tiny_pipeline,
            str(TEN_SECONDS_WAV),
            tmp_path / "ten.parquet",
            batch_size=2,
            progress=fail_after_the_first_row_group,
        )
    assert os.listdir(tmp_path) == []


def test_unreadable_input_leaves_no_table(tiny_pipeline, tmp_path):
    short = tmp_path / "short.wav"
    soundfile.write(short, np.zeros(1000, dtype=np.int16), 20000)
    with pytest.raises(ValueError, match="shorter than one"):
        embed.write_embeddings(tiny_pipeline, str(short), tmp_path / "short.parquet")
    assert os.listdir(tmp_path) == ["short.wav"]


@pytest.mark.needs_test_data
def test_preset_v1_gives_detects_v1_windows(tiny_model_folder, tmp_path):
    """`--preset v1`: the port's 3-s windows every 2 s, the rows equal detect's with the same preset."""
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    shutil.copyfile(TEN_SECONDS_WAV, recordings / "ten.wav")
    output_dir, detect_dir = tmp_path / "embeddings", tmp_path / "detections"
    completed = run_embed_cli(recordings, "--output-dir", output_dir, "--model", tiny_model_folder, "--preset", "v1")
    assert completed.returncode == 0, completed.stderr
    detected = run_orcahello_cli(recordings, "--output-dir", detect_dir, "--model", tiny_model_folder, "--preset", "v1")
    assert detected.returncode == 0, detected.stderr
    rows = parquet.read_table(output_dir / "ten.orcahello.embeddings.parquet").to_pylist()
    windows = json.loads((detect_dir / "ten.orcahello.json").read_text())["windows"]
    assert [(row["start"], row["end"]) for row in rows] == [(window["start"], window["end"]) for window in windows]
    assert rows[0]["end"] - rows[0]["start"] == 3.0 and rows[1]["start"] == 2.0
    np.testing.assert_allclose([row["score"] for row in rows], [window["score"] for window in windows], atol=1e-4)

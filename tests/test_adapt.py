"""
`orcahello adapt` on a tiny model and synthetic recordings (tones are "calls", noise is not): window labels from
annotations, folds grouped by recording (a held-out recording never enters training), and the adapted folder loaded
everywhere a model folder loads, giving scikit-learn's own probabilities through every engine.
"""

import base64
import hashlib
import json

import numpy as np
import pytest
import soundfile

from orcahello import adapt, cli, models
from orcahello.embed import window_embeddings

RATE = 22050


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Eight 6-second recordings: even ones hold a tone (a "call", labelled srkw), odd ones noise alone."""
    folder = tmp_path_factory.mktemp("adapt_recordings")
    rng = np.random.default_rng(0)
    lines = ["file,start_s,end_s,label"]
    for number in range(8):
        seconds = np.arange(6 * RATE) / RATE
        audio = 0.05 * rng.standard_normal(seconds.size)
        if number % 2 == 0:
            audio += 0.3 * np.sin(2 * np.pi * (1200 + 250 * number) * seconds)
            lines.append(f"rec{number}.wav,0,6,srkw")
        else:
            lines.append(f"rec{number}.wav,0,6,not_srkw:vessel")
        soundfile.write(folder / f"rec{number}.wav", audio.astype(np.float32), RATE)
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def embedded(recordings, tiny_model_folder):
    pipe = models.load_pipeline(str(tiny_model_folder), "cpu")
    paths = [str(path) for path in sorted(recordings.glob("*.wav"))]
    annotations = adapt.evaluate.read_annotations(recordings / "labels.csv")
    intervals, unmatched = adapt.annotations_by_recording(annotations, paths)
    assert unmatched == []
    return adapt.embed_recordings(pipe, paths, intervals)


@pytest.fixture(scope="module")
def adapted_folder(recordings, tiny_model_folder, tmp_path_factory):
    output = tmp_path_factory.mktemp("adapted") / "model"
    status = cli.main(
        ["adapt", str(recordings / "labels.csv"), "--recordings", str(recordings), "--model", str(tiny_model_folder),
         "--output-dir", str(output), "--folds", "4"]
    )  # fmt: skip
    assert status == 0
    return output


def test_window_labels_follow_the_annotations():
    windows = [{"start": float(start), "end": start + 2.0} for start in range(8)]
    intervals = [(2.2, 2.5, "positive"), (5.0, 5.2, "unsure"), (7.5, 9.0, "negative")]
    # 2.2-2.5 (0.3 s, shorter than half a second) lies whole in windows 1 and 2; window 0 and 3 do not touch it.
    assert adapt.window_labels(windows, intervals).tolist() == [0, 1, 1, 0, -1, -1, 0, 0]
    # A long call: windows holding at least 0.5 s of it are positive, one holding less is left out.
    long_call = [(0.0, 3.3, "positive")]
    assert adapt.window_labels(windows[:4], long_call).tolist() == [1, 1, 1, -1]
    assert adapt.window_labels(windows[:4], long_call, unannotated="ignore").tolist() == [1, 1, 1, -1]
    assert adapt.window_labels(windows[4:], long_call, unannotated="ignore").tolist() == [-1, -1, -1, -1]


def test_held_out_recordings_never_enter_training(embedded):
    trained_on = []

    def spying_fit(features, labels, regularization):
        trained_on.append({row.tobytes() for row in np.asarray(features, dtype=np.float32)})
        return adapt.fit_head(features, labels, regularization)

    scores, assignment, heads = adapt.cross_validate(embedded, 4, fit=spying_fit)
    assert len(heads) == len(trained_on) == 4
    assert sorted(np.bincount(assignment).tolist()) == [2, 2, 2, 2]  # each recording held out once, whole
    for fold, training_rows in enumerate(trained_on):
        for index, item in enumerate(embedded):
            rows = {row.tobytes() for row in item.embeddings}
            if assignment[index] == fold:
                assert not rows & training_rows, f"{item.path} was trained on while held out"
            else:
                assert rows <= training_rows  # every labelled window of the other recordings
        # Each recording's held-out scores are its own fold's head's.
        for index in np.flatnonzero(assignment == fold):
            np.testing.assert_allclose(scores[index], heads[fold].scores(embedded[index].embeddings))
    # Both classes in every training set (stratified by the recordings' labels).
    for fold in range(4):
        training = [embedded[i].labels for i in range(len(embedded)) if assignment[i] != fold]
        assert set(np.concatenate(training).tolist()) == {0, 1}


def test_the_leak_check_sees_a_leak(embedded):
    """The check above can fail: a 'fold' trained on every recording is caught."""
    features, _ = adapt.training_set(embedded, range(len(embedded)))
    training_rows = {row.tobytes() for row in features.astype(np.float32)}
    assert {row.tobytes() for row in embedded[0].embeddings} & training_rows


def test_the_head_is_scikit_learns_logistic_regression(embedded):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    features, labels = adapt.training_set(embedded, range(len(embedded)))
    head = adapt.fit_head(features, labels, 0.5)
    scaler = StandardScaler().fit(features.astype(np.float64))
    reference = LogisticRegression(class_weight="balanced", C=0.5, max_iter=5000)
    reference.fit(scaler.transform(features.astype(np.float64)), labels)
    expected = reference.predict_proba(scaler.transform(features.astype(np.float64)))[:, 1]
    np.testing.assert_allclose(head.scores(features), expected, rtol=0, atol=1e-9)


def test_a_fold_without_positives_is_a_clear_error(embedded):
    negatives_only = [item for item in embedded if not (item.labels == 1).any()]
    with pytest.raises(adapt.AdaptationError, match="all of one class"):
        adapt.cross_validate(negatives_only, 2)


def test_adapted_folder_says_where_it_comes_from(adapted_folder, recordings, tiny_model_folder):
    config = json.loads((adapted_folder / "config.json").read_text())
    head = config["adapted_head"]
    labels_sha256 = hashlib.sha256((recordings / "labels.csv").read_bytes()).hexdigest()
    assert head["layer"] == "pooled" and head["annotations"][0]["sha256"] == labels_sha256
    assert head["windows"] == {"positive": 20, "negative": 20, "left_out": 0}
    assert head["held_out"]["folds"] == 4 and head["held_out"]["adapted"]["seconds_auprc"] is not None
    assert head["base_model"]["name_or_path"] == tiny_model_folder.name  # no machine's path in a shareable folder
    card = (adapted_folder / "README.md").read_text()
    assert labels_sha256 in card and "adapted" in card and "held out" in card.lower()
    summary = json.loads((adapted_folder / adapt.SUMMARY_FILE).read_text())
    assert [entry["fold"] for entry in summary["recordings"]].count(1) == 2


def test_adapted_folder_gives_the_heads_probabilities_through_every_loader_and_engine(
    adapted_folder, recordings, tiny_model_folder
):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from transformers import pipeline

    from handler import EndpointHandler

    # The reference: scikit-learn fitted here on the base model's pooled embeddings of every labelled window.
    base = models.load_pipeline(str(tiny_model_folder), "cpu")
    features, labels = [], []
    for path in sorted(recordings.glob("*.wav")):
        _, embeddings, _ = window_embeddings(base, str(path))
        features.append(embeddings)
        labels.extend([int(path.stem[-1]) % 2 == 0] * len(embeddings))
    features = np.concatenate(features).astype(np.float64)
    scaler = StandardScaler().fit(features)
    reference = LogisticRegression(class_weight="balanced", C=1.0, max_iter=5000).fit(
        scaler.transform(features), labels
    )
    wav = recordings / "rec2.wav"
    _, wav_embeddings, _ = window_embeddings(base, str(wav))
    expected = reference.predict_proba(scaler.transform(wav_embeddings.astype(np.float64)))[:, 1]

    def window_scores(result):
        return np.array([window["score"] for window in result["windows"]])

    ours = models.load_pipeline(str(adapted_folder), "cpu")
    for engine in ("torch", "onnxruntime", "openvino"):  # the exported engines skip the padding
        result = ours(str(wav), return_timestamps=True, engine=engine)
        np.testing.assert_allclose(window_scores(result), expected, rtol=0, atol=1e-4, err_msg=engine)
    remote = pipeline("audio-classification", model=str(adapted_folder), trust_remote_code=True)
    np.testing.assert_allclose(window_scores(remote(str(wav), return_timestamps=True)), expected, atol=1e-4)
    handler = EndpointHandler(str(adapted_folder))
    answer = handler({"inputs": base64.b64encode(wav.read_bytes()).decode(), "parameters": {"return_timestamps": True}})
    np.testing.assert_allclose(window_scores(answer), expected, atol=1e-4)
    # embed with the adapted folder: the same pooled features as the base model, the head's scores.
    _, adapted_embeddings, adapted_scores = window_embeddings(ours, str(wav))
    np.testing.assert_allclose(adapted_embeddings, wav_embeddings, atol=1e-5)
    np.testing.assert_allclose(adapted_scores, expected, atol=1e-4)
    _, head_embeddings, _ = window_embeddings(ours, str(wav), layer="head")
    assert head_embeddings.shape[1] == ours.model.config.head_hidden_size


def test_detect_with_the_adapted_folder_names_the_adaptation(adapted_folder, recordings, tmp_path):
    from conftest import run_orcahello_cli

    completed = run_orcahello_cli(recordings / "rec1.wav", "--model", adapted_folder, "--output-dir", tmp_path)
    assert completed.returncode == 0, completed.stderr
    document = json.loads((tmp_path / "rec1.orcahello.json").read_text())
    head = document["model"]["adapted_head"]
    assert head["annotations"][0]["file"] == "labels.csv" and head["held_out"]["folds"] == 4
    run = json.loads((tmp_path / "orcahello_run.json").read_text())
    assert run["model"]["adapted_head"] == head


def test_bad_input_is_a_one_line_error(recordings, tiny_model_folder, tmp_path, capsys):
    status = cli.main(
        ["adapt", str(tmp_path / "missing.csv"), "--recordings", str(recordings), "--model", str(tiny_model_folder),
         "--output-dir", str(tmp_path / "out")]
    )  # fmt: skip
    assert status == 2 and "missing.csv: cannot read the annotations" in capsys.readouterr().err
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    status = cli.main(
        ["adapt", str(recordings / "labels.csv"), "--recordings", str(recordings), "--model", str(tiny_model_folder),
         "--output-dir", str(tmp_path / "out")]
    )  # fmt: skip
    assert status == 2 and "exists and is not empty" in capsys.readouterr().err
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_batch_with_the_adapted_folder_scores_with_the_head(
    adapted_folder, recordings, tiny_model_folder, ray_address, tmp_path
):
    pyarrow_dataset = pytest.importorskip("pyarrow.dataset")
    from orcahello import batch

    wav = recordings / "rec2.wav"
    output_dir = tmp_path / "out"
    status = cli.main(
        ["batch", str(wav), "--output-dir", str(output_dir), "--model", str(adapted_folder), "--num-workers", "1"]
    )
    assert status == 0
    table = pyarrow_dataset.dataset(str(output_dir / batch.WINDOWS_FOLDER), format="parquet").to_table()
    batch_scores = np.array(table.sort_by("window_index")["score"].to_pylist())
    # The adapted pipeline's own scores are pinned to scikit-learn's in the test above.
    expected = models.load_pipeline(str(adapted_folder), "cpu")(str(wav), return_timestamps=True)
    adapted_scores = [window["score"] for window in expected["windows"]]
    np.testing.assert_allclose(batch_scores, adapted_scores, atol=1e-4)
    # ... and they are not the base model's: a batch that dropped the head would fail above.
    base = models.load_pipeline(str(tiny_model_folder), "cpu")(str(wav), return_timestamps=True)
    assert np.abs(np.array(adapted_scores) - [window["score"] for window in base["windows"]]).max() > 0.05
    document = json.loads(next((output_dir / "json").rglob("rec2.orcahello.json")).read_text())
    assert document["model"]["adapted_head"]["held_out"]["folds"] == 4

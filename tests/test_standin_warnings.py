"""
Every way of using a model whose weights are the synthetic stand-in says so (issue 29): the pipeline's results, the
endpoint handler, `score_dataset`, the review and search pages, `evaluate`'s metrics and `orcahello live`'s log; and
`orcahello upload` refuses such a folder unless asked by name (tested in test_conversion.py).
"""

import shutil

import numpy as np
import pytest
from conftest import LEGACY, load_script

from orcahello import cli, evaluate, live, report, runs, writers
from vocabulary_orcahello import SYNTHETIC_WEIGHTS_KEY, SYNTHETIC_WEIGHTS_WARNING

WAV = LEGACY / "audio" / "edge_20k_6s.wav"


@pytest.fixture(scope="module")
def standin_folder(tiny_model_folder, tmp_path_factory):
    """The tiny model folder marked as the stand-in, the way scripts/fetch_model.py marks it."""
    folder = tmp_path_factory.mktemp("standin") / "some-model"
    shutil.copytree(tiny_model_folder, folder)
    load_script("fetch_model").mark_synthetic_weights(str(folder))
    return folder


@pytest.fixture(scope="module")
def standin_pipeline(standin_folder):
    from transformers import pipeline

    return pipeline("audio-classification", model=str(standin_folder), trust_remote_code=True)


def silence():
    return {"raw": np.full(4 * 20_000, 0.01, dtype=np.float32), "sampling_rate": 20_000}


def test_the_pipelines_results_say_the_weights_are_the_standin(standin_pipeline, tiny_pipeline):
    result = standin_pipeline(silence(), return_timestamps=True)
    assert result["warnings"][0] == SYNTHETIC_WEIGHTS_WARNING
    assert result["warnings"].count(SYNTHETIC_WEIGHTS_WARNING) == 1
    assert SYNTHETIC_WEIGHTS_WARNING not in tiny_pipeline(silence(), return_timestamps=True)["warnings"]


def test_the_handler_answers_with_the_warning(standin_folder):
    from handler import EndpointHandler

    result = EndpointHandler(str(standin_folder))(
        {"inputs": silence()["raw"].tolist(), "parameters": {"sampling_rate": 20_000, "return_timestamps": True}}
    )
    assert result["warnings"][0] == SYNTHETIC_WEIGHTS_WARNING


def test_a_scored_dataset_carries_the_warning(standin_pipeline):
    datasets = pytest.importorskip("datasets")
    from orcahello.datasets_utils import score_dataset

    dataset = datasets.Dataset.from_dict({"audio": [silence()]})
    scored = score_dataset(dataset, standin_pipeline, batch_size=4)
    assert scored[0]["warnings"][0] == SYNTHETIC_WEIGHTS_WARNING


def test_the_review_and_search_pages_show_a_banner():
    banner = report.standin_banner({"name_or_path": "m", SYNTHETIC_WEIGHTS_KEY: True})
    assert writers.STANDIN_VALUE in banner and "mean nothing on real recordings" in banner
    assert report.standin_banner({"name_or_path": "m"}) == ""
    page = report.render_report("unused", [], [], {"model": {"name_or_path": "m", SYNTHETIC_WEIGHTS_KEY: True}})
    assert banner in page
    assert "standin" not in report.render_report("unused", [], [], {"model": {"name_or_path": "m"}})


def test_evaluate_names_the_models_and_warns_of_the_standin(capsys):
    def document(name, model):
        return {
            "file": name,
            "duration_s": 2.0,
            "model": model,
            "global_confidence": 0.0,
            "global_prediction": 0,
            "submission": [
                {"start_time_s": 0.0, "duration_s": 1.0, "confidence": 0.2},
                {"start_time_s": 1.0, "duration_s": 1.0, "confidence": 0.9},
            ],
            "parameters": {"aggregation": "orcahello", "local_threshold": 0.5},
        }

    standin = {"name_or_path": "stand-in", SYNTHETIC_WEIGHTS_KEY: True}
    documents = [document("a.wav", standin), document("b.wav", {"name_or_path": "real"})]
    annotations = [("a.wav", 1.0, 2.0, "call"), ("b.wav", 0.0, 1.0, "call")]
    metrics, _ = evaluate.evaluate(documents, annotations)
    assert metrics["models"] == [standin, {"name_or_path": "real"}]
    assert metrics["warnings"] == [SYNTHETIC_WEIGHTS_WARNING]
    metrics, _ = evaluate.evaluate(documents[1:], annotations[1:])
    assert metrics["models"] == [{"name_or_path": "real"}] and metrics["warnings"] == []


def test_live_prints_the_note(standin_folder, tmp_path, monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(live, "run_followers", lambda *arguments: ran.append(arguments))
    arguments = ["live", "http://127.0.0.1:9/node", "--model", str(standin_folder), "--output-dir", str(tmp_path)]
    assert cli.main(arguments) == 0
    assert ran, "live stopped before following"
    assert runs.standin_note(str(standin_folder), {SYNTHETIC_WEIGHTS_KEY: True}) in capsys.readouterr().err

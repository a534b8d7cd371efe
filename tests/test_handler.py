"""
The Inference Endpoints handler (`handler.py`): every request form gets the pipeline's numbers, parameters reach the
pipeline, bad requests get a one-line ValueError, and the handler runs from a copy next to a model folder alone.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile
from conftest import LEGACY, REPO_ROOT

from handler import EndpointHandler

WAV_PATH = LEGACY / "audio" / "edge_44k1_6s.wav"
# Not the defaults, so the test sees them reach the pipeline; a low threshold gives the tiny model detections.
PARAMETERS = {"return_timestamps": True, "local_threshold": 0.3, "global_count_threshold": 2}


@pytest.fixture(scope="module")
def handler(tiny_model_folder):
    return EndpointHandler(str(tiny_model_folder))


@pytest.fixture(scope="module")
def expected(tiny_pipeline):
    """The pipeline's result for the WAV file's path: what every request form must answer."""
    return tiny_pipeline(str(WAV_PATH), **PARAMETERS)


def assert_same_result(result, expected):
    json.dumps(result)  # the endpoint sends it back as JSON
    assert result["global_prediction"] == expected["global_prediction"]
    assert result["local_predictions"] == expected["local_predictions"]
    np.testing.assert_allclose(result["local_confidences"], expected["local_confidences"], rtol=0, atol=1e-7)
    np.testing.assert_allclose(
        [window["score"] for window in result["windows"]],
        [window["score"] for window in expected["windows"]],
        rtol=0,
        atol=1e-7,
    )
    assert result["global_confidence"] == pytest.approx(expected["global_confidence"], abs=1e-5)
    assert result["parameters"] == expected["parameters"]


@pytest.mark.needs_test_data
def test_wav_bytes_and_base64_get_the_pipelines_numbers(handler, expected):
    wav_bytes = WAV_PATH.read_bytes()
    from_bytes = handler({"inputs": wav_bytes, "parameters": PARAMETERS})
    assert_same_result(from_bytes, expected)
    # What a browser's FileReader sends (a data URL), and plain base64 with parameters as query strings send them.
    encoded = base64.b64encode(wav_bytes).decode("ascii")
    from_base64 = handler({"inputs": encoded, "parameters": PARAMETERS})
    assert_same_result(from_base64, expected)
    from_data_url = handler(
        {
            "inputs": "data:audio/wav;base64," + encoded,
            "parameters": {"return_timestamps": "true", "local_threshold": "0.3", "global_count_threshold": "2"},
        }
    )
    assert_same_result(from_data_url, expected)
    assert expected["parameters"]["local_threshold"] == 0.3 and expected["parameters"]["global_count_threshold"] == 2


@pytest.mark.needs_test_data
def test_samples_with_their_rate_get_the_pipelines_numbers(handler, tiny_pipeline):
    samples, rate = soundfile.read(WAV_PATH, dtype="float32")
    expected = tiny_pipeline(samples, sampling_rate=rate, **PARAMETERS)
    from_list = handler({"inputs": samples.tolist(), "parameters": {**PARAMETERS, "sampling_rate": rate}})
    assert_same_result(from_list, expected)
    from_object = handler({"inputs": {"array": samples.tolist(), "sampling_rate": rate}, "parameters": PARAMETERS})
    assert_same_result(from_object, expected)


@pytest.mark.needs_test_data
def test_default_output_and_batches(handler, tiny_pipeline):
    wav_bytes = WAV_PATH.read_bytes()
    labels = handler({"inputs": wav_bytes})
    assert labels == tiny_pipeline(str(WAV_PATH))
    # The widget format, as the pipeline gives it: the file's decision first, with the higher score. With these
    # thresholds the tiny model calls the file positive with a low global confidence: the decision still comes
    # first, its score raised to 0.5 (results_orcahello.decision_label_scores), never below the other's.
    low_bar = {"local_threshold": 0.05, "global_count_threshold": 1}
    file_result = handler({"inputs": wav_bytes, "parameters": {**low_bar, "return_timestamps": True}})
    assert file_result["global_prediction"] == 1 and 0 < file_result["global_confidence"] < 0.5
    widget = handler({"inputs": wav_bytes, "parameters": low_bar})
    assert widget == [{"label": "positive", "score": 0.5}, {"label": "negative", "score": 0.5}]
    assert widget == file_result["labels"]
    assert handler({"inputs": wav_bytes, "parameters": {"top_k": 1}}) == labels[:1]
    assert handler({"inputs": wav_bytes, "parameters": {"top_k": None, "local_threshold": None}}) == labels

    batch = handler({"inputs": [base64.b64encode(wav_bytes).decode("ascii"), wav_bytes]})
    assert batch == [labels, labels]


@pytest.mark.parametrize(
    "request_body, message",
    [
        ("just a string", "must be a JSON object"),
        ({"audio": "..."}, "has no 'inputs'"),
        ({"inputs": "not base64!"}, "not base64"),
        ({"inputs": ""}, "empty"),
        ({"inputs": b""}, "empty"),
        ({"inputs": []}, "empty list"),
        ({"inputs": [0.1, 0.2, 0.3]}, "sampling_rate"),
        ({"inputs": {"array": [0.1, 0.2]}}, "sampling_rate"),
        ({"inputs": {"samples": [0.1]}}, "needs 'array'"),
        ({"inputs": [1200, -3000, 50], "parameters": {"sampling_rate": 48000}}, "floats in [-1, 1]"),
        ({"inputs": [[0.1, 0.2], [0.3]], "parameters": {"sampling_rate": 48000}}, "equal-length"),
        ({"inputs": 3.5}, "unsupported 'inputs'"),
        ({"inputs": b"RIFF", "parameters": {"treshold": 0.7}}, "unknown parameter(s) 'treshold'"),
        ({"inputs": b"RIFF", "parameters": {"local_threshold": "high"}}, "must be a number"),
        ({"inputs": b"RIFF", "parameters": {"global_count_threshold": 2.5}}, "whole number"),
        ({"inputs": b"RIFF", "parameters": {"return_timestamps": "maybe"}}, "true or false"),
        ({"inputs": b"RIFF", "parameters": ["return_timestamps"]}, "must be an object"),
        ({"inputs": b"not audio at all"}, "cannot decode audio"),
        ({"inputs": np.zeros(1000, dtype=np.float32), "parameters": {"sampling_rate": 48000}}, "shorter than one"),
    ],
)
def test_bad_requests_get_a_clear_value_error(handler, request_body, message):
    with pytest.raises(ValueError, match=None) as error:
        handler(request_body)
    assert message in str(error.value), str(error.value)
    assert "\n" not in str(error.value)


def test_with_the_package_installed_the_handler_runs_its_classes(handler):
    """Where `orcahello` is importable (installed, or this checkout), the handler's pipeline is the package's own, as
    the commands load it: the model folder's code is not imported."""
    assert type(handler.pipeline).__module__ == "pipeline_orcahello"
    assert type(handler.pipeline.model).__module__ == "modeling_orcahello"


@pytest.mark.needs_test_data
def test_handler_copied_next_to_a_model_folder_runs_on_its_own(tiny_model_folder, tmp_path, expected):
    """
    As on an endpoint: save_model_folder puts handler.py in the model folder, and Python runs it from there without
    this checkout on its path. The model's code comes from the folder (trust_remote_code), none from the checkout.
    """
    assert (tiny_model_folder / "handler.py").read_bytes() == (REPO_ROOT / "handler.py").read_bytes()
    folder = tmp_path / "repository"
    shutil.copytree(tiny_model_folder, folder)
    request = {"inputs": base64.b64encode(WAV_PATH.read_bytes()).decode("ascii"), "parameters": PARAMETERS}
    (tmp_path / "request.json").write_text(json.dumps(request))
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path[:] = [p for p in sys.path if p not in ("", {str(REPO_ROOT)!r})]
        sys.modules["orcahello"] = None  # not installed, as on an endpoint (also where it is installed here)
        sys.path.insert(0, {str(folder)!r})
        from handler import EndpointHandler
        handler = EndpointHandler({str(folder)!r})
        result = handler(json.load(open({str(tmp_path / "request.json")!r})))
        assert "configuration_orcahello" not in sys.modules and "pipeline_orcahello" not in sys.modules
        assert type(handler.pipeline).__module__.startswith("transformers_modules.")
        print(json.dumps(result))
        """
    )
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH",)} | {
        "HF_HUB_OFFLINE": "1",
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
    }
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert_same_result(json.loads(completed.stdout.strip().splitlines()[-1]), expected)

"""
Model folders against hostile contents (issue 30, small ones): the feature extractor's `sampling_rate` and its other
settings read from a folder's preprocessor_config.json go through the one range check
(`vocabulary_orcahello.check_setting`), and saving a model folder never writes through a symbolic link planted in it.
"""

import json
import os
import shutil

import pytest

from feature_extraction_orcahello import OrcaHelloFeatureExtractor
from orcahello import models
from orcahello.conversion.model_folder import save_model_folder


@pytest.mark.parametrize(
    "rate", [1_000_000_000, 0, -20000, 4000, 20000.5, float("nan"), float("inf"), "20000", True, None]
)
def test_a_folders_sampling_rate_outside_the_range_is_refused_in_one_line(tiny_model_folder, tmp_path, rate):
    # 1e9 Hz made every 2-s window 2e9 samples; 0 divided by zero deep in the resampler.
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_folder, folder)
    path = folder / "preprocessor_config.json"
    preprocessor = json.loads(path.read_text())
    preprocessor["sampling_rate"] = rate
    path.write_text(json.dumps(preprocessor))
    with pytest.raises(ValueError) as raised:
        models.load_pipeline(str(folder), "cpu")
    message = str(raised.value)
    assert "\n" not in message
    assert f"the feature extractor's sampling_rate must be a whole number of Hz from 8000 to 192000, got {rate!r}" in (
        message
    )


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("hop_length", 1, "hop_length must be a whole number from 16 to 65536, got 1"),
        ("n_fft", 1_000_000_000, "n_fft must be a whole number from 16 to 65536, got 1000000000"),
        ("num_frames", 10**7, "num_frames must be a whole number from 1 to 4096, got 10000000"),
        ("feature_size", 0, "feature_size must be a whole number from 1 to 1024, got 0"),
        ("filterbank_sampling_rate", 0, "filterbank_sampling_rate must be a whole number of Hz from 8000 to 192000"),
        ("top_db", float("nan"), "top_db must be a number from 1 to 200, got nan"),
        ("f_max", -5.0, "f_max must be a number from 1 to 96000, got -5.0"),
        ("f_min", 12000.0, "f_min (12000.0) must be below its f_max (10000.0)"),
        ("padding_value", "0", "padding_value must be a number from -200 to 200, got '0'"),
    ],
)
def test_a_folders_feature_settings_outside_their_ranges_are_refused_in_one_line(
    tiny_model_folder, tmp_path, field, value, expected
):
    # hop_length 1 made 40,000 STFT frames of every 2-s window; n_fft 1e9 a filterbank of 5e8 bins per filter.
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_folder, folder)
    path = folder / "preprocessor_config.json"
    preprocessor = json.loads(path.read_text())
    preprocessor[field] = value
    path.write_text(json.dumps(preprocessor))
    with pytest.raises(ValueError) as raised:
        models.load_pipeline(str(folder), "cpu")
    message = str(raised.value)
    assert "\n" not in message
    assert f"the feature extractor's {expected}" in message


@pytest.mark.parametrize("rate", [8000, 20000, 48000, 192000, 20000.0])
def test_rates_a_model_can_have_are_kept(rate):
    extractor = OrcaHelloFeatureExtractor(sampling_rate=rate)
    assert extractor.sampling_rate == int(rate) and isinstance(extractor.sampling_rate, int)


@pytest.fixture()
def tiny_model():
    from conftest import tiny_config

    from modeling_orcahello import OrcaHelloForAudioClassification

    return OrcaHelloForAudioClassification(tiny_config()).eval()


def test_saving_replaces_links_planted_at_file_names_and_leaves_their_targets(tiny_model, tmp_path):
    victims = tmp_path / "victims"
    victims.mkdir()
    output_dir = tmp_path / "model"
    output_dir.mkdir()
    # save_pretrained opened these by name: a link at each made it overwrite the link's target.
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "handler.py"):
        (victims / name).write_text("the user's own file")
        os.symlink(victims / name, output_dir / name)

    save_model_folder(tiny_model, str(output_dir))

    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "handler.py"):
        assert (victims / name).read_text() == "the user's own file", name
        assert not (output_dir / name).is_symlink() and (output_dir / name).stat().st_size > 0, name
    assert json.loads((output_dir / "config.json").read_text())["model_type"] == "orcahello"
    assert not [path for path in output_dir.iterdir() if path.name.startswith(".")], "staging folder left behind"


def test_a_link_at_a_subfolders_name_is_refused(tiny_model, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    output_dir = tmp_path / "model"
    output_dir.mkdir()
    os.symlink(victim, output_dir / "examples")
    with pytest.raises(ValueError, match=r"examples is a symbolic link: a model folder is never written through one"):
        save_model_folder(tiny_model, str(output_dir))
    assert list(victim.iterdir()) == []
    assert not [path for path in output_dir.iterdir() if path.name.startswith(".")], "staging folder left behind"

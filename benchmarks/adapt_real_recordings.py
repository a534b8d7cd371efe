"""
The loop on the real recordings of ../shared/audio/real: does `orcahello adapt` raise the AUPRC of recordings it
never saw over the base model's, as `orcahello evaluate` measures it?

    .venv/bin/python benchmarks/adapt_real_recordings.py --model models/standin-resnet50-synthetic-weights \
        --output-dir outputs/adapt_real [--folds 5]

Labels are whole-file, from the file names: `pos_*` recordings (Southern and Northern Resident and other killer
whales) are `srkw` from start to end, `neg_*` and `hardneg_*` (ships, a small boat, wind, dolphins, humpback song)
`not_srkw:<class>`. The recordings are split into `--folds` groups by recording (adapt's `StratifiedGroupKFold`);
each group's recordings are scored by a head fitted on the other groups only, so every recording is held out once.
Then, as a user would: `orcahello detect` scores every recording with the base model, and each group's held-out
recordings with that group's adapted model folder; `orcahello evaluate` measures both sets of results against the
labels. The figures adapt computes itself (from the same windows, without running detect) are printed beside them.
Writes `<output-dir>/adapt_real_recordings.json`.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
REAL_AUDIO = REPO_ROOT.parent / "shared" / "audio" / "real"
# What each negative recording is, as the review page's classes for "no" name it.
NEGATIVE_CLASSES = {"ship": "vessel", "boat": "vessel", "ambient": "water", "dolphin": "other", "humpback": "humpback"}


def whole_file_labels(recordings, path):
    """Write the whole-file labels CSV (file,start_s,end_s,label) of `recordings`."""
    import soundfile

    lines = ["file,start_s,end_s,label"]
    for recording in recordings:
        duration = soundfile.info(str(recording)).duration
        if recording.name.startswith("pos_"):
            label = "srkw"
        else:
            kind = next((value for key, value in NEGATIVE_CLASSES.items() if key in recording.name), "other")
            label = f"not_srkw:{kind}"
        lines.append(f"{recording.name},0,{duration:.3f},{label}")
    Path(path).write_text("\n".join(lines) + "\n")


def orcahello(*arguments):
    completed = subprocess.run(
        [sys.executable, "-m", "orcahello.cli", *map(str, arguments)], cwd=REPO_ROOT, capture_output=True, text=True
    )
    if completed.returncode != 0:
        raise RuntimeError(f"orcahello {arguments[0]} failed: {completed.stderr[-2000:]}")
    return completed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the base model folder (e.g. the stand-in)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--layer", default="pooled", choices=("pooled", "head"))
    parser.add_argument("--regularization", type=float, default=1.0)
    options = parser.parse_args()

    from orcahello import adapt, evaluate, models, provenance

    output = Path(options.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    recordings = sorted(REAL_AUDIO.glob("*.wav"))
    labels_path = output / "whole_file_labels.csv"
    whole_file_labels(recordings, labels_path)
    annotations = evaluate.read_annotations(labels_path)
    paths = [str(path) for path in recordings]
    intervals, _ = adapt.annotations_by_recording(annotations, paths)

    started = time.monotonic()
    pipe = models.load_pipeline(options.model, "cpu")
    embedded = adapt.embed_recordings(pipe, paths, intervals, layer=options.layer, log=print)
    embedding_s = time.monotonic() - started
    held_out_scores, assignment, heads = adapt.cross_validate(embedded, options.folds, options.regularization)
    decision_settings = {**pipe.model.config.inference_settings(), "min_global_confidence": 0.0}
    figures = adapt.held_out_figures(embedded, held_out_scores, annotations, decision_settings)
    print("adapt's own held-out figures:", adapt.figure_line(figures))

    base_info = provenance.describe_model_config(pipe.model.config, options.model)
    base_results, adapted_results = output / "detect_base", output / "detect_adapted"
    orcahello(
        "detect", *paths, "--model", options.model, "--output-dir", base_results, "--format", "json", "--overwrite"
    )
    folds = []
    for fold, head in enumerate(heads):
        held_out = [paths[i] for i in range(len(paths)) if assignment[i] == fold]
        folder = output / f"fold_{fold + 1}_model"
        provenance_stub = {
            "layer": options.layer,
            "held_out_recordings": [os.path.basename(path) for path in held_out],
            "base_model": {key: base_info.get(key) for key in ("name_or_path", "weights_sha256")},
        }
        adapt.save_adapted_folder(pipe, head, str(folder), provenance_stub, card=None)
        orcahello("detect", *held_out, "--model", folder, "--output-dir", adapted_results / f"fold_{fold + 1}",
                  "--format", "json", "--overwrite")  # fmt: skip
        folds.append({"fold": fold + 1, "held_out": [os.path.basename(path) for path in held_out]})

    measured = {}
    for name, results in (("base", base_results), ("adapted", adapted_results)):
        metrics_path = output / f"evaluate_{name}.json"
        orcahello("evaluate", results, "--annotations", labels_path, "--output", metrics_path)
        metrics = json.loads(metrics_path.read_text())
        measured[name] = {
            "seconds_auprc": metrics["seconds"]["auprc"],
            "files_auprc": metrics["files"]["auprc"],
            "precision": metrics["seconds"]["precision"],
            "recall": metrics["seconds"]["recall"],
        }
    per_recording = {}
    for name, results in (("base", base_results), ("adapted", adapted_results)):
        for path in sorted(results.rglob("*.orcahello.json")):
            document = json.loads(path.read_text())
            scores = [window["score"] for window in document["windows"]]
            entry = per_recording.setdefault(os.path.basename(document["file"]), {})
            entry[name] = {
                "mean_window_score": round(sum(scores) / len(scores), 3),
                "global_confidence": round(document["global_confidence"], 3),
                "global_prediction": document["global_prediction"],
            }
    base_info = {**base_info, "name_or_path": os.path.relpath(base_info["name_or_path"], REPO_ROOT)}
    report = {
        "recordings": [path.name for path in recordings],
        "windows": {
            "positive": int(sum((item.labels == adapt.POSITIVE).sum() for item in embedded)),
            "negative": int(sum((item.labels == adapt.NEGATIVE).sum() for item in embedded)),
        },
        "folds": folds,
        "layer": options.layer,
        "regularization": options.regularization,
        "adapt_held_out_figures": figures,
        "evaluate_on_detect_results": measured,
        "per_recording": dict(sorted(per_recording.items())),
        "base_model": base_info,
        "embedding_s": round(embedding_s, 1),
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    (output / "adapt_real_recordings.json").write_text(json.dumps(report, indent=2) + "\n")
    for name in ("base", "adapted"):
        values = measured[name]
        print(
            f"evaluate, {name}: one-second AUPRC {values['seconds_auprc']}, file AUPRC {values['files_auprc']}, "
            f"precision {values['precision']}, recall {values['recall']}"
        )


if __name__ == "__main__":
    main()

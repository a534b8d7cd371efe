"""
Peak memory of the pipeline on long recordings read from a path (streaming), for each inference preset, each
length in its own process (the peak resident set is the process's). Uses a tiny random model: the point is the
frontend and the pipeline's bookkeeping, whose memory does not depend on the model's size (add the model's own
~100 MB for ResNet50).

The v1 preset's whole-recording frontend (`whole_recording_orcahello`) streams in two passes; `--in-memory-v1`
adds rows with the frontend as it was before (the whole recording read and resampled at once,
`OrcaHelloFeatureExtractor.prepare_whole_recording`), as the reference.

    python benchmarks/long_recording_memory.py --hours 0.0167 1 3 --presets fastai v1 --in-memory-v1
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)


def write_long_wav(path, hours, rate=48000):
    """Noise with a tone every minute, written block by block so the writer never holds the whole file."""
    rng = np.random.default_rng(0)
    with soundfile.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as handle:
        for _minute in range(int(round(hours * 60))):
            block = rng.standard_normal(60 * rate) * 0.01
            t = np.arange(rate) / rate
            block[10 * rate : 11 * rate] += 0.1 * np.sin(2 * np.pi * 1500 * t)
            handle.write(block.astype(np.float32))


def use_in_memory_v1_frontend(detector):
    """Swap the pipeline's streamed v1 frontend for the whole recording held in memory (the reference)."""
    from audio_orcahello import Recording

    pipeline_module = sys.modules[type(detector).__module__]

    def whole_recording_in_memory(recording, feature_extractor, peak_normalize=True):
        audio = feature_extractor.prepare_whole_recording(
            recording.read(0, recording.num_samples), recording.sampling_rate, peak_normalize=peak_normalize
        )
        recording.close()
        prepared = Recording.from_array(audio, feature_extractor.sampling_rate, name=recording.name)
        prepared.source_sampling_rate, prepared.source_num_samples = recording.sampling_rate, recording.num_samples
        return prepared

    pipeline_module.whole_recording_audio = whole_recording_in_memory


def measure(wav_path, model_folder, preset, in_memory_v1):
    """One run in this process: the figures of `preset` on `wav_path`."""
    from transformers import pipeline

    from process_memory_orcahello import return_large_buffers_to_the_system

    return_large_buffers_to_the_system()  # as the command line and the endpoint do at their start
    detector = pipeline("audio-classification", model=model_folder, trust_remote_code=True)
    if in_memory_v1:
        use_in_memory_v1_frontend(detector)
    detector(np.zeros(6 * 48000, np.int16), sampling_rate=48000, preset=preset)  # warm-up: imports, filterbank
    rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    result = detector(wav_path, return_timestamps=True, batch_size=32, preset=preset)
    seconds = time.perf_counter() - start
    windows = len(result["windows"])
    return {
        "preset": preset,
        "frontend": "in-memory (before)" if in_memory_v1 else "streamed",
        "file_mb": round(os.path.getsize(wav_path) / 1e6, 1),
        "windows": windows,
        "all_spectrograms_mb": round(windows * 256 * 312 * 4 / 1e6, 1),
        "peak_rss_before_mb": round(rss_before_mb, 1),
        "peak_rss_after_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "seconds": round(seconds, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, nargs="+", default=[2.0])
    parser.add_argument("--presets", nargs="+", default=["fastai", "v1"])
    parser.add_argument("--in-memory-v1", action="store_true", help="also measure the v1 frontend as it was")
    parser.add_argument("--output", default=None, help="write the figures as JSON here")
    parser.add_argument("--child", nargs=4, metavar=("WAV", "MODEL", "PRESET", "IN_MEMORY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        wav_path, model_folder, preset, in_memory = args.child
        print(json.dumps(measure(wav_path, model_folder, preset, in_memory == "1")))
        return

    import torch

    from modeling_orcahello import OrcaHelloForAudioClassification
    from orcahello.conversion.model_folder import default_config, save_model_folder

    workdir = tempfile.mkdtemp(prefix="orcahello-long-")
    torch.manual_seed(0)
    config = default_config(depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 64, 128], layer_type="basic", embedding_size=16)
    model_folder = os.path.join(workdir, "model")
    save_model_folder(OrcaHelloForAudioClassification(config).eval(), model_folder)
    runs = [(preset, False) for preset in args.presets]
    if args.in_memory_v1:
        runs.append(("v1", True))
    rows = []
    for hours in args.hours:
        wav_path = os.path.join(workdir, "long.wav")
        write_long_wav(wav_path, hours)
        for preset, in_memory in runs:
            child = [sys.executable, __file__, "--child", wav_path, model_folder, preset, "1" if in_memory else "0"]
            completed = subprocess.run(child, capture_output=True, text=True, check=True)
            row = {"hours": hours, **json.loads(completed.stdout.strip().splitlines()[-1])}
            print(json.dumps(row), flush=True)
            rows.append(row)
        os.remove(wav_path)
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()

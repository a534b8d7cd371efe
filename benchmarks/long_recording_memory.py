"""
Peak memory of the pipeline on a long recording read from a path (streaming), against what holding all of its
spectrograms would take. Uses a tiny random model: the point is the frontend and the pipeline's bookkeeping,
whose memory does not depend on the model's size (add the model's own ~100 MB for ResNet50).

    python benchmarks/long_recording_memory.py --hours 2
"""

import argparse
import json
import os
import resource
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--output", default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    import torch
    from transformers import pipeline

    from modeling_orcahello import OrcaHelloForAudioClassification
    from orcahello.conversion.model_folder import default_config, save_model_folder

    workdir = tempfile.mkdtemp(prefix="orcahello-long-")
    wav_path = os.path.join(workdir, "long.wav")
    write_long_wav(wav_path, args.hours)
    torch.manual_seed(0)
    config = default_config(depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 64, 128], layer_type="basic", embedding_size=16)
    save_model_folder(OrcaHelloForAudioClassification(config).eval(), os.path.join(workdir, "model"))
    detector = pipeline("audio-classification", model=os.path.join(workdir, "model"), trust_remote_code=True)
    detector(np.zeros(96000, np.int16), sampling_rate=48000)  # warm-up: imports, filterbank

    rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    result = detector(wav_path, return_timestamps=True, batch_size=32)
    seconds = time.perf_counter() - start
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    windows = len(result["windows"])
    figures = {
        "hours": args.hours,
        "file_mb": os.path.getsize(wav_path) / 1e6,
        "windows": windows,
        "all_spectrograms_mb": windows * 256 * 312 * 4 / 1e6,
        "peak_rss_before_mb": round(rss_before_mb, 1),
        "peak_rss_after_mb": round(peak_rss_mb, 1),
        "seconds": round(seconds, 1),
    }
    print(json.dumps(figures, indent=2))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(figures, handle, indent=2)
    os.remove(wav_path)


if __name__ == "__main__":
    main()

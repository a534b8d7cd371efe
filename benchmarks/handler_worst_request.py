"""
The costliest requests the endpoint handler accepts under its default limits (README, "Inference Endpoints"): peak
resident memory, wall time and CPU time (all threads; steadier than wall time on a shared machine) of each, run in
a fresh process so that the peaks are the request's own.

    .venv/bin/python benchmarks/handler_worst_request.py MODEL_FOLDER [CASE ...]

Cases (all at the defaults: 600 s, 128 MiB, 192 kHz, 230.4 M decoded samples, 57.6 M with the whole-recording
frontend, batch_size up to 64):
- `long_fast`: 600 s of stereo at 192 kHz in FLAC (quiet noise: a few MB that decode to 460 MB), batch_size 64: the
  most decoded samples the default frontend accepts;
- `long_prime_rate`: 600 s of 8-bit mono WAV (115 MB) at 191,999 Hz, a rate sharing no factor with 20 kHz, so that
  every block of windows builds the longest resampling filter (20000 up, 191999 down: 3.8 M taps), batch_size 64;
- `v1_at_the_bound`: 600 s of stereo at 48 kHz in FLAC with `preset: "v1"` (the whole-recording frontend): the most
  decoded samples that frontend accepts, batch_size 64;
- `eight_channels`: 600 s of 8-channel digital silence at 192 kHz in FLAC (under 1 MB; it peaked at 10 GB with
  `preset: "v1"` before the decoded-samples bound), sent with `preset: "v1"`: refused from its header;
- `refused_1hz`: a 4-KB WAV whose header says 1 Hz (2,000 s of audio before the limits): refused at once.
"""

import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

# Each case's audio (seconds, rate, channels, format, subtype, noise amplitude) and request parameters.
CASES = {
    "long_fast": ((600, 192000, 2, "FLAC", "PCM_16", 3), {"batch_size": 64}),
    "long_prime_rate": ((600, 191999, 1, "WAV", "PCM_U8", 3), {"batch_size": 64}),  # libsndfile's FLAC: usual rates
    "v1_at_the_bound": ((600, 48000, 2, "FLAC", "PCM_16", 3), {"batch_size": 64, "preset": "v1"}),
    "eight_channels": ((600, 192000, 8, "FLAC", "PCM_16", 0), {"preset": "v1"}),
}


def write_audio(path, seconds, rate, channels, format, subtype, amplitude):
    """Quiet noise (a few bits: FLAC compresses it well), written in ten-second pieces to keep this process small."""
    import soundfile

    rng = np.random.default_rng(0)
    with soundfile.SoundFile(path, "w", rate, channels, subtype=subtype, format=format) as sound_file:
        for _ in range(seconds // 10):
            sound_file.write((rng.standard_normal((10 * rate, channels)) * amplitude).astype(np.int16))


def one_case(model_folder, case, audio_path):
    sys.path.insert(0, ".")
    from handler import EndpointHandler

    handler = EndpointHandler(model_folder)
    with open(audio_path, "rb") as handle:
        body = {"inputs": handle.read()}
    if case in CASES:
        body["parameters"] = CASES[case][1]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        answer = handler(body)
        outcome = f"scored: {answer[0]}"
    except ValueError as error:
        outcome = f"refused: {error}"
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"case": case, "payload_bytes": len(body["inputs"]), "seconds": round(seconds, 2),
                      "cpu_seconds": round(cpu_seconds, 2),
                      "peak_rss_mb_before": round(before), "peak_rss_mb": round(peak), "outcome": outcome[:160]}),
          flush=True)  # fmt: skip


def main(model_folder, cases):
    import soundfile

    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        for case in cases:
            paths[case] = os.path.join(folder, f"{case}.audio")
            if case == "refused_1hz":
                buffer = io.BytesIO()
                soundfile.write(buffer, np.zeros(2000, np.int16), 48000, format="WAV", subtype="PCM_16")
                data = bytearray(buffer.getvalue())
                data[24:28] = (1).to_bytes(4, "little")
                with open(paths[case], "wb") as handle:
                    handle.write(bytes(data))
            else:
                write_audio(paths[case], *CASES[case][0])
            # Each request in a fresh process: its peak is the handler's and the request's alone.
            subprocess.run([sys.executable, __file__, "--one", model_folder, case, paths[case]], check=True)


if __name__ == "__main__":
    if sys.argv[1] == "--one":  # the child process of one case
        one_case(*sys.argv[2:5])
    else:
        main(
            sys.argv[1],
            sys.argv[2:] or ["refused_1hz", "eight_channels", "v1_at_the_bound", "long_fast", "long_prime_rate"],
        )

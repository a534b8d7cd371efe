"""Run the OrcaHello detector on audio files and print the file-level decision and the positive seconds."""

import argparse
import os
import warnings


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("audio", nargs="+", help="audio files (WAV, FLAC, OGG, MP3)")
    parser.add_argument("--model", required=True, help="model folder or Hub id")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import pipeline
    from transformers.utils import logging

    logging.set_verbosity_error()
    detector = pipeline("audio-classification", model=args.model, trust_remote_code=True)
    for path, result in zip(args.audio, detector(args.audio, return_timestamps=True)):
        seconds = [f"{d['start']:g}-{d['end']:g}s" for d in result["detections"]]
        print(f"{os.path.basename(path)}: {result['label']} (global_confidence {result['global_confidence']:.2f}, "
              f"{sum(result['local_predictions'])}/{len(result['local_predictions'])} positive seconds"
              f"{': ' + ', '.join(seconds) if seconds else ''})")


if __name__ == "__main__":
    main()

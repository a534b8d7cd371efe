"""
How `orcahello search`'s brute force scales: the time of one query (a matrix-vector product over every window and a
partial sort, `orcahello.search.WindowIndex.nearest`) and the memory its matrix takes, from 10^4 to 10^6 windows, for
`embed`'s two widths (512: `--layer head`; 4096: `--layer pooled`, the default). The vectors are synthetic (random,
normalised): the time of a dense product does not depend on the values.

    .venv/bin/python benchmarks/search_scaling.py [--max-gb 4] [--repeats 7] [--output results.json]

Sizes whose matrix would take more than `--max-gb` are not allocated: their time is extrapolated from the largest
measured size of the same width (brute force is linear in windows x width) and marked so. The reference measured in
the same run is one streaming pass over the same matrix (`numpy.sum`, memory bandwidth bound): a query cannot be
faster than reading its matrix once.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orcahello.search import WindowIndex  # noqa: E402

SIZES = (10_000, 100_000, 1_000_000)
WIDTHS = (512, 4096)


def cpu_name():
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        return platform.processor() or "unknown"


def random_unit_matrix(windows, width, seed=0):
    """A `(windows, width)` float32 matrix of random vectors, filled in blocks (no float64 copy of the whole)."""
    rng = np.random.default_rng(seed)
    matrix = np.empty((windows, width), dtype=np.float32)
    block = max(1, (1 << 24) // width)
    for start in range(0, windows, block):
        matrix[start : start + block] = rng.standard_normal((min(block, windows - start), width), dtype=np.float32)
    return matrix


def median_seconds(function, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(windows, width, top, repeats):
    """The median time of one query, and of one pass over the matrix, for `windows` vectors of `width`."""
    index = WindowIndex({}, random_unit_matrix(windows, width))
    query = index.vectors[windows // 2].copy()
    index.nearest(query, top)  # warm-up: page faults, BLAS threads
    return {
        "query_ms": round(1000 * median_seconds(lambda: index.nearest(query, top), repeats), 2),
        "read_once_ms": round(1000 * median_seconds(index.vectors.sum, repeats), 2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-gb", type=float, default=4.0, help="largest matrix to allocate (default 4 GB)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--top", type=int, default=50)
    parser.add_argument("--output", default=None)
    options = parser.parse_args()

    rows = []
    for width in WIDTHS:
        measured = None
        for windows in SIZES:
            gigabytes = windows * width * 4 / 1e9
            row = {"windows": windows, "width": width, "matrix_gb": round(gigabytes, 3)}
            if gigabytes > options.max_gb:
                if measured is not None:
                    scale = windows * width / (measured["windows"] * measured["width"])
                    row["query_ms"] = round(measured["query_ms"] * scale, 1)
                    row["read_once_ms"] = round(measured["read_once_ms"] * scale, 1)
                    row["extrapolated_from"] = measured["windows"]
                rows.append(row)
                print(row, flush=True)
                continue
            row.update(measure(windows, width, options.top, options.repeats))
            rows, measured = rows + [row], row
            print(row, flush=True)
    result = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "numpy": np.__version__,
        "top": options.top,
        "repeats": options.repeats,
        "rows": rows,
    }
    text = json.dumps(result, indent=2) + "\n"
    if options.output:
        Path(options.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""
How long the Ray processes of an `orcahello batch` job outlive a `kill -9` of its driver (issue 30, F17).

Starts `orcahello batch` with its own local Ray instance (no `--address`) on a 10-minute recording and a tiny random
model, SIGKILLs the driver as soon as it has written a first partition, then polls every Ray process the driver had
started (its descendants, listed just before the kill) until none is left, and records when each kind was last seen
and whether any of them still held a file of the output folder open (the lock included). `--env NAME=VALUE` runs the
job with a Ray setting in its environment (a driver's environment reaches every process of its local instance).

    python benchmarks/ray_driver_kill.py --output benchmarks/results_ray_driver_kill_2core.json
    python benchmarks/ray_driver_kill.py --env RAY_gcs_rpc_server_reconnect_timeout_s=3
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import psutil
import soundfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, os.path.join(REPO_ROOT, "tests"))


def tiny_model_folder(folder: str) -> str:
    from conftest import save_random_model_folder, tiny_config

    return str(save_random_model_folder(tiny_config(), folder))


def measure(environment: dict[str, str], deadline_s: float = 400.0) -> dict:
    work = tempfile.mkdtemp(prefix="ray-driver-kill-")
    recordings, output_dir = os.path.join(work, "recordings"), os.path.join(work, "results")
    os.makedirs(recordings)
    samples = (np.random.default_rng(5).standard_normal(600 * 20000) * 2000).astype(np.int16)
    soundfile.write(os.path.join(recordings, "ten_minutes.wav"), samples, 20000)
    model = tiny_model_folder(os.path.join(work, "model"))
    command = [sys.executable, "-m", "orcahello.cli", "batch", recordings, "--output-dir", output_dir, "--model",
               model, "--num-workers", "1", "--batch-size", "4", "--partition-windows", "32"]  # fmt: skip
    driver = subprocess.Popen(command, cwd=REPO_ROOT, env=dict(os.environ, **environment),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    started = time.monotonic()
    while not any(name.startswith("part-") for _, _, names in os.walk(output_dir) for name in names):
        if driver.poll() is not None or time.monotonic() - started > 300:
            raise RuntimeError("the job ended or stalled before its first partition")
        time.sleep(0.05)
    processes = psutil.Process(driver.pid).children(recursive=True)
    kinds = {process.pid: process.name() for process in processes}
    killed = time.monotonic()
    driver.kill()
    driver.wait()
    last_seen: dict[str, float] = {}
    holding_outputs: set[str] = set()
    alive = processes
    while alive and time.monotonic() - killed < deadline_s:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        for process in alive:
            last_seen[kinds[process.pid]] = round(time.monotonic() - killed, 1)
            try:
                if any(handle.path.startswith(output_dir) for handle in process.open_files()):
                    holding_outputs.add(kinds[process.pid])
            except psutil.Error:
                pass
        time.sleep(0.2)
    return {
        "environment": environment,
        "ray_processes": len(processes),
        "all_gone_after_s": None if alive else round(time.monotonic() - killed, 1),
        "last_seen_s": dict(sorted(last_seen.items(), key=lambda item: item[1])),
        "holding_output_files": sorted(holding_outputs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="a Ray setting to try")
    parser.add_argument("--output", help="write the result (with the machine) as JSON here")
    args = parser.parse_args()
    import ray

    result = measure(dict(setting.split("=", 1) for setting in args.env))
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    result.update(ray=ray.__version__, cpu=cpu, cpus=os.cpu_count(), python=platform.python_version())
    print(json.dumps(result, indent=2))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
            handle.write("\n")


if __name__ == "__main__":
    main()

"""
`scripts/setup.sh` run twice at once: the second waits for the first (a lock in the user's cache folder) instead of
building the shared uv folder beside it (which made one of them run a half-made uv: exit 127). Checked on a copy of
the script in a scratch checkout, so nothing here is installed: the waiting set-up is stopped before it starts.
"""

import fcntl
import os
import shutil
import signal
import subprocess
import time

import pytest
from conftest import REPO_ROOT


@pytest.mark.skipif(shutil.which("flock") is None, reason="flock (util-linux) is not installed")
def test_a_second_setup_waits_for_the_first(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(os.path.join(REPO_ROOT, "scripts", "setup.sh"), checkout / "scripts" / "setup.sh")
    cache = tmp_path / "cache"
    lock_path = cache / "orcahello-venvs" / ".setup.lock"
    lock_path.parent.mkdir(parents=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a first set-up, running
        process = subprocess.Popen(
            ["bash", str(checkout / "scripts" / "setup.sh")],
            cwd=checkout,
            env=dict(os.environ, XDG_CACHE_HOME=str(cache), PATH="/usr/bin:/bin"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            first_line = process.stdout.readline()
            time.sleep(2)
            assert process.poll() is None, process.stdout.read()
            assert first_line.strip() == "==> another scripts/setup.sh is running; waiting for it to finish"
            # Nothing was started beside the running set-up: no uv folder, no environment.
            assert sorted(os.listdir(cache / "orcahello-venvs")) == [".setup.lock"]
            assert not (checkout / ".venv").exists()
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            process.stdout.close()

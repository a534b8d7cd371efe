# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Command-line and batch tools around the OrcaHello detector pipeline: `orcahello detect` (see `orcahello.cli`),
the per-file and combined output writers (`orcahello.writers`), spectrogram plots (`orcahello.plot`, needs
matplotlib), the review page of `detect --report` (`orcahello.report`), per-window embeddings (`orcahello embed`,
`orcahello.embed`, needs pyarrow) and scoring of `datasets.Dataset` audio columns (`orcahello.datasets_utils`).
"""

import os
import re

PACKAGE_NAME = "orcahello-srkw-detector"
# Every command's exit status: all recordings scored; some failed (each reported); the run could not start;
# interrupted (Ctrl-C, as a shell reports SIGINT).
EXIT_OK = 0
EXIT_SOME_FILES_FAILED = 1
EXIT_CANNOT_RUN = 2
EXIT_INTERRUPTED = 130
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def package_version() -> str:
    """
    The installed package's version; in a checkout that is not installed (a deps-only venv, `python -m
    orcahello.cli` from the repo root), the version written in the checkout's pyproject.toml.
    """
    from importlib import metadata

    try:
        return metadata.version(PACKAGE_NAME)
    except metadata.PackageNotFoundError:
        pass
    pyproject_path = os.path.join(REPO_ROOT, "pyproject.toml")
    try:
        import tomllib  # Python >= 3.11

        with open(pyproject_path, "rb") as handle:
            return tomllib.load(handle)["project"]["version"]
    except ImportError:
        pass
    except (OSError, ValueError, KeyError):
        return "unknown"
    # Python 3.10 has no TOML reader; the version line of the [project] table is all that is needed.
    try:
        with open(pyproject_path, encoding="utf-8") as handle:
            pyproject = handle.read()
    except OSError:
        return "unknown"
    match = re.search(r'^\[project\]$.*?^version\s*=\s*"([^"]+)"', pyproject, flags=re.MULTILINE | re.DOTALL)
    return match.group(1) if match else "unknown"


__version__ = package_version()

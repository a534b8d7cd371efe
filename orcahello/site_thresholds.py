# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Per-site decision thresholds: one table, in JSON (or YAML when PyYAML is installed), that gives the file-level
decision parameters of each hydrophone, matched by name or glob pattern against a recording's path.

```json
{
  "description": "Orcasound network, tuned on the 2024 moderator labels",
  "default": {"local_threshold": 0.5, "global_count_threshold": 3},
  "sites": {
    "orcasound_lab": {"local_threshold": 0.7},
    "bush_point*": {"global_count_threshold": 5},
    "*/port_townsend/2025-*/*": {"local_threshold": 0.6, "aggregation": "mean_top_k"}
  }
}
```

`parameters_for(path_or_name, table)` gives a recording's parameters: the table's `default`, overridden by the
entry of the **first** site pattern (in the file's order) that matches. A pattern matches, case-insensitively, with
shell-style wildcards (`*`, `?`, `[...]`, as `fnmatch`):

- a pattern without `/` is tried on every part of the path (each folder name and the file name) and on the file
  name without its extension: `orcasound_lab` matches `.../orcasound_lab/2021-08-25/clip.wav` and
  `orcasound_lab.wav`; `bush_point*` matches `bush_point_20210825T1925.flac`;
- a pattern with `/` is tried on the whole path, `/`-separated (`*` crosses folders there).

Only parameters that decide from the window scores can be set per site: every decision field
(`vocabulary_orcahello.DECISION_FIELDS`: the aggregation and thresholds of `results_orcahello.aggregate_windows`, the
confidence floor of `results_orcahello.apply_confidence_floor`) but the preset's smoothing. How recordings are cut
into windows is the model's and stays the same everywhere.

An entry may also hold `fit`: a mapping that says how its values were obtained (`orcahello calibrate` writes the
counts, precision and data hash it fitted them on there). It is kept in the table for readers and never decides.
"""

import fnmatch
import json
import os
from typing import Any

from vocabulary_orcahello import DECISION_FIELDS

from .provenance import check_decision_value
from .safe_yaml import MAX_YAML_BYTES, YamlFileError, read_yaml_file

# The decision parameters a site may set: every decision field but smoothing, which is how the preset turns windows
# into rows (a site with other rows would be another preset).
SITE_PARAMETERS = tuple(name for name in DECISION_FIELDS if name != "smoothing")
# An entry's record of how it was fitted (orcahello calibrate): informative, never a decision parameter.
FIT_KEY = "fit"
TABLE_KEYS = ("default", "sites", "description")
YAML_SUFFIXES = (".yaml", ".yml")


class SiteThresholdsError(ValueError):
    """A per-site thresholds table that cannot be read or holds a parameter the detector cannot use."""


def check_site_parameters(parameters: Any, where: str) -> dict[str, Any]:
    """Validate one entry (`default` or a site's) and return it with numbers in their canonical types."""
    if not isinstance(parameters, dict):
        raise SiteThresholdsError(f"{where}: expected a mapping of parameters, got {type(parameters).__name__}")
    unknown = sorted(set(parameters) - set(SITE_PARAMETERS) - {FIT_KEY})
    if unknown:
        raise SiteThresholdsError(
            f"{where}: unknown parameter(s) {', '.join(unknown)}; a site can set {', '.join(SITE_PARAMETERS)}"
        )
    checked: dict[str, Any] = {}
    for name, value in parameters.items():
        if name == FIT_KEY:
            if not isinstance(value, dict):
                raise SiteThresholdsError(f"{where}: {FIT_KEY} must be a mapping describing the fit, got {value!r}")
            checked[name] = value
            continue
        try:
            checked[name] = check_decision_value(name, value)
        except ValueError as error:
            raise SiteThresholdsError(f"{where}: {error}") from None
    return checked


def check_site_thresholds(table: Any, source: str = "site thresholds") -> dict[str, Any]:
    """
    Validate a table already parsed from JSON/YAML; returns `{"default": {...}, "sites": {pattern: {...}}}` with the
    sites in the table's order (the order in which they are tried). Raises `SiteThresholdsError` naming the
    offending entry.
    """
    if not isinstance(table, dict):
        raise SiteThresholdsError(f"{source}: expected a mapping with 'sites' (and optionally 'default')")
    unknown = sorted(set(table) - set(TABLE_KEYS))
    if unknown:
        raise SiteThresholdsError(
            f"{source}: unknown key(s) {', '.join(map(str, unknown))}; expected {', '.join(TABLE_KEYS)}"
        )
    sites = table.get("sites", {})
    if not isinstance(sites, dict):
        raise SiteThresholdsError(f"{source}: 'sites' must map site names or patterns to parameters")
    checked_sites = {}
    for pattern, parameters in sites.items():
        if not isinstance(pattern, str) or not pattern.strip():
            raise SiteThresholdsError(f"{source}: site names must be non-empty strings, got {pattern!r}")
        checked_sites[pattern] = check_site_parameters(parameters, f"{source}: site {pattern!r}")
    return {
        "default": check_site_parameters(table.get("default", {}), f"{source}: default"),
        "sites": checked_sites,
    }


def load_site_thresholds(path: str | os.PathLike) -> dict[str, Any]:
    """
    Read and validate the per-site thresholds table at `path`: JSON, or YAML for a `.yaml`/`.yml` file (needs
    PyYAML). Returns the validated table (see `check_site_thresholds`).
    """
    path = os.fspath(path)
    if path.lower().endswith(YAML_SUFFIXES):
        try:  # anchors refused, the size capped: a hostile file fails fast (orcahello.safe_yaml)
            table = read_yaml_file(path)
        except YamlFileError as error:
            raise SiteThresholdsError(str(error)) from None
        return check_site_thresholds(table, source=path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(MAX_YAML_BYTES + 1)
    except OSError as error:
        raise SiteThresholdsError(f"{path}: cannot read the site thresholds ({error.strerror or error})") from None
    if len(text) > MAX_YAML_BYTES:
        raise SiteThresholdsError(f"{path}: larger than {MAX_YAML_BYTES} bytes: not a site table")
    try:
        table = json.loads(text)
    except ValueError as error:
        raise SiteThresholdsError(f"{path}: not valid JSON ({error})") from None
    return check_site_thresholds(table, source=path)


def path_candidates(path_or_name: str | os.PathLike) -> tuple[str, list[str]]:
    """The strings a pattern without `/` is tried on: every part of the path, and the file name's stem."""
    normalized = os.fspath(path_or_name).replace("\\", "/")
    parts = [part for part in normalized.split("/") if part not in ("", ".", "..")]
    candidates = list(parts)
    if parts:
        stem = os.path.splitext(parts[-1])[0]
        if stem and stem != parts[-1]:
            candidates.append(stem)
    return normalized, candidates


def match_site(path_or_name: str | os.PathLike, table: dict[str, Any]) -> str | None:
    """The first site pattern of `table` matching `path_or_name` (see the module docstring), or None."""
    normalized, candidates = path_candidates(path_or_name)
    normalized = normalized.lower()
    lowered = [candidate.lower() for candidate in candidates]
    for pattern in table["sites"]:
        folded = pattern.lower()
        if "/" in folded:
            if fnmatch.fnmatchcase(normalized, folded):
                return pattern
        elif any(fnmatch.fnmatchcase(candidate, folded) for candidate in lowered):
            return pattern
    return None


def parameters_for(path_or_name: str | os.PathLike, table: dict[str, Any]) -> dict[str, Any]:
    """
    The decision parameters `table` gives the recording `path_or_name` (a path, or a hydrophone's name): its
    `default`, overridden by the first matching site's entry. Parameters the table does not set are absent: the
    caller keeps its own value (the command line's, else the model config's) for them.
    """
    site = match_site(path_or_name, table)
    parameters = dict(table["default"])
    if site is not None:
        parameters.update(table["sites"][site])
    parameters.pop(FIT_KEY, None)
    return parameters

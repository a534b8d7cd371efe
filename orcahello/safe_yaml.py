# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Reading the YAML files OrcaHello takes from users (a Hub folder's `config.yaml`, a site table, upstream's
hydrophone configs) so that a hostile or broken file fails fast, with one line.

`yaml.safe_load` builds no arbitrary objects, but it expands aliases: a "billion laughs" document of a few hundred
bytes, each anchor naming ten copies of the one before, unfolds into gigabytes. The settings files OrcaHello reads
have no use for anchors, so a document holding any is refused before it is built (PyYAML's event parser sees them
without expanding anything), and a file larger than `MAX_YAML_BYTES` is refused before it is parsed.
"""

import os
from typing import Any

# The largest settings file read: upstream's configs are under 2 KB, a site table for every hydrophone of a network
# a few tens of KB.
MAX_YAML_BYTES = 1 << 20


class YamlFileError(ValueError):
    """A YAML settings file that cannot be read, is too large, holds anchors/aliases or is not valid YAML."""


def load_yaml_text(text: str, source: str) -> Any:
    """The document in `text` (`source` names it in errors), parsed with `yaml.safe_load` once it is known to hold
    no anchors or aliases; `YamlFileError` otherwise."""
    try:
        import yaml
    except ImportError:
        raise YamlFileError(f"{source}: reading YAML needs PyYAML (pip install pyyaml)") from None
    if len(text.encode("utf-8", errors="replace")) > MAX_YAML_BYTES:
        raise YamlFileError(f"{source}: larger than {MAX_YAML_BYTES} bytes: not a settings file")
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise YamlFileError(
                    f"{source}: line {line}: YAML anchors and aliases (&name, *name) are not accepted in settings "
                    f"files; write the values out"
                )
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise YamlFileError(f"{source}: not valid YAML ({' '.join(str(error).split())})") from None


def read_yaml_file(path: str | os.PathLike) -> Any:
    """The YAML document in the file at `path` (see `load_yaml_text`), its size checked before it is read."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        if size > MAX_YAML_BYTES:
            raise YamlFileError(f"{path}: {size} bytes, larger than {MAX_YAML_BYTES}: not a settings file")
        with open(path, encoding="utf-8") as handle:
            text = handle.read(MAX_YAML_BYTES + 1)
    except OSError as error:
        raise YamlFileError(f"{path}: cannot read it ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise YamlFileError(f"{path}: not UTF-8 text") from None
    return load_yaml_text(text, path)

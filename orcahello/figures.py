# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""What the report figures of `orcahello calibrate` and `orcahello evaluate` share: a headless matplotlib and an
atomic save (a killed run never leaves half a PNG)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .atomic_files import temporary_file_beside
from .plot import require_matplotlib

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def new_figure(columns: int = 1, width: float = 6.4, height: float = 4.8) -> tuple[Figure, list[Axes]]:
    """A figure with `columns` side-by-side axes, drawn without a display (Agg)."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(1, columns, figsize=(width * columns, height), squeeze=False)
    return figure, list(axes[0])


def save_figure(figure: Figure, path: str) -> None:
    """Write `figure` to the PNG `path` through a temporary file and a rename, then release it."""
    from matplotlib import pyplot

    figure.tight_layout()
    with temporary_file_beside(path) as temporary_path:
        # No timestamps in the PNG's metadata, so that the same data always give the same file. The format is
        # named: matplotlib would take it from the temporary file's suffix.
        figure.savefig(temporary_path, format="png", dpi=110, metadata={"Software": None})
        pyplot.close(figure)
        os.replace(temporary_path, path)

# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
`orcahello search`: the windows most like a given one, over the Parquet tables `orcahello embed` writes, so that a
moderator can pull every window like one false positive (or one call) and label them together.

    orcahello search embeddings/ --query "recordings/bush_point_0412.wav@73.5" --top 50 --output hits.csv
    orcahello search embeddings/ --query-clip squeak.wav --model models/orcahello-srkw-detector-v1 --report hits/

The query is a window of the tables (`FILE@SECONDS`: the recording as the tables' `file` column names it, or the
end of its path, and a time inside the window; the window whose middle is nearest that time) or a clip, embedded by
`--model` (which must be the tables' model, with the tables' layer) with its windows' vectors averaged. Similarity
is the cosine: every vector is scaled to length 1 once, in a float32 matrix held in memory, and a query is one
matrix-vector product and a partial sort (`numpy.argpartition`). The query's own window, when it is in the tables,
comes first. The hits are printed (or written with `--output`) as CSV: `rank,similarity,file,start,end,start_utc,
end_utc,score,window_index`; `--report DIR` also writes a review page of them (their clips, pictures and the
labelling buttons of `detect --report`'s page; needs matplotlib).

Brute force is exact and needs no index: `benchmarks/search_scaling.py` measures its query time and memory up to
a million windows (the matrix takes windows x dimension x 4 bytes: 16 GB for a million 4096-wide pooled vectors,
2 GB for `embed --layer head`'s 512).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from . import evaluate

DEFAULT_TOP = 20
HIT_COLUMNS = ("rank", "similarity", "file", "start", "end", "start_utc", "end_utc", "score", "window_index")
WINDOW_COLUMNS = ("file", "window_index", "start", "end", "start_utc", "end_utc", "score")


class SearchError(ValueError):
    """Tables or a query that cannot be searched; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class WindowQuery:
    """A window of the tables: its recording (`file`, as the tables name it or the end of its path) and a time."""

    file: str
    seconds: float

    @classmethod
    def parse(cls, text: str) -> WindowQuery:
        """`FILE@SECONDS` (the last `@` separates them), e.g. `recordings/a.wav@12.5`."""
        file, separator, seconds = text.rpartition("@")
        try:
            value = float(seconds)
        except ValueError:
            value = float("nan")
        if not separator or not file or not np.isfinite(value) or value < 0:
            raise ValueError(f"a window query is FILE@SECONDS (e.g. recordings/a.wav@12.5), got {text!r}")
        return cls(file=file, seconds=value)


@dataclasses.dataclass(frozen=True)
class SearchOptions:
    """
    What `orcahello search` is asked to do (the command line's options, typed).

    Args:
        tables (`tuple[str, ...]`): embed's tables, or folders holding them.
        query (`WindowQuery`, *optional*) / query_clip (`str`, *optional*): one of them.
        top (`int`): how many hits. output (`str`, *optional*): the hits' CSV (else stdout).
        report_dir (`str`, *optional*): where to write a review page of the hits.
        model (`str`, *optional*), device (`str`): the model that embeds `query_clip`.
        recursive (`bool`): also search the subfolders of folders given in `tables`.
    """

    tables: tuple
    query: WindowQuery | None = None
    query_clip: str | None = None
    top: int = DEFAULT_TOP
    output: str | None = None
    report_dir: str | None = None
    model: str | None = None
    device: str = "auto"
    recursive: bool = False


def find_tables(paths: Sequence[str], recursive: bool = False) -> list[str]:
    """The embeddings tables named by `paths` (files, or folders searched for `*.orcahello.embeddings.parquet`)."""
    from .embed import EMBEDDINGS_SUFFIX

    found = []
    for path in paths:
        if os.path.isfile(path):
            found.append(path)
        elif os.path.isdir(path):
            for folder, subfolders, names in os.walk(path):
                subfolders[:] = sorted(subfolders) if recursive else []
                found.extend(os.path.join(folder, name) for name in sorted(names) if name.endswith(EMBEDDINGS_SUFFIX))
        else:
            raise SearchError(f"{path}: no such file or folder")
    if not found:
        raise SearchError(f"no embeddings tables (*{EMBEDDINGS_SUFFIX}) in {', '.join(map(str, paths))}")
    return found


class WindowIndex:
    """
    The windows of embed's tables: their columns (`WINDOW_COLUMNS`), a float32 matrix of their vectors scaled to
    length 1 (a zero vector stays zero), and the model and layer that made them (all tables must agree).

    Args:
        windows (`dict[str, list]`): the columns, one entry per window.
        vectors (`np.ndarray`): `(windows, dimension)` float32, normalised in place.
        model (`dict`), layer (`str`), durations (`dict[str, float]`): from the tables' metadata.
    """

    def __init__(
        self,
        windows: dict[str, list],
        vectors: npt.ArrayLike,
        model: dict[str, Any] | None = None,
        layer: str | None = None,
        durations: dict[str, float] | None = None,
    ) -> None:
        self.windows = windows
        self.vectors = normalised(vectors)
        self.model = model or {}
        self.layer = layer
        self.durations = durations or {}

    def __len__(self):
        return self.vectors.shape[0]

    @classmethod
    def from_tables(cls, paths: Sequence[str]) -> WindowIndex:
        """Read `paths` (embed's tables); raises `SearchError` when they are unreadable or do not belong together."""
        import pyarrow.parquet as parquet

        from .embed import read_embeddings_metadata

        windows: dict[str, list] = {name: [] for name in WINDOW_COLUMNS}
        blocks: list[np.ndarray] = []
        identity: tuple[tuple[Any, str], dict[str, Any], str] | None = None
        durations: dict[str, float] = {}
        for path in paths:
            metadata = read_embeddings_metadata(path)
            if metadata is None:
                raise SearchError(f"{path}: not a table orcahello embed wrote (no orcahello metadata)")
            model = metadata.get("model") or {}
            this = (
                model.get("weights_sha256") or model.get("revision") or model.get("name_or_path"),
                metadata["layer"],
            )
            if identity is not None and this != identity[0]:
                raise SearchError(
                    f"{path}: embedded by another model or layer ({this[1]}) than {paths[0]} ({identity[0][1]}): "
                    "vectors of different models cannot be compared"
                )
            identity = identity or (this, model, metadata["layer"])
            table = parquet.read_table(path, columns=[*WINDOW_COLUMNS, "embedding"])
            for name in WINDOW_COLUMNS:
                windows[name].extend(table[name].to_pylist())
            column = table["embedding"]
            dimension = column.type.list_size
            blocks.extend(chunk.flatten().to_numpy().reshape(-1, dimension) for chunk in column.chunks)
            for file in set(table["file"].to_pylist()):
                durations[file] = metadata["recording"]["duration_s"]
        vectors = np.concatenate(blocks).astype(np.float32, copy=False) if blocks else np.zeros((0, 0), np.float32)
        assert identity is not None, "from_tables needs at least one table"  # `find_tables` never gives none
        return cls(windows, vectors, model=identity[1], layer=identity[2], durations=durations)

    def find_window(self, query: WindowQuery) -> int:
        """The row of the window `query` names: of its recording, the window holding the time whose middle is nearest."""
        files = sorted(set(self.windows["file"]))
        by_parts = {position: evaluate.path_parts(name) for position, name in enumerate(files)}
        try:
            match = evaluate.match_recording(query.file, by_parts)
        except evaluate.EvaluationError as error:
            raise SearchError(str(error)) from None
        if match is None:
            raise SearchError(f"no recording {query.file!r} in the tables (a clip not embedded: use --query-clip)")
        file = files[match]
        rows = [
            row
            for row, (name, start, end) in enumerate(
                zip(self.windows["file"], self.windows["start"], self.windows["end"])
            )
            if name == file and start <= query.seconds <= end
        ]
        if not rows:
            raise SearchError(f"{file} has no window at {query.seconds} s")
        middles = [(self.windows["start"][row] + self.windows["end"][row]) / 2 for row in rows]
        return rows[int(np.argmin(np.abs(np.array(middles) - query.seconds)))]

    def nearest(
        self, query_vector: npt.ArrayLike, top: int, first: int | None = None
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]:
        """
        `(rows, similarities)` of the `top` windows most similar to `query_vector` (cosine), best first; equal
        similarities keep the tables' order, except that row `first` (the query's own window) leads its ties.
        """
        query = normalised(np.asarray(query_vector, dtype=np.float32).reshape(1, -1))[0]
        if query.shape[0] != self.vectors.shape[1]:
            raise SearchError(f"the query has {query.shape[0]} dimensions, the tables {self.vectors.shape[1]}")
        similarities = self.vectors @ query
        count = min(int(top), similarities.size)
        if count == 0:
            return np.zeros(0, dtype=int), np.zeros(0, dtype=np.float32)
        candidates = np.argpartition(-similarities, count - 1)[:count]
        # Ties at the cut are decided by argpartition; inside the top they are ordered by row.
        order = np.lexsort((candidates, candidates != first, -similarities[candidates]))
        rows = candidates[order]
        return rows, similarities[rows]


def normalised(vectors: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """`vectors` (float32, rows) scaled to length 1 in place; zero rows stay zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if not vectors.flags.writeable:
        vectors = vectors.copy()
    lengths = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, lengths, out=vectors, where=lengths > 0)
    return vectors


def hit_rows(index: WindowIndex, rows: Iterable[int], similarities: Iterable[float]) -> list[dict[str, Any]]:
    """The hits as dicts of `HIT_COLUMNS`."""
    return [
        {
            "rank": rank,
            "similarity": round(float(similarity), 6),
            **{name: index.windows[name][row] for name in WINDOW_COLUMNS},
        }
        for rank, (row, similarity) in enumerate(zip(rows, similarities), start=1)
    ]


def hits_csv(hits: Iterable[dict[str, Any]]) -> str:
    """The hits as CSV text (`HIT_COLUMNS`)."""
    from .writers import spreadsheet_cell

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HIT_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for hit in hits:
        row = {name: spreadsheet_cell(value) for name, value in hit.items()}
        writer.writerow({**row, "score": round(float(hit["score"]), 6)})
    return buffer.getvalue()


def clip_query_vector(
    index: WindowIndex, clip: str, model: str | None = None, device: str = "auto"
) -> npt.NDArray[np.float32]:
    """The mean of `clip`'s window vectors (each normalised) from `model`, which must be the tables' model."""
    from . import models, provenance
    from .embed import window_embeddings

    model = model or models.default_model()
    pipe = models.load_pipeline(model, models.resolve_device(device))
    identity = provenance.describe_model_config(pipe.model.config, model)
    tables = index.model.get("weights_sha256") or index.model.get("revision")
    ours = identity.get("weights_sha256") or identity.get("revision")
    if tables and ours and tables != ours:
        raise SearchError(f"{model} is not the model that embedded the tables ({index.model.get('name_or_path')})")
    assert index.layer is not None  # the tables' layer (`from_tables`)
    _, embeddings, _ = window_embeddings(pipe, clip, layer=index.layer)
    return normalised(embeddings).mean(axis=0)


def search(options: SearchOptions) -> tuple[list[dict[str, Any]], WindowIndex]:
    """What `orcahello search` does: returns `(hits, index)`; raises `SearchError` for tables or queries it cannot use."""
    from .embed import require_pyarrow

    require_pyarrow()
    if (options.query is None) == (options.query_clip is None):
        raise SearchError("give one query: a window (FILE@SECONDS) or a clip")
    index = WindowIndex.from_tables(find_tables(options.tables, options.recursive))
    if options.query is not None:
        first = index.find_window(options.query)
        vector = index.vectors[first]
    else:
        assert options.query_clip is not None  # one of the two queries, checked above
        first, vector = None, clip_query_vector(index, options.query_clip, options.model, options.device)
    rows, similarities = index.nearest(vector, options.top, first=first)
    return hit_rows(index, rows, similarities), index


def search_command(options: SearchOptions) -> int:
    """Run `orcahello search`; returns the exit status (0, or 2 with a one-line error)."""
    from . import EXIT_CANNOT_RUN, EXIT_OK, models, writers

    try:
        hits, index = search(options)
    except (SearchError, ImportError, models.ModelNotFoundError) as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    text = hits_csv(hits)
    if options.output:
        writers.write_atomically(options.output, text)
        print(f"{len(hits)} hit(s) of {len(index)} windows in {options.output}")
    else:
        sys.stdout.write(text)
    if options.report_dir:
        from .search_page import write_hits_page

        try:
            path = write_hits_page(options.report_dir, hits, index, options)
        except ImportError as error:
            print(f"ERROR: {error}", file=sys.stderr)
            return EXIT_CANNOT_RUN
        print(f"Review page: {path}", file=sys.stderr if not options.output else sys.stdout)
    return EXIT_OK

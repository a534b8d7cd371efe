# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
HLS input for the OrcaHello pipeline: a finished HLS input (`hls_playlist_orcahello`: a playlist, a folder of `.ts`
segments, one segment) opened as one recording, `HLSAudio`: the samples production would score
(`hls_stream_orcahello.HLSStream`, fed every segment in order) and when they were recorded
(`hls_timeline_orcahello`: the UTC time line and the gaps).

Every segment is fetched (through `http_orcahello`'s retries and bounds) and decoded once when the input is opened:
that checks every segment, counts the samples exactly, and finds the gaps and timestamps before anything is scored.
`orcahello live` decodes a growing stream with the same `HLSStream`, one segment at a time.
"""

import os
import threading

import numpy as np

try:
    from .hls_playlist_orcahello import (
        MAX_PLAYLIST_SEGMENTS,
        MAX_STREAM_BYTES,
        HLSInputError,
        Segment,
        fetch,
        list_segments,
    )
    from .hls_stream_orcahello import HLSStream
    from .hls_timeline_orcahello import Gap, listed_segment_seconds
    from .http_orcahello import HTTP_TIMEOUT_SECONDS, origin
    from .vocabulary_orcahello import is_url
except ImportError:  # imported as a plain module (tests, command line) rather than as Hub custom code
    from hls_playlist_orcahello import (
        MAX_PLAYLIST_SEGMENTS,
        MAX_STREAM_BYTES,
        HLSInputError,
        Segment,
        fetch,
        list_segments,
    )
    from hls_stream_orcahello import HLSStream
    from hls_timeline_orcahello import Gap, listed_segment_seconds
    from http_orcahello import HTTP_TIMEOUT_SECONDS, origin
    from vocabulary_orcahello import is_url


class HLSAudio:
    """
    An HLS input opened for the pipeline: `read(start, stop)` gives int16 samples `(channels, samples)` of the
    continuous decoded stream; `num_samples`, `sampling_rate`, `num_channels`, `name`; and what was found when it was
    opened: `start_time_utc` (Unix time or None), `anchors` (the UTC time line), `gaps` (`Gap`s), `segments`,
    `warnings`.

    Args:
        source (`str`): an `.m3u8` path or http(s) URL, a folder of `.ts` segments, or one `.ts` file.
        name (`str`, *optional*): what messages call it (default: `source`).
        timeout (`float`, *optional*): seconds to wait for each HTTP answer (default `HTTP_TIMEOUT_SECONDS`).
        allow_other_hosts (`bool`, *optional*, False): fetch segments (and follow redirects) on hosts other than the
            playlist's; refused by default.
        max_segments (`int`, *optional*): refuse a playlist listing more segments (default `MAX_PLAYLIST_SEGMENTS`).
        max_bytes (`int`, *optional*): refuse a stream whose segments hold more bytes together (default
            `MAX_STREAM_BYTES`): they are all kept while the recording is open.
    """

    def __init__(
        self,
        source: str | os.PathLike,
        name: str | None = None,
        timeout: float | None = None,
        allow_other_hosts: bool = False,
        max_segments: int = MAX_PLAYLIST_SEGMENTS,
        max_bytes: int = MAX_STREAM_BYTES,
    ) -> None:
        self.source = os.fspath(source)
        self.name = name or self.source
        self.timeout = HTTP_TIMEOUT_SECONDS if timeout is None else float(timeout)
        self.kind, self.segments, self.playlist_info, self.folder_epoch = list_segments(
            self.source, self.timeout, allow_other_hosts=allow_other_hosts, max_segments=max_segments
        )
        # Redirects of segments stay on the playlist's host too (a remote playlist), unless other hosts are allowed.
        self._allowed_origin = None if allow_other_hosts or not is_url(self.source) else origin(self.source)
        self._lock = threading.Lock()
        self._stream = HLSStream(
            self.name,
            nominal_seconds=listed_segment_seconds(self.segments),
            folder_epoch=self.folder_epoch,
            count_missing_numbers=self.kind == "folder",
        )
        if all(segment.marked_gap for segment in self.segments):
            raise HLSInputError(f"{self.name}: every segment of the playlist is marked #EXT-X-GAP: no audio")
        total_bytes = 0
        for segment in self.segments:
            if segment.marked_gap:
                self._stream.add_marked_gap(segment)
                continue
            data = self._segment_bytes(segment)
            total_bytes += len(data)
            if total_bytes > max_bytes:
                raise HLSInputError(
                    f"{self.name}: its segments hold more than {max_bytes} bytes together (at {segment.name}): "
                    f"refused; score it in shorter pieces"
                )
            self._stream.add_segment(segment, data)
        self._stream.finish()
        stream = self._stream
        self.sampling_rate, self.num_channels, self.num_samples = (
            stream.sampling_rate,
            stream.num_channels,
            stream.num_samples,
        )
        self.start_time_utc, self.start_time_source = stream.start_time_utc, stream.start_time_source
        self.anchors: list = stream.anchors
        self.gaps: list[Gap] = stream.gaps
        self.warnings: list[str] = stream.warnings
        if self.kind == "playlist" and not self.playlist_info.get("ended"):
            self.warnings.append(
                "the playlist has no #EXT-X-ENDLIST (a live playlist): scored as it stood when it was read"
            )

    def _segment_bytes(self, segment: Segment) -> bytes:
        if is_url(segment.location):
            return fetch(segment.location, self.name, self.timeout, allowed_origin=self._allowed_origin)
        if not os.path.isfile(segment.location):
            raise HLSInputError(f"{self.name}: segment {segment.name} does not exist ({segment.location})")
        with open(segment.location, "rb") as handle:
            return handle.read()

    @property
    def max_buffered_samples(self) -> int:
        """The most decoded samples held at once while reading (the compressed packets aside)."""
        return self._stream.max_buffered_samples

    def describe(self) -> dict:
        """What the result records about the input: plain data (JSON-ready)."""
        return {
            "type": f"hls-{self.kind}",
            "uri": self.source,
            "segments": len(self.segments),
            "first_segment": self.segments[0].name,
            "last_segment": self.segments[-1].name,
            "media_sequence": self.playlist_info.get("media_sequence") if self.kind == "playlist" else None,
            "ended": self.playlist_info.get("ended") if self.kind == "playlist" else None,
            "codec": self._stream.codec_name,
            "start_time_source": self.start_time_source,
        }

    def timeline(self) -> dict:
        """
        The time line the pipeline carries to its results: start, anchors, gaps (`Gap`s), source, warnings
        (`hls_timeline_orcahello.plain_timeline` makes it JSON-ready).
        """
        return {
            "start_time_utc": self.start_time_utc,
            "anchors": [list(anchor) for anchor in self.anchors],
            "gaps": list(self.gaps),
            "source": self.describe(),
            "warnings": list(self.warnings),
        }

    def read(self, start: int, stop: int) -> np.ndarray:
        """
        Samples `[start, stop)` of the decoded stream as int16 `(channels, samples)`. The pipeline reads forward, so
        what is before `start` is let go of; reading backwards decodes again from the first packet.
        """
        with self._lock:
            if 0 <= start <= stop <= self.num_samples:
                self._stream.forget_before(start)
            return self._stream.read(start, stop)

    def close(self) -> None:
        """Drop the packets and decoded samples held (the stream cannot be read after)."""
        self._stream.close()


def open_hls(
    source: str | os.PathLike,
    name: str | None = None,
    timeout: float | None = None,
    allow_other_hosts: bool = False,
    max_segments: int = MAX_PLAYLIST_SEGMENTS,
    max_bytes: int = MAX_STREAM_BYTES,
) -> HLSAudio:
    """Open an HLS input (see `HLSAudio`); raises `HLSInputError` with a one-line message when it cannot be read."""
    return HLSAudio(
        source,
        name=name,
        timeout=timeout,
        allow_other_hosts=allow_other_hosts,
        max_segments=max_segments,
        max_bytes=max_bytes,
    )

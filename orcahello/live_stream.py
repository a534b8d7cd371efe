# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Following one hydrophone's HLS stream as it grows, for `orcahello live`: where its current recording is (a node's
`latest.txt`, its stream folders), fetching playlists and segments (through `http_orcahello`, with a few quick
retries; the follower polls again later), and each recording's decoder.

A source is an Orcasound node (`http(s)://host/<node>`, or a local folder, holding `latest.txt` that names the
current stream folder `hls/<epoch>/live.m3u8`) or one live `.m3u8` playlist (a URL or a path). Each stream folder
(epoch) is one recording: a node restart starts a new one.

A recording is an `hls_stream_orcahello.HLSStream`, the decoder and time line `orcahello detect` reads the finished
playlist with, fed one segment at a time: its samples, gaps and UTC times are detect's by construction. It decodes
every packet from the recording's first segment (see there why), so a restarted follower decodes the recording
again from there, without scoring it again.
"""

import os
import re
import threading
import urllib.parse

from hls_playlist_orcahello import (
    HLSInputError,
    Segment,
    check_segment_hosts,
    epoch_from_folder,
    fetch,
    is_playlist,
    parse_playlist,
)
from hls_stream_orcahello import HLSStream
from hls_timeline_orcahello import listed_segment_seconds
from http_orcahello import origin
from vocabulary_orcahello import is_url

from .live_outputs import STATUS_FILE
from .live_webhook import SPOOL_FOLDER
from .run_lock import LOCK_FILE_NAME

LATEST_FILE = "latest.txt"
PLAYLIST_NAME = "live.m3u8"
HTTP_TIMEOUT_SECONDS = 20.0
# The most one request may take, its body included: a 10-s segment is ~100 KB, so a server that trickles it for a
# minute is not serving a live stream (and its source's thread tries again later).
HTTP_DEADLINE_SECONDS = 60.0
# Quick retries of one request inside a poll (`http_orcahello.fetch`'s backoff: at once, then after 1 s); beyond
# these, the follower polls again later, with its own growing delay.
FETCH_RETRIES = 2
# The recording id of a playlist source whose folder is not named by its epoch (`.../<epoch>/live.m3u8`).
PLAYLIST_RECORDING = "stream"
# Orcasound's segment length: the mean segment duration of a playlist that gives no EXTINF.
SEGMENT_SECONDS_WHEN_UNLISTED = 10.0


# A source's output folder: a plain name (no `..`, no hidden file), and none of the output folder's own files.
SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
RESERVED_NAMES = frozenset({SPOOL_FOLDER, STATUS_FILE, LOCK_FILE_NAME})


class LiveSourceError(ValueError):
    """A SOURCE argument that cannot be followed; the message is one line."""


def source_name_of(source: str) -> str:
    """
    The folder name of a source's outputs: the node (`.../<node>` or `.../<node>/hls/<epoch>/live.m3u8`), else the
    playlist's folder names joined. A name that is not a plain folder name (`..`, `.hidden`) or is one of the
    output folder's own files (`webhook_spool`, `status.json`) is refused (`LiveSourceError`).
    """
    path = urllib.parse.unquote(urllib.parse.urlsplit(source).path) if is_url(source) else os.path.abspath(source)
    parts = [part for part in path.replace("\\", "/").split("/") if part]
    if is_playlist(source):
        parts = parts[:-1]
        if len(parts) >= 3 and parts[-2] == "hls":
            name = parts[-3]
        else:
            name = "_".join(parts[-2:]) or "stream"
    else:
        name = parts[-1] if parts else "stream"
    if not SOURCE_NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise LiveSourceError(
            f"{source}: cannot name its output folder {name!r} (a plain name, not one of "
            f"{', '.join(sorted(RESERVED_NAMES))}, is needed)"
        )
    return name


def is_newer_recording(candidate: str, current: str) -> bool:
    """
    Whether `candidate` (a node's stream folder, an epoch) is a later recording than `current`: a node restart
    starts a newer folder, so an older one named again (`latest.txt` flipping back) is never followed.
    """
    if candidate.isdigit() and current.isdigit():
        return int(candidate) > int(current)
    return candidate != current


class LiveSource:
    """
    One stream to follow.

    Args:
        source (`str`): a node (`http(s)://host/<node>` or a local folder holding `latest.txt`) or a live `.m3u8`.
        timeout (`float`): seconds to wait for each HTTP answer.
        stop_event (`threading.Event`, *optional*): set when the command stops: a fetch makes no further attempt.
        allow_other_hosts (`bool`, *optional*, defaults to `False`): fetch segments and follow redirects on hosts
            other than the source's; by default only the source's origin (scheme, host, port) is ever asked.
    """

    def __init__(
        self,
        source: str,
        timeout: float = HTTP_TIMEOUT_SECONDS,
        stop_event: threading.Event | None = None,
        allow_other_hosts: bool = False,
    ) -> None:
        self.stop_event = stop_event  # set on SIGTERM: no more retries, so that stopping never waits on them
        self.source = source.rstrip("/") if is_url(source) and not is_playlist(source) else source
        self.timeout = timeout
        self.allow_other_hosts = allow_other_hosts
        self.allowed_origin = origin(self.source) if is_url(self.source) and not allow_other_hosts else None
        self.name = source_name_of(source)
        if is_playlist(source):
            self.kind = "playlist"
        elif is_url(source):
            self.kind = "node"
        elif os.path.isdir(source):
            if not os.path.isfile(os.path.join(source, LATEST_FILE)):
                raise LiveSourceError(f"{source}: a local node folder needs a {LATEST_FILE} naming its stream folder")
            self.kind = "node"
        else:
            raise LiveSourceError(
                f"{source}: not a node (http(s)://host/<node> or a folder holding {LATEST_FILE}) nor an .m3u8 playlist"
            )

    def location(self, *parts: str) -> str:
        if is_url(self.source):
            return "/".join([self.source, *(urllib.parse.quote(part) for part in parts)])
        return os.path.join(self.source, *parts)

    def read(self, location: str) -> bytes:
        """
        The bytes at `location`: a URL through `hls_playlist_orcahello.fetch` (`FETCH_RETRIES`; on the source's
        origin only, redirects included, unless other hosts are allowed), or a local file.
        """
        if not is_url(location):
            try:
                with open(location, "rb") as handle:
                    return handle.read()
            except OSError as error:
                raise HLSInputError(f"{self.name}: {location}: cannot read it ({error.strerror})") from None
        return fetch(
            location,
            self.name,
            self.timeout,
            allowed_origin=self.allowed_origin,
            retries=FETCH_RETRIES,
            stop_event=self.stop_event,
            deadline_seconds=HTTP_DEADLINE_SECONDS,
        )

    def current_playlist(self) -> tuple[str, str]:
        """`(recording id, playlist location)` of the stream now: for a node, the folder `latest.txt` names."""
        if self.kind == "playlist":
            # A name, not the location: it names the recording's folder of minutes and its spooled detections.
            folder_epoch = epoch_from_folder(self.source)
            return (str(folder_epoch) if folder_epoch is not None else PLAYLIST_RECORDING), self.source
        text = self.read(self.location(LATEST_FILE)).decode("utf-8", errors="replace").strip()
        epoch = text.split()[0] if text else ""
        if not epoch.isdigit():
            raise HLSInputError(f"{self.name}: {LATEST_FILE} does not name a stream folder (it reads {text[:40]!r})")
        return epoch, self.location("hls", epoch, PLAYLIST_NAME)

    def playlist(self, location: str) -> tuple[list[Segment], dict]:
        """`(segments, info)` of the playlist at `location` (see `hls_playlist_orcahello.parse_playlist`)."""
        try:
            text = self.read(location).decode("utf-8")
        except UnicodeDecodeError:
            raise HLSInputError(f"{self.name}: {location}: not an HLS playlist (not UTF-8 text)") from None
        segments, info = parse_playlist(text, location, self.name)
        check_segment_hosts(segments, location, self.allow_other_hosts)
        return segments, info

    def new_recording(self, recording_id: str, playlist: str, segments: list[Segment], info: dict) -> HLSStream:
        """
        The decoder of one recording, to be fed its `segments` from the first to be scored: one that only goes
        forward (what is scored is let go of). Its mean segment duration is the playlist's (EXTINF), as detect takes
        it from the finished playlist.
        """
        folder_epoch = int(recording_id) if recording_id.isdigit() else epoch_from_folder(playlist)
        nominal = listed_segment_seconds(segments) or info.get("target_duration") or SEGMENT_SECONDS_WHEN_UNLISTED
        return HLSStream(self.name, nominal, folder_epoch, rewindable=False)

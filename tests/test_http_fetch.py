"""
HTTP for HLS (issues 19 and 20), against real servers on 127.0.0.1 that the tests start: transient failures are
retried (scores unchanged), servers that never answer, drip or send endless bodies are cut off, huge playlists are
refused, and segments or redirects on another host (or to file://) are refused unless other hosts are allowed.
"""

import http.server
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import LEGACY, make_orcanode_hls, run_orcahello_cli

import hls_orcahello
import hls_playlist_orcahello
import http_orcahello

pytestmark = pytest.mark.needs_test_data  # every test here reads the test-data set

EPOCH = 1600000000
STEREO_WAV = LEGACY / "audio" / "edge_stereo_48k_6s.wav"


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    """A 6-s stereo stream in 2-s segments: `<root>/node/hls/<EPOCH>/live.m3u8` and its three segments."""
    root = tmp_path_factory.mktemp("served")
    make_orcanode_hls(STEREO_WAV, root / "node" / "hls" / str(EPOCH), channels=2, segment_seconds=2)
    return root


class MisbehavingServer:
    """
    A real HTTP server on 127.0.0.1 serving `root`, with paths that misbehave:
    `/flaky/<path>` answers 503 to the first request for each path, then serves it; `/busy/<path>` answers 429 with
    `Retry-After: 1` first; `/away/<path>` redirects to `other` + `<path>`; `/to-file` redirects to file:///etc/passwd;
    `/drip` announces 100 bytes and sends one every 0.5 s; `/endless` streams zeros without end; `/huge.m3u8` lists a
    million segments. `requests` counts the requests per path.
    """

    def __init__(self, root, other=None):
        self.root, self.other, self.requests = Path(root), other, {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *arguments):
                pass

            def send(self, status, body=b"", headers=()):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = self.path
                count = server.requests[path] = server.requests.get(path, 0) + 1
                try:
                    if path.startswith("/flaky/") and count == 1:
                        return self.send(503, b"try again")
                    if path.startswith("/busy/") and count == 1:
                        return self.send(429, b"slow down", [("Retry-After", "1")])
                    if path.startswith("/away/"):
                        return self.send(302, headers=[("Location", server.other + path[len("/away/") :])])
                    if path == "/to-file":
                        return self.send(302, headers=[("Location", "file:///etc/passwd")])
                    if path == "/drip":
                        self.send_response(200)
                        self.send_header("Content-Length", "100")
                        self.end_headers()
                        for _ in range(100):
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            time.sleep(0.5)
                        return
                    if path == "/endless":
                        self.send_response(200)
                        self.end_headers()  # no Content-Length: the body ends when the connection does
                        while True:
                            self.wfile.write(bytes(65536))
                    if path == "/huge.m3u8":
                        lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:10"]
                        lines += [f"#EXTINF:10,\nlive{number}.ts" for number in range(1_000_000)]
                        return self.send(200, ("\n".join(lines) + "\n").encode())
                    relative = path.split("/", 2)[2] if path.startswith(("/flaky/", "/busy/")) else path[1:]
                    file = server.root / relative
                    if not file.is_file():
                        return self.send(404, b"no such file")
                    return self.send(200, file.read_bytes())
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}/"

    def __enter__(self):
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exception):
        self._server.shutdown()
        self._server.server_close()


def scores(result):
    return [window["score"] for window in result["windows"]]


def test_transient_failures_are_retried_and_give_the_same_scores(stream, tiny_pipeline):
    playlist = f"node/hls/{EPOCH}/live.m3u8"
    expected = tiny_pipeline(str(stream / playlist), return_timestamps=True)
    with MisbehavingServer(stream) as server:
        for prefix in ("flaky", "busy"):
            result = tiny_pipeline(f"{server.base}{prefix}/{playlist}", return_timestamps=True)
            assert scores(result) == pytest.approx(scores(expected), abs=1e-6)
            assert result["start_time_utc"] == expected["start_time_utc"]
            requested = {path: count for path, count in server.requests.items() if path.startswith(f"/{prefix}/")}
            # The playlist and each of its segments: refused once, then served.
            listed = [line for line in (stream / playlist).read_text().splitlines() if line.endswith(".ts")]
            assert len(requested) == 1 + len(listed) and set(requested.values()) == {2}, requested


def test_a_server_that_keeps_failing_gets_a_clear_error_after_the_retries(stream):
    with MisbehavingServer(stream) as server:
        started = time.monotonic()
        with pytest.raises(http_orcahello.HTTPFetchError) as raised:
            http_orcahello.fetch(server.base + "flaky/missing.ts", retries=0)
        assert str(raised.value) == f"{server.base}flaky/missing.ts: HTTP error 503 (Service Unavailable)"
        with pytest.raises(http_orcahello.HTTPFetchError, match=r"HTTP error 404 \(Not Found\) after 2 attempts$"):
            http_orcahello.fetch(server.base + "flaky/absent.ts", retries=2, backoff_seconds=0.1)
        assert server.requests["/flaky/absent.ts"] == 2  # the 503, then the 404 (not retried)
        assert time.monotonic() - started < 10


def test_no_answer_drip_and_endless_bodies_are_cut_off(stream):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/live.m3u8"
        with pytest.raises(http_orcahello.HTTPFetchError, match=r"no answer within 0\.3 s \(timed out\) after 3 at"):
            http_orcahello.fetch(url, timeout=0.3, retries=2, backoff_seconds=0.05)
        # The deadline holds however many retries are left.
        started = time.monotonic()
        with pytest.raises(http_orcahello.HTTPFetchError, match="deadline"):
            http_orcahello.fetch(url, timeout=0.5, retries=50, backoff_seconds=0.05, deadline_seconds=2)
        assert time.monotonic() - started < 4
    with MisbehavingServer(stream) as server:
        # One byte every 0.5 s never trips a 30-s read timeout: the overall deadline stops it.
        started = time.monotonic()
        with pytest.raises(http_orcahello.HTTPFetchError, match=r"/drip: did not finish within the 2-s deadline"):
            http_orcahello.fetch(server.base + "drip", deadline_seconds=2)
        assert time.monotonic() - started < 4
        with pytest.raises(http_orcahello.HTTPFetchError, match=r"/endless: refused: the body passed the 1048576-byte"):
            http_orcahello.fetch(server.base + "endless", max_bytes=1 << 20)
        segment = f"node/hls/{EPOCH}/live000.ts"
        size = (stream / segment).stat().st_size
        with pytest.raises(http_orcahello.HTTPFetchError, match=f"refused: {size} bytes announced, more than the 1000"):
            http_orcahello.fetch(server.base + segment, max_bytes=1000)
        assert http_orcahello.fetch(server.base + segment, max_bytes=size) == (stream / segment).read_bytes()


def test_a_huge_playlist_is_refused(stream):
    with MisbehavingServer(stream) as server:
        with pytest.raises(hls_playlist_orcahello.HLSInputError, match="lists more than 8640 segments: refused"):
            hls_orcahello.open_hls(server.base + "huge.m3u8")
        with pytest.raises(hls_playlist_orcahello.HLSInputError, match="lists more than 2 segments"):
            hls_orcahello.open_hls(server.base + f"node/hls/{EPOCH}/live.m3u8", max_segments=2)


def test_a_stream_s_segments_are_bounded_in_bytes_together(stream):
    # F7 residue: every segment is kept while the recording is open, each up to the fetch's 64 MB: over 5 GB.
    playlist = f"node/hls/{EPOCH}/live.m3u8"
    size = (stream / f"node/hls/{EPOCH}/live000.ts").stat().st_size
    assert hls_playlist_orcahello.MAX_STREAM_BYTES == 2 * 1024**3
    with MisbehavingServer(stream) as server:
        with pytest.raises(hls_playlist_orcahello.HLSInputError, match=f"hold more than {size + 1} bytes together"):
            hls_orcahello.open_hls(server.base + playlist, max_bytes=size + 1)
    with pytest.raises(hls_playlist_orcahello.HLSInputError, match="bytes together \\(at live001.ts\\): refused"):
        hls_orcahello.open_hls(str(stream / playlist), max_bytes=size + 1)


def test_other_hosts_and_file_redirects_are_refused_unless_allowed(stream, tiny_pipeline, tmp_path):
    playlist = f"node/hls/{EPOCH}/live.m3u8"
    expected = scores(tiny_pipeline(str(stream / playlist), return_timestamps=True))
    with MisbehavingServer(stream) as elsewhere:
        # A playlist on this server whose segments are absolute URLs on the other one.
        served = tmp_path / "served"
        shutil.copytree(stream, served)
        text = (stream / playlist).read_text()
        foreign = text.replace("live0", f"{elsewhere.base}node/hls/{EPOCH}/live0")
        (served / "foreign.m3u8").write_text(foreign)
        redirected = text.replace("live0", f"/away/node/hls/{EPOCH}/live0")
        (served / "redirected.m3u8").write_text(redirected)
        with MisbehavingServer(served, other=elsewhere.base) as home:
            with pytest.raises(ValueError, match=r"4 segment\(s\) are not on the playlist's host http://127\.0\.0\.1"):
                tiny_pipeline(home.base + "foreign.m3u8")
            assert not any("live0" in path for path in elsewhere.requests)  # refused before any fetch
            with pytest.raises(ValueError, match=r"is not the playlist's host .* \(allow other hosts to fetch it\)"):
                tiny_pipeline(home.base + "redirected.m3u8")
            for name in ("foreign.m3u8", "redirected.m3u8"):
                result = tiny_pipeline(home.base + name, allow_other_hosts=True, return_timestamps=True)
                assert scores(result) == pytest.approx(expected, abs=1e-6)
            # A local playlist does not send us to the network either, unless allowed.
            (served / playlist).with_name("local_foreign.m3u8").write_text(foreign)
            with pytest.raises(ValueError, match="are not on this local playlist's folder"):
                tiny_pipeline(str((served / playlist).with_name("local_foreign.m3u8")))
            with pytest.raises(
                http_orcahello.HTTPFetchError, match=r"to-file: refused: a redirect to 'file:///etc/pass"
            ):
                http_orcahello.fetch(home.base + "to-file")
            with pytest.raises(http_orcahello.HTTPFetchError, match=r"^file:///etc/passwd: not an http\(s\) URL$"):
                http_orcahello.fetch("file:///etc/passwd")
            # The command line: refused, then scored with --allow-other-hosts.
            output_dir = tmp_path / "results"
            refused = run_orcahello_cli(home.base + "foreign.m3u8", "--output-dir", output_dir, "--model",
                                        tiny_pipeline.model.name_or_path)  # fmt: skip
            assert refused.returncode == 1 and "--allow-other-hosts" in refused.stderr
            allowed = run_orcahello_cli(home.base + "foreign.m3u8", "--output-dir", output_dir, "--model",
                                        tiny_pipeline.model.name_or_path, "--allow-other-hosts")  # fmt: skip
            assert allowed.returncode == 0, allowed.stderr


def test_batch_downloads_a_sound_file_url_with_retries_and_a_byte_cap(tmp_path, monkeypatch):
    """`orcahello batch`'s URLs of sound files go through the same client: a 503 is retried, a huge body refused."""
    import numpy as np
    import soundfile

    from audio_orcahello import AudioInputError
    from orcahello.batch import sources

    samples = (np.sin(np.arange(48000) / 10.0) * 10000).astype(np.int16)
    soundfile.write(str(tmp_path / "clip.wav"), samples, 48000)
    with MisbehavingServer(tmp_path) as server:
        recording = sources.open_source(server.base + "flaky/clip.wav")
        try:
            assert (recording.sampling_rate, recording.num_samples) == (48000, 48000)
            np.testing.assert_array_equal(recording.read(0, 48000)[0], samples)
        finally:
            recording.close()
        assert server.requests["/flaky/clip.wav"] == 2  # the 503, then the file
        monkeypatch.setattr(sources, "URL_MAX_BYTES", 1000)
        url = server.base + "clip.wav"
        with pytest.raises(AudioInputError, match=r"^\S+/clip\.wav: cannot download \(refused: \d+ bytes announced"):
            sources.open_source(url)
        with pytest.raises(AudioInputError, match=r"/absent\.wav: cannot download \(HTTP error 404 \(Not Found\)\)$"):
            sources.open_source(server.base + "absent.wav")


def test_a_stop_event_ends_the_retries_at_once():
    """`orcahello live` stopping (SIGTERM) does not wait out a download's backoff."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens once the probe is closed
    stop = threading.Event()
    stop.set()
    started = time.monotonic()
    with pytest.raises(http_orcahello.HTTPFetchError, match="gave up: stopping, no further attempt"):
        http_orcahello.fetch(f"http://127.0.0.1:{closed}/latest.txt", retries=5, backoff_seconds=5, stop_event=stop)
    assert time.monotonic() - started < 2


def test_post_sends_the_body_and_does_not_follow_redirects(tmp_path):
    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *arguments):
            pass

        def do_POST(self):
            received.append(
                (self.path, self.headers["Content-Type"], self.rfile.read(int(self.headers["Content-Length"])))
            )
            status = 302 if self.path == "/moved" else 200
            self.send_response(status)
            if status == 302:
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        answer = http_orcahello.post(base + "/hook", b'{"minute": 1}', headers={"Content-Type": "application/json"})
        assert answer == b"ok"
        with pytest.raises(http_orcahello.HTTPFetchError, match=r"/moved: HTTP 302 redirect: not followed for a POST$"):
            http_orcahello.post(base + "/moved", b"{}")
    finally:
        server.shutdown()
        server.server_close()
    assert received[0] == ("/hook", "application/json", b'{"minute": 1}')
    assert [path for path, _, _ in received] == ["/hook", "/moved"]  # never /elsewhere

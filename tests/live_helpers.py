"""
Real local services for the `orcahello live` tests: a hydrophone node served over HTTP by its own process (that can
be killed and started again on the same port: an outage), a stream that grows segment by segment from the real
recordings (encoded as an Orcasound node does), and a webhook receiver process.

Run as a script, this module is one of two servers:

- the webhook receiver, `python live_helpers.py receiver PORT FOLDER [FAIL_FIRST] [--status CODE] [--delay S]`:
  writes each POSTed body it accepts to FOLDER/NNNNNN.json and answers 200; the first FAIL_FIRST requests get CODE
  (default 503; a 3xx comes with a Location) and nothing is kept; every request, accepted or not, is logged as a line
  `{"idempotency_key", "body"}` in FOLDER/requests.jsonl; `--delay S`: each answer comes S seconds late (a slow
  endpoint that keeps what it got);
- a hostile file server, `python live_helpers.py serve PORT ROOT LOG [--trickle PREFIX] [--redirect PREFIX=URL]`:
  serves files under ROOT as `http.server` does, logs each requested path as a line of LOG, answers GETs under
  `--trickle` paths with headers and then one byte a second, and GETs under `--redirect` paths with a 302 to URL
  followed by the rest of the path.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class ServerProcess:
    """A command listening on 127.0.0.1:`port` in its own process: `start()`, `stop()` (an outage), `start()` again."""

    def __init__(self, command, port):
        self.command, self.port, self.process = command, port, None

    def start(self):
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def file_server(root, port):
    """Python's own HTTP file server over `root`, as a separate process (a hydrophone bucket)."""
    return ServerProcess(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)], port
    )


def webhook_receiver(port, folder, fail_first=0, status=503, delay=0.0):
    command = [sys.executable, __file__, "receiver", str(port), str(folder), str(fail_first)]
    return ServerProcess([*command, "--status", str(status), "--delay", str(delay)], port)


def hostile_server(port, root, log, trickle=(), redirect=()):
    """`serve` (see the module's description): `trickle` path prefixes, `redirect` `(prefix, url)` pairs."""
    command = [sys.executable, __file__, "serve", str(port), str(root), str(log)]
    for prefix in trickle:
        command += ["--trickle", prefix]
    for prefix, url in redirect:
        command += ["--redirect", f"{prefix}={url}"]
    return ServerProcess(command, port)


def logged_paths(log):
    """The paths a `hostile_server` was asked for, in order."""
    return Path(log).read_text().splitlines() if Path(log).exists() else []


def concatenate_wavs(wav_paths, output_path, ffmpeg_cli):
    """One 48 kHz mono WAV of `wav_paths` one after another (each resampled), with the tests' ffmpeg."""
    inputs, labels = [], []
    for index, path in enumerate(wav_paths):
        inputs += ["-i", path]
        labels.append(f"[{index}:a]aresample=48000,aformat=channel_layouts=mono[a{index}]")
    chain = ";".join(labels) + ";" + "".join(f"[a{i}]" for i in range(len(wav_paths)))
    chain += f"concat=n={len(wav_paths)}:v=0:a=1[out]"
    ffmpeg_cli(*inputs, "-filter_complex", chain, "-map", "[out]", output_path)
    return output_path


FIRST_EPOCH, SECOND_EPOCH = 1600000000, 1600000600
NODE = "rpi_test_node"


def encode_test_streams(folder):
    """
    Two recordings of one node from the real recordings of the test data, encoded as a node does: `{FIRST_EPOCH:
    folder of 63.6 s (7 segments), SECOND_EPOCH: 43.8 s (5 segments)}`.
    """
    from conftest import REAL_AUDIO, ffmpeg_cli, make_orcanode_hls

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    first = concatenate_wavs(
        [
            REAL_AUDIO / "pos_kw_onc_folger_NRKW_Gclan_20120206T084546Z.wav",
            REAL_AUDIO / "pos_kw_orcasound_someCalls_faint.wav",
        ],
        folder / "first.wav",
        ffmpeg_cli,
    )
    second = concatenate_wavs(
        [
            REAL_AUDIO / "pos_kw_orcasound_someCalls_faint.wav",
            REAL_AUDIO / "hardneg_humpback_song_sanctsound_HI01_20190216T045823Z.wav",
        ],
        folder / "second.wav",
        ffmpeg_cli,
    )
    return {
        FIRST_EPOCH: make_orcanode_hls(first, folder / str(FIRST_EPOCH)),
        SECOND_EPOCH: make_orcanode_hls(second, folder / str(SECOND_EPOCH)),
    }


def start_live(log_path, *arguments):
    """`orcahello live ARGUMENTS` in its own process, its log (stderr) going to `log_path`."""
    from conftest import REPO_ROOT

    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "orcahello.cli", "live", *map(str, arguments)],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )


def stop_live(process, log_path, timeout=120):
    """SIGTERM, then its exit status and log."""
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=timeout)
    return process.returncode, Path(log_path).read_text()


class GrowingNode:
    """
    An Orcasound node's bucket folder that grows as the node streams: `publish(epoch, n)` copies segment n of a
    pre-encoded stream into `<node>/hls/<epoch>/` and rewrites `live.m3u8` (without #EXT-X-ENDLIST, as a live
    playlist is) and `latest.txt`, each through a rename so that the server never serves half a file.
    `lose(epoch, n)` skips a segment (it never reaches the bucket nor the playlist); `end(epoch)` closes the
    playlist with #EXT-X-ENDLIST.
    """

    def __init__(self, root, node, encoded):
        self.node_folder = Path(root) / node
        self.encoded = encoded  # epoch -> folder made by make_orcanode_hls
        self.published = {}  # epoch -> [(extinf line, segment name)]
        self.ended = set()
        self.node_folder.mkdir(parents=True, exist_ok=True)

    def entries(self, epoch):
        """The `(#EXTINF line, segment name)` pairs of the encoded stream's playlist, in order."""
        lines = (self.encoded[epoch] / "live.m3u8").read_text().splitlines()
        return [(lines[i], lines[i + 1]) for i, line in enumerate(lines) if line.startswith("#EXTINF")]

    def segment_count(self, epoch):
        return len(self.entries(epoch))

    def _write(self, path, text):
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(text)
        os.replace(temporary, path)

    def _write_playlist(self, epoch):
        folder = self.node_folder / "hls" / str(epoch)
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-TARGETDURATION:11"]
        for extinf, name in self.published.get(epoch, []):
            lines += [extinf, name]
        if epoch in self.ended:
            lines.append("#EXT-X-ENDLIST")
        self._write(folder / "live.m3u8", "\n".join(lines) + "\n")
        self._write(self.node_folder / "latest.txt", f"{epoch}\n")

    def publish(self, epoch, number):
        folder = self.node_folder / "hls" / str(epoch)
        folder.mkdir(parents=True, exist_ok=True)
        extinf, name = self.entries(epoch)[number]
        shutil.copyfile(self.encoded[epoch] / name, folder / (name + ".tmp"))
        os.replace(folder / (name + ".tmp"), folder / name)
        self.published.setdefault(epoch, []).append((extinf, name))
        self._write_playlist(epoch)

    def lose(self, epoch, number):
        """The segment never arrives: nothing is written (numbering in the playlist runs on)."""

    def list_without_uploading(self, epoch, number):
        """The playlist lists the segment, but its upload failed: fetching it gives 404."""
        (self.node_folder / "hls" / str(epoch)).mkdir(parents=True, exist_ok=True)
        self.published.setdefault(epoch, []).append(self.entries(epoch)[number])
        self._write_playlist(epoch)

    def end(self, epoch):
        self.ended.add(epoch)
        self._write_playlist(epoch)

    def playlist_path(self, epoch):
        return self.node_folder / "hls" / str(epoch) / "live.m3u8"


def read_jsonl(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def wait_until(condition, timeout, interval=0.2, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout} s")


def run_receiver(port, folder, fail_first, status=503, delay=0.0):
    import http.server

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # A receiver started again numbers on from the bodies already saved (a restart must not overwrite them).
    counter = {"requests": 0, "saved": len(list(folder.glob("[0-9]*.json")))}

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            counter["requests"] += 1
            entry = {"idempotency_key": self.headers.get("Idempotency-Key"), "body": body.decode("utf-8", "replace")}
            with open(folder / "requests.jsonl", "a", encoding="utf-8") as log:
                log.write(json.dumps(entry) + "\n")
            if counter["requests"] <= fail_first:
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", f"http://127.0.0.1:{port}/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            json.loads(body)  # only JSON is accepted
            counter["saved"] += 1
            (folder / f"{counter['saved']:06d}.json").write_bytes(body)
            time.sleep(delay)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *arguments):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    signal.signal(signal.SIGTERM, lambda *arguments: sys.exit(0))
    server.serve_forever()


def run_hostile_server(port, root, log, trickle, redirect):
    import functools
    import http.server

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(self.path + "\n")
            for prefix, url in redirect:
                if self.path.startswith(prefix):
                    self.send_response(302)
                    self.send_header("Location", url + self.path[len(prefix) :])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            if any(self.path.startswith(prefix) for prefix in trickle):
                self.send_response(200)
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                try:
                    for _ in range(3600):
                        self.wfile.write(b"#")
                        self.wfile.flush()
                        time.sleep(1.0)
                except OSError:
                    pass
                return
            super().do_GET()

        def log_message(self, *arguments):
            pass

    handler = functools.partial(Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *arguments: sys.exit(0))
    server.serve_forever()


def main(arguments):
    import argparse

    parser = argparse.ArgumentParser()
    modes = parser.add_subparsers(dest="mode", required=True)
    receiver = modes.add_parser("receiver")
    receiver.add_argument("port", type=int)
    receiver.add_argument("folder")
    receiver.add_argument("fail_first", type=int, nargs="?", default=0)
    receiver.add_argument("--status", type=int, default=503)
    receiver.add_argument("--delay", type=float, default=0.0)
    serve = modes.add_parser("serve")
    serve.add_argument("port", type=int)
    serve.add_argument("root")
    serve.add_argument("log")
    serve.add_argument("--trickle", action="append", default=[])
    serve.add_argument("--redirect", action="append", default=[])
    options = parser.parse_args(arguments)
    if options.mode == "receiver":
        run_receiver(options.port, options.folder, options.fail_first, options.status, options.delay)
    else:
        redirect = [tuple(text.split("=", 1)) for text in options.redirect]
        run_hostile_server(options.port, options.root, options.log, options.trickle, redirect)


if __name__ == "__main__":
    main(sys.argv[1:])

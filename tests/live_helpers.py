"""
Real local services for the `orcahello live` tests: a hydrophone node served over HTTP by its own process (that can
be killed and started again on the same port: an outage), a stream that grows segment by segment from the real
recordings (encoded as an Orcasound node does), and a webhook receiver process.

Run as a script, this module is the webhook receiver: `python live_helpers.py receiver PORT FOLDER [FAIL_FIRST]`
writes each POSTed body to FOLDER/NNNNNN.json and answers 200 (503 to the first FAIL_FIRST requests).
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


def webhook_receiver(port, folder, fail_first=0):
    return ServerProcess([sys.executable, __file__, "receiver", str(port), str(folder), str(fail_first)], port)


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


def run_receiver(port, folder, fail_first):
    import http.server

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    counter = {"requests": 0, "saved": 0}

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            counter["requests"] += 1
            if counter["requests"] <= fail_first:
                self.send_response(503)
                self.end_headers()
                return
            json.loads(body)  # only JSON is accepted
            counter["saved"] += 1
            (folder / f"{counter['saved']:06d}.json").write_bytes(body)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *arguments):
            pass

    server = http.server.HTTPServer(("127.0.0.1", port), Receiver)
    signal.signal(signal.SIGTERM, lambda *arguments: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__" and sys.argv[1:2] == ["receiver"]:
    run_receiver(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 0)

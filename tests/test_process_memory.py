"""
glibc's mmap threshold (`process_memory_orcahello.return_large_buffers_to_the_system`): what it does to a process, and
that the processes' entry points set it (the command line, the endpoint handler), never the pipeline (a library).
"""

import ctypes
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, tiny_config

import handler as handler_module
from orcahello import cli

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")

# glibc's mallinfo2 counts the chunks currently mapped with mmap (`hblks`). A freed 8 MB mapped chunk raises glibc's
# dynamic threshold past 2 MB, so a 2 MB buffer afterwards comes from the heap: unless the threshold is fixed at 1 MB.
MAPPED_AFTER_A_LARGE_FREE = """
import ctypes, sys
sys.path.insert(0, sys.argv[2])
from process_memory_orcahello import return_large_buffers_to_the_system

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
if sys.argv[1] == "fixed":
    return_large_buffers_to_the_system()
libc.free(libc.malloc(8 << 20))
before = libc.mallinfo2().hblks
block = libc.malloc(2 << 20)
print(libc.mallinfo2().hblks - before)
"""


def mapped_chunks_added(mode):
    completed = subprocess.run(
        [sys.executable, "-c", MAPPED_AFTER_A_LARGE_FREE, mode, str(REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    return int(completed.stdout.strip())


def test_large_buffers_are_mapped_after_a_large_free_only_with_the_setting():
    try:
        has_mallinfo2 = hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        has_mallinfo2 = False
    if not has_mallinfo2:
        pytest.skip("not glibc 2.33 or later (no mallinfo2)")
    assert mapped_chunks_added("default") == 0  # glibc's own threshold moved up: the 2 MB come from the heap
    assert mapped_chunks_added("fixed") == 1  # fixed at 1 MB: mapped, and handed back when freed


def test_the_command_line_sets_it_first(monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "return_large_buffers_to_the_system", lambda: calls.append("set"))
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert calls == ["set"]


def test_the_endpoint_handler_sets_it(monkeypatch, tiny_model_folder):
    calls = []
    monkeypatch.setattr(handler_module, "return_large_buffers_to_the_system", lambda: calls.append("set"))
    handler_module.EndpointHandler(str(tiny_model_folder))
    assert calls == ["set"]


def test_building_a_pipeline_leaves_it_alone(monkeypatch):
    from modeling_orcahello import OrcaHelloForAudioClassification
    from pipeline_orcahello import OrcaHelloAudioClassificationPipeline

    opened = []
    real_cdll = ctypes.CDLL

    def recording_cdll(name, *args, **kwargs):
        opened.append(name)
        return real_cdll(name, *args, **kwargs)

    monkeypatch.setattr(ctypes, "CDLL", recording_cdll)
    OrcaHelloAudioClassificationPipeline(model=OrcaHelloForAudioClassification(tiny_config()).eval())
    assert "libc.so.6" not in opened

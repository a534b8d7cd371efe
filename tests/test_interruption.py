"""Ctrl-C is never lost: a SIGINT whose KeyboardInterrupt is swallowed still stops the command (orcahello.interruption).

The tests that send SIGINT do it in a fresh interpreter, as the command line gets it: the test process holds the
threads and signal handlers of every library the other tests loaded.
"""

import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO_ROOT

from orcahello import interruption


def run_python(code):
    """Run `code` in a fresh interpreter from the repository root with Ctrl-C at its default; returns stdout lines."""
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as from a terminal
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout.split(), completed.stderr


def test_a_ctrl_c_swallowed_by_a_finalizer_is_remembered():
    lines, err = run_python(
        """
        import os, signal, sys
        from orcahello import interruption

        class InterruptedWhileCollected:
            def __del__(self):  # Ctrl-C here: Python prints the KeyboardInterrupt as "ignored" and goes on
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):  # the handler runs at the next bytecode boundary, still inside __del__
                    pass

        other_failures = []
        sys.unraisablehook = lambda unraisable: other_failures.append(unraisable.exc_type.__name__)
        with interruption.watching_for_ctrl_c():
            InterruptedWhileCollected()  # collected at once: the KeyboardInterrupt goes nowhere
            print("remembered", interruption.interrupted())
            print("reported", other_failures)
            try:
                interruption.raise_if_interrupted()
            except KeyboardInterrupt:
                print("raised_again")
            sys.unraisablehook(type("Unraisable", (), {"exc_type": ValueError})())
            print("other", other_failures)
        print("restored", signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        """
    )
    assert lines == ["remembered", "True", "reported", "[]", "raised_again", "other", "['ValueError']",
                     "restored", "True"], err  # fmt: skip
    assert "KeyboardInterrupt" not in err, "a remembered Ctrl-C is not printed as an ignored exception"


def test_a_ctrl_c_raises_keyboard_interrupt_as_usual():
    lines, err = run_python(
        """
        import os, signal
        from orcahello import interruption

        try:
            with interruption.watching_for_ctrl_c():
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):
                    pass
        except KeyboardInterrupt:
            print("raised", interruption.interrupted())
        """
    )
    assert lines == ["raised", "True"], err


def test_without_ctrl_c_nothing_is_raised():
    with interruption.watching_for_ctrl_c():
        interruption.raise_if_interrupted()
        assert not interruption.interrupted()


def test_an_ignored_sigint_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a shell's background job
    try:
        with interruption.watching_for_ctrl_c():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_during_a_c_extensions_set_up_is_not_read_as_a_missing_library(tmp_path, monkeypatch):
    # pybind11 turns an exception raised while a module initialises into ImportError("initialization failed")
    # raised from it (OpenVINO's and ONNX's bindings are pybind11): here a module that does the same.
    (tmp_path / "orcahello_interrupted_binding.py").write_text(
        'raise ImportError("initialization failed") from KeyboardInterrupt()\n'
    )
    (tmp_path / "orcahello_missing_dependency.py").write_text('raise ImportError("No module named foo")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    import engines_orcahello

    with pytest.raises(KeyboardInterrupt):
        engines_orcahello._importable("orcahello_interrupted_binding")
    assert engines_orcahello._importable("orcahello_missing_dependency") is False
    sys.modules.pop("orcahello_interrupted_binding", None)

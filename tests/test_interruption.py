"""Ctrl-C is never lost: a SIGINT whose KeyboardInterrupt is swallowed still stops the command (orcahello.interruption)."""

import os
import signal
import sys

import pytest

from orcahello import interruption


class InterruptedWhileCollected:
    """An object whose finalizer receives Ctrl-C: Python prints the KeyboardInterrupt as "ignored" and goes on."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs at the next bytecode boundary, still inside __del__
            pass


class FinalizerFailure:
    """What Python hands `sys.unraisablehook` (its `exc_type` is all the hook above looks at)."""

    def __init__(self, exc_type):
        self.exc_type = exc_type


def test_a_ctrl_c_swallowed_by_a_finalizer_is_remembered(monkeypatch):
    swallowed = []  # what Python would print as "Exception ignored in: ...__del__"
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: swallowed.append(unraisable.exc_type))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with interruption.watching_for_ctrl_c():
        InterruptedWhileCollected()  # collected at once: the KeyboardInterrupt goes nowhere
        assert interruption.interrupted()
        assert swallowed == [], "the swallowed KeyboardInterrupt is remembered, not printed as ignored"
        sys.unraisablehook(FinalizerFailure(ValueError))
        assert swallowed == [ValueError], "any other exception a finalizer swallows is reported as before"
        with pytest.raises(KeyboardInterrupt):
            interruption.raise_if_interrupted()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_without_ctrl_c_nothing_is_raised():
    with interruption.watching_for_ctrl_c():
        interruption.raise_if_interrupted()
        assert not interruption.interrupted()


def test_a_ctrl_c_raises_keyboard_interrupt_as_usual():
    with pytest.raises(KeyboardInterrupt), interruption.watching_for_ctrl_c():
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):
            pass
    assert interruption.interrupted()


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
    import scoring_orcahello

    with pytest.raises(KeyboardInterrupt):
        scoring_orcahello._importable("orcahello_interrupted_binding")
    assert scoring_orcahello._importable("orcahello_missing_dependency") is False
    sys.modules.pop("orcahello_interrupted_binding", None)

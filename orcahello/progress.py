# Copyright 2026 Orcasound and the OrcaHello contributors.
#
# Licensed under the MIT License.
"""
A run's progress in windows, for `orcahello detect` and `orcahello batch`: tqdm's bar on a terminal; elsewhere (cron,
SLURM, a log file) one line every `LOG_INTERVAL_SECONDS`, in tqdm's words, so that an hour-long recording is never
minutes of silence. One total for the whole run, so one ETA: estimated from the recordings' headers before scoring,
each estimate replaced by the recording's window count once it is known.
"""

import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

# How often a progress line is written when the output is not a terminal: often enough that a job's log shows it is
# alive, rarely enough that a day-long run's log stays readable.
LOG_INTERVAL_SECONDS = 30.0


def estimated_windows(path: str, window_seconds: float, hop_seconds: float) -> int:
    """
    About how many windows `path` will be scored in (from its duration in its header only), or 0 when the header
    cannot say (a URL, a format soundfile does not read, a broken file: counted once it is opened).
    """
    import soundfile

    try:
        duration = soundfile.info(path).duration
    except Exception:  # noqa: BLE001 - an estimate only; the recording's own error comes when it is scored
        return 0
    return max(1, math.floor((duration - window_seconds) / hop_seconds) + 1)


class RunProgress:
    """
    Progress of a run in windows.

    Args:
        description (`str`): what the bar or each line starts with.
        estimates (`dict[str, int]`): each recording's estimated windows (`estimated_windows`), by its key.
        stream (`TextIO`, *optional*, defaults to `sys.stderr`): where the bar or the lines go.
        log_interval_s (`float`, *optional*, defaults to `LOG_INTERVAL_SECONDS`): seconds between lines off a terminal.
        clock (`Callable[[], float]`, *optional*): the monotonic clock (tests give their own).
    """

    def __init__(
        self,
        description: str,
        estimates: dict[str, int],
        stream: TextIO | None = None,
        log_interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from tqdm.auto import tqdm

        self.stream = stream if stream is not None else sys.stderr
        self.description = description
        self.estimates = dict(estimates)
        self.total = sum(self.estimates.values())
        self.done = 0
        self.postfix = ""
        self.log_interval_s = LOG_INTERVAL_SECONDS if log_interval_s is None else log_interval_s
        self.clock = clock
        self.started = clock()
        self.last_line = self.started
        is_terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar = tqdm(total=self.total, desc=description, unit="window", file=self.stream) if is_terminal else None

    def set_windows(self, key: str, windows: int) -> None:
        """The recording `key` has `windows` windows (its estimate until now): the run's total follows."""
        self.total += windows - self.estimates.get(key, 0)
        self.estimates[key] = windows
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()

    def update(self, windows: int) -> None:
        """`windows` more windows are scored (or resumed)."""
        self.done += windows
        if self.bar is not None:
            self.bar.update(windows)
        elif self.clock() - self.last_line >= self.log_interval_s:
            self.log_line()

    def set_postfix(self, text: str) -> None:
        """What the bar or the next line says after the counts (the recording at hand)."""
        self.postfix = text
        if self.bar is not None:
            self.bar.set_postfix_str(text)

    def write(self, line: str) -> None:
        """A message line (an error, a warning) that the bar, if any, is redrawn under."""
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def meter(self) -> str:
        """tqdm's words for where the run stands: count, total, elapsed time, rate and ETA."""
        from tqdm import tqdm

        elapsed = self.clock() - self.started
        total = max(self.total, self.done) or None
        # tqdm takes None for an unknown total; its stub types the total as a number.
        meter = tqdm.format_meter(self.done, total, elapsed, prefix=self.description, unit="window", ncols=0)  # type: ignore[arg-type]
        return meter + (f" {self.postfix}" if self.postfix else "")

    def log_line(self) -> None:
        self.last_line = self.clock()
        print(self.meter(), file=self.stream, flush=True)

    def close(self) -> None:
        """End the bar, or write the last line."""
        if self.bar is not None:
            self.bar.close()
        elif self.done:
            self.log_line()

"""A one-line progress bar on stderr, drawn only when stderr is a terminal."""

from __future__ import annotations

import time
from typing import TextIO

from .output import human_bytes

__all__ = ["Progress", "render_progress"]


def render_progress(
    done: int, total: int, done_bytes: int, total_bytes: int, *, width: int = 24
) -> str:
    """The text of the bar, e.g. ``[######------]  3/6 keys  1.5 KiB/3.0 KiB  50%``."""
    if total_bytes > 0:
        fraction = min(1.0, done_bytes / total_bytes)
    elif total > 0:
        fraction = min(1.0, done / total)
    else:
        fraction = 1.0
    filled = round(fraction * width)
    bar = "#" * filled + "-" * (width - filled)
    return (
        f"[{bar}]  {done}/{total} keys  "
        f"{human_bytes(done_bytes)}/{human_bytes(total_bytes)}  {fraction * 100:3.0f}%"
    )


class Progress:
    """Redraws :func:`render_progress` in place at most every ``interval`` seconds.

    Disabled (draws nothing at all) when ``stream`` is not a terminal or ``enabled`` is False.
    """

    def __init__(
        self,
        stream: TextIO,
        total: int,
        total_bytes: int,
        *,
        enabled: bool | None = None,
        interval: float = 0.1,
    ) -> None:
        self.stream = stream
        self.total = total
        self.total_bytes = total_bytes
        isatty = getattr(stream, "isatty", None)
        tty = bool(isatty()) if callable(isatty) else False
        self.enabled = tty if enabled is None else enabled and tty
        self.done = 0
        self.done_bytes = 0
        self._interval = interval
        self._last = 0.0
        self._width = 0

    def advance(self, nbytes: int) -> None:
        """Count one more key of ``nbytes`` bytes as handled."""
        self.done += 1
        self.done_bytes += nbytes
        now = time.monotonic()
        if self.enabled and (now - self._last >= self._interval or self.done == self.total):
            self._last = now
            self._draw()

    def _draw(self) -> None:
        line = render_progress(self.done, self.total, self.done_bytes, self.total_bytes)
        pad = max(0, self._width - len(line))
        self._width = len(line)
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()

    def finish(self) -> None:
        """Erase the bar so the summary starts on a clean line."""
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

"""Progress display that suits where it is shown: a widget in a notebook, a tqdm bar on a
terminal, and plain lines (no escape sequences, no carriage returns) in a log file or pipe.

Every bar of the application layer is made by :func:`progress_bar`; the library packages only take
a ``progress(n)`` callback (e.g. ``bar.update``).
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any, Protocol


class Bar(Protocol):
    """What the commands use of a bar: ``update(n)`` and ``close()``, and ``with``."""

    def update(self, n: float | None = 1) -> Any: ...

    def close(self) -> Any: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> Any: ...


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython's ``IPKernelApp``), where tqdm draws a widget."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except AttributeError:
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class PlainProgress:
    """A bar for files and pipes: one line per tenth of the total (or per ``every`` seconds when the
    total is unknown) and a last line with the count and the time, e.g.
    ``simulate T=8: 500/1000 samples (50%), 3.1 s``.

    Args:
        total: the count at 100 % (``None``: unknown).
        desc: the label that starts every line.
        unit: what is counted.
        disable: print nothing.
        file: where the lines go (default: ``sys.stderr`` at the time of writing).
        every: seconds between lines when ``total`` is ``None``.
    """

    def __init__(
        self,
        total: float | None = None,
        desc: str = "",
        unit: str = "it",
        disable: bool = False,
        file: IO[str] | None = None,
        every: float = 30.0,
    ) -> None:
        self.total, self.desc, self.unit, self.disable = total, desc, unit, disable
        self.file, self.every = file, every
        self.n = 0.0
        self.start = time.perf_counter()
        self._last_tenth = 0
        self._last_time = self.start
        self._closed = False

    def _write(self, line: str) -> None:
        stream = self.file if self.file is not None else sys.stderr
        stream.write(line + "\n")
        stream.flush()

    def _line(self) -> str:
        elapsed = time.perf_counter() - self.start
        count = f"{self.n:g}" if self.total is None else f"{self.n:g}/{self.total:g}"
        percent = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        label = f"{self.desc}: " if self.desc else ""
        unit = self.unit if self.unit == "it" or self.n == 1 else self.unit + "s"
        return f"{label}{count} {unit}{percent}, {elapsed:.1f} s"

    def update(self, n: float | None = 1) -> None:
        """Count ``n`` more; write a line when another tenth (or ``every`` seconds) has passed."""
        self.n += 1 if n is None else n
        if self.disable:
            return
        if self.total:
            tenth = int(10 * self.n / self.total)
            if tenth > self._last_tenth and self.n < self.total:
                self._last_tenth = tenth
                self._write(self._line())
        elif time.perf_counter() - self._last_time >= self.every:
            self._last_time = time.perf_counter()
            self._write(self._line())

    def close(self) -> None:
        """Write the last line (once)."""
        if not self._closed and not self.disable and self.n > 0:
            self._write(self._line())
        self._closed = True

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    leave: bool = True,
    disable: bool = False,
    file: IO[str] | None = None,
) -> Bar:
    """A progress bar for ``total`` units: tqdm's notebook widget in Jupyter, a tqdm bar when
    ``file`` (default ``sys.stderr``) is a terminal, else :class:`PlainProgress` lines.

    Args:
        total: the count at 100 % (``None``: unknown).
        desc: label.
        unit: what is counted (``"sample"``, ``"item"``).
        leave: keep a terminal bar after it closes (plain lines always stay).
        disable: show nothing (``--quiet``, ``--json``).
        file: the stream (default ``sys.stderr``).
    """
    stream = file if file is not None else sys.stderr
    if in_notebook():
        from tqdm.auto import tqdm as auto_tqdm

        return auto_tqdm(total=total, desc=desc, unit=unit, leave=leave, disable=disable)
    isatty = getattr(stream, "isatty", None)
    if callable(isatty) and isatty():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, leave=leave, disable=disable, file=stream)
    return PlainProgress(total=total, desc=desc, unit=unit, disable=disable, file=file)

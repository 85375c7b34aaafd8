"""Normalisation modes: how each layer's scale λ is read off its calibration activations.

- ``'max'``: the largest activation (Diehl et al. 2015, IJCNN).
- ``'p%'`` (e.g. ``'99.9%'``): the p-th percentile, robust normalisation (Rueckauer et al.
  2017, Front. Neurosci. 11:682).
- a float ``f`` in (0, 1], or the string ``'1/k'``: that fraction of the max.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Mode:
    """A parsed normalisation mode.

    Attributes:
        kind: ``"max"``, ``"percentile"`` or ``"fraction"``.
        value: the percentile in (0, 100] or the fraction in (0, 1] (1.0 for ``"max"``).
        text: the mode as the user wrote it (normalised), e.g. ``'99.9%'``, ``'1/2'``.
    """

    kind: str
    value: float
    text: str

    @property
    def needs_histogram(self) -> bool:
        return self.kind == "percentile"

    @property
    def file_name(self) -> str:
        """A file-safe name: ``max``, ``p99.9``, ``f0.5``, ``f0.333``."""
        if self.kind == "max":
            return "max"
        if self.kind == "percentile":
            return f"p{self.value:g}"
        return f"f{round(self.value, 3):g}"


def parse_mode(mode: str | float) -> Mode:
    """Parse ``'max'``, ``'99.9%'``, ``0.5``, ``'0.5'`` or ``'1/2'`` into a :class:`Mode`.

    Raises:
        ValueError: an unparseable mode, a percentile outside (0, 100], or a fraction
            outside (0, 1]; the message names the value.

    Example:
        >>> parse_mode("1/3").file_name, parse_mode("99.9%").kind
        ('f0.333', 'percentile')
    """
    if isinstance(mode, bool) or not isinstance(mode, (str, int, float)):
        raise ValueError(f"mode must be 'max', a percentile like '99.9%' or a float in (0, 1], got {mode!r}")
    if isinstance(mode, str):
        text = mode.strip()
        if text.lower() == "max":
            return Mode("max", 1.0, "max")
        if text.endswith("%"):
            try:
                p = float(text[:-1])
            except ValueError:
                raise ValueError(f"unparseable percentile mode {mode!r}") from None
            if not 0 < p <= 100:
                raise ValueError(f"percentile mode {mode!r} is outside (0, 100]")
            return Mode("percentile", p, f"{p:g}%")
        try:
            fraction = float(Fraction(text))
        except (ValueError, ZeroDivisionError):
            raise ValueError(
                f"unparseable mode {mode!r}: expected 'max', a percentile like '99.9%', or a fraction like 0.5 or 1/2"
            ) from None
        shown = text
        if fraction > 1 and fraction <= 100:
            raise ValueError(f"fraction mode {mode!r} is outside (0, 1]; for the {text}th percentile write '{text}%'")
    else:
        fraction, shown = float(mode), f"{float(mode):g}"
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction mode {mode!r} is outside (0, 1]")
    return Mode("fraction", fraction, shown)

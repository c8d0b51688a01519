"""The report as data: sections of paragraphs, lists, tables and images, rendered by ``markdown.py`` and ``html.py``.

The sections are generated from the runs (``sections.py``, ``findings.py``, ``groups.py``, ``tracks.py``); the
renderers know nothing of MLflow, metrics or encoders, only these blocks. A table cell keeps the exact number behind
its text (``Cell.value``): the HTML report sorts on it and carries it as ``data-value``, so a reader (or a test) can
check every shown number against the runs' logged metrics.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field


@dataclass
class Text:
    """A paragraph (plain text; rendered escaped)."""

    text: str


@dataclass
class Bullets:
    items: list[str]
    css: str = ""  # an HTML class for the list (e.g. "findings")


@dataclass
class Cell:
    text: str
    value: float | str | None = None  # the exact value behind the text (sorting, data-value); None: the text


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""
    note: str = ""  # below the table: what the marks and intervals mean
    id: str = ""
    sortable: bool = False


@dataclass
class Image:
    png: bytes
    alt: str
    caption: str = ""


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)
    id: str = ""
    level: int = 2
    subsections: list[Section] = field(default_factory=list)

    def walk(self):
        yield self
        for sub in self.subsections:
            yield from sub.walk()


@dataclass
class Document:
    title: str
    subtitle: str
    sections: list[Section]


def number(value, digits: int = 3, signed: bool = False) -> str:
    """A number as the report shows it: ``digits`` decimals, "–" for a missing or non-finite value."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(value):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def cell(value, digits: int = 3) -> Cell:
    """A numeric cell: its text rounded, its value exact (None when missing)."""
    try:
        exact = float(value)
    except (TypeError, ValueError):
        return Cell("–" if value is None else str(value), None if value is None else str(value))
    return Cell(number(exact, digits), exact if math.isfinite(exact) else None)


def png_of(figure, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()

"""A table of the report: its title, headers and rows (markdown, HTML and terminal alike)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Section:
    """One table: a device x model table, the best configurations, the hosts side by side."""

    title: str
    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]

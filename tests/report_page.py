"""The HTML report read back with html.parser, for tests to compare its figures with the
summary's and to check it is self-contained."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

EXTERNAL = re.compile(r"https?://|@import|url\(", re.I)
"""An address anywhere on the page, even as text, or a stylesheet fetching one."""
LOADING_TAGS = {
    "script",
    "img",
    "link",
    "iframe",
    "object",
    "embed",
    "image",
    "use",
    "audio",
    "video",
}
LOADING_ATTRIBUTES = {"src", "srcset", "href", "xlink:href", "action", "data", "poster"}
"""What would make a browser load something, or run it."""


def figure(text: str) -> int:
    """A figure as the page prints it (`1,234`) as an int."""
    return int(text.replace(",", ""))


class ReportPage(HTMLParser):
    """What a report shows, keyed as the summary is."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text = text
        self.figures: dict[str, int] = {}
        """Every `data-figure` (credits, totals), from the text shown."""
        self.cards: dict[str, str] = {}
        self.verdicts: dict[str, int] = {}
        self.undeliverable: list[tuple[str, int, int]] = []
        self.catch_all: list[tuple[str, int, int]] = []
        self.hour_bars: dict[int, int] = {}
        """Timeline bars: hour start (epoch) -> emails, from the SVG."""
        self.hour_rows: dict[int, int] = {}
        """The hour-by-hour table: hour start -> emails, from the text shown."""
        self.banners: list[str] = []
        self.tags: list[str] = []
        self.attribute_values: list[str] = []
        self.attribute_names: set[str] = set()
        self.texts: list[str] = []
        self._open: list[tuple[str, str]] = []
        self._row: tuple[str, str] | None = None
        self._cells: list[str] = []
        self._in_cell = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        self.attribute_values += [v for v in values.values() if v]
        self.attribute_names |= set(values)
        for name in ("data-figure", "data-card", "data-verdict", "data-hour-start"):
            if values.get(name) is not None:
                self._open.append((name, str(values[name])))
        if "data-banner" in values:
            self.banners.append(str(values["data-banner"]))
        if tag == "rect" and "data-hour" in values:
            self.hour_bars[int(str(values["data-hour"]))] = int(str(values["data-emails"]))
        if tag == "tr":
            for kind in ("data-undeliverable", "data-catch-all"):
                if kind in values:
                    self._row, self._cells = (kind, str(values[kind])), []
        if tag == "td" and self._row is not None:
            self._in_cell = True
            self._cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_cell = False
        if tag == "tr" and self._row is not None:
            kind, domain = self._row
            assert self._cells[0] == domain, "the domain shown is the domain named"
            item = (domain, figure(self._cells[1]), figure(self._cells[2]))
            (self.undeliverable if kind == "data-undeliverable" else self.catch_all).append(item)
            self._row = None

    def handle_data(self, data: str) -> None:
        self.texts.append(data)
        if self._in_cell:
            self._cells[-1] += data
        if not self._open or not data.strip():
            return
        name, key = self._open.pop()
        if name == "data-figure":
            self.figures[key] = figure(data)
        elif name == "data-card":
            self.cards[key] = data
        elif name == "data-verdict":
            self.verdicts[key] = figure(data)
        else:
            self.hour_rows[int(key)] = figure(data)


def read_report(path: Path) -> ReportPage:
    return ReportPage(path.read_text(encoding="utf-8"))


def assert_self_contained(page: ReportPage) -> None:
    assert not EXTERNAL.search(page.text), EXTERNAL.search(page.text)
    assert not LOADING_TAGS & set(page.tags)
    assert not LOADING_ATTRIBUTES & page.attribute_names
    assert not any(name.startswith("on") for name in page.attribute_names)
    assert '<meta name="viewport"' in page.text  # laptop and phone widths alike


SUMMARY_FIGURES = ("credits_spent", "cached", "invalid", "blank", "duplicates")


def assert_matches_summary(page: ReportPage, summary: dict[str, Any]) -> None:
    """Every figure the page shows equals the summary's."""
    assert figure(page.cards["rows"]) == summary["rows"]
    assert figure(page.cards["unique_emails"]) == summary["unique_emails"]
    assert page.verdicts == summary["verdicts"]
    assert page.figures["verdicts_total"] == sum(summary["verdicts"].values()) == summary["rows"]
    for key in SUMMARY_FIGURES:
        assert page.figures[key] == summary[key], key
    for key in ("remaining", "failed", "possible_double_charges"):
        assert page.figures.get(key, 0) == summary[key], key
    assert page.hour_bars == page.hour_rows
    if page.hour_bars:
        assert page.figures["submitted"] == sum(page.hour_bars.values())

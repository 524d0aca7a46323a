"""Shared report plumbing: save a matplotlib figure atomically, and write one self-contained HTML page
(every PNG inlined as base64, so the page can be mailed or opened from anywhere)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402

from ponder.io import atomic_write_text  # noqa: E402


def save_figure(fig, path: Path) -> Path:
    """Write `fig` to `path` as PNG via a temp file and a rename; close it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def inline_png(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


def html_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A table of `rows` (all their keys, or just `columns`); floats shown to three decimals."""
    if not rows:
        return ""
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(r.get(c, "")) for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value) -> str:
    return f"<td>{value:.3f}</td>" if isinstance(value, float) else f"<td>{html.escape(str(value))}</td>"


STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "img{max-width:100%}table{border-collapse:collapse;margin:1rem 0}"
    "td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}th{background:#f4f4f4}"
)


def html_page(path: Path, title: str, charts: list[tuple[str, Path]], rows: list[dict] | None = None) -> Path:
    """One page: a title, each (heading, PNG) in turn, then an optional table."""
    sections = [f"<h2>{html.escape(h)}</h2>{inline_png(p)}" for h, p in charts]
    return write_page(path, title, [*sections, html_table(rows or [])])


def write_page(path: Path, title: str, body: list[str]) -> Path:
    """A self-contained page: the title as heading, then the given HTML fragments in order."""
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(body)}</body></html>\n"
    )
    atomic_write_text(path, page)
    return Path(path)

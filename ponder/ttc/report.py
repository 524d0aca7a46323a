"""The test-time compute report: PNG charts and one self-contained HTML page (PNGs inlined as base64).

    write_report(run_dir, sweep_result, distribution=dist, efforts=rows)
    # -> run_dir/scaling.png, run_dir/histogram.png, run_dir/report.html

The scaling chart puts generated tokens per problem on a log2 x axis and held-out accuracy on y, one
curve per strategy; single-point strategies (greedy, auto effort) are drawn as markers.
"""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402

from ponder.report import html_table, inline_png, save_figure, write_page  # noqa: E402
from ponder.ttc.metrics import accuracy_vs_tokens  # noqa: E402
from ponder.ttc.scale import headline  # noqa: E402


def scaling_chart(points: list[dict], path: str | Path, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = plt.get_cmap("tab20").colors  # 20 distinct colours: a sweep has up to 13 strategies
    single_markers = iter(["D", "s", "*", "X", "P", "^", "v", "<", ">"] * 3)  # one-point strategies
    for i, (name, curve) in enumerate(accuracy_vs_tokens(points).items()):
        xs, ys = zip(*curve, strict=True)
        single = len(xs) == 1
        ax.plot(
            xs,
            [100 * y for y in ys],
            marker=next(single_markers) if single else "o",
            markersize=9 if single else 5,
            linestyle="none" if single else "-",
            color=colors[(2 * i) % 20 + (i // 10) % 2],
            label=name,
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("generated tokens per problem (log2)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title(title or "accuracy against test-time compute")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return save_figure(fig, Path(path))


def histogram_chart(dist: dict, path: str | Path, top: int = 15) -> Path:
    bars = dist["histogram"][:top]
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    labels = [b["key"][:18] for b in bars]
    colors = ["tab:green" if b["correct"] else "tab:gray" for b in bars]
    ax.bar(range(len(bars)), [b["count"] for b in bars], color=colors)
    ax.set_xticks(range(len(bars)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(f"samples (of {dist['samples']})")
    ax.set_title(f"{dist['prompt']}  (green = correct)", fontsize=9)
    return save_figure(fig, Path(path))


def write_report(
    out: str | Path,
    result: dict,
    distribution: dict | None = None,
    efforts: list[dict] | None = None,
    title: str = "ponder: test-time compute",
    command: str = "",
) -> Path:
    """Write the charts and report.html into `out`; return the HTML path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    if command:
        parts.append(f"<p>command: <code>{html.escape(command)}</code></p>")
    parts.append(f"<p>{result.get('problems', 0)} held-out problems.</p>")
    lines = headline(result.get("points") or [])
    if lines:
        parts.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>")
    if result.get("points"):
        parts.append(inline_png(scaling_chart(result["points"], out / "scaling.png")))
        cols = ["strategy", "level", "accuracy", "tokens_per_problem"]
        parts.append(html_table(result["points"], cols))
    if efforts:
        parts.append("<h2>reasoning_effort</h2>")
        cols = ["effort", "accuracy", "tokens_per_problem", "samples_per_problem", "wall_s"]
        parts.append(html_table(efforts, cols))
    if distribution:
        parts.append("<h2>one prompt, many samples</h2>")
        parts.append(inline_png(histogram_chart(distribution, out / "histogram.png")))
        prompt = html.escape(distribution["prompt"])
        parts.append(
            f"<p>prompt: <code>{prompt}</code>, {distribution['samples']} samples, "
            f"reference answer: <code>{html.escape(distribution['reference'])}</code></p>"
            + html_table(distribution["histogram"], ["key", "count", "correct"])
        )
    return write_page(out / "report.html", title, parts)

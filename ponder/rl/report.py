"""The RL run report: the train-time scaling chart and how behaviour changed, as PNGs and one HTML page.

    write_rl_report("runs/rl")   # reads metrics.jsonl -> train_scaling.png, lengths.png,
                                 #   self_correction.png, report.html (self-contained)

The train-time chart is the left half of the o1 picture: held-out accuracy against the RL compute
spent so far, counted as tokens generated (log axis); the base model is the dashed line.

With a reward model as the reward, `overoptimisation.png` puts the held-out gold measure and the
proxy (the reward model) against d = sqrt(KL to the start), for RL and for best-of-n from the start
(`best_of_n.json`), each with Gao et al.'s fitted form (ponder.rlhf.overopt).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402

from ponder.io import read_jsonl_records  # noqa: E402
from ponder.report import html_page, save_figure  # noqa: E402
from ponder.rlhf.overopt import curves  # noqa: E402


def read_metrics(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """(training steps, evals) from a run's metrics.jsonl; lines cut short by a crash are skipped."""
    steps, evals = [], []
    for _, record in read_jsonl_records(run_dir / "metrics.jsonl"):
        (evals if "eval_accuracy" in record else steps).append(record)
    return steps, evals


def train_scaling_chart(evals: list[dict], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    base = [e for e in evals if e["rl_tokens"] == 0]
    later = [e for e in evals if e["rl_tokens"] > 0]
    if base:
        ax.axhline(100 * base[0]["eval_accuracy"], color="gray", linestyle="--", label="base (before RL)")
    if later:
        xs = [e["rl_tokens"] for e in later]
        ax.plot(xs, [100 * e["eval_accuracy"] for e in later], marker="o", label="overall")
        for task in later[0].get("eval_by_task", {}):
            ax.plot(xs, [100 * e["eval_by_task"][task] for e in later], alpha=0.45, linewidth=1, label=task)
        ax.set_xscale("log")
    ax.set_xlabel("RL compute: tokens generated (log)")
    ax.set_ylabel("held-out greedy accuracy (%)")
    ax.set_title("train-time compute: accuracy against RL tokens")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def series_chart(steps: list[dict], keys: dict[str, str], ylabel: str, title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 3.8))
    xs = [s["step"] for s in steps]
    for key, label in keys.items():
        ax.plot(xs, [s.get(key, float("nan")) for s in steps], label=label)
    ax.set_xlabel("RL step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def overoptimisation_chart(evals: list[dict], best_of_n: list[dict], path: Path) -> Path:
    """Gold (left) and proxy (right) against sqrt(KL): RL's evals and best-of-n, with the fitted forms."""
    c = curves(evals, best_of_n)
    fig, (gold_ax, proxy_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, points, fit, marker in (
        ("RL", c["rl"], c["rl_fit"], "o"),
        ("best-of-n", c["best_of_n"], c["best_of_n_fit"], "s"),
    ):
        if not points:
            continue
        ds = [d for d, _, _ in points]
        line = gold_ax.plot(ds, [g for _, g, _ in points], marker=marker, linestyle="none", label=f"{name} (measured)")
        proxy_ax.plot(ds, [p for _, _, p in points], marker=marker, color=line[0].get_color(), label=name)
        if fit is not None:
            grid = [max(ds) * i / 100 for i in range(101)]
            label = f"{name} fit: d({fit.alpha:.3f} - {fit.beta:.3f} {'d' if fit.form == 'best_of_n' else 'log d'})"
            gold_ax.plot(grid, [points[0][1] + fit(d) for d in grid], color=line[0].get_color(), label=label)
    gold_ax.set_ylabel("held-out gold measure (rule / verifier)")
    proxy_ax.set_ylabel("proxy: reward model (normalised)")
    for ax, title in ((gold_ax, "gold"), (proxy_ax, "proxy")):
        ax.set_xlabel("d = sqrt(KL to the starting policy), nats^0.5")
        ax.set_title(f"{title} against sqrt(KL)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def write_rl_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    steps, evals = read_metrics(run_dir)
    charts = [
        ("Held-out accuracy against RL compute", train_scaling_chart(evals, run_dir / "train_scaling.png")),
        (
            "Response length over training",
            series_chart(
                steps,
                {"response_len": "response", "thinking_len": "thinking"},
                "tokens",
                "mean tokens per completion",
                run_dir / "lengths.png",
            ),
        ),
        (
            "Self-correction over training",
            series_chart(
                steps,
                {"self_correction": "share of completions with 'wait' / 'let me recheck'"},
                "share",
                "how often the model corrects itself",
                run_dir / "self_correction.png",
            ),
        ),
    ]
    rows = [
        {"step": e["step"], "RL tokens": e["rl_tokens"], "held-out accuracy": f"{e['eval_accuracy']:.1%}"}
        | ({"gold": e["heldout_gold"], "proxy": e["heldout_proxy"], "KL": e["heldout_kl"]} if "heldout_kl" in e else {})
        for e in evals
    ]
    if any("heldout_kl" in e for e in evals):
        bon_file = run_dir / "best_of_n.json"
        bon = json.loads(bon_file.read_text())["points"] if bon_file.is_file() else []
        chart = overoptimisation_chart(evals, bon, run_dir / "overoptimisation.png")
        charts.insert(0, ("Over-optimisation: gold and proxy against sqrt(KL)", chart))
    return html_page(run_dir / "report.html", f"RL run {run_dir.name}", charts, rows)

"""Engine throughput against Hugging Face `model.generate`, same model, same 64 prompts.

    python bench/engine.py [--model DIR] [--preset 5m] [--batch 64] [--new-tokens 128]

Both sides decode greedily for exactly `--new-tokens` tokens (no early stop, so the work is
equal), after one warm-up call each, then `--repeats` rounds in which every side runs once in turn
(so a busy moment of the machine hits all sides alike). Prints each side's median tokens/s with the
spread over the rounds, the median of the per-round ratios, and the fraction of this CPU's measured
matmul peak the engine reaches (2 * params FLOPs per token).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ponder.engine import Engine, LiveBatch, SamplingParams
from ponder.format import render_prompt
from ponder.model import count_parameters, load, new_model
from ponder.tasks import BUILTIN, get_task


def matmul_peak_gflops(size: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def prompts(batch: int) -> list[str]:
    names = sorted(BUILTIN)
    return [render_prompt(get_task(names[i % len(names)]).problem("eval", i, 2).prompt) for i in range(batch)]


def time_generate(model, tokenizer, texts, new_tokens) -> float:
    tokenizer.padding_side = "left"
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    kwargs = dict(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.inference_mode():
        start = time.perf_counter()
        out = model.generate(**enc, **kwargs)
    elapsed = time.perf_counter() - start
    assert out.shape[1] - enc.input_ids.shape[1] == new_tokens
    return elapsed


def time_engine(engine, texts, new_tokens) -> float:
    # min_thinking_tokens would alter the text; instead stop nothing: no end tokens count.
    end_ids, engine.format.end_ids = engine.format.end_ids, set()
    try:
        params = SamplingParams(temperature=0, max_tokens=new_tokens)
        start = time.perf_counter()
        groups = engine.generate(texts, params)
        elapsed = time.perf_counter() - start
    finally:
        engine.format.end_ids = end_ids
    assert all(len(g[0].token_ids) == new_tokens for g in groups)
    return elapsed


def time_live(engine, texts, new_tokens, arrive_every: int) -> float:
    """The running batch (engine/live.py): `arrive_every` steps apart, 8 more requests join it, as
    they would reach a server; each decodes exactly `new_tokens` tokens (no end token stops it)."""
    end_ids, engine.format.end_ids = engine.format.end_ids, set()
    try:
        start = time.perf_counter()
        batch, done, step = LiveBatch(engine, SamplingParams(temperature=0, max_tokens=new_tokens)), [], 0
        while len(done) < len(texts):
            if step % arrive_every == 0:
                for text in texts[(step // arrive_every) * 8 :][:8]:
                    batch.add(text)
            done += [e.rollout for e in batch.step() if e.kind == "finished"]
            step += 1
        elapsed = time.perf_counter() - start
    finally:
        engine.format.end_ids = end_ids
    assert all(len(r.token_ids) == new_tokens for r in done)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a model directory (default: the shipped base model)")
    ap.add_argument("--preset", help="benchmark a freshly initialised model of this size (1m, 5m, 25m) instead")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--repeats", type=int, default=5, help="rounds; each side runs once per round")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model:
        model, tokenizer = load(args.model)
    else:
        from ponder.assets import base_model_path

        model, tokenizer = load(base_model_path())
        if args.preset:
            model = new_model(args.preset, tokenizer).eval()
    texts = prompts(args.batch)
    tokens = args.batch * args.new_tokens
    engine = Engine(model, tokenizer)
    sides = {
        "model.generate": lambda: time_generate(model, tokenizer, texts, args.new_tokens),
        "ponder engine": lambda: time_engine(engine, texts, args.new_tokens),
        "running batch, 8 join every step": lambda: time_live(engine, texts, args.new_tokens, arrive_every=1),
        "running batch, 8 join every 8 steps": lambda: time_live(engine, texts, args.new_tokens, arrive_every=8),
    }
    time_generate(model, tokenizer, texts, 4), time_engine(engine, texts, 4)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.repeats):
        for name, run in sides.items():
            times[name].append(run())
    peak = matmul_peak_gflops()
    print(
        f"model: {count_parameters(model) / 1e6:.2f}M params, batch {args.batch}, {args.new_tokens} new tokens "
        f"each, greedy, torch threads {torch.get_num_threads()}, {args.repeats} rounds (median, min-max)"
    )
    hf = times["model.generate"]
    for name, ts in times.items():
        rates = sorted(tokens / t for t in ts)
        line = f"{name:36s}: {statistics.median(rates):8.0f} tokens/s ({rates[0]:.0f}-{rates[-1]:.0f})"
        if name != "model.generate":
            ratios = sorted(h / t for h, t in zip(hf, ts, strict=True))
            line += f"  = {statistics.median(ratios):.2f}x generate ({ratios[0]:.2f}-{ratios[-1]:.2f})"
        print(line)
    engine_t, live_t = times["ponder engine"], times["running batch, 8 join every step"]
    closed = sorted(e / t for e, t in zip(engine_t, live_t, strict=True))
    print(f"target: engine >= 3x generate; running batch (8 join every step) within 10% of the engine: "
          f"{statistics.median(closed):.1%} of its throughput ({closed[0]:.1%}-{closed[-1]:.1%})")  # fmt: skip
    achieved = 2 * count_parameters(model) * tokens / statistics.median(engine_t) / 1e9
    print(
        f"engine compute: {achieved:.1f} GFLOP/s = {achieved / peak:.1%} of this CPU's measured "
        f"fp32 matmul peak ({peak:.0f} GFLOP/s)"
    )


if __name__ == "__main__":
    main()

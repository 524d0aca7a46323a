"""`ponder rl`: reinforcement learning with verifiable rewards. The whole loop, top to bottom:

    for step in range(steps):
        1) draw `prompts_per_step` train problems from the mix (optionally a difficulty curriculum)
        2) the engine samples `group_size` completions per problem, sharing each prompt's prefill
        3) rewards: the task verifier + declared shaping (format, overlong)
        4) advantages: GRPO / Dr. GRPO / DAPO / RLOO / REINFORCE++ / PPO (value head + GAE)
        5) `epochs` passes of clipped policy-gradient updates over minibatches
        6) metrics to JSONL; every `eval_every` steps held-out greedy accuracy; atomic checkpoint

What is kept and dropped. The sampler's log-probs are the "old" policy (the engine runs the same
weights in fp32, so no extra forward pass is spent recomputing them); with one epoch and one
minibatch the update is exactly on-policy and the clip is inactive, as in TRL's default. Rollouts
from another engine (Ray rollout workers) are off-policy by a little (other kernels, maybe an older
policy version): then the trainer computes its own log-probs of the batch once, uses them as the
"old" policy, and weights each token by min(trainer / sampler, `tis_cap`) (truncated importance
sampling, `importance_correction`), logging the mismatch (mismatch_kl, mismatch_max, tis_truncated,
policy_lag). Tokens the model did not write (prompt, forced tokens, tool responses, padding) are
masked out of every loss. KL to a frozen reference is optional (`kl_coef`, k1 or k3). PPO shares the
policy's backbone for its value head rather than training a second model: at tiny sizes a second
model doubles the cost for little.

Tools (`tools`, e.g. "calculator,search"): rollouts may call them inside their thinking; the engine
pauses at "</tool_call>", runs the call (`tool_fault_rate` of calls fail or time out on purpose) and
writes the response with mask 0, so the sampler's log-probs of those tokens are never used. Rollouts
with a void turn (SimpleTIR: after a tool response, the model wrote neither a complete call nor an
answer) are dropped from the loss (`drop_void_turns`, on with tools): off-distribution responses make
such turns, and their low-probability tokens are where importance ratios and gradients blow up. They
keep their place (and reward 0) in their group, so the group baseline is unchanged.
"""

from __future__ import annotations

import copy
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ponder import model as models
from ponder.checkpoint import load_checkpoint, prepare_run_dir, save_checkpoint, trim_metrics
from ponder.engine import Engine, SamplingParams
from ponder.errors import PonderError
from ponder.evals import evaluate, generate, tool_loop
from ponder.io import append_jsonl, atomic_write_json
from ponder.rl import algorithms as alg
from ponder.rl.batch import RolloutBatch, token_logprobs
from ponder.rl.rewards import RewardTerm, parse_reward, score
from ponder.rlhf.overopt import GoldEarlyStop, best_of_n_curve, heldout_measure
from ponder.rlhf.reward_model import load_reward_models, mean_scorer
from ponder.tasks.mix import DEFAULT_MIX, TaskMix
from ponder.train.flops import FlopMeter, peak_memory_gib
from ponder.train.lm import autocast_context, enable_gradient_checkpointing, resolve_device

log = logging.getLogger(__name__)

# Each algorithm is a few declared choices over the pure functions in ponder.rl.algorithms.
ALGORITHMS: dict[str, dict] = {
    "grpo": {"advantage": "grpo", "agg": "sequence"},
    "dr_grpo": {"advantage": "dr_grpo", "agg": "constant"},
    "dapo": {
        "advantage": "grpo",
        "agg": "token",
        "eps_high": 0.28,
        "dynamic_sampling": True,
        "overlong_cache": 16,
    },
    "rloo": {"advantage": "rloo", "agg": "token"},
    "reinforce_pp": {"advantage": "reinforce_pp", "agg": "token"},
    "reinforce_pp_baseline": {"advantage": "reinforce_pp_baseline", "agg": "token"},
    "ppo": {"advantage": "gae", "agg": "token"},
}
SELF_CORRECTION = re.compile(r"\bwait\b|let me recheck", re.IGNORECASE)


@dataclass
class RLConfig:
    out: str = field(default="runs/rl", metadata={"help": "run directory"})
    init: str | None = field(default=None, metadata={"help": "policy to start from (default: shipped base)"})
    tasks: str = field(default=DEFAULT_MIX, metadata={"help": "task mix of the training problems"})
    algorithm: str = field(default="grpo", metadata={"help": f"one of {sorted(ALGORITHMS)}"})
    steps: int = field(default=200, metadata={"help": "RL steps (one batch of problems each)"})
    prompts_per_step: int = field(default=32, metadata={"help": "problems per step"})
    group_size: int = field(default=8, metadata={"help": "completions sampled per problem (G)"})
    max_tokens: int = field(default=256, metadata={"help": "tokens per completion at most (evals too)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature of the rollouts"})
    lr: float = field(default=3e-4, metadata={"help": "AdamW peak learning rate (after warm-up)"})
    warmup: int = field(default=5, metadata={"help": "linear LR warm-up steps"})
    lr_schedule: str = field(default="linear", metadata={"help": "after warm-up: constant, or linear (to 0)"})
    epochs: int = field(default=1, metadata={"help": "passes over each batch of rollouts"})
    minibatches: int = field(default=1, metadata={"help": "optimizer steps per epoch"})
    eps_low: float = field(default=0.2, metadata={"help": "PPO clip: ratio >= 1 - eps_low"})
    eps_high: float | None = field(default=None, metadata={"help": "clip-higher: ratio <= 1 + eps_high"})
    kl_coef: float | None = field(
        default=None, metadata={"help": "KL-to-reference weight (default: 0.05 with a reward model, else 0 = off)"}
    )
    kl_estimator: str = field(default="k3", metadata={"help": "k1 or k3"})
    reward: str = field(
        default="verifier",
        metadata={"help": "'verifier', 'reward-model:DIR', or a weighted sum: '0.5*verifier+reward-model:DIR'"},
    )
    gold_samples: int = field(
        default=4, metadata={"help": "with a reward model: samples per held-out problem for proxy, gold and KL"}
    )
    best_of_n: int = field(
        default=0, metadata={"help": "with a reward model: best-of-n curve n = 1, 2, 4 .. this from the start; 0 = off"}
    )
    early_stop: int = field(
        default=0,
        metadata={"help": "stop after this many evals without a better held-out gold (keeps the best); 0 = off"},
    )
    format_coef: float = field(default=0.0, metadata={"help": "reward for a closed </think> and an answer"})
    overlong_cache: int | None = field(default=None, metadata={"help": "DAPO soft overlong window; 0 = off"})
    dynamic_sampling: bool | None = field(default=None, metadata={"help": "drop groups of equal rewards"})
    curriculum: bool = field(default=False, metadata={"help": "easy difficulties first, harder later"})
    tools: str = field(default="", metadata={"help": "tools rollouts may call, e.g. 'calculator,search'; '' = off"})
    max_tool_calls: int = field(default=4, metadata={"help": "tool calls per rollout; later calls are refused"})
    tool_fault_rate: float = field(
        default=0.0, metadata={"help": "share of tool calls made to fail or time out (rollouts only, not evals)"}
    )
    drop_void_turns: bool | None = field(
        default=None,
        metadata={"help": "leave rollouts with a void tool turn out of the loss (default: on with tools)"},
    )
    vf_coef: float = field(default=0.5, metadata={"help": "PPO value-loss weight"})
    gae_lambda: float = field(default=0.95, metadata={"help": "PPO GAE lambda"})
    grad_clip: float = field(default=1.0, metadata={"help": "max gradient norm; 0 = off"})
    eval_every: int = field(default=50, metadata={"help": "held-out eval every N steps; 0 = only at the ends"})
    eval_per_task: int = field(default=40, metadata={"help": "held-out problems per task and difficulty"})
    save_every: int = field(default=50, metadata={"help": "checkpoint every N steps"})
    max_bad_steps: int = field(default=3, metadata={"help": "stop after this many NaN/inf losses in a row"})
    seed: int = field(default=0, metadata={"help": "seed of the problem stream and the sampler"})
    rollout_workers: int = field(
        default=0, metadata={"help": "Ray actors that generate the rollouts (0 = the trainer's own engine)"}
    )
    ray_address: str = field(default="", metadata={"help": "Ray cluster to join ('' = start a local one)"})
    rollout_backend: str = field(
        default="ponder",
        metadata={"help": "what samples the rollouts: ponder (its engine) or vllm (pip install 'ponder[vllm]', a GPU)"},
    )
    importance_correction: str = field(
        default="auto",
        metadata={
            "help": "truncated importance sampling against the sampler's log-probs: on, off, or auto "
            "(on exactly when another engine samples, i.e. with rollout workers)"
        },
    )
    tis_cap: float = field(default=2.0, metadata={"help": "cap of the truncated importance weights (>= 1)"})
    autocast: str = field(default="auto", metadata={"help": "auto (bf16 on GPU), bf16 or off"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "recompute each layer in the backward pass: less memory, ~1/3 more compute"}
    )
    peak_tflops: float = field(
        default=0.0, metadata={"help": "device peak for MFU in TFLOP/s; 0 = the GPU's bf16 peak by name (none on CPU)"}
    )

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise PonderError(f"algorithm must be one of {sorted(ALGORITHMS)}, got {self.algorithm!r}")
        preset = ALGORITHMS[self.algorithm]
        # unset fields take the algorithm's declared value, else the neutral default
        if self.eps_high is None:
            self.eps_high = preset.get("eps_high", self.eps_low)
        if self.overlong_cache is None:
            self.overlong_cache = preset.get("overlong_cache", 0)
        if self.dynamic_sampling is None:
            self.dynamic_sampling = preset.get("dynamic_sampling", False)
        if self.drop_void_turns is None:
            self.drop_void_turns = bool(self.tools.strip())
        if not 0 <= self.tool_fault_rate <= 1:
            raise PonderError(f"tool_fault_rate must be in [0, 1], got {self.tool_fault_rate!r}")
        if self.lr_schedule not in ("constant", "linear"):
            raise PonderError(f"lr_schedule must be one of ['constant', 'linear'], got {self.lr_schedule!r}")
        if self.kl_coef is None:  # a reward model is a proxy: stay near the policy it was trained on
            self.kl_coef = 0.05 if self.uses_reward_model else 0.0
        if self.gold_samples < 1 or self.best_of_n < 0 or self.early_stop < 0:
            raise PonderError("gold_samples must be >= 1, best_of_n and early_stop >= 0 (0 = off)")
        if self.kl_estimator not in ("k1", "k3"):
            raise PonderError(f"kl_estimator must be one of ['k1', 'k3'], got {self.kl_estimator!r}")
        counts = ("steps", "prompts_per_step", "max_tokens", "epochs", "minibatches", "save_every", "max_tool_calls")
        for name in counts:
            if getattr(self, name) < 1:
                raise PonderError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if self.group_size < 2:
            raise PonderError(f"group_size must be >= 2 (advantages compare samples), got {self.group_size}")
        if not 0 < self.temperature <= 10:
            raise PonderError(f"temperature must be in (0, 10] for RL sampling, got {self.temperature}")
        if self.prompts_per_step % self.minibatches:
            raise PonderError(
                f"prompts_per_step ({self.prompts_per_step}) must be a multiple of minibatches ({self.minibatches})"
            )
        if self.importance_correction not in ("auto", "on", "off"):
            raise PonderError(
                f"importance_correction must be one of ['auto', 'on', 'off'], got {self.importance_correction!r}"
            )
        if self.peak_tflops < 0:
            raise PonderError(f"peak_tflops must be >= 0 (0 = look the GPU up), got {self.peak_tflops!r}")
        if not self.tis_cap >= 1:  # on-policy weights are 1: a cap below would shrink every token's term
            raise PonderError(f"tis_cap must be >= 1 (verl's default is 2.0), got {self.tis_cap!r}")
        self._check_rollout_backend()

    def _check_rollout_backend(self) -> None:
        if self.rollout_backend not in ("ponder", "vllm"):
            raise PonderError(f"rollout_backend must be one of ['ponder', 'vllm'], got {self.rollout_backend!r}")
        if self.rollout_backend == "vllm" and self.rollout_workers > 0:
            raise PonderError("--rollout-backend vllm samples in this process: drop --rollout-workers (Ray)")
        if self.rollout_backend == "vllm" and self.tools.strip():
            raise PonderError("--tools need --rollout-backend ponder: vLLM cannot pause a rollout for a tool")

    @property
    def reward_terms(self) -> tuple[RewardTerm, ...]:
        return parse_reward(self.reward)

    @property
    def uses_reward_model(self) -> bool:
        return any(t.kind == "reward-model" for t in self.reward_terms)

    @property
    def spec(self) -> dict:
        return ALGORITHMS[self.algorithm]

    @property
    def corrects_importance(self) -> bool:
        """Whether the loss reweights by trainer / sampler probabilities: on, or auto with another engine
        sampling (rollout workers or vLLM: their kernels, and possibly an older policy version)."""
        if self.importance_correction == "auto":
            return self.rollout_workers > 0 or self.rollout_backend == "vllm"
        return self.importance_correction == "on"


class ValueHead(torch.nn.Module):
    """PPO's critic: a linear read-out of the policy's last hidden state, one value per token."""

    def __init__(self, hidden: int):
        super().__init__()
        self.linear = torch.nn.Linear(hidden, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)


# ---------------------------------------------------------------------------------------------------


class RLRun:
    """State of one run: policy, optional reference and value head, optimizer, counters."""

    def __init__(self, cfg: RLConfig, resume: bool):
        if cfg.rollout_backend == "vllm":  # a missing vLLM or GPU fails before the run directory is made
            from ponder.engine.vllm_backend import require_vllm

            require_vllm()
        self.cfg, self.device = cfg, resolve_device(cfg.device)
        self.run_dir = Path(cfg.out)
        self.mix = TaskMix(cfg.tasks)
        self.eval_problems = self.mix.eval_set(cfg.eval_per_task)
        prepare_run_dir(self.run_dir, cfg, resume)
        self.start, self.tokens_generated, extra = 0, 0, {}
        if resume:
            self.model, self.tokenizer, state = load_checkpoint(self.run_dir, self.device)
            self.start, extra = state["step"], state["extra"]
            self.tokens_generated = extra.get("tokens_generated", 0)
            trim_metrics(self.run_dir, self.start)
        else:
            from ponder.assets import base_model_path

            self.model, self.tokenizer = models.load(cfg.init or base_model_path(), device=self.device)
        self.model.train()
        self.value_head = None
        if cfg.spec["advantage"] == "gae":
            self.value_head = ValueHead(self.model.config.hidden_size).to(self.device)
            if "value_head" in extra:
                self.value_head.load_state_dict(extra["value_head"])
        self.reference = None
        if cfg.kl_coef > 0 or cfg.uses_reward_model:  # the starting policy, frozen (KL term; the KL axis)
            from ponder.assets import base_model_path

            start = models.load(cfg.init or base_model_path(), device=self.device)[0] if resume else self.model
            self.reference = copy.deepcopy(start).eval().requires_grad_(False)
        if cfg.gradient_checkpointing:  # after the reference copy: a frozen model has no backward to save for
            enable_gradient_checkpointing(self.model)
        self.meter = FlopMeter.of(self.model, self.device, cfg.peak_tflops)
        params = list(self.model.parameters()) + (list(self.value_head.parameters()) if self.value_head else [])
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
        if resume:
            self.optimizer.load_state_dict(state["optimizer"])
        self.engine = Engine(self.model, self.tokenizer)
        self.sampler = rollout_sampler(cfg, self.model, self.tokenizer) or self.engine
        self.bad_steps = 0
        self.reward_models = load_reward_models(cfg.reward_terms, self.device)
        self.early_stop = GoldEarlyStop(
            cfg.early_stop, self.run_dir / "best", self.run_dir / "metrics.jsonl" if resume else None
        )
        # rollouts see injected faults; held-out evals see the tools as they are (the policy's skill)
        self.tools = tool_loop(cfg.tools, cfg.max_tool_calls, cfg.tool_fault_rate, seed=cfg.seed)
        self.eval_tools = tool_loop(cfg.tools, cfg.max_tool_calls)

    def save(self, step: int) -> None:
        extra = {"tokens_generated": self.tokens_generated}
        if self.value_head is not None:
            extra["value_head"] = self.value_head.state_dict()
        save_checkpoint(self.run_dir, self.model, self.tokenizer, self.optimizer, step, extra)

    def evaluate(self, step: int) -> dict:
        self.model.eval()
        report = evaluate(
            self.engine,
            self.eval_problems,
            SamplingParams(temperature=0, max_tokens=self.cfg.max_tokens),
            tools=self.eval_tools,
        )
        self.model.train()
        by_task = {name: round(t.accuracy, 4) for name, t in report.by_task.items()}
        record = {
            "step": step,
            "eval_accuracy": round(report.overall, 4),
            "eval_by_task": by_task,
            "rl_tokens": self.tokens_generated,
        }
        return record | (self.measure_proxy_and_gold(step) if self.reward_models else {})

    def measure_proxy_and_gold(self, step: int) -> dict:
        """Held-out proxy (the reward models), gold (the task's check) and KL to the start, at T = 1."""
        self.model.eval()
        try:
            proxy = mean_scorer(self.reward_models)
            cfg = self.cfg
            seed = cfg.seed * 100_003 + 50_000 + step
            return heldout_measure(
                self.engine, self.reference, self.eval_problems, proxy, cfg.gold_samples, cfg.max_tokens, seed
            )
        finally:
            self.model.train()

    def write_best_of_n(self) -> None:
        """best_of_n.json: best-of-n by the reward models from the starting policy, the other way of
        spending them, on the same held-out problems and the same sqrt(KL) axis as RL."""
        self.model.eval()
        try:
            cfg, proxy = self.cfg, mean_scorer(self.reward_models)
            points = best_of_n_curve(self.engine, self.eval_problems, proxy, cfg.best_of_n, cfg.max_tokens, cfg.seed)
        finally:
            self.model.train()
        atomic_write_json(self.run_dir / "best_of_n.json", {"points": points})


def train_rl(cfg: RLConfig, resume: bool = False, on_step: Callable[[dict], None] | None = None) -> Path:
    """Run RL; returns the final model directory. `on_step(metrics)` after every step and eval."""
    run = RLRun(cfg, resume)
    metrics_path = run.run_dir / "metrics.jsonl"

    def emit(record: dict) -> None:
        append_jsonl(metrics_path, record)
        if on_step:
            on_step(record)

    def save_policy(path: Path) -> Path:
        return models.save(run.model, run.tokenizer, path)

    if run.start == 0:
        first = run.evaluate(0)
        emit(first)
        run.early_stop.update(first, save_policy)
        if cfg.best_of_n and run.reward_models:
            run.write_best_of_n()
    for step in range(run.start, cfg.steps):
        emit(rl_step(run, step))
        done = step + 1
        if cfg.eval_every and done % cfg.eval_every == 0 or done == cfg.steps:
            record = run.evaluate(done)
            emit(record)
            if run.early_stop.update(record, save_policy):
                log.info("early stop at step %d: best held-out gold at step %s", done, run.early_stop.best_step)
                break
        if done % cfg.save_every == 0 or done == cfg.steps:
            run.save(done)
    if cfg.early_stop and run.early_stop.best_dir.is_dir():  # the best policy by the gold measure
        return models.save(models.load(run.early_stop.best_dir)[0], run.tokenizer, run.run_dir / "model")
    return models.save(run.model, run.tokenizer, run.run_dir / "model")


# ---------------------------------------------------------------------------------------------------


def rollout_sampler(cfg: RLConfig, model, tokenizer):
    """Ray rollout workers when asked for (`ponder.cluster.rollouts`), else None: the trainer's engine.
    The trainer itself is never restarted by Ray: it fails fast, and `--resume` continues. With
    `rollout_backend="vllm"`: vLLM on this GPU, following the trainer's weights (`VLLMSampler`)."""
    if cfg.rollout_backend == "vllm":
        from ponder.engine.vllm_backend import VLLMSampler, require_vllm

        require_vllm()
        return VLLMSampler.from_model(model, tokenizer)
    if cfg.rollout_workers < 1:
        return None
    from ponder.cluster.rollouts import RolloutPool

    return RolloutPool(model, tokenizer, cfg.rollout_workers, address=cfg.ray_address or None)


def draw_problems(run: RLRun, step: int):
    cfg = run.cfg
    problems = run.mix.problems("train", step * cfg.prompts_per_step, cfg.prompts_per_step, cfg.seed)
    if not cfg.curriculum:
        return problems
    # curriculum: the allowed top difficulty rises linearly from the easiest level to the hardest
    levels = sorted({c.difficulty for c in run.mix.cells})
    top = levels[min(len(levels) - 1, int(len(levels) * step / cfg.steps))]
    easy = [p for p in problems if p.difficulty <= top]
    return (easy * math.ceil(len(problems) / max(1, len(easy))))[: len(problems)] if easy else problems


def rl_step(run: RLRun, step: int) -> dict:
    cfg = run.cfg
    # 1-2) problems and rollouts
    t0 = time.perf_counter()
    problems = draw_problems(run, step)
    run.model.eval()
    params = SamplingParams(
        n=cfg.group_size,
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
        seed=cfg.seed * 100_003 + step,
    )
    groups = generate(run.sampler, [run.engine.format.prompt(p.prompt) for p in problems], params, run.tools)
    run.model.train()
    gen_s = time.perf_counter() - t0
    rollouts = [r for g in groups for r in g]
    run.tokens_generated += sum(r.num_tokens for r in rollouts)
    # 3) rewards
    scored = score(
        problems, groups, cfg.format_coef, cfg.max_tokens, cfg.overlong_cache, cfg.reward_terms, run.reward_models
    )
    if scored.errors:
        log.warning("step %d: %d verifier error(s), those samples scored 0", step + 1, scored.errors)
    keep, constant_groups = alg.dynamic_sampling_keep(scored.rewards, cfg.group_size)
    if not (cfg.dynamic_sampling or skips_constant_groups(cfg)):
        keep = torch.ones_like(keep)
    # 4-5) advantages and updates
    t1 = time.perf_counter()
    update, trained_tokens = {"skipped": True}, 0
    void = torch.tensor([void_turn(r) for r in rollouts], dtype=torch.bool)
    if keep.any() and not (cfg.drop_void_turns and void[keep].all()):
        batch = RolloutBatch.build([r for r, k in zip(rollouts, keep.tolist(), strict=True) if k], run.device)
        trained_tokens = int(batch.attention_mask.sum())
        if cfg.drop_void_turns:  # out of the loss, still in their group's baseline
            batch.mask[void[keep].to(run.device)] = 0
        update = policy_update(run, batch, scored.rewards[keep].to(run.device), step)
    train_s = time.perf_counter() - t1
    # 6) metrics
    lengths = torch.tensor([r.num_tokens for r in rollouts], dtype=torch.float)
    thinking = torch.tensor([r.thinking_tokens for r in rollouts], dtype=torch.float)
    new_tokens = int(lengths.sum())
    return {
        "step": step + 1,
        "total_steps": cfg.steps,
        "reward": round(scored.rewards.mean().item(), 4),
        "accuracy": round(scored.correct.mean().item(), 4),
        "response_len": round(lengths.mean().item(), 2),
        "thinking_len": round(thinking.mean().item(), 2),
        "self_correction": round(sum(bool(SELF_CORRECTION.search(r.text)) for r in rollouts) / len(rollouts), 4),
        "constant_groups": round(constant_groups, 4),
        "verifier_errors": scored.errors,
        **({"proxy": round(scored.proxy.mean().item(), 4)} if scored.proxy is not None else {}),
        **(tool_metrics(rollouts, void) if run.tools else {}),
        **update,
        "tokens": new_tokens,
        "rl_tokens": run.tokens_generated,
        "tokens_per_s": round(new_tokens / (gen_s + train_s), 1),
        "gen_s": round(gen_s, 3),
        "train_s": round(train_s, 3),
        **sampler_metrics(run, rollouts),
        **throughput_metrics(run, groups, new_tokens, gen_s, trained_tokens, train_s),
    }


def sampler_metrics(run: RLRun, rollouts) -> dict:
    """With another sampler: the newest policy version sampled and, where it times its weight push
    (Ray workers), the push's seconds (part of gen_s). With the importance correction on: the policy
    lag, the trainer's version minus the oldest sample's (0 when every sample came from the current
    weights, as the trainer's own engine's always do)."""
    if run.sampler is run.engine:
        return {"policy_lag": 0} if run.cfg.corrects_importance else {}
    versions = [r.policy_version for r in rollouts]
    metrics = {"policy_version": max(versions)}
    if hasattr(run.sampler, "last_push_s"):
        metrics["push_s"] = round(run.sampler.last_push_s, 3)
    if run.cfg.corrects_importance:
        metrics["policy_lag"] = run.sampler.version - min(versions)
    return metrics


def throughput_metrics(run: RLRun, groups, new_tokens: int, gen_s: float, trained_tokens: int, train_s: float) -> dict:
    """The tokens the update trained on (prompts included), the MFU of the step's generation (each
    prompt prefilled once per group, then every new token), of its update and of both
    (`flops.FlopMeter.rl`; none where no peak is known), and on a GPU its peak memory.

    The update's forward-equivalents per trained token: forward and backward (3) per epoch, and one
    no-grad forward each for the reference and for the trainer's own pass before the update (PPO's
    old values, the importance correction). Checkpointing's recompute is not model FLOPs: not counted."""
    gen_tokens = new_tokens + sum(len(g[0].prompt_ids) for g in groups if g)
    cfg = run.cfg
    before = run.value_head is not None or cfg.corrects_importance
    passes = 3 * cfg.epochs + (run.reference is not None) + before
    mfu = run.meter.rl(gen_tokens, gen_s, trained_tokens, passes, train_s)
    return {"trained_tokens": trained_tokens} | mfu | peak_memory_gib(run.device)


def void_turn(rollout) -> bool:
    """SimpleTIR's void turn: the model got a tool response, and the turn after it wrote neither a
    complete call (which would have paused it again) nor an answer."""
    parsed = rollout.parsed
    return rollout.tool_calls > 0 and not (parsed.closed_thinking and parsed.answer)


def tool_metrics(rollouts, void: torch.Tensor) -> dict:
    """Per step: tool calls per rollout, the share of calls that errored, timed out or were refused
    (past max_tool_calls), and the share of rollouts with a void turn."""
    statuses = [s for r in rollouts for s in r.tool_statuses]
    calls = max(1, len(statuses))
    return {
        "tool_calls": round(len(statuses) / len(rollouts), 4),
        "tool_errors": round(statuses.count("error") / calls, 4),
        "tool_timeouts": round(statuses.count("timeout") / calls, 4),
        "tool_refused": round(statuses.count("limit") / calls, 4),
        "void_turns": round(void.float().mean().item(), 4),
    }


def skips_constant_groups(cfg: RLConfig) -> bool:
    """Whether groups with all-equal rewards can be left out of the update at no cost.

    With a group baseline (GRPO, Dr. GRPO, RLOO, REINFORCE++-baseline) such a group has advantage 0
    on every token, so it adds no gradient; without a KL term it adds nothing at all. Leaving it
    out only changes the loss's averaging denominator, a rescaling Adam is invariant to. On a tiny
    model most groups are constant early on, so this is most of the backward pass saved."""
    group_baselined = cfg.spec["advantage"] in ("grpo", "dr_grpo", "rloo", "reinforce_pp_baseline")
    return group_baselined and cfg.kl_coef == 0


def advantages_for(run: RLRun, batch: RolloutBatch, rewards: torch.Tensor) -> torch.Tensor:
    name = run.cfg.spec["advantage"]
    if name == "gae":
        return batch.advantages  # computed in policy_update from the value head's old values
    return alg.ADVANTAGES[name](rewards, batch.mask, run.cfg.group_size)


def learning_rate(cfg: RLConfig, step: int) -> float:
    """Linear warm-up, then constant or a linear decay to 0 at the last step (TRL's default)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.lr_schedule == "linear":
        return cfg.lr * (cfg.steps - step) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr


def policy_update(run: RLRun, batch: RolloutBatch, rewards: torch.Tensor, step: int) -> dict:
    cfg = run.cfg
    lr = learning_rate(cfg, step)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    if run.reference is not None:  # under the update's autocast, so the KL compares like with like
        with torch.no_grad(), autocast_context(cfg.autocast, run.device):
            batch.ref_logprobs = token_logprobs(run.reference, batch, cfg.temperature).logprobs
    # one no-grad pass of the trainer over the batch serves both the value head and the correction
    before = trainer_pass(run, batch) if run.value_head is not None or cfg.corrects_importance else None
    if run.value_head is not None:
        with torch.no_grad():
            old_values = run.value_head(before.hidden)
        per_token = alg.place_on_last_token(rewards, batch.mask)
        batch.advantages, batch.returns = alg.gae(per_token, old_values, batch.mask, 1.0, cfg.gae_lambda)
        batch.old_values = old_values
    mismatch = correct_importance(run, batch, before.logprobs) if cfg.corrects_importance else {}
    advantages = advantages_for(run, batch, rewards)
    stats: dict[str, list[float]] = {}
    for _ in range(cfg.epochs):
        for rows in batch.minibatches(cfg.minibatches):
            for k, v in minibatch_update(run, batch, advantages, rows).items():
                stats.setdefault(k, []).append(v)
    return {k: round(sum(v) / len(v), 5) for k, v in stats.items()} | mismatch | {"lr": lr}


def trainer_pass(run: RLRun, batch: RolloutBatch):
    """The trainer's log-probs (and hidden states) of the batch before any update, computed as the
    update computes them (same autocast), so an on-policy ratio starts at exactly 1."""
    with torch.no_grad(), autocast_context(run.cfg.autocast, run.device):
        return token_logprobs(run.model, batch, run.cfg.temperature)


def correct_importance(run: RLRun, batch: RolloutBatch, trainer_logprobs: torch.Tensor) -> dict:
    """Truncated importance sampling for rollouts another engine sampled: the trainer's own log-probs
    become the PPO "old" policy (the clip then measures the update alone, not the engines' mismatch)
    and each token's term is weighted by min(trainer / sampler, tis_cap). Returns the mismatch stats."""
    batch.is_weights, stats = alg.truncated_importance_weights(
        trainer_logprobs, batch.old_logprobs, batch.mask, run.cfg.tis_cap
    )
    batch.old_logprobs = trainer_logprobs.detach().float()
    return {name: float(value) for name, value in stats.items()}


def minibatch_update(run: RLRun, batch: RolloutBatch, advantages: torch.Tensor, rows: torch.Tensor) -> dict:
    cfg = run.cfg
    mb = batch.select(rows)
    with autocast_context(cfg.autocast, run.device):
        out = token_logprobs(run.model, mb, cfg.temperature, with_entropy=True)
    loss, stats = alg.policy_loss(
        out.logprobs,
        mb.old_logprobs,
        advantages.index_select(0, rows),
        mb.mask,
        eps_low=cfg.eps_low,
        eps_high=cfg.eps_high,
        agg=cfg.spec["agg"],
        max_tokens=cfg.max_tokens,
        ref_logprobs=mb.ref_logprobs,
        kl_coef=cfg.kl_coef,
        kl_kind=cfg.kl_estimator,
        is_weights=mb.is_weights,
    )
    if run.value_head is not None:
        v_loss, v_stats = alg.value_loss(run.value_head(out.hidden), mb.old_values, mb.returns, mb.mask)
        loss = loss + cfg.vf_coef * v_loss
        stats = stats | {"value_loss": v_loss.detach(), "value_clip_frac": v_stats["clip_frac"]}
    if not torch.isfinite(loss):
        return skip_bad_update(run, loss)
    run.bad_steps = 0
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for g in run.optimizer.param_groups for p in g["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
    run.optimizer.step()
    result = {k: float(v) for k, v in stats.items()}
    return result | {"loss": loss.item(), "grad_norm": float(grad_norm), "entropy": float(out.entropy)}


def skip_bad_update(run: RLRun, loss: torch.Tensor) -> dict:
    run.bad_steps += 1
    log.warning("non-finite loss (%s): update skipped (%d in a row)", loss.item(), run.bad_steps)
    if run.bad_steps >= run.cfg.max_bad_steps:
        raise PonderError(
            f"{run.bad_steps} non-finite losses in a row: training diverged. Lower --lr (now {run.cfg.lr}), "
            f"raise --grad-clip, or --resume from the last checkpoint in {run.run_dir}"
        )
    run.optimizer.zero_grad(set_to_none=True)
    return {"skipped_updates": 1.0}

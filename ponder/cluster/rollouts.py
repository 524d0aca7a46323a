"""Generation spread over Ray actors: `ponder rl --rollout-workers N [--ray-address ADDR]`.

    pool = RolloutPool(model, tokenizer, workers=2)           # a local Ray, or an existing cluster
    groups = pool.generate(prompts, SamplingParams(n=8))      # like Engine.generate
    groups[i][j].policy_version                               # the weights each sample came from

In OpenRLHF about 80% of RL time is generation, so generation is what spreads out first. Each worker
is a Ray actor with its own `Engine` on its own copy of the model. Before a round of generation the
trainer's weights go out once through the object store when they changed (an optimizer step bumps
the parameters' version counters), each worker takes them with `Engine.load_weights`, and every
sample is stamped with the version it came from. The prompts of a round are split into one
contiguous shard per worker.

Failure, as verl and OpenRLHF handle it: rollout workers hold no state worth saving, so a worker that
dies (or does not answer within `timeout_s`) is replaced by a fresh actor, which gets the current
weights, and its shard is drawn again; the dead worker's last log lines are shown. Ray never
restarts anything by itself (`max_restarts=0`): the trainer is never restarted by Ray, it fails
fast, and `ponder rl --resume` continues from its last checkpoint.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections import deque

import torch

from ponder.engine import Rollout, SamplingParams
from ponder.engine.chat_format import encode_prompt
from ponder.errors import PonderError

log = logging.getLogger(__name__)
LOG_LINES = 20  # a worker's last log lines kept for the error report


def _ray():
    try:
        import ray
    except ImportError as e:
        raise PonderError("rollout workers need Ray: pip install 'ponder[ray]' (ray>=2.40)") from e
    return ray


class _Worker:
    """One rollout worker: an Engine on a model built from the trainer's config and tokenizer."""

    def __init__(self, model_bytes: bytes, threads: int):
        torch.set_num_threads(threads)
        from ponder.engine import Engine

        model, tokenizer = torch.load(io.BytesIO(model_bytes), weights_only=False)
        self.engine = Engine(model.eval(), tokenizer)
        self.version = -1
        self.lines: deque[str] = deque(maxlen=LOG_LINES)
        self.lines.append(f"worker pid {os.getpid()} ready ({self.engine.backend})")

    def load_weights(self, state_dict: dict, version: int) -> int:
        self.engine.load_weights(state_dict)
        self.version = version
        self.lines.append(f"weights version {version} loaded")
        return version

    def generate(self, prompts: list[list[int]], params: SamplingParams, first_index: int) -> list[list[Rollout]]:
        self.lines.append(f"generating {len(prompts)} prompts x {params.n} at version {self.version}")
        groups = self.engine.generate(prompts, params)
        for i, group in enumerate(groups):
            for r in group:
                r.prompt_index = first_index + i
                r.policy_version = self.version
        return groups

    def pid(self) -> int:
        return os.getpid()

    def logs(self) -> list[str]:
        return list(self.lines)


class RolloutPool:
    def __init__(
        self,
        model,
        tokenizer,
        workers: int,
        address: str | None = None,
        timeout_s: float = 300.0,
        threads_per_worker: int = 1,
    ):
        if workers < 1:
            raise PonderError(f"rollout workers must be >= 1, got {workers}")
        self.ray = _ray()
        if not self.ray.is_initialized():
            self.ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        self.model, self.tokenizer = model, tokenizer
        self.timeout_s = timeout_s
        self.threads = threads_per_worker
        self.actor_class = self.ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)(_Worker)
        self.version = 0
        self.pushed = None  # the parameter versions last pushed
        self.replaced = 0  # workers replaced after a failure
        self.last_push_s = 0.0  # seconds the last `push` took (0 when the weights had not changed)
        self.workers = [self._start() for _ in range(workers)]
        self.format = _local_format(tokenizer, model)

    # --- weights ------------------------------------------------------------------------------------

    def _start(self):
        buffer = io.BytesIO()
        torch.save((self.model, self.tokenizer), buffer)
        actor = self.actor_class.remote(buffer.getvalue(), self.threads)
        if self.pushed is not None:  # a replacement gets the current weights before any work
            self.ray.get(actor.load_weights.remote(self._state_ref, self.version), timeout=self.timeout_s)
        return actor

    def push(self) -> None:
        """Send the trainer's weights to every worker if they changed since the last push."""
        started = time.perf_counter()
        self.last_push_s = 0.0
        versions = tuple(p._version for p in self.model.parameters())
        if versions == self.pushed:
            return
        self.version += 1
        state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        self._state_ref = self.ray.put(state)  # one copy in the object store, read by every worker
        self.pushed = versions
        refs = [w.load_weights.remote(self._state_ref, self.version) for w in self.workers]
        for index, ref in enumerate(refs):
            try:
                self.ray.get(ref, timeout=self.timeout_s)
            except (self.ray.exceptions.RayError, TimeoutError) as e:  # dead or silent: replace it
                self._replace(index, e)
        self.last_push_s = time.perf_counter() - started

    # --- generation ---------------------------------------------------------------------------------

    def generate(self, prompts, params: SamplingParams | None = None, progress=None, on_tool_call=None):
        """`Engine.generate` across the workers: the same groups, in prompt order, each rollout stamped
        with `policy_version`. A worker that fails is replaced and its shard drawn again."""
        if on_tool_call is not None or (params is not None and params.tools):
            raise PonderError("tools with rollout workers are not supported yet: run without --rollout-workers")
        params = params or SamplingParams()
        self.push()
        ids = [encode_prompt(self.format.tokenizer, p) for p in prompts]
        shards = _shards(len(ids), len(self.workers))
        groups: list[list[Rollout]] = [None] * len(ids)  # type: ignore[list-item]
        for _attempt in range(3):
            pending = {
                self.workers[w].generate.remote(ids[a:b], _seeded(params, a), a): (w, a, b)
                for w, (a, b) in enumerate(shards)
                if a < b and groups[a] is None
            }
            if not pending:
                break
            done, late = self.ray.wait(list(pending), num_returns=len(pending), timeout=self.timeout_s)
            for ref in done:
                w, a, b = pending[ref]
                try:
                    groups[a:b] = self.ray.get(ref)
                    if progress:
                        progress((b - a) * params.n)
                except (self.ray.exceptions.RayError, TimeoutError) as e:
                    self._replace(w, e)
            for ref in late:
                self._replace(pending[ref][0], TimeoutError(f"no answer within {self.timeout_s:.0f} s"))
        if any(g is None for g in groups):
            raise PonderError("rollout workers kept failing (3 attempts): see the log lines above; --resume continues")
        return groups

    def _replace(self, index: int, error: Exception) -> None:
        """A dead or silent worker: show its last lines, start a fresh one with the current weights."""
        old = self.workers[index]
        try:
            lines = self.ray.get(old.logs.remote(), timeout=5)
        except Exception:  # it is dead: its lines died with it
            lines = ["(the worker is gone; its last lines are lost)"]
        log.warning("rollout worker %d failed (%s); last lines:\n  %s", index, error, "\n  ".join(lines))
        self.ray.kill(old, no_restart=True)
        self.workers[index] = self._start()
        self.replaced += 1

    def pids(self) -> list[int]:
        return self.ray.get([w.pid.remote() for w in self.workers], timeout=self.timeout_s)

    def close(self) -> None:
        for w in self.workers:
            self.ray.kill(w, no_restart=True)
        self.workers = []


def _shards(n: int, k: int) -> list[tuple[int, int]]:
    """k contiguous (start, end) ranges covering n items, sizes differing by at most one."""
    base, extra = divmod(n, k)
    bounds, start = [], 0
    for i in range(k):
        end = start + base + (i < extra)
        bounds.append((start, end))
        start = end
    return bounds


def _seeded(params: SamplingParams, first_index: int) -> SamplingParams:
    """A shard's params: its own seed, so shards do not repeat each other's draws."""
    seed = None if params.seed is None else params.seed * 1_000_003 + first_index
    return SamplingParams(**{**vars(params), "seed": seed})


def _local_format(tokenizer, model):
    from ponder.engine.chat_format import ChatFormat
    from ponder.engine.engine import _model_end_ids

    return ChatFormat(tokenizer, end_ids=_model_end_ids(model))

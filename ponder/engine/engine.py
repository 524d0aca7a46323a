"""The sampling engine: one model, its chat format, a backend, and `generate` for evals, RL and
test-time compute.

    engine = Engine(model, tokenizer)
    prompt = engine.format.prompt("What is 2+3?")          # the model's own chat template
    groups = engine.generate([prompt], SamplingParams(n=8, temperature=1.0, max_tokens=128))
    groups[i][j]  # the j-th of n Rollouts for prompt i: tokens, log-probs, loss mask, text, parse

`generate` is "add the requests, step until done" on the one decode loop (`live.LiveBatch`): the
n samples of a prompt share one prefill, finished rows free their KV slots for the next waiting
request, and every sequence samples from its own seeded stream. The backend is chosen by itself:
the lean runner (`runner.py`) for the Llama family, the model's own forward (`hf_runner.py`) for
any other causal LM; `engine.backend` names it. The engine reads the model's live parameters
(fused once per weight version), so the RL loop needs no weight copy; pushing weights to another
process is `load_weights` there.

Rows at once: `max_batch` (default 256 on a CPU, 1024 on a GPU); on a GPU each `generate` also
caps them to what fits in the free memory for its sequences' length (`budget.py`, logged when the
number changes); the rest wait in the batch's queue and join as rows finish.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import torch

from ponder.engine.budget import KVShape, cuda_free_bytes, default_max_batch, rows_that_fit
from ponder.engine.chat_format import ChatFormat, encode_prompt
from ponder.engine.hf_runner import HFRunner
from ponder.engine.live import LiveBatch
from ponder.engine.runner import SUPPORTED, LlamaRunner
from ponder.engine.sampling import SamplingParams
from ponder.engine.sequence import Rollout
from ponder.errors import PonderError

log = logging.getLogger(__name__)
TOOL_WORKERS = 8  # tool calls that may run at once while the batch decodes


class Engine:
    def __init__(self, model, tokenizer, max_batch: int | None = None, backend: str = "auto"):
        self.model = model
        self.tokenizer = tokenizer
        self.format = ChatFormat(tokenizer, end_ids=_model_end_ids(model))
        self.runner = _choose_backend(model, backend)
        self.max_batch = max_batch or default_max_batch(self.device)
        self.kv_shape = KVShape.of(model)
        self._sized: tuple[int, int] | None = None  # the last (rows, length) logged
        log.info("engine backend: %s", self.runner.name)

    @property
    def backend(self) -> str:
        return self.runner.name

    @property
    def end_ids(self) -> set[int]:
        return self.format.end_ids

    @property
    def device(self):
        return self.runner.device

    def rows_for(self, length: int) -> int:
        """How many sequences of up to `length` tokens decode at once: `max_batch`, and on a GPU no
        more than the KV cache for them fits in the free memory now (`budget.rows_that_fit`)."""
        if self.device.type != "cuda":
            return self.max_batch
        free = cuda_free_bytes(self.device)
        rows = rows_that_fit(free, self.kv_shape, length, self.max_batch)
        if self._sized != (rows, length):
            self._sized = (rows, length)
            cache = rows * self.kv_shape.bytes_per_row(length) / 2**30
            log.info(
                "KV cache sized to the device: %d rows x %d tokens (%.2f GiB) of %.2f GiB free (limit %d)",
                rows, length, cache, free / 2**30, self.max_batch,
            )  # fmt: skip
        return rows

    def encode(self, prompt: str | list[int], allow_empty: bool = False) -> list[int]:
        return encode_prompt(self.tokenizer, prompt, allow_empty)

    @torch.no_grad()
    def load_weights(self, state_dict) -> None:
        """Take new weights, e.g. pushed by a trainer in another process (a `state_dict` sent over
        any transport): copied into the model in place, so the next `generate` samples from them
        (the fused tensors follow the new weight version). Names and shapes must be the model's own."""
        own = self.model.state_dict()
        unknown = sorted(set(state_dict) - set(own))
        missing = sorted(set(own) - set(state_dict) - _tied_names(self.model))
        wrong = sorted(k for k, v in state_dict.items() if k in own and tuple(v.shape) != tuple(own[k].shape))
        if unknown or missing or wrong:
            raise PonderError(
                "these weights do not fit this model: "
                + "; ".join(f"{what}: {', '.join(names[:4])}" for what, names in
                            (("unknown", unknown), ("missing", missing), ("wrong shape", wrong)) if names)
                + ". Push the state_dict of a model with the same config."
            )  # fmt: skip
        self.model.load_state_dict(state_dict, strict=False)
        self.runner.refresh()

    def generate(
        self,
        prompts: Sequence[str] | Sequence[list[int]],
        params: SamplingParams | None = None,
        progress: Callable[[int], None] | None = None,
        on_tool_call: Callable[[Rollout], str] | None = None,
    ) -> list[list[Rollout]]:
        """`params.n` rollouts for each prompt (token ids, or text already in the chat format).

        `progress(k)` is called as k more sequences finish. With `params.tools`, a sequence that
        closes a tool call pauses and `on_tool_call(rollout)` (a `tools.loop.ToolLoop`) runs in a
        worker thread while the others decode; its text is written for the model and it resumes."""
        if params is not None and params.tools and on_tool_call is None:
            raise PonderError("params.tools is on but no on_tool_call was given: pass a ponder.tools.loop.ToolLoop")
        params = params or SamplingParams()
        seed = params.seed if params.seed is not None else random.randrange(2**62)
        one = SamplingParams(**{**vars(params), "n": 1, "seed": seed})
        ids = [self.encode(p) for p in prompts]
        capacity = max(map(len, ids), default=1) + params.max_tokens + 1
        batch = LiveBatch(self, one, max_batch=self.rows_for(capacity))
        batch.reserve(len(ids) * params.n, capacity)
        for i, prompt in enumerate(ids):
            for j in range(params.n):
                batch.add(prompt, request_id=(i, j), prompt_index=i, sample_index=j)
        done: dict[tuple[int, int], Rollout] = {}
        with ThreadPoolExecutor(TOOL_WORKERS, thread_name_prefix="ponder-tool") as tools:
            running: dict[tuple[int, int], Future] = {}
            while not batch.idle or running:
                if batch.idle:  # everyone left is waiting for a tool
                    wait(running.values(), return_when=FIRST_COMPLETED)
                events = batch.step()
                finished = [e for e in events if e.kind == "finished"]
                done.update((e.request, e.rollout) for e in finished)
                running.update((e.request, tools.submit(on_tool_call, e.rollout)) for e in events if e.kind == "paused")
                for request in [r for r, f in running.items() if f.done()]:
                    batch.resume(request, running.pop(request).result())
                if progress and finished:
                    progress(len(finished))
        return [[done[(i, j)] for j in range(params.n)] for i in range(len(ids))]


def _choose_backend(model, backend: str):
    """The lean runner for the Llama family; the model's own forward for anything else."""
    hf = model.get_base_model() if hasattr(model, "get_base_model") else model
    model_type = getattr(hf.config, "model_type", "?")
    if backend not in ("auto", "lean", "hf"):
        raise PonderError(f"backend must be auto, lean or hf, got {backend!r}")
    if backend == "lean" and model_type not in SUPPORTED:
        raise PonderError(
            f"the lean runner runs the Llama family {SUPPORTED}; this checkpoint is {model_type!r}. "
            "Use backend='auto' (the model's own forward) for other architectures."
        )
    if backend == "hf" or (backend == "auto" and model_type not in SUPPORTED):
        return HFRunner(model)
    return LlamaRunner(model)


def _tied_names(model) -> set[str]:
    """Weights that are another weight under a second name (tied embeddings): not required."""
    tied = getattr(model, "_tied_weights_keys", None) or {}
    return set(tied if not isinstance(tied, dict) else tied.keys())


def _model_end_ids(model) -> set[int]:
    config = getattr(model, "generation_config", None)
    source = getattr(config, "eos_token_id", None)
    if source is None:
        return set()
    return {source} if isinstance(source, int) else set(source)

"""The optional vLLM generation backend (`pip install 'ponder[vllm]'` on a machine with an NVIDIA GPU):
the same two interfaces as ponder's engine, over vLLM's continuous batching and paged KV cache.

    client = VLLMEngineClient.from_pretrained("runs/rl/model")       # `ponder serve --backend vllm`
    async for delta in client.generate(prompt_ids, SamplingParams(max_tokens=256, seed=7)): ...

    sampler = VLLMSampler.from_model(model, tokenizer)               # `ponder rl --rollout-backend vllm`
    groups = sampler.generate(prompts, SamplingParams(n=8))          # like Engine.generate
    sampler.load_weights(model.state_dict(), version=3)              # the trainer's weights, stamped

vLLM only chooses tokens; ponder reads them. Every token id and log-prob comes from vLLM's output
(never re-tokenized text), and runs through ponder's own `Sequence`, so the thinking phase, its token
count, stop strings, the end token and the parse are ponder's, as on the native engine. The controls
vLLM has no rule for (thinking budgets, "wait," below the minimum, thinking on) are ponder's forced
tokens: a request is decoded in segments, and where ponder forces a token, vLLM's segment is cut
there, the forced tokens are written (mask 0), and the next segment continues from prompt + all
tokens so far (vLLM's prefix cache holds the shared prefix, so only the new tokens are prefilled). A
plain request is one segment. Thinking on bans the end of thinking for one token (a one-token
segment with those tokens biased to -100, OpenAI's value for a ban).

Log-probs: the engine is started with `logprobs_mode="processed_logprobs"`, the distribution after
temperature, as ponder's engine records it (the behaviour policy of an RL update). Where top-k or
top-p truncate, vLLM's value is renormalised over the kept tokens and ponder's is not.

Not supported here: tool calls inside the thinking (`params.tools`: the pause and resume of ponder's
decode loop), which raise a PonderError. The API targeted is vLLM's V1 engine (`AsyncLLM`,
`AsyncEngineArgs`, `TokensPrompt`, `SamplingParams` with `output_kind=DELTA`, `collective_rpc` with a
`worker_extension_cls`), from 0.19.1 on, the first release that allows transformers 5.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import random
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ponder.engine.chat_format import ChatFormat, Phase, encode_prompt
from ponder.engine.client import Delta, DeltaCursor, QueueFull, next_delta, read_deltas
from ponder.engine.sampling import SamplingParams, mix_seed
from ponder.engine.sequence import Sequence
from ponder.errors import PonderError

VLLM_MISSING = "vLLM is not installed: pip install 'ponder[vllm]' on a machine with an NVIDIA GPU"
NO_GPU = "vLLM needs a CUDA GPU; none found (torch.cuda.is_available() is False)"
NO_TOOLS = (
    "tool calls are not supported on the vLLM backend (it cannot pause a sequence for a tool and resume it): "
    "use the ponder backend for tools"
)
BAN = -100.0  # logit bias that bans a token (OpenAI's documented value for a ban; ponder's engine uses -inf)
NO_SAMPLE = -1  # "no token sampled yet": asks a Sequence what it would force regardless of the sample
WORKER_EXTENSION = "ponder.engine.vllm_backend.WeightReceiver"
RL_GPU_SHARE = 0.3  # of the GPU's memory for vLLM when it shares the GPU with the trainer


def vllm_installed() -> bool:
    """Whether the vllm package can be imported (found without importing it: that takes seconds)."""
    return importlib.util.find_spec("vllm") is not None


def vllm_missing_reason() -> str | None:
    """Why the vLLM backend cannot run here (not installed, no CUDA GPU), or None when it can."""
    if not vllm_installed():
        return VLLM_MISSING
    if not torch.cuda.is_available():
        return NO_GPU
    return None


def require_vllm() -> None:
    """Raise a PonderError naming what is missing before anything loads."""
    reason = vllm_missing_reason()
    if reason is not None:
        raise PonderError(reason)


def refuse_tools(params: SamplingParams) -> None:
    if params.tools:
        raise PonderError(NO_TOOLS)


# --- ponder's SamplingParams as vLLM's -------------------------------------------------------------


def vllm_sampling_kwargs(
    params: SamplingParams,
    seed: int,
    end_ids: set[int],
    max_tokens: int | None = None,
    banned: tuple[int, ...] = (),
    stop_ids: tuple[int, ...] = (),
) -> dict:
    """The keyword arguments of `vllm.SamplingParams` for one sample (one segment) of a ponder request.

    One sample each: ponder's n samples are n requests with their own seeds (`mix_seed`), as on its
    own engine. `logprobs=0` returns the chosen token's log-prob only. The end ids stop it as they
    stop ponder's engine (the tokenizer's and the generation config's). `banned` tokens are biased
    out; `stop_ids` end the segment early where ponder may replace the token (a close below the
    thinking minimum)."""
    kwargs = {
        "n": 1,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_tokens if max_tokens is None else max_tokens,
        "seed": seed,
        "logprobs": 0,
        "stop_token_ids": sorted(set(end_ids) | set(stop_ids)),
    }
    if params.top_k > 0:  # ponder's 0 (off) is vLLM's default; leaving it out suits every version
        kwargs["top_k"] = params.top_k
    if params.stop:
        kwargs["stop"] = list(params.stop)
    if banned:
        kwargs["logit_bias"] = {int(t): BAN for t in banned}
    return kwargs


def vllm_request(prompt_ids: list[int], kwargs: dict):
    """(prompt, sampling params) as vLLM's `generate` takes them; outputs arrive as deltas."""
    from vllm.inputs import TokensPrompt
    from vllm.sampling_params import RequestOutputKind
    from vllm.sampling_params import SamplingParams as VLLMSamplingParams

    return TokensPrompt(prompt_token_ids=list(prompt_ids)), VLLMSamplingParams(
        **kwargs, output_kind=RequestOutputKind.DELTA
    )


# --- ponder's controls over vLLM's tokens ----------------------------------------------------------


def settle(seq: Sequence) -> bool:
    """After a token: finish the sequence if a rule ends it (end token, stop string, max_tokens)."""
    if seq.outcome() == "finished":
        seq.finish()
        return True
    return False


def write_forced(seq: Sequence) -> bool:
    """Write the tokens ponder forces before the next sample (thinking on's opening marker, the budget's
    close, the rest of a "wait,"), mask 0. True if it wrote any."""
    wrote = False
    while seq.status != "finished":
        token, _, sampled = seq.choose(NO_SAMPLE, 0.0)
        if sampled:  # nothing forced: the next token is vLLM's to choose
            return wrote
        seq.write(token, 0.0, False)
        wrote = True
        settle(seq)
    return wrote


def replay(seq: Sequence, token_ids: list[int], logprobs: list[float]) -> bool:
    """Write the tokens vLLM chose through ponder's rules; True once the segment must end here: the
    sequence finished, or ponder replaced vLLM's token (what vLLM wrote after it is void)."""
    for sampled, logprob in zip(token_ids, logprobs, strict=True):
        token, logprob, written = seq.choose(sampled, logprob)
        seq.write(token, logprob, written)
        if settle(seq) or not written:
            return True
    return False


def segment_limits(seq: Sequence) -> dict:
    """How far vLLM may decode before ponder must look again: up to where a thinking budget could
    close the thinking; one token while thinking on bans the close; a close below the minimum stops."""
    params, fmt, r = seq.params, seq.fmt, seq.rollout
    limits: dict = {"max_tokens": params.max_tokens - seq.steps}
    if seq.must_think:
        limits["max_tokens"] = 1
        limits["banned"] = (fmt.newline[0], fmt.think_close[0], *sorted(fmt.end_ids))
        return limits
    if params.max_thinking_tokens is not None and seq.phase != Phase.ANSWER:
        room = params.max_thinking_tokens - len(fmt.newline) - r.thinking_tokens
        limits["max_tokens"] = max(1, min(limits["max_tokens"], room))
    if seq.phase == Phase.THINKING and r.thinking_tokens < params.min_thinking_tokens:
        limits["stop_ids"] = (fmt.think_close[0],)
    return limits


def token_logprobs(completion) -> list[float]:
    """The chosen tokens' log-probs from a vLLM `CompletionOutput` (one {token: Logprob} per token)."""
    entries = completion.logprobs or []
    if len(entries) != len(completion.token_ids):
        raise PonderError(
            f"vLLM returned {len(entries)} log-probs for {len(completion.token_ids)} tokens: the request asks "
            "for logprobs=0; is this vLLM release supported (>= 0.19.1)?"
        )
    return [float(entry[token].logprob) for entry, token in zip(entries, completion.token_ids, strict=True)]


async def drive(llm, to_vllm: Callable, seq: Sequence, request_id: str) -> AsyncIterator[None]:
    """Decode one sequence on vLLM, segment by segment; yields whenever its rollout grew. Closing it
    (or cancelling its task) closes vLLM's stream, which aborts the vLLM request."""
    for segment in itertools.count():
        if seq.status == "finished":
            return
        if write_forced(seq):
            yield
            continue
        limits = segment_limits(seq)
        kwargs = vllm_sampling_kwargs(seq.params, mix_seed(seq.seed, seq.steps), seq.fmt.end_ids, **limits)
        ids = seq.rollout.prompt_ids + seq.rollout.token_ids
        stream = llm.generate(*to_vllm(ids, kwargs), f"{request_id}.{segment}")
        ended_by_vllm = None
        try:
            async for out in stream:
                completion = out.outputs[0]
                cut = replay(seq, list(completion.token_ids), token_logprobs(completion))
                yield
                if cut:
                    break
                if out.finished:
                    ended_by_vllm = completion.finish_reason
        finally:
            await stream.aclose()
        if seq.status != "finished" and vllm_ended_it(ended_by_vllm, seq, limits):
            seq.finish(ended_by_vllm)


def vllm_ended_it(finish_reason: str | None, seq: Sequence, limits: dict) -> bool:
    """Whether vLLM ended the request for a reason ponder's rules did not see (a stop string its check
    missed, an abort), rather than at the segment's own bound (its length, a close below the minimum
    that ponder has let stand: the thinking reached it in this segment)."""
    if finish_reason == "abort":
        return True
    segment_stop = bool(seq.rollout.token_ids) and seq.rollout.token_ids[-1] in limits.get("stop_ids", ())
    return finish_reason == "stop" and not segment_stop


# --- the server's engine client --------------------------------------------------------------------


@dataclass
class _Request(DeltaCursor):
    seq: Sequence | None = None
    task: asyncio.Task | None = None
    deltas: asyncio.Queue = field(default_factory=asyncio.Queue)
    aborted: bool = False
    streaming: bool = True  # False: only the last delta


class VLLMEngineClient:
    """`AsyncEngineClient`'s interface over vLLM's `AsyncLLM`: `generate` yields the same `Delta`s
    (text by channel through ponder's chat format, finish reason, usage and the rollout last),
    `abort`, `QueueFull`, `format`, `thinking_tokens`, `close`. Runs on the server's event loop,
    where vLLM's own OpenAI server runs it too."""

    def __init__(
        self, llm, fmt: ChatFormat, max_batch: int = 64, max_waiting: int = 256, to_vllm=vllm_request, config=None
    ):
        self.llm = llm
        self.format = fmt
        self.config = config  # the model's Hugging Face config (its context length)
        self.max_requests = max_batch + max_waiting  # running plus waiting in vLLM's scheduler
        self.to_vllm = to_vllm
        self.requests: dict[str, _Request] = {}
        self.ids = itertools.count()
        self.closed = False

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, max_batch: int = 64, max_waiting: int = 256, **engine_args):
        """A vLLM engine on a Hugging Face model directory (what `ponder serve --backend vllm` loads)."""
        require_vllm()
        tokenizer, config, end_ids = read_checkpoint(model_dir)
        llm = start_async_llm(model_dir, max_num_seqs=max_batch, **engine_args)
        return cls(llm, ChatFormat(tokenizer, end_ids=end_ids), max_batch, max_waiting, config=config)

    async def generate(
        self,
        prompt: str | list[int],
        params: SamplingParams,
        request_id: str | None = None,
        sample_index: int = 0,
        deltas: bool = True,
    ) -> AsyncIterator[Delta]:
        """Token deltas of one request, the last one with finish_reason, usage and the rollout. n samples
        of one prompt: call it n times with sample_index 0..n-1 (their seeds differ). `deltas=False`
        yields only the last delta, for a consumer that does not stream."""
        if self.closed:
            raise PonderError("the engine client is closed")
        refuse_tools(params)
        if len(self.requests) >= self.max_requests:
            raise QueueFull(f"{self.max_requests} requests are already running or waiting; retry later")
        request_id = request_id or f"req-{next(self.ids)}"
        seed = params.seed if params.seed is not None else random.randrange(2**62)
        seq = Sequence(request_id, encode_prompt(self.format.tokenizer, prompt), params, self.format,
                       mix_seed(seed, 0, sample_index))  # fmt: skip
        request = _Request(seq=seq, streaming=deltas)
        self.requests[request_id] = request
        request.task = asyncio.ensure_future(self._pump(request_id, request))
        try:  # a consumer that stops reading stops the decoding
            async with aclosing(read_deltas(request.deltas, on_stop=request.task.cancel)) as stream:
                async for delta in stream:
                    yield delta
        finally:
            self.requests.pop(request_id, None)

    async def _pump(self, request_id: str, request: _Request) -> None:
        """Decode one request and queue its deltas; an abort ends it with finish_reason "abort"."""
        seq = request.seq
        try:
            async for _ in drive(self.llm, self.to_vllm, seq, request_id):
                # a finished sequence's last tokens go out with its final text (end token dropped, cut at
                # a stop string), as on ponder's engine; the generator is run to its end, never left open
                grew = len(seq.rollout.token_ids) > request.sent_tokens
                if request.streaming and grew and seq.status != "finished":
                    request.deltas.put_nowait(next_delta(self.format, request_id, request, seq.rollout, False))
        except asyncio.CancelledError:
            if not request.aborted:
                raise
            seq.finish("abort")
        except Exception as e:  # vLLM failed on this request: the server answers it as a server fault
            request.deltas.put_nowait(PonderError(f"the vLLM engine failed while decoding: {e}"))
            return
        request.deltas.put_nowait(next_delta(self.format, request_id, request, seq.rollout, True))

    async def abort(self, request_id: str) -> None:
        """End a running request now; its last delta says finish_reason "abort"."""
        request = self.requests.get(request_id)
        if request is not None and request.task is not None and not request.task.done():
            request.aborted = True
            request.task.cancel()

    def thinking_tokens(self, request_id: str) -> int | None:
        """Thinking tokens a running request has written so far; None once it has finished."""
        request = self.requests.get(request_id)
        if request is None or request.seq.status == "finished":
            return None
        return request.seq.rollout.thinking_tokens

    def close(self) -> None:
        """Stop vLLM (called from a worker thread at the server's shutdown, when no request is left: a
        request still running there fails with vLLM's engine-dead error, as a server fault)."""
        self.closed = True
        self.llm.shutdown()


# --- RL rollouts -----------------------------------------------------------------------------------


class WeightReceiver:
    """Mixed into vLLM's GPU worker (`worker_extension_cls`), as vLLM's RLHF examples do: new
    weights, named as in the Hugging Face checkpoint, go through the model's own `load_weights`
    (which fuses q/k/v and gate/up as vLLM stores them)."""

    def ponder_load_weights(self, named_tensors: list[tuple[str, torch.Tensor]]) -> int:
        self.model_runner.model.load_weights(weights=named_tensors)
        return len(named_tensors)


class _LoopThread:
    """An event loop in a thread of its own: vLLM's AsyncLLM lives on one loop, and the trainer's
    `generate` calls are synchronous."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ponder-vllm", daemon=True)
        self.thread.start()

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


class VLLMSampler:
    """`Engine.generate` for RL rollouts on vLLM: `generate(prompts, params) -> list[list[Rollout]]`,
    token ids and log-probs as vLLM chose them, each rollout stamped with the weights' `policy_version`.
    Built `from_model`, it follows that (trainer's) model: before a round of generation its weights are
    pushed when they changed since the last push, as the Ray rollout workers do."""

    def __init__(self, llm, fmt: ChatFormat, model=None, to_vllm=vllm_request, loop: _LoopThread | None = None):
        self.llm = llm
        self.format = fmt
        self.model = model
        self.to_vllm = to_vllm
        self.loop = loop or _LoopThread()
        self.version = 0
        self.pushed = None if model is None else _param_versions(model)  # vLLM starts from these weights
        self.calls = itertools.count()
        self.workdir: tempfile.TemporaryDirectory | None = None

    @classmethod
    def from_model(cls, model, tokenizer, gpu_memory_utilization: float = RL_GPU_SHARE, **engine_args):
        """vLLM on a copy of the trainer's model (saved to a temporary directory it loads from), sharing
        the GPU: `gpu_memory_utilization` is vLLM's share of its memory."""
        require_vllm()
        from ponder import model as models
        from ponder.engine.engine import _model_end_ids

        workdir = tempfile.TemporaryDirectory(prefix="ponder-vllm-")
        models.save(model, tokenizer, Path(workdir.name) / "policy")
        loop = _LoopThread()
        llm = loop.run(_started(Path(workdir.name) / "policy", gpu_memory_utilization, engine_args))
        sampler = cls(llm, ChatFormat(tokenizer, end_ids=_model_end_ids(model)), model=model, loop=loop)
        sampler.workdir = workdir
        return sampler

    def generate(self, prompts, params: SamplingParams | None = None, progress=None, on_tool_call=None):
        """`params.n` rollouts for each prompt (token ids, or text already in the chat format)."""
        params = params or SamplingParams()
        if on_tool_call is not None:
            raise PonderError(NO_TOOLS)
        refuse_tools(params)
        self.push()
        seed = params.seed if params.seed is not None else random.randrange(2**62)
        one = SamplingParams(**{**vars(params), "n": 1, "seed": seed})
        call = next(self.calls)
        ids = [encode_prompt(self.format.tokenizer, p) for p in prompts]  # once per prompt, not per sample
        groups = [
            [Sequence((i, j), prompt, one, self.format, mix_seed(seed, i, j), prompt_index=i) for j in range(params.n)]
            for i, prompt in enumerate(ids)
        ]
        self.loop.run(self._decode_all([s for g in groups for s in g], f"rollout-{call}", progress))
        for group in groups:
            for seq in group:
                seq.rollout.policy_version = self.version
        return [[seq.rollout for seq in group] for group in groups]

    async def _decode_all(self, seqs: list[Sequence], prefix: str, progress) -> None:
        async def one(seq: Sequence) -> None:
            async for _ in drive(self.llm, self.to_vllm, seq, f"{prefix}-{seq.id[0]}-{seq.id[1]}"):
                pass
            if progress:
                progress(1)

        await asyncio.gather(*(one(s) for s in seqs))

    def load_weights(self, state_dict: dict, version: int) -> None:
        """Copy the trainer's weights into vLLM's model; rollouts from now on carry `version`. The prefix
        cache is cleared: keys computed under the old weights would be wrong under the new."""
        named = [(name, tensor.detach().cpu()) for name, tensor in state_dict.items()]
        try:
            self.loop.run(self.llm.collective_rpc("ponder_load_weights", args=(named,)))
            self.loop.run(self.llm.reset_prefix_cache())
        except Exception as e:
            raise PonderError(
                f"vLLM could not take these weights ({type(e).__name__}: {e}); push the state_dict of the model "
                "vLLM was started from (the same config)"
            )
        self.version = version

    def push(self) -> None:
        """The followed model's weights into vLLM, if an optimizer step changed them since the last push."""
        if self.model is None:
            return
        versions = _param_versions(self.model)
        if versions != self.pushed:
            self.load_weights(self.model.state_dict(), self.version + 1)
            self.pushed = versions

    def close(self) -> None:
        self.llm.shutdown()
        self.loop.close()
        if self.workdir is not None:
            self.workdir.cleanup()


def _param_versions(model) -> tuple[int, ...]:
    """The parameters' version counters: an optimizer step or `load_state_dict` bumps them."""
    return tuple(p._version for p in model.parameters())


# --- loading ---------------------------------------------------------------------------------------


def read_checkpoint(model_dir: str | Path):
    """(tokenizer, config, end ids) of a model directory, without loading its weights (vLLM does)."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    from ponder.model import _check_dir

    path = _check_dir(Path(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = AutoConfig.from_pretrained(path)
    try:
        eos = GenerationConfig.from_pretrained(path).eos_token_id
    except OSError:  # no generation_config.json: the tokenizer's end token only
        eos = None
    end_ids = set() if eos is None else ({eos} if isinstance(eos, int) else set(eos))
    return tokenizer, config, end_ids


def start_async_llm(model_dir: str | Path, **engine_args):
    """vLLM's V1 async engine on `model_dir`, recording log-probs after temperature as ponder does, with
    the prefix cache on (segments and the n samples of a prompt share their prefill) and ponder's weight
    receiver in its workers."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    args = dict(
        model=str(model_dir),
        logprobs_mode="processed_logprobs",
        enable_prefix_caching=True,
        worker_extension_cls=WORKER_EXTENSION,
    )
    return AsyncLLM.from_engine_args(AsyncEngineArgs(**{**args, **engine_args}))


async def _started(model_dir: Path, gpu_memory_utilization: float, engine_args: dict):
    """The engine, created on the loop that will run it."""
    return start_async_llm(model_dir, gpu_memory_utilization=gpu_memory_utilization, **engine_args)

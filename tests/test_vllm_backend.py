"""The optional vLLM backend.

Here, without vLLM or a GPU: `ponder serve --backend vllm` and `ponder rl --rollout-backend vllm` stop
at once with the reason; ponder's SamplingParams map to vLLM's keyword arguments; and ponder's controls
replayed over the tokens a vLLM engine chooses (segments, forced tokens, deltas, abort) give exactly
the native engine's rollouts. For that, `GreedyVLLM` plays vLLM's `AsyncLLM` as the backend calls it
(`generate(prompt, params, request_id)` streaming output deltas with the chosen tokens' log-probs, stop
token ids, logit bias, max tokens), choosing greedily with the model's own Hugging Face forward.

With vLLM and a CUDA GPU, the real engine: greedy rollouts equal ponder's engine on the shipped base,
and pushed weights change what it samples. Elsewhere those skip, saying what is missing (`pytest -rs`).
"""

from __future__ import annotations

import asyncio
import copy
from types import SimpleNamespace

import openai
import pytest
import torch

from ponder import model as models
from ponder.assets import base_model_path
from ponder.cli import main
from ponder.cli.serve import context_length
from ponder.engine import Engine, SamplingParams
from ponder.engine import vllm_backend as vb
from ponder.engine.client import AsyncEngineClient, QueueFull, channel_texts
from ponder.engine.sequence import WAIT_TEXT
from ponder.errors import PonderError
from ponder.format import render_prompt
from ponder.serve.background import BackgroundServer
from ponder.serve.serving_common import ServerState
from ponder.tasks.mix import TaskMix

MISSING = vb.vllm_missing_reason()
needs_vllm_and_gpu = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
needs_vllm_package = pytest.mark.skipif(not vb.vllm_installed(), reason=vb.VLLM_MISSING)
MESSAGES = [{"role": "user", "content": "Compute 27+56."}]


def identity(prompt_ids, kwargs):
    """The fake engine takes the prompt ids and the keyword arguments as they are."""
    return list(prompt_ids), kwargs


class GreedyVLLM:
    """vLLM's AsyncLLM as the backend calls it, deciding greedily with the model's own forward: each
    output is a delta of one token with its log-prob, the stop token included, as vLLM sends them."""

    def __init__(self, model):
        self.model = model
        self.calls: list[dict] = []  # the kwargs of every request (segment)
        self.closed_early: list[str] = []  # requests whose reader stopped before they finished
        self.shut = False

    async def generate(self, prompt_ids, kwargs, request_id):
        assert kwargs["temperature"] == 0, "the fake decodes greedily only"
        self.calls.append(kwargs)
        ids, finished = list(prompt_ids), False
        try:
            for step in range(kwargs["max_tokens"]):
                await asyncio.sleep(0)  # other requests decode in between, as in a running batch
                with torch.no_grad():
                    logits = self.model(torch.tensor([ids])).logits[0, -1].float()
                for token, bias in (kwargs.get("logit_bias") or {}).items():
                    logits[token] += bias
                token = int(logits.argmax())
                logprob = float(torch.log_softmax(logits, -1)[token])
                ids.append(token)
                stopped = token in kwargs["stop_token_ids"]
                finished = stopped or step + 1 == kwargs["max_tokens"]
                reason = "stop" if stopped else "length" if finished else None
                yield output(token, logprob, reason)
                if finished:
                    return
        finally:
            if not finished:
                self.closed_early.append(request_id)

    def shutdown(self):
        self.shut = True


def output(token: int, logprob: float, finish_reason: str | None):
    """A vLLM RequestOutput delta: one CompletionOutput with the new token and its {token: Logprob}."""
    completion = SimpleNamespace(
        token_ids=[token], logprobs=[{token: SimpleNamespace(logprob=logprob)}], finish_reason=finish_reason
    )
    return SimpleNamespace(outputs=[completion], finished=finish_reason is not None)


@pytest.fixture(scope="module")
def engine(trained):
    return Engine(*trained)


@pytest.fixture(scope="module")
def sampler(engine):
    fake = GreedyVLLM(engine.model)
    sampler = vb.VLLMSampler(fake, engine.format, to_vllm=identity)
    yield sampler
    sampler.close()


@pytest.fixture(scope="module")
def prompts():
    problems = TaskMix("arithmetic:1-2,letters:1,decimals:1").eval_set(per_cell=2)
    return [render_prompt(p.prompt) for p in problems][:6]


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


# --- missing vLLM or GPU: the reason, at once -------------------------------------------------------


missing_here = pytest.mark.skipif(MISSING is None, reason="vLLM and a GPU are here: the backend starts instead")


@missing_here
def test_serve_with_the_vllm_backend_exits_2_with_the_reason(capsys):
    code, out = run(capsys, "serve", "--backend", "vllm", "--port", "0")
    assert code == 2, out
    assert out == f"error: {MISSING}"  # one line, no traceback


@missing_here
def test_rl_with_the_vllm_rollout_backend_exits_2_before_making_its_run(capsys, tmp_path):
    out_dir = tmp_path / "rl"
    code, out = run(capsys, "rl", "--rollout-backend", "vllm", "--out", str(out_dir), "--steps", "1")
    assert code == 2, out
    assert f"error: {MISSING}" in out and "Traceback" not in out
    assert not out_dir.exists()


def test_the_reason_names_what_is_missing(monkeypatch):
    monkeypatch.setattr(vb, "vllm_installed", lambda: False)
    assert (
        vb.vllm_missing_reason() == "vLLM is not installed: pip install 'ponder[vllm]' on a machine with an NVIDIA GPU"
    )
    monkeypatch.setattr(vb, "vllm_installed", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert vb.vllm_missing_reason() == "vLLM needs a CUDA GPU; none found (torch.cuda.is_available() is False)"
    with pytest.raises(PonderError, match="needs a CUDA GPU"):
        vb.require_vllm()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("serve", "--backend", "tgi"), "--backend must be one of ponder, vllm, got 'tgi'"),
        (("serve", "--backend", "vllm", "--tools", "calculator"), "--tools need --backend ponder"),
        (("rl", "--rollout-backend", "tgi"), "rollout_backend must be one of ['ponder', 'vllm'], got 'tgi'"),
        (("rl", "--rollout-backend", "vllm", "--rollout-workers", "2"), "drop --rollout-workers"),
        (("rl", "--rollout-backend", "vllm", "--tools", "calculator"), "--tools need --rollout-backend ponder"),
    ],
)
def test_backend_options_that_cannot_work_exit_2_naming_the_fix(capsys, tmp_path, argv, message):
    code, out = run(capsys, *argv, *(("--out", str(tmp_path / "rl")) if argv[0] == "rl" else ()))
    assert code == 2 and message in out, out


# --- ponder's SamplingParams as vLLM's --------------------------------------------------------------


def test_sampling_params_map_to_vllm_keyword_arguments():
    params = SamplingParams(temperature=0.7, top_p=0.9, top_k=20, max_tokens=50, stop=["\n\n"], seed=3, n=4)
    assert vb.vllm_sampling_kwargs(params, seed=11, end_ids={7, 2}) == {
        "n": 1,  # ponder's n samples are n requests, each with its own seed
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 20,
        "max_tokens": 50,
        "seed": 11,
        "logprobs": 0,  # the chosen token's log-prob
        "stop_token_ids": [2, 7],
        "stop": ["\n\n"],
    }


def test_off_switches_are_left_to_vllms_defaults_and_segment_limits_override():
    kwargs = vb.vllm_sampling_kwargs(
        SamplingParams(temperature=0, max_tokens=50), seed=1, end_ids={2}, max_tokens=1, banned=(5, 9), stop_ids=(4,)
    )
    assert "top_k" not in kwargs and "stop" not in kwargs
    assert kwargs["max_tokens"] == 1 and kwargs["temperature"] == 0
    assert kwargs["logit_bias"] == {5: -100.0, 9: -100.0}
    assert kwargs["stop_token_ids"] == [2, 4]


@needs_vllm_package
def test_vllm_accepts_the_keyword_arguments():
    from vllm.sampling_params import SamplingParams as VLLMSamplingParams

    params = SamplingParams(temperature=0.7, top_p=0.9, top_k=20, max_tokens=50, stop=["\n\n"], seed=3)
    kwargs = vb.vllm_sampling_kwargs(params, seed=11, end_ids={2}, banned=(5,))
    made = VLLMSamplingParams(**kwargs)
    assert (made.temperature, made.top_p, made.top_k, made.max_tokens, made.seed) == (0.7, 0.9, 20, 50, 11)
    assert made.logprobs == 0 and made.logit_bias == {5: -100.0} and 2 in made.stop_token_ids


# --- ponder's controls over the tokens an engine chooses --------------------------------------------


def assert_same_rollouts(ours, theirs):
    for a, b in zip(ours, theirs, strict=True):
        assert a.token_ids == b.token_ids
        assert a.mask == b.mask
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
        assert (a.text, a.finish_reason, a.thinking_tokens) == (b.text, b.finish_reason, b.thinking_tokens)
        assert a.completion == b.completion


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(temperature=0, max_tokens=60),
        SamplingParams(temperature=0, max_tokens=60, max_thinking_tokens=6),
        SamplingParams(temperature=0, max_tokens=80, min_thinking_tokens=30),
        SamplingParams(temperature=0, max_tokens=60, force_thinking=True, max_thinking_tokens=20),
        SamplingParams(temperature=0, max_tokens=60, stop=["="]),
    ],
    ids=["plain", "thinking-budget", "thinking-minimum", "thinking-on", "stop-string"],
)
def test_greedy_rollouts_equal_ponders_engine(engine, sampler, prompts, params):
    theirs = [g[0] for g in engine.generate(prompts, params)]
    ours = [g[0] for g in sampler.generate(prompts, params)]
    assert_same_rollouts(ours, theirs)
    if params.max_thinking_tokens:
        assert all(r.thinking_tokens <= params.max_thinking_tokens for r in ours)
        assert any(0 in r.mask for r in ours), "the budget should have closed some thinking (mask 0)"
    if params.min_thinking_tokens:
        assert any(WAIT_TEXT.strip() in r.text for r in ours), "some early close should have become 'wait,'"


def test_a_plain_request_is_one_vllm_request(engine, sampler, prompts):
    before = len(sampler.llm.calls)
    sampler.generate(prompts[:2], SamplingParams(temperature=0, max_tokens=40, n=2))
    assert len(sampler.llm.calls) - before == 4  # 2 prompts x 2 samples, no segments


def test_groups_hold_n_rollouts_per_prompt_with_their_prompt_index_and_policy_version(sampler, prompts):
    sampler.version = 7
    groups = sampler.generate(prompts[:3], SamplingParams(temperature=0, max_tokens=8, n=2))
    assert [[r.prompt_index for r in g] for g in groups] == [[0, 0], [1, 1], [2, 2]]
    assert {r.policy_version for g in groups for r in g} == {7}


def test_tools_are_refused_with_the_reason(sampler, prompts):
    with pytest.raises(PonderError, match="tool calls are not supported on the vLLM backend"):
        sampler.generate(prompts[:1], SamplingParams(max_tokens=8, tools=True))
    with pytest.raises(PonderError, match="tool calls are not supported on the vLLM backend"):
        sampler.generate(prompts[:1], SamplingParams(max_tokens=8), on_tool_call=lambda r: "")


def test_weights_are_pushed_once_per_change_and_stamp_the_version(engine):
    model = copy.deepcopy(engine.model)
    pushes = []
    sampler = vb.VLLMSampler(GreedyVLLM(model), engine.format, model=model, to_vllm=identity)
    sampler.load_weights = lambda state, version: pushes.append(version) or setattr(sampler, "version", version)
    try:
        prompt = [render_prompt("What is 7+8?")]
        sampler.generate(prompt, SamplingParams(temperature=0, max_tokens=4))
        assert pushes == []  # vLLM started from these weights
        with torch.no_grad():
            next(model.parameters()).add_(0.01)  # an optimizer step
        groups = sampler.generate(prompt, SamplingParams(temperature=0, max_tokens=4))
        sampler.generate(prompt, SamplingParams(temperature=0, max_tokens=4))
        assert pushes == [1] and groups[0][0].policy_version == 1
    finally:
        sampler.close()


# --- the server's engine client ---------------------------------------------------------------------


async def collect(client, prompt, params, request_id=None):
    return [d async for d in client.generate(prompt, params, request_id)]


def test_client_deltas_add_up_to_the_engines_rollout(engine):
    client = vb.VLLMEngineClient(GreedyVLLM(engine.model), engine.format, to_vllm=identity)
    prompt = engine.format.prompt("Compute 27+56.")
    params = SamplingParams(temperature=0, max_tokens=60, max_thinking_tokens=12)
    deltas = asyncio.run(collect(client, prompt, params))
    final = deltas[-1]
    theirs = engine.generate([prompt], params)[0][0]
    assert_same_rollouts([final.rollout], [theirs])
    thinking, answer, _ = channel_texts(engine.format, final.rollout.text, engine.format.start_phase(prompt))
    assert "".join(d.thinking for d in deltas) == thinking and "".join(d.answer for d in deltas) == answer
    assert [t for d in deltas for t in d.token_ids] == final.rollout.token_ids
    assert sum(1 for d in deltas if d.thinking or d.answer) > 3, "it should stream, not answer at once"
    assert final.usage.prompt_tokens == len(prompt)
    assert final.usage.reasoning_tokens == final.rollout.thinking_tokens


def test_client_abort_ends_the_request_with_finish_reason_abort(engine):
    fake = GreedyVLLM(engine.model)
    client = vb.VLLMEngineClient(fake, engine.format, to_vllm=identity)
    client.format = copy.copy(engine.format)
    client.format.end_ids = set()  # it never ends by itself: only the abort stops it

    async def abort_after_two():
        deltas = []
        async for delta in client.generate(engine.format.prompt("Hi"), SamplingParams(temperature=0, max_tokens=500)):
            deltas.append(delta)
            if len(deltas) == 2:
                await client.abort("req-0")
        return deltas

    deltas = asyncio.run(abort_after_two())
    assert deltas[-1].finish_reason == "abort" and deltas[-1].rollout.finish_reason == "abort"
    assert len(deltas[-1].rollout.token_ids) < 500
    assert fake.closed_early == ["req-0.0"]  # vLLM's stream was closed, which aborts its request
    assert client.requests == {}


def test_client_refuses_beyond_its_queue_and_refuses_tools(engine):
    client = vb.VLLMEngineClient(GreedyVLLM(engine.model), engine.format, max_batch=1, max_waiting=0, to_vllm=identity)
    prompt = engine.format.prompt("Hi")

    async def two_at_once():
        first = client.generate(prompt, SamplingParams(temperature=0, max_tokens=5))
        await first.__anext__()
        try:
            with pytest.raises(QueueFull, match="1 requests are already running or waiting"):
                await client.generate(prompt, SamplingParams(temperature=0, max_tokens=5)).__anext__()
        finally:
            await first.aclose()
        with pytest.raises(PonderError, match="tool calls are not supported"):
            await client.generate(prompt, SamplingParams(max_tokens=5, tools=True)).__anext__()

    asyncio.run(two_at_once())
    client.close()
    assert client.llm.shut


@pytest.fixture(scope="module")
def base_engine():
    return Engine(*models.load(base_model_path()))


def chat(server, **extra):
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)
    return client.chat.completions.create(model="ponder-base", messages=MESSAGES, **extra)


@pytest.mark.parametrize("effort", ["low", "medium", "high"])
def test_the_server_answers_the_same_on_either_backend(base_engine, effort):
    """Every effort preset (thinking off, a 64-token budget with thinking on, thinking on) through the
    whole server: the same answer, usage and reasoning summary, plain and streamed."""
    replies = {}
    for name, client in (
        ("ponder", AsyncEngineClient(base_engine)),
        ("vllm", vb.VLLMEngineClient(GreedyVLLM(base_engine.model), base_engine.format, to_vllm=identity)),
    ):
        with BackgroundServer(ServerState(client, "ponder-base", context_length(base_engine.model))) as server:
            plain = chat(server, reasoning_effort=effort)
            chunks = list(chat(server, reasoning_effort=effort, stream=True, stream_options={"include_usage": True}))
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        summary = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_summary") or ""
                          for c in chunks if c.choices)  # fmt: skip
        message = plain.choices[0].message
        replies[name] = (message.content, message.model_extra.get("reasoning_summary"), plain.usage.model_dump(),
                         streamed.strip(), summary, chunks[-1].usage.model_dump())  # fmt: skip
    assert replies["vllm"] == replies["ponder"]
    assert replies["vllm"][0], "the answer should not be empty"


# --- the real vLLM on a GPU ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_sampler():
    model, tokenizer = models.load(base_model_path())
    sampler = vb.VLLMSampler.from_model(model, tokenizer, dtype="float32", enforce_eager=True, seed=0)
    yield sampler
    sampler.close()


@needs_vllm_and_gpu
def test_vllm_greedy_rollouts_equal_ponders_engine(base_engine, real_sampler):
    problems = TaskMix("arithmetic:1-2,letters:1,decimals:1").eval_set(per_cell=2)
    prompts = [base_engine.format.prompt(p.prompt) for p in problems]
    for params in (SamplingParams(temperature=0, max_tokens=64), SamplingParams(temperature=0, max_tokens=64,
                                                                                 max_thinking_tokens=16)):  # fmt: skip
        theirs = [g[0] for g in base_engine.generate(prompts, params)]
        ours = [g[0] for g in real_sampler.generate(prompts, params)]
        assert [r.token_ids for r in ours] == [r.token_ids for r in theirs]
        assert [r.text for r in ours] == [r.text for r in theirs]
        for a, b in zip(ours, theirs, strict=True):
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-3)


@needs_vllm_and_gpu
def test_pushed_weights_change_what_vllm_samples(base_engine, real_sampler):
    prompt = [base_engine.format.prompt("Compute 27+56.")]
    greedy = SamplingParams(temperature=0, max_tokens=32)
    before = real_sampler.generate(prompt, greedy)[0][0]
    scrambled = copy.deepcopy(base_engine.model)
    with torch.no_grad():
        for p in scrambled.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    real_sampler.load_weights(scrambled.state_dict(), version=5)
    after = real_sampler.generate(prompt, greedy)[0][0]
    expected = Engine(scrambled, base_engine.tokenizer).generate(prompt, greedy)[0][0]
    assert after.token_ids != before.token_ids and after.token_ids == expected.token_ids
    assert after.policy_version == 5
    real_sampler.load_weights(base_engine.model.state_dict(), version=6)
    assert real_sampler.generate(prompt, greedy)[0][0].token_ids == before.token_ids

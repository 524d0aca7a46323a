"""Errors as OpenAI sends them, over a real socket: bad parameters are 400s that name the parameter,
an unknown model 404, a prompt past the context 400, a bad key 401, a large body 413, a full queue
429 with retry-after; a client that disconnects mid-stream is aborted and frees its slot; and a
schemathesis fuzz of /openapi.json finds no 5xx (nor a 409, which the openai client would retry)."""

from __future__ import annotations

import http.client
import json
import threading
import time

import openai
import pytest
import schemathesis
import torch
from hypothesis import HealthCheck, given, settings

from ponder import model as models
from ponder.assets import base_model_path
from ponder.cli.serve import context_length
from ponder.engine import Engine
from ponder.engine.client import AsyncEngineClient
from ponder.serve.background import BackgroundServer
from ponder.serve.feedback import FeedbackStore
from ponder.serve.serving_common import ServerState

MESSAGES = [{"role": "user", "content": "Compute 27+56."}]
FUZZ_EXAMPLES = 30  # per operation: bounded, so the fuzz takes seconds


class EndSoon(torch.nn.Module):
    """The model's head plus a bias toward its end token: every answer is a few tokens (fast fuzzing)."""

    def __init__(self, head, end_id: int, vocab: int):
        super().__init__()
        self.head = head
        self.register_buffer("bias", torch.zeros(vocab).index_fill_(0, torch.tensor([end_id]), 50.0))

    def forward(self, x):
        return self.head(x) + self.bias


def raw(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, headers, parsed JSON body) of one plain HTTP request."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request(method, path, body=body, headers={"content-type": "application/json", **(headers or {})})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    is_json = response.getheader("content-type", "").startswith("application/json")
    return response.status, dict(response.getheaders()), json.loads(data) if is_json else data


def assert_openai_error(body: dict, param: str | None = None) -> None:
    assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["message"]
    if param is not None:
        assert body["error"]["param"] == param, body


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    engine = Engine(*models.load(base_model_path()))
    state = ServerState(
        AsyncEngineClient(engine),
        "ponder-base",
        context_length(engine.model),
        store=FeedbackStore(tmp_path_factory.mktemp("errors") / "feedback.sqlite"),
    )
    with BackgroundServer(state, api_key="s3cret", max_request_bytes=20_000) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="s3cret", max_retries=0, timeout=60)


@pytest.mark.parametrize(
    "changes, param",
    [
        ({"temperature": 5}, "temperature"),
        ({"reasoning_effort": "enormous"}, "reasoning_effort"),
        ({"n": 0}, "n"),
        ({"top_p": 0}, "top_p"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        ({"stop": ["a", "b", "c", "d", "e"]}, None),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"max_completion_tokens": 100_000}, "max_completion_tokens"),
        ({"logprobs": True}, "logprobs"),
        ({"extra_body": {"ponder": {"best_of": 99}}}, "ponder.best_of"),
        ({"extra_body": {"ponder": {"typo": 1}}}, "ponder.typo"),
        ({"extra_body": {"ponder": {"task": "nonsense"}}}, "ponder.task"),
        ({"extra_body": {"ponder": {"tools": ["python"]}}}, "ponder.tools"),
    ],
)
def test_invalid_parameters_are_400s_that_name_the_parameter(client, changes, param):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(**{"model": "ponder-base", "messages": MESSAGES, **changes})
    assert_openai_error(error.value.body if "error" in error.value.body else {"error": error.value.body}, param)


def test_unknown_model_is_404_and_a_prompt_past_the_context_is_400(client):
    with pytest.raises(openai.NotFoundError) as error:
        client.chat.completions.create(model="gpt-9", messages=MESSAGES)
    assert error.value.code == "model_not_found"
    long = [{"role": "user", "content": "Compute " + "1+" * 400 + "1."}]
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="ponder-base", messages=long)
    assert error.value.code == "context_length_exceeded" and error.value.param == "messages"
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="ponder-base", input="Compute " + "1+" * 400 + "1.")


def test_the_api_key_size_limit_and_malformed_bodies(server):
    wrong = openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    status, _, body = raw(server.url, "GET", "/v1/models")
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    assert raw(server.url, "GET", "/")[0] == 200, "the web page is open; it asks for the key"
    key = {"authorization": "Bearer s3cret"}
    big = json.dumps({"model": "ponder-base", "messages": [{"role": "user", "content": "x" * 30_000}]}).encode()
    status, _, body = raw(server.url, "POST", "/v1/chat/completions", big, key)
    assert status == 413 and body["error"]["code"] == "request_too_large"
    status, _, body = raw(server.url, "POST", "/v1/chat/completions", b"{not json", key)
    assert status == 400
    assert_openai_error(body)
    status, _, body = raw(server.url, "GET", "/v1/nowhere", None, key)
    assert status == 404
    assert_openai_error(body)
    status, _, body = raw(server.url, "GET", "/v1/chat/completions", None, key)
    assert status == 405
    assert_openai_error(body)


# ---------------------------------------------------------------------------------------------------
# the queue: 429 when full, and a disconnect frees the slot


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    """One decode slot and one waiting place, on a model that never ends an answer by itself."""
    engine = Engine(*models.load(base_model_path()))
    engine.format.end_ids = set()
    client = AsyncEngineClient(engine, max_batch=1, max_waiting=1)
    with BackgroundServer(ServerState(client, "ponder-base", context_len=100_000)) as running:
        yield running


def open_stream(url: str, max_tokens: int) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    body = {"model": "ponder-base", "messages": MESSAGES, "stream": True, "max_completion_tokens": max_tokens}
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"content-type": "application/json"})
    return conn, conn.getresponse()


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_full_queue_is_429_with_retry_after(busy):
    batch = busy.state.client.batch
    running = open_stream(busy.url, 50_000)
    wait_for(lambda: len(batch.running) == 1)
    waiting = open_stream(busy.url, 50_000)
    wait_for(lambda: len(batch.waiting) == 1)
    try:
        assert running[1].status == 200 and waiting[1].status == 200
        client = openai.OpenAI(base_url=busy.base_url, api_key="-", max_retries=0)
        with pytest.raises(openai.RateLimitError) as error:
            client.chat.completions.create(model="ponder-base", messages=MESSAGES, max_completion_tokens=3)
        assert error.value.response.headers["retry-after"] == "1"
    finally:
        for conn, _ in (running, waiting):
            conn.close()
        wait_for(lambda: batch.idle)  # both disconnected: aborted


def test_a_client_that_disconnects_mid_stream_is_aborted_and_frees_its_slot(busy):
    batch = busy.state.client.batch
    aborted: list[str] = []
    original = batch.abort

    def spy(request_id):
        aborted.append(request_id)
        return original(request_id)

    batch.abort = spy
    try:
        conn, response = open_stream(busy.url, 50_000)
        assert response.status == 200 and response.readline().startswith(b"data: ")
        time.sleep(0.2)
        conn.sock.shutdown(2)
        conn.close()
        wait_for(lambda: aborted)
        assert aborted[0].startswith("chatcmpl-"), "the disconnected request should be aborted"
        client = openai.OpenAI(base_url=busy.base_url, api_key="-", max_retries=0, timeout=20)
        done = client.chat.completions.create(model="ponder-base", messages=MESSAGES, max_completion_tokens=3)
        assert done.usage.completion_tokens == 3, "the freed slot serves the next request"
    finally:
        batch.abort = original


def test_a_non_streamed_request_is_cancelled_when_its_client_goes_away(busy):
    aborted: list[str] = []
    batch = busy.state.client.batch
    original = batch.abort
    batch.abort = lambda rid: (aborted.append(rid), original(rid))[1]
    try:
        client = openai.OpenAI(base_url=busy.base_url, api_key="-", max_retries=0, timeout=1.0)
        thread = threading.Thread(
            target=lambda: pytest.raises(
                openai.APITimeoutError,
                client.chat.completions.create,
                model="ponder-base",
                messages=MESSAGES,
                max_completion_tokens=50_000,
            )
        )
        thread.start()
        thread.join()
        wait_for(lambda: aborted)  # the timed-out (disconnected) plain request is aborted
    finally:
        batch.abort = original


# ---------------------------------------------------------------------------------------------------
# fuzzing the schema


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    model, tokenizer = models.load(base_model_path())
    model.lm_head = EndSoon(model.lm_head, tokenizer.eos_token_id, model.config.vocab_size)
    engine = Engine(model, tokenizer)
    store = FeedbackStore(tmp_path_factory.mktemp("fuzz") / "feedback.sqlite")
    state = ServerState(AsyncEngineClient(engine), "ponder-base", context_length(model), store=store)
    with BackgroundServer(state) as running:
        yield running


def served_model(case):
    """Name the served model, so generated requests get past the 404 and reach the engine."""
    if isinstance(case.body, dict) and "model" in case.body:
        case.body["model"] = "ponder-base"
    return case


def test_fuzzing_the_openapi_schema_finds_no_server_error(quick):
    """Every operation /openapi.json lists, fed bodies generated from its own schema (valid and not)."""
    schema = schemathesis.openapi.from_url(f"{quick.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/responses", "/v1/feedback"}
    for operation in operations:

        @given(case=operation.as_strategy().map(served_model))
        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def no_server_error(case):
            response = case.call(base_url=quick.url, timeout=60)
            assert response.status_code < 500 and response.status_code != 409, (case.as_curl_command(), response.text)
            if response.status_code >= 400:
                assert_openai_error(response.json())

        no_server_error()

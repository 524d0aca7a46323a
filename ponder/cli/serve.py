"""`ponder serve`: an OpenAI-compatible reasoning server (Chat Completions, Responses, a web chat page).

    ponder serve                                   the shipped base on http://127.0.0.1:8000
    ponder serve --model runs/rl/model --api-key s3cret --tools calculator
    ponder serve --model runs/rl/model --backend vllm   generation on vLLM (pip install 'ponder[vllm]', a GPU)
    curl http://127.0.0.1:8000/v1/models           (any OpenAI client: base_url=http://127.0.0.1:8000/v1)

docs/serve.md has the endpoints, ponder's extra options, the reasoning summary and the feedback schema.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass, field

from ponder.cli.args import add_config_flags, build_config
from ponder.cli.console import console
from ponder.errors import PonderError

API_KEY_ENV = "PONDER_API_KEY"
BACKENDS = ("ponder", "vllm")


@dataclass
class ServeOptions:
    model: str | None = field(default=None, metadata={"help": "model directory; none = the shipped base"})
    host: str = field(
        default="127.0.0.1", metadata={"help": "address to listen on (0.0.0.0: every interface, not only this machine)"}
    )
    port: int = field(default=8000, metadata={"help": "TCP port (0 = any free port)"})
    served_model_name: str | None = field(
        default=None, metadata={"help": "the model's name in the API; none = ponder-base, or the directory's name"}
    )
    api_key: str | None = field(
        default=None, metadata={"help": f"bearer key every /v1 request must send (also read from {API_KEY_ENV})"}
    )
    max_request_bytes: int = field(default=1 << 20, metadata={"help": "larger request bodies are refused (413)"})
    max_batch: int = field(default=64, metadata={"help": "sequences decoded together in the running batch"})
    max_waiting: int = field(default=256, metadata={"help": "requests queued beyond the batch; more get 429"})
    max_tokens: int = field(
        default=256, metadata={"help": "tokens per answer for a request that sets no limit (an effort may allow more)"}
    )
    show_thinking: bool = field(
        default=False,
        metadata={"help": "send the raw thinking to every request (else only to those asking ponder.show_thinking)"},
    )
    tools: tuple[str, ...] = field(
        default=(), metadata={"help": "built-in tools requests may run inside the thinking: python,calculator,search"}
    )
    verifier: str | None = field(
        default=None, metadata={"help": "learned verifier directory, for rank=verifier without a task"}
    )
    reward_model: str | None = field(default=None, metadata={"help": "reward model directory, for rank=reward_model"})
    feedback_db: str = field(
        default="runs/serve/feedback.sqlite", metadata={"help": "SQLite file of returned completions and feedback"}
    )
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    engine_process: bool = field(
        default=True,
        metadata={
            "help": "decode in a process of its own, so HTTP and decoding use separate cores "
            "(false: one process, the decode loop in a thread)"
        },
    )
    backend: str = field(
        default="ponder",
        metadata={"help": "generation backend: ponder (its own engine), or vllm (pip install 'ponder[vllm]', a GPU)"},
    )

    def __post_init__(self):
        from ponder.tools import TOOLS

        if not 0 <= self.port <= 65535:
            raise PonderError(f"--port must be in [0, 65535], got {self.port}")
        for name in ("max_request_bytes", "max_batch", "max_tokens"):
            if getattr(self, name) < 1:
                raise PonderError(f"--{name.replace('_', '-')} must be an integer >= 1, got {getattr(self, name)}")
        if self.max_waiting < 0:
            raise PonderError(f"--max-waiting must be >= 0, got {self.max_waiting}")
        unknown = sorted(set(self.tools) - set(TOOLS))
        if unknown:
            raise PonderError(f"--tools: unknown tool(s) {unknown}; the tools are: {', '.join(sorted(TOOLS))}")
        if self.backend not in BACKENDS:
            raise PonderError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.backend == "vllm" and self.tools:
            raise PonderError("--tools need --backend ponder: the vLLM backend cannot pause a sequence for a tool")


def register(sub) -> None:
    p = sub.add_parser("serve", help="an OpenAI-compatible reasoning server with a web chat page")
    add_config_flags(p, ServeOptions)
    p.set_defaults(handler=run)


def run(args) -> None:
    serve(build_config(ServeOptions, args))


def serve(options: ServeOptions) -> None:
    """Load the model, start the engine client, serve until Ctrl-C (or SIGTERM)."""
    import uvicorn

    from ponder.engine.process import freeze_startup_heap
    from ponder.serve.app import create_app

    if options.backend == "vllm":
        from ponder.engine.vllm_backend import require_vllm

        require_vllm()  # a missing vLLM or GPU fails at once, before the port is taken
    sock = bind(options.host, options.port)  # before the model loads: a taken port fails at once
    state = build_state(options)
    api_key = options.api_key or os.environ.get(API_KEY_ENV) or None
    app = create_app(state, api_key=api_key, max_request_bytes=options.max_request_bytes)
    host, port = sock.getsockname()[:2]
    where = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    console.print(
        f"[bold]ponder serve[/]: {state.model_name} at {where} (web chat), OpenAI base_url {where}/v1"
        + (", API key required" if api_key else ""),
        soft_wrap=True,
    )
    sys.stdout.flush()
    freeze_startup_heap()
    # the app's shutdown closes the engine client and the store; running requests get 10 s to finish
    uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=10)).run(sockets=[sock])


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (port 0: a free one); the address is printed once it listens."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)  # connections made before uvicorn runs wait in the backlog
    except OSError as e:
        raise PonderError(f"cannot listen on {host}:{port}: {e}; choose another --port or --host")
    return sock


def build_state(options: ServeOptions):
    """The model behind an engine client, the learned rankers and the feedback store."""
    from pathlib import Path

    from ponder import model as models
    from ponder.assets import base_model_path
    from ponder.engine import Engine
    from ponder.engine.client import AsyncEngineClient
    from ponder.engine.process import EngineProcess
    from ponder.serve.feedback import FeedbackStore
    from ponder.serve.ranking import load_ranker
    from ponder.serve.serving_common import ServerState
    from ponder.tools.loop import ToolLoop
    from ponder.train.lm import resolve_device

    model_dir = Path(options.model) if options.model else base_model_path()
    rankers = {name: load_ranker(path) for name, path in
               (("verifier", options.verifier), ("reward_model", options.reward_model)) if path}  # fmt: skip
    if options.backend == "vllm":
        client, config = vllm_client(model_dir, options)
    else:
        tools = ToolLoop.of(list(options.tools)) if options.tools else None
        batch = dict(max_batch=options.max_batch, max_waiting=options.max_waiting, on_tool_call=tools)
        if options.engine_process:
            client = EngineProcess(model_dir, device=options.device, **batch)
            config = client.config
        else:
            model, tokenizer = models.load(model_dir, device=resolve_device(options.device))
            client, config = AsyncEngineClient(Engine(model, tokenizer), **batch), model.config
    name = options.served_model_name or ("ponder-base" if options.model is None else model_dir.resolve().name)
    return ServerState(
        client=client,
        model_name=name,
        context_len=context_length(config),
        default_max_tokens=options.max_tokens,
        show_thinking=options.show_thinking,
        tool_names=tuple(options.tools),
        rankers=rankers,
        store=FeedbackStore(options.feedback_db),
    )


def vllm_client(model_dir, options: ServeOptions):
    """The vLLM engine client on `model_dir` and the model's config (the weights load in vLLM only)."""
    from ponder.engine.vllm_backend import VLLMEngineClient

    client = VLLMEngineClient.from_pretrained(model_dir, max_batch=options.max_batch, max_waiting=options.max_waiting)
    return client, client.config


def context_length(model) -> int:
    """Prompt + completion tokens the model (or its config) was built for (its position table)."""
    config = getattr(model, "config", model)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    raise PonderError(f"{type(model).__name__}'s config names no context length (max_position_embeddings)")

"""A server for an engine you already hold, in a background thread of this process.

    with BackgroundServer(ServerState(AsyncEngineClient(engine), "policy", context_len=512)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="-")
        client.chat.completions.create(model="policy", messages=[...])

For a notebook or a training loop that wants to talk to its live policy over the OpenAI API, and
for the tests, which drive a real socket. It listens on 127.0.0.1 and a free port unless told
otherwise; `stop()` (or leaving the `with`) shuts uvicorn down, and with it the engine client and
the feedback store. `ponder serve` is the same app in the foreground.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from ponder.errors import PonderError
from ponder.serve.app import create_app
from ponder.serve.serving_common import ServerState

START_TIMEOUT_S = 30.0
GRACE_S = 10  # running requests get this long to finish when the server stops


class BackgroundServer:
    def __init__(
        self,
        state: ServerState,
        api_key: str | None = None,
        max_request_bytes: int = 1 << 20,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.state = state
        self.app = create_app(state, api_key=api_key, max_request_bytes=max_request_bytes)
        self.sock = socket.create_server((host, port))
        self.host, self.port = self.sock.getsockname()[:2]
        config = uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=GRACE_S)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as `base_url`."""
        return f"{self.url}/v1"

    def start(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise PonderError(f"the server on {self.url} did not start within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop serving; the app's shutdown closes the engine client and the store."""
        self.server.should_exit = True
        self.thread.join(timeout=START_TIMEOUT_S + GRACE_S)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

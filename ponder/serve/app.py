"""The HTTP layer: FastAPI routes over the serving classes, OpenAI-shaped errors, the web page.

    app = create_app(ServerState(client, "ponder-base", context_len=512), api_key=None)
    uvicorn.run(app, host="127.0.0.1", port=8000)   # what `ponder serve` does; background.py: in a thread

    GET  /v1/models                  the one model served
    POST /v1/chat/completions        plain or streamed (SSE)
    POST /v1/responses               reasoning summary, then the message; plain or streamed
    POST /v1/feedback                thumbs up / down, pairwise preferences (SQLite)
    GET  /                           the web chat page (static files under /web)

Routes only glue: bodies are parsed by the protocol models (so /openapi.json describes them), the
serving classes do the work, and every error leaves as `{"error": {message, type, param, code}}`
with a 4xx for anything the client sent (never a 409 or 5xx, which the openai client retries). A
request whose client disconnects is cancelled, which aborts its engine requests. The app owns the
state it serves: shutting it down closes the engine client and the feedback store.

Before FastAPI parses anything, the `Guard` (pure ASGI) checks the API key and the body size: a
missing or wrong key on /v1/* is a 401, a body over the limit a 413 (by its Content-Length, or
counted as it arrives), so a rejected request costs no parsing. The body is read there once and
replayed to the app; after it, the app's `receive` waits on the real connection, which is how the
routes notice a client that goes away. The web page and the API schema stay open: they carry no
secrets, and the page asks for the key.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from ponder.errors import PonderError
from ponder.serve.protocol_chat import ChatCompletionRequest, ChatCompletionResponse
from ponder.serve.protocol_common import (
    APIError,
    ErrorResponse,
    ModelCard,
    ModelList,
    bad_request,
    server_error,
    too_large,
    unauthorized,
)
from ponder.serve.protocol_feedback import FeedbackRequest, FeedbackResponse
from ponder.serve.protocol_responses import ResponseObject, ResponsesRequest
from ponder.serve.serving_chat import ServingChat
from ponder.serve.serving_common import ServerState
from ponder.serve.serving_responses import ServingResponses

log = logging.getLogger(__name__)
WEB = Path(__file__).parent / "web"
ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 429)}
SSE = {"text/event-stream": {"schema": {"type": "string"}}}
PROTECTED = "/v1/"  # paths that need the API key


def create_app(state: ServerState, api_key: str | None = None, max_request_bytes: int = 1 << 20) -> FastAPI:
    chat, responses = ServingChat(state), ServingResponses(state)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        # after the last connection closed and before the event loop does: the engine thread must not
        # hand a delta to a closed loop
        await asyncio.to_thread(state.client.close)
        if state.store is not None:
            state.store.close()

    app = FastAPI(title="ponder", summary="an OpenAI-compatible reasoning server", version="0.1.0", lifespan=lifespan)
    app.add_middleware(Guard, api_key=api_key, max_bytes=max_request_bytes)
    add_error_handlers(app)

    @app.get("/v1/models", response_model=ModelList, responses=ERRORS)
    async def list_models() -> ModelList:
        return ModelList(data=[model_card(state)])

    @app.get("/v1/models/{model_id}", response_model=ModelCard, responses=ERRORS)
    async def get_model(model_id: str) -> ModelCard:
        state.check_model(model_id)
        return model_card(state)

    @app.post(
        "/v1/chat/completions", response_model=ChatCompletionResponse, responses={**ERRORS, 200: {"content": SSE}}
    )
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        return reply(await until_disconnect(request, chat.create(ignoring(body))))

    @app.post("/v1/responses", response_model=ResponseObject, responses={**ERRORS, 200: {"content": SSE}})
    async def create_response(body: ResponsesRequest, request: Request) -> Response:
        return reply(await until_disconnect(request, responses.create(ignoring(body))))

    @app.post("/v1/feedback", response_model=FeedbackResponse, responses=ERRORS)
    async def feedback(body: Annotated[FeedbackRequest, Body(discriminator="type")]) -> FeedbackResponse:
        if state.store is None:
            raise bad_request("this server keeps no feedback store: start it with --feedback-db PATH", None)
        feedback_id, created = await state.store.record(body)
        return FeedbackResponse(id=feedback_id, created=created, type=body.type)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict:
        return {"status": "ok", "model": state.model_name}

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB / "index.html", media_type="text/html")

    app.mount("/web", StaticFiles(directory=WEB), name="web")
    return app


def model_card(state: ServerState) -> ModelCard:
    return ModelCard(id=state.model_name, created=state.created, max_model_len=state.context_len)


def ignoring(body):
    """Log the fields a request sent that ponder does not honour (they are accepted, as open servers do)."""
    if body.ignored_fields:
        log.info("ignored request fields: %s", ", ".join(body.ignored_fields))
    return body


def reply(result) -> Response:
    if isinstance(result, Response):
        return result
    if isinstance(result, AsyncIterator):
        return StreamingResponse(result, media_type="text/event-stream", headers={"cache-control": "no-cache"})
    return JSONResponse(result.model_dump(mode="json", exclude_none=True))


async def until_disconnect(request: Request, work):
    """Run a handler's work, cancelled if the client disconnects first (its engine requests abort)."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(watch, task, return_exceptions=True)
    if task.cancelled():
        return Response(status_code=499)  # nobody is listening; the status is only for the access log
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


# ---------------------------------------------------------------------------------------------------
# errors


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_: Request, e: APIError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers())

    @app.exception_handler(PonderError)
    async def ponder_error(_: Request, e: PonderError) -> JSONResponse:
        return await api_error(_, bad_request(str(e)))  # ponder's own errors are bad input by definition

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        return await api_error(_, validation_error(e.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, e: HTTPException) -> JSONResponse:
        kind = "not_found" if e.status_code == 404 else "invalid_request_error"
        body = APIError(e.status_code, str(e.detail), type="invalid_request_error", code=kind)
        return JSONResponse(body.body(), status_code=e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def crash(_: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled error")
        error = server_error(f"the server failed: {type(e).__name__}: {e}")
        return JSONResponse(error.body(), status_code=error.status)


def validation_error(errors) -> APIError:
    """A 400 naming the first bad parameter (`messages.0.role`), what was wrong and what is allowed."""
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(loc) or None
    more = f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})" if len(errors) > 1 else ""
    where = f"{param}: " if param else ""
    return bad_request(f"{where}{first.get('msg', 'invalid value')}{more}", param, first.get("type", "invalid_value"))


# ---------------------------------------------------------------------------------------------------
# the gate: API key and body size


class Guard:
    """API key and body size, checked before FastAPI parses anything (pure ASGI middleware)."""

    def __init__(self, app, api_key: str | None = None, max_bytes: int = 1 << 20):
        self.app = app
        self.api_key = api_key or None
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        error = self._key_error(scope["path"], headers) or self._length_error(headers)
        if error is not None:
            await respond(send, error)
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before it finished sending
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await respond(send, too_large(self.max_bytes))
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(body, receive), send)

    def _key_error(self, path: str, headers: dict[str, str]) -> APIError | None:
        if self.api_key is None or not path.startswith(PROTECTED):
            return None
        given = headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return unauthorized("no API key given: send the header `Authorization: Bearer <key>` (the key the server "
                                "was started with, --api-key or PONDER_API_KEY)")  # fmt: skip
        if not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            return unauthorized(
                "incorrect API key: send the key the server was started with (--api-key or PONDER_API_KEY)"
            )
        return None

    def _length_error(self, headers: dict[str, str]) -> APIError | None:
        declared = headers.get("content-length")
        if declared is None:
            return None
        if not declared.strip().isdigit():
            return bad_request(f"the Content-Length header {declared!r} is not a number", "content-length")
        return too_large(self.max_bytes) if int(declared) > self.max_bytes else None


def _replay(body: bytes, receive):
    """A `receive` that hands the app the body read so far, then waits on the connection."""
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def respond(send, error: APIError) -> None:
    payload = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in error.headers().items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})

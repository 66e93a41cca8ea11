"""A scripted OpenAI-compatible chat server on 127.0.0.1, for tests that drive the real ``openai`` client.

Each POST to ``/v1/chat/completions`` takes the next scripted response from a queue:

- ``("code", text)`` or ``("code", [text, ...])``: 200 with a proper ``chat.completion`` (one choice per
  sample: a single text is repeated for the request's ``n``, a list is sent as it is); an optional
  third element replaces the ``usage`` object (``None`` leaves it out). By default usage counts words.
- ``("status", code)``, ``("status", code, retry_after)``, ``("status", code, retry_after, message)``:
  that HTTP status with an OpenAI-style error body, and a ``Retry-After`` header when given.
- ``("sleep", seconds)``: say nothing for that long (past the client's timeout), then reply late.
- ``("malformed", raw_bytes)`` or ``("malformed", raw_bytes, content_type)``: 200 with that body
  (``application/json`` unless told).
- a callable ``f(request_body) -> one of the above``, for answers that depend on the prompt.

When the queue is empty the server answers ``default`` if it has one, else 400 "script exhausted" (a
status the client does not retry, so a short script fails a test loudly). Every request body it got is
kept in ``requests`` (parsed JSON), with its headers in ``headers``.

Use it as a context manager (``with ScriptedLLMServer([...]) as server: ... server.base_url``) or
through the ``llm_server`` fixture in ``conftest.py`` (``llm_server.script(...)``).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Response = tuple[Any, ...] | Callable[[dict[str, Any]], tuple[Any, ...]]

GOOD_CODE = '''Here is a staged reward.

```python
import numpy as np

def compute_dense_reward(self, action):
    reach = np.linalg.norm(self.robot.ee_position - self.obj1.position, axis=-1)
    reach_reward = 1.0 - np.tanh(5.0 * reach)
    return reach_reward, {"reach": reach_reward}
```
'''
"""A reply with a well-formed reward program in a fenced block."""

BROKEN_CODE = '''```python
def compute_dense_reward(self, action):
    reach = np.linalg.norm(self.robot.ee_positon - self.obj1.position, axis=-1)
    return 1.0 - reach / 0
```
'''
"""A reply whose program is wrong (a misspelt field, a division by zero): fine as text, fails to run."""

PROSE = "To open the drawer, the robot should first reach the handle, then grasp it and pull it outward."
#: an InvertedPendulum reward as a model would reply it (the review and generation tests revise it)
PENDULUM = """```python
import numpy as np
def compute_dense_reward(self, action):
    upright = 1.0 - np.abs(self.pole.angle)
    effort = -0.001 * np.sum(action ** 2, axis=-1)
    return upright + effort, {"upright": upright, "effort": effort}
```"""
"""A reply with no code in it at all."""


class ScriptedLLMServer:
    """An OpenAI-compatible chat server answering from a script (see the module docstring).

    :param script: the responses, in order
    :param default: the response once the script is used up (``None``: 400 "script exhausted")
    :param model: the model name replies carry
    """

    def __init__(self, script: Iterable[Response] = (), *, default: Response | None = None, model: str = "scripted-model"):
        self.default = default
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._queue: deque[Response] = deque(script)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """What to give the client as its base URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *responses: Response) -> ScriptedLLMServer:
        """Append responses to the queue."""
        with self._lock:
            self._queue.extend(responses)
        return self

    @property
    def pending(self) -> int:
        """Scripted responses not yet used."""
        with self._lock:
            return len(self._queue)

    def close(self) -> None:
        self._stop.set()  # wakes sleeping handlers
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedLLMServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- used by the handler ---------------------------------------------------------------------
    def _next(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[Any, ...]:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            response = self._queue.popleft() if self._queue else self.default
        if response is None:
            return ("status", 400, None, "llm_server: script exhausted (no scripted response left)")
        return response(body) if callable(response) else response

    def _completion(self, body: dict[str, Any], texts: list[str], usage: Any) -> dict[str, Any]:
        if usage == "count":
            prompt_words = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
            usage = {
                "prompt_tokens": prompt_words,
                "completion_tokens": sum(len(t.split()) for t in texts),
                "total_tokens": prompt_words + sum(len(t.split()) for t in texts),
            }
        completion: dict[str, Any] = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop", "logprobs": None}
                for i, t in enumerate(texts)
            ],
        }
        if usage is not None:
            completion["usage"] = usage
        return completion


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: ScriptedLLMServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # headers and body leave in one write (no Nagle / delayed-ACK stall per reply)
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        if self.path.rstrip("/") == "/v1/models":
            owner = self.server.owner
            self._send(200, {"object": "list", "data": [{"id": owner.model, "object": "model", "owned_by": "tests"}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._send(400, {"error": {"message": "request body is not JSON", "type": "invalid_request_error"}})
            return
        owner = self.server.owner
        response = owner._next(body, {k.lower(): v for k, v in self.headers.items()})
        kind = response[0]
        if kind in ("code", "text"):
            texts = response[1] if isinstance(response[1], list) else [response[1]] * int(body.get("n") or 1)
            usage = response[2] if len(response) > 2 else "count"
            self._send(200, owner._completion(body, texts, usage))
        elif kind == "status":
            code = int(response[1])
            retry_after = response[2] if len(response) > 2 else None
            message = response[3] if len(response) > 3 else f"scripted {code}"
            error_type = {401: "invalid_request_error", 404: "not_found_error",
                          429: "rate_limit_exceeded"}.get(code, "server_error")
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            self._send(code, {"error": {"message": message, "type": error_type, "code": str(code)}}, headers)
        elif kind == "sleep":
            owner._stop.wait(float(response[1]))
            self._send(200, owner._completion(body, ["a reply that came too late"], "count"))
        elif kind == "malformed":
            content_type = response[2] if len(response) > 2 else "application/json"
            self._send_raw(200, bytes(response[1]), content_type)
        else:
            raise ValueError(f"llm_server: unknown scripted response {response!r}")

    def _send(self, code: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send_raw(code, json.dumps(payload).encode(), "application/json", headers)

    def _send_raw(self, code: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

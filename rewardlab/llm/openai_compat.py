"""The ``openai`` provider: chat completions over HTTP with the official ``openai`` SDK.

One code path serves every OpenAI-compatible endpoint: OpenAI itself, vLLM (``vllm serve``), ollama
(``http://localhost:11434/v1``) and llama.cpp's ``llama-server``. The SDK's own retries are switched
off (``max_retries=0``); this module retries instead, a bounded number of times with exponential
backoff and jitter, honouring ``Retry-After``, so that every attempt is logged and the give-up message
can say how many were made.

Where the settings come from, first match wins:

- model: the ``model`` argument (``--model``, config), else ``REWARDLAB_MODEL``;
- base URL: the ``base_url`` argument (``--base-url``, config), else ``OPENAI_BASE_URL``, else OpenAI's
  own API;
- API key: the ``api_key`` argument (``--api-key``, config), else ``OPENAI_API_KEY``, else ``"EMPTY"``
  when a base URL is set (local servers need no key); with neither a base URL nor a key it is an error.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import time
from collections.abc import Callable
from typing import Any

import openai

from rewardlab.llm.base import LLMError, LLMReply, LLMRequest
from rewardlab.llm.log import ExchangeLog

logger = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({408, 409, 429})
"""HTTP statuses retried besides every 5xx: request timeout, conflict (lock contention), rate limit."""

MAX_BACKOFF_S = 60.0
"""No single wait between attempts is longer, whatever the backoff or ``Retry-After`` says."""

_HINTS = {
    401: "the endpoint rejected the API key; set OPENAI_API_KEY or pass --api-key",
    403: "the API key may not use this model or endpoint",
    404: "check the model name ({model}) and the base URL (it usually ends in /v1)",
}


class OpenAICompatProvider:
    """Chat completions from any OpenAI-compatible endpoint, with bounded retries and token accounting.

    :param model: model name as the endpoint knows it (default: ``REWARDLAB_MODEL``); the model a
        request names is the one sent, so build requests with ``model=provider.model``
    :param base_url: endpoint base URL, e.g. ``http://localhost:8000/v1`` (default: ``OPENAI_BASE_URL``,
        else OpenAI's API)
    :param api_key: API key (default: ``OPENAI_API_KEY``, else ``"EMPTY"`` for a custom base URL)
    :param timeout: seconds one HTTP attempt may take before it counts as failed (and is retried)
    :param max_retries: retries after the first attempt on 408/409/429/5xx, timeouts and connection
        errors and malformed replies (a body that is no chat completion); other 4xx are not retried
    :param backoff_s: wait before the first retry; each later one doubles it (plus up to 25% jitter),
        capped at :data:`MAX_BACKOFF_S`. A ``Retry-After`` header replaces the computed wait.
    :param log: the exchange log every attempt is written to (``None``: nothing is logged)
    """

    name = "openai"

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff_s: float = 1.0,
        log: ExchangeLog | None = None,
    ):
        model = model or os.environ.get("REWARDLAB_MODEL")
        if not model:
            raise LLMError("no model given: pass --model (or set REWARDLAB_MODEL) to name the model the endpoint serves")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
        if api_key is None:
            if base_url is None:
                raise LLMError(
                    "no API key for OpenAI: set OPENAI_API_KEY or pass --api-key "
                    "(or point --base-url / OPENAI_BASE_URL at a local server, which needs none)"
                )
            api_key = "EMPTY"  # vLLM, ollama and llama.cpp accept any key
        if timeout <= 0:
            raise LLMError(f"timeout must be positive, got {timeout}")
        if max_retries < 0:
            raise LLMError(f"max_retries must be 0 or more, got {max_retries}")
        self.model = model
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.log = log
        #: called with one line before each retry (the CLI shows it: a slow endpoint is no silent wait)
        self.on_retry: Callable[[str], None] | None = None
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=self.timeout, max_retries=0)
        self.base_url = str(self._client.base_url).rstrip("/")
        self.endpoint = f"{self.base_url}/chat/completions"

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> OpenAICompatProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one request -----------------------------------------------------------------------------
    def complete(self, request: LLMRequest) -> LLMReply:
        """Send the request, retrying transient failures; return the reply or raise :class:`LLMError`."""
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            start = time.monotonic()
            wait: float | None = None
            try:
                completion = self._client.chat.completions.create(**self._arguments(request))
                texts = _texts(completion)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:  # a proxy's error page, a cut body: retried
                error = f"malformed reply from {self.endpoint}: body is not JSON ({e})"
            except ValueError as e:  # parsed, but no chat completion in it: retried like a 5xx
                error = f"malformed reply from {self.endpoint}: {e}"
            except openai.APIStatusError as e:
                status, message = e.status_code, _error_message(e)
                error = f"HTTP {status} from {self.endpoint}: {message}"
                if not _retried(status):
                    hint = _HINTS.get(status, "").format(model=request.model)
                    raise self._failed(request, start, error + (f" ({hint})" if hint else "")) from None
                wait = _retry_after(e.response.headers)
            except openai.APITimeoutError:
                error = f"no reply from {self.endpoint} within the {self.timeout:g} s timeout"
            except openai.APIConnectionError as e:
                error = f"cannot connect to {self.endpoint}: {_cause(e)}"
            else:
                return self._reply(request, completion, texts, start)

            self._record(request, f"attempt {attempt}/{attempts}: {error}", time.monotonic() - start)
            if attempt == attempts:
                raise LLMError(
                    f"LLM request to {self.endpoint} failed after {attempts} attempt{'s' * (attempts > 1)} "
                    f"({self.max_retries} retr{'ies' if self.max_retries != 1 else 'y'}); last error: {error}"
                )
            delay = wait if wait is not None else self.backoff_s * 2 ** (attempt - 1) * (1 + 0.25 * random.random())
            delay = min(max(delay, 0.0), MAX_BACKOFF_S)
            if self.on_retry is not None:  # the caller shows it; logging it too would say it twice
                self.on_retry(f"{error}; retrying in {delay:.1f} s (attempt {attempt + 1}/{attempts})")
            else:
                logger.warning("%s; retrying in %.2f s (attempt %d/%d)", error, delay, attempt + 1, attempts)
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _arguments(self, request: LLMRequest) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": request.messages,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "n": request.n,
        }
        if request.seed is not None:
            arguments["seed"] = request.seed
        return arguments

    def _reply(self, request: LLMRequest, completion: Any, texts: list[str], start: float) -> LLMReply:
        """Turn a completion and its texts into a reply, and log it."""
        latency = time.monotonic() - start
        if len(texts) < request.n:
            logger.warning("asked %s for %d samples, got %d (the server may ignore n)", self.endpoint, request.n, len(texts))
        usage = getattr(completion, "usage", None)
        reply = LLMReply(
            texts=texts,
            model=getattr(completion, "model", None) or request.model,
            provider=self.name,
            tokens_in=int(getattr(usage, "prompt_tokens", 0) or 0),
            tokens_out=int(getattr(usage, "completion_tokens", 0) or 0),
            latency_s=latency,
        )
        if self.log is not None:
            reply.exchange_id = self.log.record(self.name, request, reply, None)
        return reply

    def _failed(self, request: LLMRequest, start: float, error: str) -> LLMError:
        """Log a failed attempt that is not retried and return the error to raise."""
        self._record(request, error, time.monotonic() - start)
        return LLMError(error)

    def _record(self, request: LLMRequest, error: str, latency_s: float) -> None:
        if self.log is not None:
            self.log.record(self.name, request, None, error, latency_s=latency_s)


def _texts(completion: Any) -> list[str]:
    """One text per choice, in choice order; ``ValueError`` saying what is missing."""
    if isinstance(completion, str):  # the SDK hands back the raw body when it is not JSON
        raise ValueError(f"not a chat completion: {completion[:200]!r}")
    choices = getattr(completion, "choices", None)
    if not choices:
        raise ValueError("it has no choices")
    texts = []
    for i, choice in enumerate(sorted(choices, key=lambda c: getattr(c, "index", 0) or 0)):
        content = getattr(getattr(choice, "message", None), "content", None)
        if not isinstance(content, str):
            finish = getattr(choice, "finish_reason", None)
            raise ValueError(f"choice {i} has no message content (finish_reason {finish!r})")
        texts.append(content)
    return texts


def _retried(status: int) -> bool:
    return status in RETRIED_STATUSES or status >= 500


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), if given."""
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return float(ms) / 1000.0
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return when.timestamp() - time.time()
    except (TypeError, ValueError):
        return None


def _error_message(e: openai.APIStatusError) -> str:
    """The server's own words: ``{"error": {"message": ...}}`` where it sent that, else the raw body."""
    body = e.body
    if isinstance(body, dict):
        message = body.get("message") or body.get("error") or body
        return str(message)
    if body:
        return str(body)[:500]
    return e.message


def _cause(e: BaseException) -> str:
    cause = e.__cause__ or e.__context__
    return f"{type(cause).__name__}: {cause}" if cause is not None else str(e)

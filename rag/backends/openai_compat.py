"""Any OpenAI-compatible chat-completions endpoint, through the official `openai` client.

messages (ChatBackend: system prompt + excerpts + question) ─► chat.completions.create
  ─► retried on connection errors, 408/409/429 and 5xx within RAG_LLM_TIMEOUT in total
  ─► text (or a stream of deltas); failures are LLMError, which the pipeline turns into the
     extractive answer with a notice
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from rag.backends.base import ChatBackend, Messages
from rag.errors import LLMError
from rag.settings import Settings

log = logging.getLogger(__name__)


class OpenAIBackend(ChatBackend):
    """An OpenAI-compatible chat-completions endpoint.

    Each answer gets RAG_LLM_TIMEOUT seconds in total. Connection errors, timeouts, 408/409/429
    and 5xx are retried up to RAG_LLM_MAX_RETRIES times with exponential backoff (a Retry-After
    header is honoured up to RETRY_AFTER_CAP); no attempt and no wait runs past the total budget,
    so a dead endpoint costs at most RAG_LLM_TIMEOUT before the caller falls back.
    """

    RETRY_AFTER_CAP = 10.0  # seconds; a server asking for more is not waited for longer
    BACKOFF_START = 0.5
    BACKOFF_CAP = 4.0

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        super().__init__(settings)
        self.model = settings.llm_model
        self.name = f"openai:{settings.llm_model}"
        if client is None:
            from openai import OpenAI

            key = (
                settings.openai_api_key.get_secret_value()
                if settings.openai_api_key
                else "not-needed"
            )
            # Retries are tenacity's in `_create`, not the client's `max_retries`: the client gives
            # every attempt the whole timeout, retries timeouts, sleeps with random jitter and
            # honours Retry-After up to minutes, so its retries could run far past RAG_LLM_TIMEOUT.
            client = OpenAI(
                base_url=settings.llm_base_url,
                api_key=key,
                timeout=settings.llm_timeout,
                max_retries=0,
            )
        self.client = client
        self.sleep = time.sleep  # how retries wait (tests record the waits here)

    @property
    def where(self) -> str:
        return self.settings.llm_base_url or "the OpenAI API"

    def _fail(self, exc: Exception, attempts: int = 1) -> LLMError:
        detail = type(exc).__name__
        status = getattr(exc, "status_code", None)
        if status:
            detail += f" (HTTP {status})"
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return LLMError(
            f"the LLM endpoint {self.where} failed: {detail}{tries}; check RAG_LLM_BASE_URL, "
            "RAG_LLM_MODEL and the API key, or set RAG_LLM=extractive"
        )

    def _timed_out(self) -> LLMError:
        return LLMError(
            f"the LLM endpoint {self.where} did not answer within RAG_LLM_TIMEOUT="
            f"{self.settings.llm_timeout:g}s; raise it for a slow model, or set RAG_LLM=extractive"
        )

    def _retry_wait(self, exc: Exception, attempt: int) -> float | None:
        """Seconds to wait before retrying after `exc`, or None when retrying cannot help."""
        import openai

        backoff = min(self.BACKOFF_START * 2 ** (attempt - 1), self.BACKOFF_CAP)
        if isinstance(exc, openai.APIConnectionError):  # refused, reset, DNS, timeout
            return backoff
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            if status in (408, 409, 429) or status >= 500:
                after = _retry_after(exc.response.headers)
                return backoff if after is None else min(after, self.RETRY_AFTER_CAP)
        return None  # 4xx, malformed response: the same request would fail the same way

    def _create(self, deadline: float, **kwargs: Any) -> Any:
        """`chat.completions.create` with bounded retries (tenacity), never past `deadline`."""
        import openai
        from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

        def once() -> Any:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timed_out()
            client = self.client
            if hasattr(client, "with_options"):
                client = client.with_options(timeout=remaining, max_retries=0)
            return client.chat.completions.create(**kwargs)

        def wait(state: RetryCallState) -> float:
            assert state.outcome is not None
            return self._retry_wait(state.outcome.exception(), state.attempt_number) or 0.0

        def past_deadline(state: RetryCallState) -> bool:  # waiting would overrun the budget
            return time.monotonic() + state.upcoming_sleep >= deadline

        retrying = Retrying(
            retry=retry_if_exception(lambda exc: self._retry_wait(exc, 1) is not None),
            wait=wait,
            stop=stop_after_attempt(self.settings.llm_max_retries + 1) | past_deadline,
            sleep=lambda seconds: self.sleep(seconds),  # read late: tests record the waits
            before_sleep=lambda state: log.info(
                "LLM attempt %d failed (%s); retrying in %.1fs",
                state.attempt_number,
                state.outcome.exception() if state.outcome else None,
                state.upcoming_sleep,
            ),
            reraise=True,
        )
        try:
            return retrying(once)
        except LLMError:
            raise
        except openai.APITimeoutError as exc:
            raise self._timed_out() from exc
        except Exception as exc:
            raise self._fail(exc, retrying.statistics.get("attempt_number", 1)) from exc

    def _request(self, messages: Messages, max_tokens: int, **extra: Any) -> dict[str, Any]:
        """The `chat.completions.create` arguments for one answer (`extra`: e.g. stream=True)."""
        return {
            "model": self.model,
            "messages": messages,
            "temperature": self.settings.llm_temperature,
            "max_tokens": max_tokens,
            **extra,
        }

    def complete(self, messages: Messages, max_tokens: int) -> str:
        deadline = time.monotonic() + self.settings.llm_timeout
        resp = self._create(deadline, **self._request(messages, max_tokens))
        try:
            content = resp.choices[0].message.content if resp.choices else None
        except Exception as exc:  # a body that parsed but is not a chat completion
            raise self._fail(exc) from exc
        if not isinstance(content, str) or not content.strip():
            raise LLMError(f"the LLM endpoint {self.where} returned an empty answer")
        return content

    def complete_stream(self, messages: Messages, max_tokens: int) -> Iterator[str]:
        deadline = time.monotonic() + self.settings.llm_timeout
        got_any = finished = False
        stream = self._create(deadline, **self._request(messages, max_tokens, stream=True))
        try:
            for event in stream:
                if time.monotonic() > deadline:
                    raise self._timed_out()
                if not event.choices:
                    continue
                delta = event.choices[0].delta.content
                finished = finished or bool(event.choices[0].finish_reason)
                if delta:
                    got_any = True
                    yield delta
        except LLMError:
            raise
        except Exception as exc:
            raise self._fail(exc) from exc
        finally:
            close = getattr(stream, "close", None)
            if callable(close):
                close()
        if got_any and not finished:  # the connection closed mid-answer: a cut, not an answer
            raise LLMError(f"the stream from {self.where} ended before the answer was complete")
        if not got_any:
            raise LLMError(f"the LLM endpoint {self.where} returned an empty answer")


def _retry_after(headers: Any) -> float | None:
    """Seconds from a Retry-After(-ms) header: a number of seconds or an HTTP date."""
    try:
        if value := headers.get("retry-after-ms"):
            return max(0.0, float(value) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            import email.utils

            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None

"""A scripted Blob service on MockTransport, and a clock whose waits take no time.

For unit tests of the client and adapter logic (retries, error mapping, write settlement,
paging) and for faults a live server cannot produce. Behaviour against a real server is
tested on Azurite; the aiohttp transport itself in test_azure_transport.py.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from asyncblobdict.adapters.azure import AzureBlobAdapter, RetryPolicy
from asyncblobdict.adapters.azure.transport import (
    HttpRequest,
    HttpResponse,
    MockTransport,
    TransportError,
)

URL = "https://acct.blob.core.windows.net"
KEY = base64.b64encode(b"k" * 32).decode()
FAST = RetryPolicy(max_attempts=5, base_delay=0.001, max_delay=0.005, total_timeout=5)

Answer = HttpResponse | TransportError | Callable[[HttpRequest], HttpResponse]


def reply(status: int, body: bytes = b"", **headers: str) -> HttpResponse:
    """An answer; header names with ``_`` for ``-`` (``x_ms_error_code=...``)."""
    return HttpResponse(status, {k.replace("_", "-"): v for k, v in headers.items()}, body)


@dataclass
class Rule:
    method: str
    path: str
    query: str | None
    answer: Answer
    repeat: bool
    used: int = 0


@dataclass
class Service:
    """Answers each request with the first matching rule not yet used (``repeat`` rules
    never wear out), in the order the rules were added; records every request. A request
    no rule matches fails the test."""

    rules: list[Rule] = field(default_factory=list)
    requests: list[HttpRequest] = field(default_factory=list)

    def on(
        self,
        method: str,
        answer: Answer,
        *,
        path: str = "/cc1/k",
        query: str | None = None,
        repeat: bool = False,
    ) -> None:
        """Add a rule for ``method`` on ``path`` (and a query containing ``query``)."""
        self.rules.append(Rule(method, path, query, answer, repeat))

    def __call__(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        url = urlsplit(request.url)
        for rule in self.rules:
            if rule.method != request.method or rule.path != url.path:
                continue
            if rule.query is not None and rule.query not in url.query:
                continue
            if rule.used and not rule.repeat:
                continue
            rule.used += 1
            if isinstance(rule.answer, TransportError):
                raise rule.answer
            if isinstance(rule.answer, HttpResponse):
                return rule.answer
            return rule.answer(request)
        raise AssertionError(f"no rule for {request.method} {request.url}")

    def sent(self, method: str | None = None) -> list[HttpRequest]:
        """The requests sent, of one method or all."""
        return [r for r in self.requests if method is None or r.method == method]


def query_of(request: HttpRequest) -> dict[str, str]:
    """A request's query, decoded."""
    return dict(parse_qsl(urlsplit(request.url).query, keep_blank_values=True))


class Clock:
    """Monotonic time that only moves when the client waits; every wait is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def mock_adapter(
    service: Service, credential: Any = KEY, **options: Any
) -> tuple[AzureBlobAdapter, Clock]:
    """An adapter on ``service`` through MockTransport, its waits on a fake clock."""
    options.setdefault("retry", FAST)
    adapter = AzureBlobAdapter(URL, credential, transport=MockTransport(service), **options)
    clock = Clock()
    adapter._client._clock = clock.time
    adapter._client._sleep = clock.sleep
    return adapter, clock

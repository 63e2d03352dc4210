"""aioresponses made to work with aiohttp 3.14 (whose ClientResponse needs a stream_writer)."""

from __future__ import annotations

from typing import Any

import aiohttp
from aioresponses import aioresponses as _aioresponses
from yarl import URL


class _SentWriter:
    # aioresponses builds responses for requests that were never written anywhere.
    output_size = 0


class CompatResponse(aiohttp.ClientResponse):
    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _SentWriter())
        super().__init__(method, url, **kwargs)


class aioresponses(_aioresponses):
    """Drop-in aioresponses whose canned responses build on this aiohttp version."""

    def add(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("response_class", CompatResponse)
        super().add(*args, **kwargs)

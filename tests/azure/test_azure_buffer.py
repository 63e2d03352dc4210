"""BytesBuffer: filled in place through a view, handed out as bytes without a copy, and
never changed once handed out."""

from __future__ import annotations

import tracemalloc

import pytest

from asyncblobdict.adapters.azure.buffer import BytesBuffer

MiB = 1024 * 1024


def test_filled_in_place_then_taken_without_a_copy() -> None:
    size = 32 * MiB
    buffer = BytesBuffer(size)
    buffer.view[:5] = b"hello"
    piece = buffer.view[size - 5 :]
    piece[:] = b"world"
    del piece
    tracemalloc.start()
    try:
        data = buffer.take()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(data) == size and data[:5] == b"hello" and data[-5:] == b"world"
    assert data[5:-5].count(0) == size - 10
    assert peak < MiB  # no second buffer of the value's size
    assert not buffer.copied
    with pytest.raises(ValueError):
        buffer.take()


def test_a_view_still_alive_makes_take_copy() -> None:
    buffer = BytesBuffer(1000)
    buffer.view[:3] = b"abc"
    alive = buffer.view[:3]  # e.g. held by a request that has not let go
    data = buffer.take()
    alive[:] = b"xyz"
    assert data[:3] == b"abc"  # the bytes handed out never change
    assert buffer.copied


def test_empty() -> None:
    assert BytesBuffer(0).take() == b""

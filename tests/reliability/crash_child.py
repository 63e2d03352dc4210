"""Child of the crash-consistency scenario: writes checksummed values until it is killed.

    python -m tests.reliability.crash_child ROOT CONTAINER FIRST_SEQ SEED   # from the repo root

Runs WRITERS concurrent writers on one durable LocalFileAdapter store. Each completed
write is acknowledged on stdout as ``<key> <seq>`` after set_json/set_binary returned.
Values carry their key, a global sequence number and a SHA-256 of the payload, so the parent
can tell a torn, mixed or stale value from a good one.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sys

from asyncblobdict import AsyncBlobStore, LocalFileAdapter

JSON_KEYS = [f"json/{i}" for i in range(6)] + ["deep/a/b/c/json", "top-json"]
BINARY_KEYS = [f"bin/{i}" for i in range(6)] + ["deep/a/b/c/bin", "top-bin"]
WRITERS = 4
MAGIC = b"ABDC"


def json_value(key: str, seq: int, rng: random.Random) -> dict[str, object]:
    payload = os.urandom(rng.choice([8, 64, 512, 4096, 65536]) // 2).hex()
    digest = hashlib.sha256(f"{key}|{seq}|{payload}".encode()).hexdigest()
    return {"key": key, "seq": seq, "payload": payload, "sha256": digest}


def binary_value(key: str, seq: int, rng: random.Random) -> bytes:
    body = key.encode() + b"\0" + os.urandom(rng.choice([16, 256, 4096, 65536, 262144]))
    head = MAGIC + seq.to_bytes(8, "big")
    return head + hashlib.sha256(head + body).digest() + body


def check_json(key: str, value: object) -> int:
    """Return the value's sequence number; raise AssertionError if it is not intact."""
    assert isinstance(value, dict), f"{key}: not a dict: {value!r:.100}"
    assert value["key"] == key, f"{key}: holds the value of {value['key']!r}"
    text = f"{key}|{value['seq']}|{value['payload']}".encode()
    assert hashlib.sha256(text).hexdigest() == value["sha256"], f"{key}: checksum mismatch"
    return int(value["seq"])


def check_binary(key: str, data: bytes) -> int:
    assert data[:4] == MAGIC, f"{key}: bad magic {data[:16]!r}"
    head, digest, body = data[:12], data[12:44], data[44:]
    assert hashlib.sha256(head + body).digest() == digest, f"{key}: checksum mismatch"
    assert body.split(b"\0", 1)[0] == key.encode(), f"{key}: holds another key's value"
    return int.from_bytes(head[4:12], "big")


async def main(root: str, container: str, first_seq: int, seed: int) -> None:
    rng = random.Random(seed)
    seq = first_seq
    out = sys.stdout

    async def writer(store: AsyncBlobStore, n: int) -> None:
        # Each writer owns every WRITERS-th key, so writes of one key never overlap and a
        # later acknowledgement of a key always means a newer value.
        json_keys, binary_keys = JSON_KEYS[n::WRITERS], BINARY_KEYS[n::WRITERS]
        nonlocal seq
        while True:
            seq += 1
            mine = seq
            if rng.random() < 0.5:
                key = rng.choice(json_keys)
                await store.set_json(key, json_value(key, mine, rng))
            else:
                key = rng.choice(binary_keys)
                await store.set_binary(key, binary_value(key, mine, rng))
            out.write(f"{key} {mine}\n")
            out.flush()

    async with AsyncBlobStore(LocalFileAdapter(root, durable=True), container) as store:
        out.write("ready\n")
        out.flush()
        await asyncio.gather(*(writer(store, n) for n in range(WRITERS)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))

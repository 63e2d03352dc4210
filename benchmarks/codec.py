"""µs per encode/decode of small values: the codec's fast paths against the tagged walk.

"before" runs the code path every value took before the fast paths (``_Encoder`` walk, then
``json.JSONEncoder.encode``; decoding with the tag-reading ``object_hook``), "after" is
``codec.encode`` / ``codec.decode`` as they are. Each configuration runs in a fresh process,
the configurations interleaved, ``--rounds`` times; each process reports the best of 15
``timeit`` repeats, timed by the thread's CPU time (``time.thread_time``: what other jobs on
the machine take is not counted).
Prints µs per call, median (min-max), and the per-round ratio after/before.

    PYTHONPATH=. python benchmarks/codec.py --rounds 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import timeit
from datetime import datetime, timezone
from typing import Any

# A typical small JSON document, and the same with one value that needs a tag (so the fast
# check runs, declines, and the walk runs after it).
PLAIN: dict[str, Any] = {
    "name": "alice",
    "age": 30,
    "tags": ["a", "b", "c"],
    "score": 1.5,
    "active": True,
    "meta": {"x": 1, "y": None, "note": "héllo"},
}
TAGGED: dict[str, Any] = {**PLAIN, "at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)}
RECORDS = [{"id": i, "name": f"item {i}", "ok": True} for i in range(50)]
VALUES = {"plain": PLAIN, "tagged": TAGGED, "records": RECORDS}
# The JSON writer encode() used before: json's own, which makes its C encoder on every call.
ORIGINAL_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
CONFIGS = [
    f"{op}-{value}-{when}"
    for op in ("encode", "decode")
    for value in VALUES
    for when in ("before", "after")
]
NUMBER = 5_000


def measure(config: str) -> float:
    """CPU µs per call of one configuration, best of 15 repeats, in this process."""
    from asyncblobdict import codec
    from asyncblobdict.errors import SerializationError

    op, name, when = config.split("-")
    value = VALUES[name]
    data = codec.encode(value)
    fn: Any
    if op == "encode":
        if when == "before":

            def fn() -> bytes:  # codec.encode as it was, the walk for every value
                try:
                    tree = codec._Encoder(None).value(value, "")
                    return ORIGINAL_DUMPS(tree).encode("utf-8")
                except RecursionError:
                    raise SerializationError("too deep") from None

        else:

            def fn() -> bytes:
                return codec.encode(value)

    else:
        if when == "before":

            def fn() -> Any:  # codec.decode as it was, the object_hook for every value
                loads = codec._loads
                try:
                    return loads(bytes(data).decode("utf-8"))
                except RecursionError:
                    raise SerializationError("too deep") from None

        else:

            def fn() -> Any:
                return codec.decode(data)

    assert fn() == (data if op == "encode" else codec.decode(data))
    return min(timeit.repeat(fn, number=NUMBER, repeat=15, timer=time.thread_time)) / NUMBER * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--one", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    results: dict[str, list[float]] = {c: [] for c in CONFIGS}
    for _ in range(args.rounds):
        for config in CONFIGS:
            out = subprocess.run(
                [sys.executable, __file__, "--one", config],
                check=True,
                capture_output=True,
                text=True,
            )
            results[config].append(json.loads(out.stdout))

    def spread(xs: list[float]) -> str:
        return f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"

    print("| operation | value | before µs | after µs | after/before per round |")
    print("|---|---|---|---|---|")
    for op in ("encode", "decode"):
        for name in VALUES:
            before = results[f"{op}-{name}-before"]
            after = results[f"{op}-{name}-after"]
            ratios = [a / b for a, b in zip(after, before, strict=True)]
            print(f"| {op} | {name} | {spread(before)} | {spread(after)} | {spread(ratios)} |")


if __name__ == "__main__":
    main()

"""Client CPU to read List Blobs answers: ours against the Azure SDK's, on the same XML.

Two pages of 5,000 blobs (10,000 keys) in the form Azurite and Azure send (compact UTF-8,
every blob with its own Last-Modified, ETag and Content-MD5) are parsed by:

- ``parse_blob_list``   names, size, ETag, Last-Modified, MD5 (AzureBlobAdapter.list)
- ``parse_blob_names``  names only (AzureBlobAdapter.list_names, store.list_keys)
- ``ElementTree``       the tree-based parse_blob_list this replaced (kept as the fallback)
- ``SDK list_blobs``    azure-storage-blob's own path for a page: the XML tree its
                        ContentDecodePolicy builds, its generated Deserializer, then
                        BlobProperties per blob, as ContainerClient.list_blobs does
- ``SDK list_blob_names``  the tree and load_xml_string per blob, as list_blob_names does

Each round parses both pages once per parser, in turn, and records process CPU time
(``time.process_time``); the report gives the median over rounds, with min-max, in ms per
10,000 keys. The SDK is imported only here (pip install ".[bench]").

With ``--azurite``, the same four listings also run end to end against a private in-memory
Azurite holding 10,000 blobs: AzureBlobAdapter.list and list_names against the SDK's
ContainerClient.list_blobs and list_blob_names (async, api_version 2025-11-05, pages of
5,000), interleaved in one process; the client's process CPU per listing is reported
(Azurite's own CPU is in its own process and not counted).

<!-- not-run: needs azure-storage-blob (and Node for --azurite) -->
    python benchmarks/azure_listing.py [--rounds 9] [--azurite] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import platform
import statistics
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

from asyncblobdict.adapters.azure import listing

PAGE = 5000
KEYS = 10_000
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def page_xml(first: int, count: int, *, last: bool) -> bytes:
    """One List Blobs page of blobs ``first .. first+count-1``, as Azurite writes it."""
    out = [
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/devstoreaccount1" '
        f'ContainerName="bench"><Prefix/><Marker/><MaxResults>{PAGE}</MaxResults><Blobs>'
    ]
    base = 1_780_000_000
    for i in range(first, first + count):
        date = formatdate(base + i, usegmt=True)  # every blob its own second
        md5 = base64.b64encode(hashlib.md5(str(i).encode()).digest()).decode()
        out.append(
            f"<Blob><Name>bench/key-{i:06d}.json</Name><Properties>"
            f"<Creation-Time>{date}</Creation-Time><Last-Modified>{date}</Last-Modified>"
            f"<Etag>0x8DC{i:013X}</Etag><Content-Length>{200 + i % 50}</Content-Length>"
            "<Content-Type>application/json</Content-Type>"
            f"<Content-MD5>{md5}</Content-MD5><BlobType>BlockBlob</BlobType>"
            "<LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>"
            "<ServerEncrypted>true</ServerEncrypted><AccessTier>Hot</AccessTier>"
            f"<AccessTierInferred>true</AccessTierInferred>"
            f"<AccessTierChangeTime>{date}</AccessTierChangeTime></Properties></Blob>"
        )
    marker = (
        "<NextMarker/>" if last else f"<NextMarker>bench/key-{first + count:06d}.json</NextMarker>"
    )
    out.append(f"</Blobs>{marker}</EnumerationResults>")
    return "".join(out).encode()


def sdk_parsers() -> dict[str, Callable[[bytes], Any]]:
    from azure.storage.blob._deserialize import (
        get_blob_properties_from_generated_code,
        load_many_xml_nodes,
        load_xml_string,
    )
    from azure.storage.blob._generated import models
    from azure.storage.blob._generated._utils.serialization import Deserializer

    deserializer = Deserializer({k: v for k, v in models.__dict__.items() if isinstance(v, type)})

    def list_blobs(body: bytes) -> Any:
        root = ET.fromstring(body.decode("utf-8-sig"))  # ContentDecodePolicy
        page = deserializer("ListBlobsFlatSegmentResponse", root)
        items = [get_blob_properties_from_generated_code(b) for b in page.segment.blob_items]
        return items, page.next_marker or None

    def list_blob_names(body: bytes) -> Any:
        root = ET.fromstring(body.decode("utf-8-sig"))
        blobs = load_many_xml_nodes(root, "Blob", wrapper="Blobs")
        # As the SDK's own list_blob_names calls it (its nodes are never None here).
        names = [load_xml_string(b, "Name") for b in blobs]  # type: ignore[arg-type]
        return names, load_xml_string(root, "NextMarker")

    return {"SDK list_blobs": list_blobs, "SDK list_blob_names": list_blob_names}


def check(parsers: dict[str, Callable[[bytes], Any]], pages: list[bytes]) -> None:
    """Every parser reads the same names and marker; ours agree field by field."""
    ours, _ = listing.parse_blob_list(pages[0])
    tree, _ = listing._tree_blob_list(pages[0])
    assert ours == tree, "parse_blob_list differs from the ElementTree parse"
    sdk, marker = parsers["SDK list_blobs"](pages[0])
    assert [b.name for b in sdk] == [b.key for b in ours] and marker
    assert [b.size for b in sdk] == [b.size for b in ours]
    assert [b.last_modified for b in sdk] == [b.last_modified for b in ours]
    names, marker = listing.parse_blob_names(pages[0])
    assert names == [b.key for b in ours] and marker == "bench/key-005000.json"


async def _populate(endpoint: str, container: str) -> None:
    from asyncblobdict.adapters.azure import AzureBlobAdapter

    adapter = AzureBlobAdapter(endpoint, (ACCOUNT, KEY), max_concurrency=1)
    semaphore = asyncio.Semaphore(32)

    async def put(i: int) -> None:
        async with semaphore:
            await adapter.put(container, f"bench/key-{i:06d}.json", b"{}")

    try:
        await adapter.put(container, "bench/key-000000.json", b"{}")  # creates the container
        await asyncio.gather(*(put(i) for i in range(1, KEYS)))
    finally:
        await adapter.close()


async def _end_to_end(endpoint: str, rounds: int) -> dict[str, list[float]]:
    from azure.storage.blob.aio import BlobServiceClient

    from asyncblobdict.adapters.azure import AzureBlobAdapter

    container = "listing"
    await _populate(endpoint, container)
    ours = AzureBlobAdapter(endpoint, (ACCOUNT, KEY))
    service = BlobServiceClient(
        endpoint, credential={"account_name": ACCOUNT, "account_key": KEY}, api_version="2025-11-05"
    )
    sdk = service.get_container_client(container)

    async def ours_list() -> int:
        return len([i async for i in ours.list(container)])

    async def ours_names() -> int:
        return len([n async for n in ours.list_names(container)])

    async def sdk_list() -> int:
        return len([b async for b in sdk.list_blobs(results_per_page=PAGE)])

    async def sdk_names() -> int:
        return len([n async for n in sdk.list_blob_names(results_per_page=PAGE)])

    listings = {
        "AzureBlobAdapter.list": ours_list,
        "AzureBlobAdapter.list_names": ours_names,
        "SDK list_blobs": sdk_list,
        "SDK list_blob_names": sdk_names,
    }
    samples: dict[str, list[float]] = {name: [] for name in listings}
    try:
        for listing_ in listings.values():  # warm up: connections, imports
            assert await listing_() == KEYS
        for _ in range(rounds):
            for name, listing_ in listings.items():
                started = time.process_time()
                count = await listing_()
                samples[name].append((time.process_time() - started) * 1000)
                assert count == KEYS
    finally:
        await ours.close()
        await service.close()
    return samples


def _stats(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {
        name: {"median": statistics.median(v), "min": min(v), "max": max(v)}
        for name, v in samples.items()
    }


def _print(title: str, stats: dict[str, dict[str, float]]) -> None:
    print(f"{title:30} {'median ms/10k':>14} {'min-max':>16}")
    for name, row in stats.items():
        print(f"{name:30} {row['median']:14.1f} {row['min']:7.1f}-{row['max']:<7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--azurite", action="store_true", help="also list on Azurite")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    pages = [page_xml(0, PAGE, last=False), page_xml(PAGE, KEYS - PAGE, last=True)]
    parsers: dict[str, Callable[[bytes], Any]] = {
        "parse_blob_list": listing.parse_blob_list,
        "parse_blob_names": listing.parse_blob_names,
        "ElementTree (before)": listing._tree_blob_list,
        **sdk_parsers(),
    }
    check(parsers, pages)
    for parse in parsers.values():  # warm up: imports, regex caches
        for page in pages:
            parse(page)
    samples: dict[str, list[float]] = {name: [] for name in parsers}
    for _ in range(args.rounds):
        for name, parse in parsers.items():
            started = time.process_time()
            for page in pages:
                parse(page)
            samples[name].append((time.process_time() - started) * 1000)
    from importlib.metadata import version

    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load average at start": os.getloadavg()[0],
        "python": platform.python_version(),
        "azure-storage-blob": version("azure-storage-blob"),
        "rounds": args.rounds,
        "bytes per 10k keys": sum(len(p) for p in pages),
        "parse, ms per 10k keys": _stats(samples),
    }
    print(
        f"{result['date']}, {result['machine']}, Python {result['python']}, "
        f"azure-storage-blob {result['azure-storage-blob']}, {args.rounds} rounds, "
        f"load {result['load average at start']:.2f}"
    )
    _print("parse (same XML)", result["parse, ms per 10k keys"])
    if args.azurite:
        from azurite import Azurite

        with Azurite(memory_limit_mb=1024) as azurite:
            end_to_end = asyncio.run(_end_to_end(azurite.endpoint, args.rounds))
        result["list on Azurite, client CPU ms per 10k keys"] = _stats(end_to_end)
        _print(
            "list on Azurite (client CPU)", result["list on Azurite, client CPU ms per 10k keys"]
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

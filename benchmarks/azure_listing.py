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

<!-- not-run: needs azure-storage-blob -->
    python benchmarks/azure_listing.py [--rounds 9] [--json out.json]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import platform
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asyncblobdict.adapters.azure import listing

PAGE = 5000
KEYS = 10_000


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
        return [load_xml_string(b, "Name") for b in blobs], load_xml_string(root, "NextMarker")

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
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

    result = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or '?'}",
        "python": platform.python_version(),
        "azure-storage-blob": version("azure-storage-blob"),
        "rounds": args.rounds,
        "bytes per 10k keys": sum(len(p) for p in pages),
        "ms per 10k keys": {
            name: {"median": statistics.median(v), "min": min(v), "max": max(v)}
            for name, v in samples.items()
        },
    }
    print(
        f"{result['date']}, {result['machine']}, Python {result['python']}, "
        f"azure-storage-blob {result['azure-storage-blob']}, {args.rounds} rounds"
    )
    print(f"{'parser':24} {'median ms/10k':>14} {'min-max':>16}")
    for name, stats in result["ms per 10k keys"].items():  # type: ignore[union-attr]
        print(f"{name:24} {stats['median']:14.1f} {stats['min']:7.1f}-{stats['max']:<7.1f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

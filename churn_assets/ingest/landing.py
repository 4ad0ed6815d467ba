"""Which landing drop folders changed since the last look (pure: the landing sensor's logic).

A folder's content fingerprint is a blake2b over its CSV names and bytes; hashing is
skipped for folders whose file names, sizes and mtimes are unchanged since `seen`.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from churn_assets.ingest.loading import SOURCES

_DROP = re.compile(r"^\d{4}-\d{2}$")


def _stat_signature(folder: Path) -> str:
    files = _csv_files(folder)
    return json.dumps([(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files])


def _csv_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv")


def _file_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_fingerprint(folder: Path, digests: dict[str, str] | None = None) -> str:
    """blake2b over the names and bytes of the folder's CSV files (`digests`: their per-file
    digests when already computed)."""
    digests = digests if digests is not None else file_digests(folder)
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(digests):
        digest.update(name.encode())
        digest.update(digests[name].encode())
    return digest.hexdigest()


def file_digests(folder: Path) -> dict[str, str]:
    """{CSV file name: blake2b of its bytes}."""
    return {p.name: _file_digest(p) for p in _csv_files(folder)}


def changed_sources(before: dict[str, str] | None, after: dict[str, str]) -> list[str]:
    """The raw sources whose drop file is new, changed or gone between a folder's two
    {file: digest} maps; every source when nothing is known of the folder yet."""
    if before is None:
        return list(SOURCES)
    changed = []
    for source in SOURCES:
        names = {n for n in set(before) | set(after) if n.lower() in SOURCES[source].file_names}
        if any(before.get(n) != after.get(n) for n in names):
            changed.append(source)
    return changed


def scan_landing(landing: Path, seen: dict[str, list]) -> tuple[list[tuple[str, str, list[str]]], dict[str, list]]:
    """Drop folders whose content changed since `seen` ({folder: [stat signature, fingerprint,
    {file: digest}]}). Returns [(partition_key, fingerprint, changed sources)] to ingest and the
    new `seen`. A re-delivery names only the sources whose file changed, so a month whose
    published labels arrive later re-loads raw.churn_labels alone."""
    changed, new_seen = [], dict(seen)
    if not landing.is_dir():
        return changed, new_seen
    for folder in sorted(p for p in landing.iterdir() if p.is_dir() and _DROP.match(p.name)):
        signature = _stat_signature(folder)
        if signature == "[]":
            continue
        previous = seen.get(folder.name)
        if previous and previous[0] == signature:
            continue
        digests = file_digests(folder)
        fingerprint = content_fingerprint(folder, digests)
        new_seen[folder.name] = [signature, fingerprint, digests]
        if not previous or previous[1] != fingerprint:
            before = previous[2] if previous and len(previous) > 2 else None  # older cursors: re-load all
            changed.append((f"{folder.name}-01", fingerprint, changed_sources(before, digests)))
    return changed, new_seen

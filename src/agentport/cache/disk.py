"""The disk tier of the prefix cache: a sequence's KV state saved under the home directory, so
the first request after a restart restores its prefix instead of prefilling it.

Entries live in `<root>/<model key>/<settings key>/`, one state file (`<tokens hash>.kv`, written
by the engine) and one description (`<tokens hash>.json`: the tokens, the file's size and sha256).
A state file is written under a temporary name, hashed and renamed; its description is written
last, so an entry without one never counts. An entry whose file is missing, truncated, corrupt or
made for another model or other settings is ignored and removed, never loaded. The tier keeps
within its byte budget by removing the least recently used entries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agentport.config import PRIVATE_FILE_MODE, make_private_dir, private_opener

log = logging.getLogger("agentport.cache")

CHUNK = 8 << 20


def tokens_key(tokens: list[int]) -> str:
    return hashlib.sha256(array("i", tokens).tobytes()).hexdigest()[:32]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(slots=True)
class DiskEntry:
    key: str
    tokens: list[int]
    size: int
    sha256: str
    used: float  # last saved or restored, seconds since the epoch


class DiskTier:
    def __init__(self, root: Path, model_key: str, settings_key: str, budget: int) -> None:
        self.dir = root / model_key / settings_key
        self.identity = {"model": model_key, "settings": settings_key}
        self.budget = budget
        self.entries: dict[str, DiskEntry] = {}
        self._scan()

    # --- reading what is there ---------------------------------------------------------------

    def _scan(self) -> None:
        if not self.dir.is_dir():
            return
        for stray in self.dir.glob(".*.partial"):
            stray.unlink(missing_ok=True)
        for description in self.dir.glob("*.json"):
            entry = self._read(description)
            if entry is None:
                log.warning("ignoring and removing prefix cache entry %s", description.stem)
                self._delete(description.stem)
            else:
                self.entries[entry.key] = entry

    def _read(self, description: Path) -> DiskEntry | None:
        try:
            data = json.loads(description.read_text())
            entry = DiskEntry(
                key=description.stem,
                tokens=[int(t) for t in data["tokens"]],
                size=int(data["size"]),
                sha256=str(data["sha256"]),
                used=float(data.get("used", 0.0)),
            )
            identity = {"model": data["model"], "settings": data["settings"]}
        except (OSError, ValueError, KeyError, TypeError):
            return None
        state = self._state_path(entry.key)
        if identity != self.identity or tokens_key(entry.tokens) != entry.key:
            return None
        if not state.is_file() or state.stat().st_size != entry.size:
            return None
        return entry

    # --- saving and restoring ----------------------------------------------------------------

    def has(self, tokens: list[int]) -> bool:
        return tokens_key(tokens) in self.entries

    def save(self, tokens: list[int], write: Callable[[Path], bool]) -> DiskEntry | None:
        """Save through `write(path) -> ok` (the engine writes the state file)."""
        key = tokens_key(tokens)
        make_private_dir(self.dir)
        partial = self.dir / f".{key}.partial"
        try:
            if not write(partial):
                partial.unlink(missing_ok=True)
                return None
            with partial.open("rb") as file:
                os.fchmod(file.fileno(), PRIVATE_FILE_MODE)
                os.fsync(file.fileno())
            entry = DiskEntry(key, list(tokens), partial.stat().st_size, "", time.time())
            entry.sha256 = file_sha256(partial)
            os.replace(partial, self._state_path(key))
            self._describe(entry)
        except OSError as exc:
            log.warning("could not save a prefix to disk: %s", exc)
            partial.unlink(missing_ok=True)
            return None
        self.entries[key] = entry
        self._keep_within_budget(keep=key)
        return self.entries.get(key)  # None when it alone is larger than the budget

    def restore(self, entry: DiskEntry, read: Callable[[Path], list[int] | None]) -> bool:
        """Check the file, then load it through `read(path) -> tokens or None`; a file that
        fails any check is removed."""
        state = self._state_path(entry.key)
        try:
            intact = state.stat().st_size == entry.size and file_sha256(state) == entry.sha256
        except OSError:
            intact = False
        if not intact or read(state) != entry.tokens:
            log.warning("prefix cache entry %s is damaged; removed", entry.key)
            self.remove(entry.key)
            return False
        entry.used = time.time()
        self._describe(entry)
        return True

    def remove(self, key: str) -> None:
        self.entries.pop(key, None)
        self._delete(key)

    # --- files -------------------------------------------------------------------------------

    def _state_path(self, key: str) -> Path:
        return self.dir / f"{key}.kv"

    def _describe(self, entry: DiskEntry) -> None:
        data = {
            **self.identity,
            "tokens": entry.tokens,
            "size": entry.size,
            "sha256": entry.sha256,
            "used": entry.used,
        }
        partial = self.dir / f".{entry.key}.json.partial"
        with open(partial, "w", opener=private_opener) as file:
            file.write(json.dumps(data))
        os.replace(partial, self.dir / f"{entry.key}.json")

    def _delete(self, key: str) -> None:
        (self.dir / f"{key}.json").unlink(missing_ok=True)
        self._state_path(key).unlink(missing_ok=True)

    def _keep_within_budget(self, keep: str) -> None:
        by_age = sorted(self.entries.values(), key=lambda e: e.used)
        total = sum(e.size for e in by_age)
        for entry in by_age:
            if total <= self.budget:
                break
            if entry.key != keep:
                total -= entry.size
                self.remove(entry.key)
                log.info("prefix cache on disk over budget: removed %s", entry.key)
        if total > self.budget:
            self.remove(keep)

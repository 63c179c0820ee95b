"""The disk tier of the prefix cache with a fake engine writing the state files: saved entries
are found again, damaged and foreign ones are ignored and removed, the budget evicts the oldest."""

from __future__ import annotations

import json
from pathlib import Path

from agentport.cache.disk import DiskTier, tokens_key

TOKENS = list(range(300))


def writer(payload: bytes):
    def write(path: Path) -> bool:
        path.write_bytes(payload)
        return True

    return write


def reader(tokens: list[int]):
    return lambda path: tokens


def tier(root: Path, model: str = "sha256-aa", budget: int = 1 << 20) -> DiskTier:
    return DiskTier(root, model, "ctx4096-f16-yarn1-fa1", budget)


def test_a_saved_entry_is_found_after_a_restart_and_restores(tmp_path):
    saved = tier(tmp_path).save(TOKENS, writer(b"state" * 100))
    assert saved is not None and saved.key == tokens_key(TOKENS)
    again = tier(tmp_path)
    entry = again.entries[saved.key]
    assert entry.tokens == TOKENS
    assert again.restore(entry, reader(TOKENS))
    assert not list(tmp_path.rglob("*.partial"))


def test_a_failed_write_leaves_nothing(tmp_path):
    assert tier(tmp_path).save(TOKENS, lambda path: False) is None
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_truncated_and_corrupt_files_are_removed_never_loaded(tmp_path):
    disk = tier(tmp_path)
    entry = disk.save(TOKENS, writer(b"x" * 1000))
    state = disk.dir / f"{entry.key}.kv"
    state.write_bytes(b"x" * 10)  # truncated
    assert tier(tmp_path).entries == {}
    assert not state.exists()
    entry = disk.save(TOKENS, writer(b"x" * 1000))
    state.write_bytes(b"y" * 1000)  # same size, other bytes
    loads = []
    assert not disk.restore(entry, lambda path: loads.append(path) or TOKENS)
    assert loads == [] and entry.key not in disk.entries and not state.exists()


def test_a_file_that_loads_other_tokens_is_rejected(tmp_path):
    disk = tier(tmp_path)
    entry = disk.save(TOKENS, writer(b"x" * 100))
    assert not disk.restore(entry, reader(TOKENS[:10]))
    assert disk.entries == {}


def test_entries_of_another_model_or_settings_are_ignored(tmp_path):
    entry = tier(tmp_path, model="sha256-aa").save(TOKENS, writer(b"x" * 100))
    assert tier(tmp_path, model="sha256-bb").entries == {}
    described = tmp_path / "sha256-aa" / "ctx4096-f16-yarn1-fa1" / f"{entry.key}.json"
    data = json.loads(described.read_text())
    data["settings"] = "ctx8192-f16-yarn1-fa1"  # moved by hand into the wrong folder
    described.write_text(json.dumps(data))
    assert tier(tmp_path, model="sha256-aa").entries == {}


def test_garbage_descriptions_are_removed(tmp_path):
    folder = tier(tmp_path).dir
    folder.mkdir(parents=True)
    (folder / "0123.json").write_text("{not json")
    assert tier(tmp_path).entries == {}
    assert not (folder / "0123.json").exists()


def test_the_budget_evicts_the_least_recently_used(tmp_path):
    disk = tier(tmp_path, budget=250)
    first = disk.save(TOKENS, writer(b"a" * 100))
    second = disk.save(TOKENS[:200], writer(b"b" * 100))
    assert disk.restore(first, reader(TOKENS))  # first is now the most recent
    third = disk.save(TOKENS[:100], writer(b"c" * 100))
    assert set(disk.entries) == {first.key, third.key}
    assert not (disk.dir / f"{second.key}.kv").exists()
    assert disk.save(TOKENS[:50], writer(b"d" * 1000)) is None  # larger than the whole budget

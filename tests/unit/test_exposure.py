"""Exposure: serving a non-loopback address without an API key is refused unless `insecure`
(which then warns), files under the home directory are owner-only (the prefix cache's disk tier
here; the store's in test_create.py), and a pull may reach only the hosts a user could mean."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest

from agentport.cache.disk import DiskTier
from agentport.config import Settings, check_exposure, make_private_dir
from agentport.errors import InvalidRequestError, PermissionDeniedError
from agentport.store import reach
from agentport.store.reach import allowed_hosts, check_reachable, internal_address


@pytest.mark.parametrize(
    ("host", "api_key", "insecure", "outcome"),
    [
        ("127.0.0.1:11434", None, False, None),
        ("localhost:8080", None, False, None),
        ("[::1]:7000", None, False, None),
        ("127.0.0.2", None, False, None),
        ("0.0.0.0:11434", None, False, "refused"),
        (":11434", None, False, None),  # parse_host reads ":port" as 127.0.0.1
        ("[::]:11434", None, False, "refused"),
        ("192.168.1.5", None, False, "refused"),
        ("myhost.lan:11434", None, False, "refused"),
        ("0.0.0.0:11434", "secret", False, None),
        ("0.0.0.0:11434", None, True, "warning"),
        ("192.168.1.5", None, True, "warning"),
    ],
)
def test_serving_beyond_loopback_needs_a_key_or_insecure(host, api_key, insecure, outcome):
    settings = Settings(host=host, api_key=api_key, insecure=insecure)
    if outcome == "refused":
        with pytest.raises(InvalidRequestError, match="without an API key") as caught:
            check_exposure(settings)
        assert "--insecure" in caught.value.message
    elif outcome == "warning":
        assert "without an API key" in str(check_exposure(settings))
    else:
        assert check_exposure(settings) is None


def test_insecure_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("AGENTPORT_INSECURE", "1")
    monkeypatch.setenv("AGENTPORT_HOST", "0.0.0.0")
    assert check_exposure(Settings()) is not None


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_folders_are_created_owner_only(tmp_path):
    make_private_dir(tmp_path / "home" / "a" / "b")
    assert [_mode(tmp_path / "home"), _mode(tmp_path / "home" / "a")] == [0o700, 0o700]
    assert _mode(tmp_path / "home" / "a" / "b") == 0o700


def test_the_disk_tier_saves_owner_only_files(tmp_path):
    folder = tmp_path / "home" / "cache" / "prefixes"

    def write(path: Path) -> bool:
        path.write_bytes(b"state" * 100)  # as an engine would: with the default mode
        return True

    assert DiskTier(folder, "sha256-aa", "ctx", 1 << 20).save(list(range(300)), write)
    for path in [tmp_path / "home", *(tmp_path / "home").rglob("*")]:
        assert _mode(path) == (0o700 if path.is_dir() else 0o600), path


@pytest.mark.parametrize(
    ("address", "internal"),
    [
        ("8.8.8.8", False),
        ("104.16.0.1", False),
        ("2606:4700::1", False),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("10.0.0.1", True),
        ("172.16.5.4", True),
        ("192.168.0.1", True),
        ("169.254.169.254", True),  # cloud metadata
        ("fe80::1%eth0", True),
        ("fc00::1", True),
        ("100.64.0.1", True),  # carrier-grade NAT
        ("0.0.0.0", True),
        ("::", True),
        ("224.0.0.1", True),
        ("240.0.0.1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:8.8.8.8", False),
    ],
)
def test_internal_addresses(address, internal):
    assert (internal_address([address]) is not None) == internal


@pytest.mark.parametrize(
    ("url", "addresses", "refused"),
    [
        ("http://127.0.0.1:5000/v2/x", ["127.0.0.1"], False),  # the registry setting names it
        ("http://127.0.0.1:5001/v2/x", ["127.0.0.1"], True),  # another port of this machine
        ("http://localhost:5000/v2/x", ["127.0.0.1"], True),
        ("https://registry.example/v2/x", ["93.184.216.34"], False),
        ("https://registry.example/v2/x", ["93.184.216.34", "10.1.2.3"], True),
        ("https://rebound.example/v2/x", ["169.254.169.254"], True),
        ("https://hub.internal/api", ["10.0.0.9"], False),  # the HF endpoint setting names it
        ("https://unresolvable.example/x", [], False),  # the connection fails on its own
    ],
)
def test_a_pull_reaches_only_the_hosts_a_user_could_mean(monkeypatch, url, addresses, refused):
    monkeypatch.setattr(reach, "resolve", lambda host, port: addresses)
    settings = Settings(registry="http://127.0.0.1:5000", hf_endpoint="https://hub.internal")
    allowed = allowed_hosts(settings)
    if refused:
        with pytest.raises(PermissionDeniedError, match="may not reach"):
            check_reachable(httpx.URL(url), allowed)
    else:
        check_reachable(httpx.URL(url), allowed)

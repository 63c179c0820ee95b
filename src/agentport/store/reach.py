"""Which hosts a pull may reach, so a pull cannot be turned into a probe of the network behind
the server.

A pull goes to the host a model name names, or to the registry and Hugging Face endpoint the
settings name. `check_reachable` resolves a URL's host and refuses it when any of its addresses
is loopback, link-local, private, reserved, multicast or unspecified, unless the settings name
that very host and port (`allowed_hosts`): a local test registry, a mirror on the LAN.
`guard_requests` applies the check to every request an httpx client sends, redirects included.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable

import httpx

from agentport.config import Settings
from agentport.errors import PermissionDeniedError

DEFAULT_PORTS = {"http": 80, "https": 443}
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def allowed_hosts(settings: Settings) -> frozenset[str]:
    """The `host:port`s the settings name (the registry, the Hugging Face endpoint): these may
    be internal addresses."""
    return frozenset(host_key(httpx.URL(url)) for url in (settings.registry, settings.hf_endpoint))


def host_key(url: httpx.URL) -> str:
    """`host:port` of a URL, lower case, with the scheme's default port filled in."""
    port = url.port or DEFAULT_PORTS.get(url.scheme, 0)
    return f"{url.host.lower()}:{port}"


def is_internal(address: Address) -> bool:
    """Whether an address belongs to this machine or a network behind it, not the internet."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        not address.is_global  # private, shared (100.64/10) and documentation ranges
        or address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


def internal_address(addresses: Iterable[str]) -> str | None:
    """The first internal one among `addresses` (text, as a resolver gives them), or None."""
    for text in addresses:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 scope
        except ValueError:
            return text  # not an address we can judge: refuse it
        if is_internal(address):
            return text
    return None


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (runs in a thread); none if it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []  # the connection will fail and say so
    return [str(info[4][0]) for info in infos]


def check_reachable(url: httpx.URL | str, allowed: frozenset[str]) -> None:
    """Refuse (`PermissionDeniedError`) a URL whose host is internal and not one the settings
    name. Resolves the host: call it off the event loop."""
    url = httpx.URL(url)
    if host_key(url) in allowed:
        return
    found = internal_address(resolve(url.host, url.port or DEFAULT_PORTS.get(url.scheme, 0)))
    if found is not None:
        raise PermissionDeniedError(
            f"a pull may not reach {url.host} ({found}): a loopback, link-local or private "
            "address; set AGENTPORT_REGISTRY (or AGENTPORT_HF_ENDPOINT) to that host to allow it"
        )


def guard_requests(allowed: frozenset[str]) -> Callable[[httpx.Request], Awaitable[None]]:
    """An httpx request hook that checks every request, each redirect included."""

    async def hook(request: httpx.Request) -> None:
        await asyncio.to_thread(check_reachable, request.url, allowed)

    return hook

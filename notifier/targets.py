"""Where a webhook may be delivered: public addresses only, checked after DNS resolution.

A webhook URL is chosen by whoever registers it, and the notifier POSTs from inside the network,
so without a check a hook could reach what only the inside can: loopback services, private
networks, link-local addresses, and the cloud metadata endpoints that hand out credentials
(169.254.169.254 on AWS/GCP/Azure/OpenStack, fd00:ec2::254 on AWS over IPv6, 100.100.100.200
on Alibaba Cloud). An address is refused unless it is global unicast (``ipaddress``'s
``is_global``: not private, loopback, link-local, shared (100.64/10), multicast, reserved or
unspecified), and IPv4-mapped or 6to4/NAT64 forms are judged by the IPv4 address inside.

The check runs on the addresses the connection will actually use: ``GuardedResolver`` is the
HTTP client's resolver, so the name is resolved once and every result is checked before any
connection is attempted (no time-of-check/time-of-use gap a DNS rebinding could use). A URL
whose host is an IP literal never reaches a resolver, so ``check_url`` judges it first.
Redirects are never followed (``notifier.worker``): a public receiver answering 302 to an
internal address gets nowhere.

``allow`` (``STUMPCAST_WEBHOOK_ALLOW_HOSTS``) lists addresses or networks that are accepted even
though they are not public: the tests' receivers on loopback, or a deliberate internal hook.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2"))


class BlockedTarget(ValueError):
    """A webhook target that resolves to an address the notifier must not reach."""


def _inner(ip: IP) -> IP:
    """The IPv4 address an IPv6 form wraps (mapped, 6to4, NAT64 well-known prefix)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in ipaddress.ip_network("64:ff9b::/96"):
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def parse_allow(items: Sequence[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network,
                                                ...]:
    """``STUMPCAST_WEBHOOK_ALLOW_HOSTS`` items (addresses or CIDR networks) as networks."""
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items
                 if item.strip())


def why_blocked(address: str, allow: Sequence[Any] = ()) -> str | None:
    """None if ``address`` may be reached, else the reason it may not."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return f"{address!r} is not an IP address"
    if any(ip in net for net in allow):
        return None
    inner = _inner(ip)
    if ip in METADATA or inner in METADATA:
        return f"{address} is a cloud metadata address"
    for label, test in (("loopback", "is_loopback"), ("link-local", "is_link_local"),
                        ("unspecified", "is_unspecified"), ("multicast", "is_multicast"),
                        ("reserved", "is_reserved"), ("private", "is_private")):
        if getattr(inner, test):
            return f"{address} is a {label} address"
    if not inner.is_global:
        return f"{address} is not a public address"
    return None


def check_url(url: str, allow: Sequence[Any] = ()) -> None:
    """Refuse a URL whose host is a blocked IP literal (names are checked on resolution)."""
    host = urlsplit(url).hostname
    if host is None:
        raise BlockedTarget(f"{url!r} has no host")
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return  # a name: GuardedResolver checks what it resolves to
    reason = why_blocked(host, allow)
    if reason is not None:
        raise BlockedTarget(reason)


def resolve_checked(host: str, port: int, allow: Sequence[Any] = ()) -> list[str]:
    """Every address ``host`` resolves to, all checked (blocking: for ``webhooks add``)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = sorted({str(info[4][0]) for info in infos})
    for address in addresses:
        reason = why_blocked(address, allow)
        if reason is not None:
            raise BlockedTarget(f"{host} resolves to {reason}")
    return addresses


def guarded_resolver(allow: Sequence[Any] = ()) -> Any:
    """An aiohttp resolver that refuses a name if any address it resolves to is blocked."""
    from aiohttp.resolver import ThreadedResolver

    class GuardedResolver(ThreadedResolver):  # type: ignore[misc]
        async def resolve(self, host: str, port: int = 0,
                          family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
            results: list[Any] = list(await super().resolve(host, port, family))
            for result in results:
                reason = why_blocked(str(result["host"]), allow)
                if reason is not None:
                    raise BlockedTarget(f"{host} resolves to {reason}")
            return results

    return GuardedResolver()

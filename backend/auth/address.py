"""The client's address, as far as it can be trusted: the peer, or (only when the peer is one of
TRUSTED_PROXIES) the address the proxy says it got the request from.

nginx (frontend/nginx.conf) sends X-Real-IP ($remote_addr) and X-Forwarded-For (whatever the client
sent, then $remote_addr appended). Whatever a client puts in those headers is its own say-so; only
the entries appended by trusted proxies count. With TRUSTED_PROXY_HOPS = n, the client is the n-th
entry from the right (the one the outermost proxy appended), even when it lies inside
TRUSTED_PROXIES (a client on the office LAN); with 0, X-Forwarded-For is read from the right,
skipping trusted addresses, and the first other address is the client.
"""

import ipaddress
from functools import lru_cache

from fastapi import Request

from backend.core.config import Settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(spec: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in spec.split(",") if p.strip())


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None, networks: tuple[Network, ...]) -> bool:
    return ip is not None and any(ip.version == net.version and ip in net for net in networks)


def client_address(request: Request, settings: Settings) -> str:
    peer = request.client.host if request.client else ""
    networks = _networks(settings.TRUSTED_PROXIES)
    if not networks or not _trusted(parse_ip(peer), networks):
        return peer
    hops = [hop for header in request.headers.getlist("x-forwarded-for") for hop in header.split(",")]
    if settings.TRUSTED_PROXY_HOPS and len(hops) >= settings.TRUSTED_PROXY_HOPS:
        appended = parse_ip(hops[-settings.TRUSTED_PROXY_HOPS])
        return str(appended) if appended is not None else peer
    for hop in reversed(hops):
        ip = parse_ip(hop)
        if ip is None:
            break  # not an address: nothing left of it can be trusted either
        if not _trusted(ip, networks):
            return str(ip)
    real = parse_ip(request.headers.get("x-real-ip", ""))
    if real is not None and not hops:
        return str(real)
    # Every hop was a trusted proxy (or garbage): the request came from the proxies' side itself.
    return peer

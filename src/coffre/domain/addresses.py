"""Client addresses as the limits see them (SEC-14).

Every per-source limit (failed password checks, lockouts per account and
source, reset requests, deposit joins, folded refusals) counts by
*bucket*, never by the exact address: an IPv6 host usually holds a whole
/64 (2^64 addresses, one per guess), so a /64 is one source; an
IPv4-mapped IPv6 address (``::ffff:a.b.c.d``, a dual-stack socket) is the
IPv4 address it carries. Audit events keep the exact address.
"""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network, ip_address

#: The IPv6 prefix one subscriber is assumed to hold (RFC 6177).
IPV6_PREFIX = 64


def throttle_bucket(address: str | None) -> str | None:
    """The source a limit counts ``address`` under (None stays None; a
    value that is not an address, e.g. a test client's name, stays as is)."""
    if address is None:
        return None
    try:
        ip = ip_address(address.strip())
    except ValueError:
        return address
    if isinstance(ip, IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)

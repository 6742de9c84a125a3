"""Which URLs the runner's browser may reach: the pure, static part of the network guard.

One rule set for the transform (which warns about a `navigate` the guard will refuse) and the
runner (`runner/safety.py`, which adds DNS resolution, the route layer and the egress proxy).
Nothing here does I/O: a host name comes back with `needs_dns=True` and only the runner can
finish the check.

Rules: cloud metadata addresses and host names and the whole link-local range are blocked
whatever the settings say (nothing legitimate lives there, and it holds IMDS, the ECS
credential endpoint 169.254.170.2 and the AWS DNS resolver); loopback needs `allow_loopback`;
RFC 1918, ULA, CGNAT and benchmark ranges need `allow_private_networks`; multicast, reserved
and other non-global ranges are always blocked. Hosts are read the way browsers read them:
decimal, hex, octal and short IPv4 forms, IPv6 with embedded IPv4 (mapped, 6to4, Teredo,
NAT64, compatible), percent-encoding and full-width dots. Navigations may only use http(s)
(and `about:blank`); WebSockets ws(s).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import unquote, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
RequestKind = Literal["navigation", "request", "websocket"]

METADATA_HOSTS = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
    }
)
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS / GCP / Azure / OpenStack IMDS
        "169.254.170.2",  # ECS task credentials
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wire server
        "192.0.0.192",  # Oracle Cloud
    )
)
_LOOPBACK = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "0.0.0.0/8", "::1/128", "::/128")]
_LINK_LOCAL = [ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10")]
_PRIVATE = [
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # CGNAT
        "198.18.0.0/15",  # benchmarking, used inside some clouds
        "fc00::/7",  # unique local
        "fec0::/10",  # deprecated site-local
    )
]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAVIGATION_SCHEMES = frozenset({"http", "https"})
_WEBSOCKET_SCHEMES = frozenset({"ws", "wss"})
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_FORBIDDEN_HOST_CHARS = re.compile(r"[\x00-\x20#%/:<>?@\[\\\]^|]")


class GuardPolicy(Protocol):
    """The two settings the guard reads (aef.settings.Settings satisfies it)."""

    allow_loopback: bool
    allow_private_networks: bool


@dataclass(frozen=True)
class Verdict:
    """Outcome of a URL check. ``needs_dns``: a host name whose addresses were not checked yet."""

    allowed: bool
    url: str
    category: str  # public | loopback | private | link_local | metadata | reserved | scheme | ...
    reason: str = ""
    host: str | None = None
    addresses: tuple[str, ...] = ()
    needs_dns: bool = False



# --------------------------------------------------------------------------- host parsing


def _ipv4_number(part: str) -> int | None:
    """One WHATWG IPv4 part: 0x-hex, 0-octal or decimal; None if it is not a number."""
    radix, digits = 10, part
    if len(part) >= 2 and part[:2].lower() == "0x":
        radix, digits = 16, part[2:]
    elif len(part) >= 2 and part[0] == "0":
        radix, digits = 8, part[1:]
    if digits == "":
        return 0
    pattern = {16: r"[0-9a-fA-F]+", 8: r"[0-7]+", 10: r"[0-9]+"}[radix]
    if not re.fullmatch(pattern, digits):
        return None
    return int(digits, radix)


def _ends_in_number(parts: list[str]) -> bool:
    last = parts[-1]
    if last.isascii() and last.isdigit():
        return True
    return (
        len(last) >= 2
        and last[:2].lower() == "0x"
        and re.fullmatch(r"[0-9a-fA-F]*", last[2:]) is not None
    )


def parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Parse a host the way browsers do (``2852039166``, ``0xA9FEA9FE``, ``0251.0376...``,
    ``127.1``). Returns None for a domain name; raises ValueError for a host browsers reject."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not parts or not _ends_in_number(parts):
        return None
    if len(parts) > 4:
        raise ValueError("too many IPv4 parts")
    numbers = [_ipv4_number(p) for p in parts]
    if any(n is None for n in numbers):
        raise ValueError("invalid IPv4 part")
    nums = [n for n in numbers if n is not None]
    if any(n > 255 for n in nums[:-1]) or nums[-1] >= 256 ** (5 - len(nums)):
        raise ValueError("IPv4 part out of range")
    value = nums[-1]
    for i, n in enumerate(nums[:-1]):
        value += n * 256 ** (3 - i)
    return ipaddress.IPv4Address(value)


def normalize_host(raw: str) -> str:
    """Percent-decode, map full-width dots/digits (UTS 46 does), lowercase, strip brackets."""
    host = unquote(raw).translate(_DOTS)
    host = unicodedata.normalize("NFKC", host).lower()
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host


def parse_host(host: str) -> IPAddress | None:
    """IP literal of a normalized host (IPv6 without brackets), None for a domain name."""
    if ":" in host:
        literal = host.split("%", 1)[0]  # zone id
        return ipaddress.IPv6Address(literal)
    return parse_ipv4(host)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    packed = int(ip)
    if ip in _NAT64:
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    if packed >> 32 == 0 and packed > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    return None


def classify_ip(ip: IPAddress, policy: GuardPolicy) -> tuple[bool, str, str]:
    """(allowed, category, reason) for one address."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            ok, category, reason = classify_ip(inner, policy)
            if not ok:
                return ok, category, f"{reason} (embedded in {ip})"
    if ip in METADATA_ADDRESSES:
        return False, "metadata", f"{ip} is a cloud metadata address"
    if any(ip in n for n in _LOOPBACK):
        if policy.allow_loopback:
            return True, "loopback", ""
        return False, "loopback", f"{ip} is a loopback address"
    if any(ip in n for n in _LINK_LOCAL):
        return False, "link_local", f"{ip} is a link-local address"
    if any(ip in n for n in _PRIVATE):
        if policy.allow_private_networks:
            return True, "private", ""
        return False, "private", f"{ip} is in a private network range"
    if ip.is_multicast or ip.is_reserved or ip.is_unspecified or not ip.is_global:
        return False, "reserved", f"{ip} is a reserved or non-routable address"
    return True, "public", ""


# --------------------------------------------------------------------------- URL checks


_C0_AND_SPACE = "".join(chr(i) for i in range(0x21))


def _clean_url(url: str) -> str:
    """What a browser does before parsing: strip C0/space at the ends, drop tab and newline."""
    return re.sub(r"[\t\n\r]", "", url.strip(_C0_AND_SPACE))


def _split_special(url: str) -> tuple[str, str]:
    """(scheme, authority) of a special-scheme URL, treating ``\\`` as ``/`` like browsers."""
    scheme, _, rest = url.partition(":")
    rest = rest.replace("\\", "/").lstrip("/")
    end = len(rest)
    for ch in "/?#":
        pos = rest.find(ch)
        if pos != -1:
            end = min(end, pos)
    return scheme.lower(), rest[:end]


def check_host(
    raw_host: str, policy: GuardPolicy, *, url: str = "", port: int | None = None
) -> Verdict:
    """Pure check of one host (name or literal); names are flagged ``needs_dns``."""
    host = normalize_host(raw_host)
    shown = url or raw_host
    if not host:
        return Verdict(False, shown, "invalid", "empty host")
    try:
        ip = parse_host(host)
    except ValueError as exc:
        return Verdict(False, shown, "invalid", f"invalid host {raw_host!r}: {exc}", host)
    if ip is not None:
        ok, category, reason = classify_ip(ip, policy)
        return Verdict(ok, shown, category, reason, host, (str(ip),))
    name = host.rstrip(".")
    if _FORBIDDEN_HOST_CHARS.search(name):
        return Verdict(False, shown, "invalid", f"invalid host {raw_host!r}", host)
    if name in METADATA_HOSTS:
        return Verdict(False, shown, "metadata", f"{name} is a cloud metadata host", host)
    if name == "localhost" or name.endswith(".localhost"):
        # Chromium answers *.localhost with loopback itself, without DNS.
        if policy.allow_loopback:
            return Verdict(True, shown, "loopback", "", host, needs_dns=True)
        return Verdict(False, shown, "loopback", f"{name} is a loopback host", host)
    return Verdict(True, shown, "public", "", host, needs_dns=True)


def check_url(url: str, policy: GuardPolicy, *, kind: RequestKind = "navigation") -> Verdict:
    """Pure check (no DNS) usable before ``page.goto``; a host name comes back with
    ``needs_dns=True`` and is fully checked by :meth:`NetworkGuard.check`."""
    cleaned = _clean_url(url)
    if kind != "websocket" and cleaned.lower() == "about:blank":
        return Verdict(True, url, "about")
    scheme = cleaned.partition(":")[0].lower() if ":" in cleaned else ""
    allowed_schemes = _WEBSOCKET_SCHEMES if kind == "websocket" else _NAVIGATION_SCHEMES
    if scheme not in allowed_schemes:
        shown = scheme or "relative"
        return Verdict(False, url, "scheme", f"the {shown}: scheme is not allowed")
    _, authority = _split_special(cleaned)
    hostport = authority.rpartition("@")[2]
    try:
        parsed = urlsplit(f"http://{hostport}/")
        port = parsed.port
    except ValueError as exc:
        return Verdict(False, url, "invalid", f"invalid authority: {exc}")
    if hostport.startswith("["):
        raw_host = hostport[: hostport.find("]") + 1] if "]" in hostport else hostport
    else:
        raw_host = hostport.rsplit(":", 1)[0] if ":" in hostport else hostport
    return check_host(raw_host, policy, url=url, port=port)



def check_resolved(verdict: Verdict, addresses: list[str], policy: GuardPolicy) -> Verdict:
    """A host name's verdict once its addresses are known: every one must be allowed."""
    for addr in addresses:
        ok, category, reason = classify_ip(ipaddress.ip_address(addr.split("%", 1)[0]), policy)
        if not ok:
            return Verdict(
                False,
                verdict.url,
                category,
                f"{verdict.host} resolves to {addr}: {reason}",
                verdict.host,
                tuple(addresses),
            )
    category = verdict.category
    if category == "public":
        cats = {classify_ip(ipaddress.ip_address(a.split("%", 1)[0]), policy)[1] for a in addresses}
        category = "public" if cats == {"public"} else sorted(cats - {"public"})[0]
    return Verdict(True, verdict.url, category, "", verdict.host, tuple(addresses))


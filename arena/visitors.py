"""Pseudonymous visitor ids: keyed hashes, so the database never holds a raw session key or IP.

The client address is the connection's own, unless `ARENA_TRUSTED_PROXY_HOPS` proxies stand in
front of the web processes: then it is the `X-Forwarded-For` entry that many hops from the
right, the one our outermost proxy appended. Entries further left were written by the client
and are never read.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets

from django.conf import settings
from django.http import HttpRequest

_SESSION_KEY = "arena_visitor"
# The address of a request that carries X-Forwarded-For where no proxy is trusted. uvicorn
# (unless started with --no-proxy-headers) replaces a loopback peer's address with the one that
# header names, so REMOTE_ADDR is then the client's to choose: all such requests share one
# address for the rate limits, and it is in no network.
UNTRUSTED_FORWARDED = "forwarded"


def keyed_hash(kind: str, value: str) -> str:
    key = settings.SECRET_KEY.encode()
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def visitor_id(request: HttpRequest) -> str:
    """This visitor's id, creating an anonymous session token on the first call."""
    token = request.session.get(_SESSION_KEY)
    if not token:
        token = secrets.token_urlsafe(16)
        request.session[_SESSION_KEY] = token
    return keyed_hash("visitor", token)


def client_address(request: HttpRequest) -> str:
    """The visitor's address as the rate limits and `ARENA_METRICS_NETWORKS` see it."""
    peer = request.META.get("REMOTE_ADDR", "")
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    hops = settings.ARENA_TRUSTED_PROXY_HOPS
    if forwarded is None:
        return peer
    if hops == 0:
        return UNTRUSTED_FORWARDED
    # Django joins repeated headers with ","; each proxy appends the address it saw.
    entries = [entry.strip() for entry in forwarded.split(",")]
    if len(entries) < hops:
        # A shorter chain than the proxies we trust: the request did not come through all of
        # them, so no entry is theirs. The connection's address is the one we know.
        return peer
    return _address_normalize(entries[-hops])


def _address_normalize(entry: str) -> str:
    """`1.2.3.4`, `1.2.3.4:56` and `[2001:db8::1]:443` name the same host as their address."""
    candidates = [entry]
    if entry.startswith("[") and "]" in entry:
        candidates.append(entry[1 : entry.index("]")])
    elif entry.count(":") == 1:
        candidates.append(entry.partition(":")[0])
    for candidate in candidates:
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return entry[:100]  # Not an address ("unknown"): still one key of its own.


def ip_hash(request: HttpRequest) -> str:
    return keyed_hash("ip", client_address(request))

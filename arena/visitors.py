"""Pseudonymous visitor ids: keyed hashes, so the database never holds a raw session key or IP."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from django.http import HttpRequest

_SESSION_KEY = "arena_visitor"


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


def ip_hash(request: HttpRequest) -> str:
    return keyed_hash("ip", request.META.get("REMOTE_ADDR", ""))

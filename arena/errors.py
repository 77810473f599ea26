"""Errors that the domain raises and the views turn into 4xx JSON replies with the message."""

from __future__ import annotations


class ArenaError(Exception):
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ArenaError):
    status = 400


class Forbidden(ArenaError):
    status = 403


class NotFound(ArenaError):
    status = 404


class Conflict(ArenaError):
    status = 409


class Refused(ArenaError):
    """The text is well formed, but moderation does not let it through."""

    status = 422


class Unavailable(ArenaError):
    status = 503


class RateLimited(ArenaError):
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

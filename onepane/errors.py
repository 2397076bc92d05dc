"""One error hierarchy for the whole system.

Every layer raises these; the API maps them once to RFC 9457 problem+json and the CLI maps them
to exit codes, so a provider failure reads the same whichever door it came through.
"""

from __future__ import annotations

from typing import Any


class OnepaneError(Exception):
    status = 500
    title = "Internal error"
    exit_code = 1

    def __init__(self, detail: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra

    def problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://onepane.dev/problems/{type(self).__name__}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.field:
            body["errors"] = [{"field": self.field, "reason": self.detail}]
        body.update(self.extra)
        return body


class NotFound(OnepaneError):
    status = 404
    title = "Not found"
    exit_code = 3


class Conflict(OnepaneError):
    status = 409
    title = "Conflict"
    exit_code = 4


class InvalidInput(OnepaneError):
    status = 422
    title = "Invalid input"
    exit_code = 2


class IdempotencyMismatch(InvalidInput):
    """An Idempotency-Key (or EC2 ClientToken) reused for a different request."""

    title = "Idempotency key reused for another request"


class Unsupported(InvalidInput):
    """The location's provider lacks the capability the request needs."""

    title = "Capability not supported"


class Unauthorized(OnepaneError):
    status = 401
    title = "Unauthorized"
    exit_code = 5


class Forbidden(OnepaneError):
    status = 403
    title = "Forbidden"
    exit_code = 5


class ProviderError(OnepaneError):
    status = 502
    title = "Provider error"


class TransientProviderError(ProviderError):
    """Worth retrying: timeouts, 5xx, throttling, a refused connection."""

    status = 503
    title = "Provider temporarily unavailable"


class PermanentProviderError(ProviderError):
    """Retrying cannot help: bad credentials, unknown image, quota exceeded."""


class ProviderAuthError(PermanentProviderError):
    status = 400
    title = "Provider rejected the credentials"

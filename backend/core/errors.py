"""Domain errors raised by services; one handler renders them as {"detail": ...}."""

from typing import Any


class AppError(Exception):
    status_code = 400

    def __init__(self, detail: Any = None) -> None:
        super().__init__(detail)
        self.detail = detail if detail is not None else self.__class__.__name__


class BadRequest(AppError):
    status_code = 400


class Unauthorized(AppError):
    status_code = 401


class Forbidden(AppError):
    status_code = 403


class NotFound(AppError):
    status_code = 404


class Conflict(AppError):
    status_code = 409


class Unprocessable(AppError):
    status_code = 422


class TooManyRequests(AppError):
    status_code = 429

    def __init__(self, detail: Any = None, *, retry_after: int = 60) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ServiceUnavailable(AppError):
    status_code = 503


class NotYetVisible(ServiceUnavailable):
    """A document that a unique key says exists cannot be read yet: on a MongoDB replica set the
    writer that won the key may not be majority-visible for a moment. Retryable: the same request
    a little later finds it (the webhook processor retries it with backoff; clients get a 503)."""

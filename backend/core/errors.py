"""Domain errors raised by services; one handler renders them as {"detail": ...}.

Also what the OpenAPI document says about those answers: the bodies' shapes (the models below,
exactly what backend/app.py's handlers send) and one responses map per kind of route, so every
route declares each error it can answer and the generated client is typed against real answers.
"""

from typing import Any, TypeVar

from pydantic import BaseModel, Field


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


T = TypeVar("T")


def or_404(found: T | None, what: str) -> T:
    """`found`, or NotFound("<what> not found") for a lookup of what must exist."""
    if found is None:
        raise NotFound(f"{what} not found")
    return found


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


# A request whose store call got no answer (app.py answers 503 with it): retrying is the way on.
STORE_SILENT = "the database did not answer; retry"


class ErrorBody(BaseModel):
    detail: str = Field(description="what was refused, in a sentence")


class ConflictBody(BaseModel):
    detail: str | dict[str, Any] = Field(
        description="a sentence, or an object: `message` and what the conflict is about (`ticket_id`, `status`, …)"
    )


class ValidationIssue(BaseModel):
    type: str
    loc: list[str | int]
    msg: str


class UnprocessableBody(BaseModel):
    detail: list[ValidationIssue] | str = Field(
        description="the request's validation issues, or a sentence when a rule refused a well-formed value"
    )


_HEADER = {"schema": {"type": "string"}}
_ANSWERS: dict[int, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body is not readable JSON."},
    401: {
        "model": ErrorBody,
        "description": "Missing, invalid or expired credentials.",
        "headers": {"WWW-Authenticate": {**_HEADER, "description": "Bearer"}},
    },
    403: {"model": ErrorBody, "description": "The caller's role may not do this."},
    404: {"model": ErrorBody, "description": "Not found, or not visible to the caller (another tenant's)."},
    409: {"model": ConflictBody, "description": "The current state does not allow it."},
    413: {"model": ErrorBody, "description": "The body is larger than this route accepts."},
    422: {"model": UnprocessableBody, "description": "A parameter or the body is invalid."},
    429: {
        "model": ErrorBody,
        "description": "Too many attempts.",
        "headers": {"Retry-After": {**_HEADER, "description": "seconds to wait"}},
    },
    503: {"model": ErrorBody, "description": "Not ready yet, or a dependency is unavailable; retry."},
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: _ANSWERS[code] for code in codes}


# Per kind of route (combine with `|`, add what a route's rules answer: 404, 409, …).
API = responses(422, 503)  # every /api route: the readiness gate, parameter validation
AUTHENTICATED = API | responses(401)  # any signed-in user
ROLE = AUTHENTICATED | responses(403)  # restricted to some roles
WITH_BODY = responses(400, 413)  # routes that read a JSON body


class NotYetVisible(ServiceUnavailable):
    """A document that a unique key says exists cannot be read yet: on a MongoDB replica set the
    writer that won the key may not be majority-visible for a moment. Retryable: the same request
    a little later finds it (the webhook processor retries it with backoff; clients get a 503)."""

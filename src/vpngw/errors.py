"""The error vocabulary of the API.

Every error a client can see is a subclass of :class:`ApiError`. A subclass fixes the
HTTP status; an instance carries the Alibaba-style ``code`` and a human ``message``.
The HTTP layer renders any ``ApiError`` the same way (see ``vpngw.api.render``), so an
action only raises, it never builds an error body. docs/errors.md lists every code.

Messages must never contain a secret (a pre-shared key, an AccessKey secret): callers
name the parameter and the rule, not the value, when the value is secret.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error that is reported to the client with ``status`` and ``code``."""

    status: int = 400
    recommend: str = ""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class BadRequest(ApiError):
    status = 400


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class MethodNotAllowed(ApiError):
    status = 405


class RequestTimeout(ApiError):
    status = 408


class PayloadTooLarge(ApiError):
    status = 413


class InternalError(ApiError):
    status = 500

    def __init__(self, message: str = "The request processing has failed due to some unknown error.") -> None:
        super().__init__("InternalError", message)


class ServiceUnavailable(ApiError):
    status = 503

    def __init__(
        self,
        code: str = "ServiceUnavailable",
        message: str = "The request has failed due to a temporary failure of the server.",
    ) -> None:
        super().__init__(code, message)


class StorageFull(ServiceUnavailable):
    """The database cannot store more: its disk (or the PostgreSQL server's) is full.

    Raised by the store for any transaction, so a client sees a 503 it may retry, never a
    500, and the message holds nothing of the statement (whose parameters can be secrets).
    """

    def __init__(self) -> None:
        super().__init__(
            "ServiceUnavailable.StorageFull",
            "The request has failed because the service's storage is full; nothing was changed. "
            "Retry later (with the same ClientToken).",
        )


# Shorthands for the errors that name a parameter. They keep messages uniform.


def missing_parameter(name: str) -> BadRequest:
    return BadRequest(
        f"MissingParameter.{name}",
        f'The input parameter "{name}" that is mandatory for processing this request is not supplied.',
    )


def dry_run_passed() -> BadRequest:
    """The public API's answer to a ``DryRun=true`` request that would have succeeded."""
    return BadRequest("DryRunOperation", "Request validation has been passed with DryRun flag set.")


def invalid_parameter(name: str, reason: str) -> BadRequest:
    return BadRequest(f"InvalidParameter.{name}", f'The specified parameter "{name}" is not valid: {reason}')

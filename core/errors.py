"""Domain errors: sentences a person can act on, mapped once to HTTP statuses in
the API and to ``st.error`` in the dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError


class DomainError(Exception):
    """Base of every error the product reports to a person."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class NotFound(DomainError):
    """The thing does not exist for this business (never says whether it exists for another)."""

    status_code = 404


class Conflict(DomainError):
    """The request clashes with the thing's current state (e.g. an illegal status change)."""

    status_code = 409


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class Invalid(DomainError):
    """Input that cannot be accepted; names every offending field."""

    status_code = 422

    def __init__(self, errors: list[FieldError] | str, *, field: str | None = None) -> None:
        if isinstance(errors, str):
            errors = [FieldError(field or "", errors)]
        self.errors = errors
        first = errors[0]
        message = "; ".join(str(e) if e.field else e.message for e in errors)
        super().__init__(message, field=first.field or None)

    def __str__(self) -> str:
        return self.message


def pydantic_errors(exc: Any, prefix: str = "") -> list[FieldError]:
    """Turn a pydantic ``ValidationError`` into field errors a person can read."""
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        for strip in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(strip)
        out.append(FieldError(loc, msg))
    return out


M = TypeVar("M")


def parse_model(model: type[M], data: Any, *, prefix: str = "") -> M:
    """``model`` validated from ``data`` (a dict or already a model), or :class:`Invalid`."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)  # type: ignore[attr-defined, no-any-return]
    except ValidationError as exc:
        raise Invalid(pydantic_errors(exc, prefix)) from None

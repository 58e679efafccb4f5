"""Turning a form's pydantic errors into one sentence per field."""

from __future__ import annotations

from pydantic import ValidationError


def field_errors(exc: ValidationError, hints: dict[str, str]) -> dict[str, str]:
    """field -> what to fix: the field's hint when it has one, else pydantic's message."""
    errors: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False):
        field = str(error["loc"][0]) if error["loc"] else "form"
        errors.setdefault(field, hints.get(field, f"{error['msg']}."))
    return errors


def values(form: dict[str, str], *names: str) -> dict[str, str]:
    """The named fields as typed, to fill the form in again (never the passwords)."""
    return {name: form.get(name, "") for name in names}

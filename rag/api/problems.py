"""A body that does not validate, worded as OpenAI words it: which parameter, what was expected.

    RequestValidationError (pydantic's errors) ─► problems(): one (param, message) per parameter,
        in the caller's terms ─► validation_error(): the first as an OpenAI-style 400

Pydantic names the members of a union in its error locations (`messages.0.content.str`,
`messages.0.content.list[ContentPart].0.text`); a client never wrote those, so they are dropped,
the member that got furthest is kept, and members that failed on the type alone are merged into
one "expected a string or an array". A body that is not JSON at all is told about its
Content-Type.
"""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError

from rag.api.schemas import APIError

_BASIC_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "bytes"})
_EXPECTED = {
    "string_type": "a string",
    "list_type": "an array",
    "tuple_type": "an array",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "literal_error": None,  # a wrong value, not a wrong type: pydantic's message lists the values
}
_BOUNDS = {
    "greater_than_equal": ">=",
    "greater_than": ">",
    "less_than_equal": "<=",
    "less_than": "<",
}
ASK = "send a JSON object with `model` and `messages` (or `prompt` for /v1/completions)"


def _is_tag(part: Any) -> bool:
    """A union member's name in a location (`str`, `list[ContentPart]`), not a field or index."""
    return isinstance(part, str) and (
        part in _BASIC_TAGS or "[" in part or "(" in part or part[:1].isupper()
    )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _message(error: dict[str, Any], param: str, expected: list[str]) -> str:
    where = f"`{param}`" if param else "the request body"
    kind = error.get("type", "")
    if expected:
        wanted = " or ".join(dict.fromkeys(expected))
        return (
            f"invalid type for {where}: expected {wanted}, but got {_kind(error.get('input'))} "
            "instead"
        )
    ctx = error.get("ctx") or {}
    for name, op in _BOUNDS.items():
        if kind == name:
            limit = next(iter(ctx.values()), "?")
            return f"invalid {where}: expected a value {op} {limit}, but got {error.get('input')!r}"
    if kind == "too_long" and "max_length" in ctx:
        sent = ctx.get("actual_length", "more")
        return f"invalid {where}: at most {ctx['max_length']} items are allowed, {sent} were sent"
    if kind == "missing":
        return f"missing required parameter {where}"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"invalid {where}: {message}"


def problems(errors: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """(param, message, is a type error) per failing parameter, in the order pydantic found them."""
    found: dict[str, tuple[dict[str, Any], list[str], int]] = {}
    union_depth: dict[tuple[Any, ...], int] = {}
    cleaned = []
    for error in errors:
        raw = [p for p in error.get("loc", ()) if p != "body"]
        tag = next((i for i, p in enumerate(raw) if _is_tag(p)), None)
        loc = [str(p) for p in raw if not _is_tag(p)]
        prefix = tuple(raw[:tag]) if tag is not None else None
        if prefix is not None:
            union_depth[prefix] = max(union_depth.get(prefix, 0), len(loc))
        cleaned.append((error, loc, prefix))
    for error, loc, prefix in cleaned:
        if prefix is not None and len(loc) < union_depth[prefix]:
            continue  # another member of the union matched further: that is what was meant
        param = ".".join(loc)
        expected = _EXPECTED.get(str(error.get("type")))
        if param in found:
            first, wanted, order = found[param]
            if expected and wanted:  # union members that failed on the type: merge them
                found[param] = (first, [*wanted, expected], order)
            elif wanted and not expected:  # a member took the type but not the value: that one
                found[param] = (error, [], order)
            continue
        found[param] = (error, [expected] if expected else [], len(found))
    return [
        (param, _message(error, param, wanted), bool(wanted))
        for param, (error, wanted, _) in sorted(found.items(), key=lambda kv: kv[1][2])
    ]


def validation_error(exc: RequestValidationError, content_type: str | None = None) -> APIError:
    """FastAPI's 422 becomes OpenAI's 400 with the first problem and where it is."""
    errors = list(exc.errors())
    first = errors[0] if errors else {}
    kind = first.get("type")
    if kind == "json_invalid":
        return APIError(400, f"the request body is not valid JSON; {ASK}", code="invalid_json")
    raw_body = kind == "model_attributes_type" and isinstance(first.get("input"), bytes | str)
    if raw_body or (kind == "missing" and not [p for p in first.get("loc", ()) if p != "body"]):
        media = (content_type or "").split(";")[0].strip().lower()
        if media and media != "application/json" and not media.endswith("+json"):
            return APIError(
                415,
                f"the request body was sent as Content-Type `{media[:100]}`; send JSON with "
                "`Content-Type: application/json`",
                code="unsupported_content_type",
            )
        if kind == "missing":
            return APIError(400, f"the request body is empty; {ASK}", code="invalid_body")
    found = problems(errors)
    if not found:
        return APIError(400, f"invalid request; {ASK}", code="invalid_value")
    param, message, is_type = found[0]
    more = f" (and {len(found) - 1} more problem(s))" if len(found) > 1 else ""
    return APIError(
        400,
        message + more,
        param=param or None,
        code="invalid_type" if is_type and param else "invalid_value",
    )

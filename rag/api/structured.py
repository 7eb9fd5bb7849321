"""What a request may ask for beyond a plain answer: structured output yes, tools and logprobs no.

    body ─► refuse_unsupported: `tools`, `tool_choice`, `functions`, `function_call`, `logprobs`,
            `suffix` are refused with a 400 that names the parameter (never silently ignored)
        ─► output_plan(response_format): None for text; for `json_object` / `json_schema` a Plan,
            after checking that rag's answer object can satisfy the schema (a 400 if it cannot)
    Answer ─► json_content(answer, notice, plan): the JSON object as the message content

The answer object (ANSWER_SHAPE below) is the verified answer with its citation numbers and the
cited papers. A json_schema is satisfied by projection: only the properties the schema names are
sent (nested objects too, through `$ref`/`anyOf`), then a sample answer is validated against the
schema (jsonschema), so a schema that asks for what rag does not have is refused before answering.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from rag.api.replies import cited_numbers
from rag.api.schemas import APIError, ChatRequest, CompletionRequest, ResponseFormat
from rag.types import Answer

ANSWER_SHAPE = (
    '{"answer": str, "citations": [int], "sources": [{"number": int, "title": str, '
    '"paper_id": str, "published": str|null}], "abstained": bool, "notice": str|null}'
)
_SAMPLE = {
    "answer": "Long Range Arena covers sequences from 1K to 16K tokens [1].",
    "citations": [1],
    "sources": [
        {
            "number": 1,
            "title": "Long Range Arena: A Benchmark for Efficient Transformers",
            "paper_id": "2011.04006",
            "published": "2020-11-08",
        }
    ],
    "abstained": False,
    "notice": None,
}


def _unsupported(param: str, why: str) -> APIError:
    return APIError(
        400, f"`{param}` is not supported: {why}", param=param, code="unsupported_parameter"
    )


_NO_TOOLS = (
    "rag answers from the paper corpus and never calls functions; remove it (for structured "
    "output send `response_format` json_object or json_schema, docs/api.md)"
)
_NO_LOGPROBS = "the answer is verified text from the sources, not sampled tokens; remove it"


def refuse_unsupported(body: ChatRequest | CompletionRequest) -> None:
    """A 400 naming the first parameter this API cannot honour (none is ignored silently)."""
    if isinstance(body, CompletionRequest):
        if body.suffix:
            raise _unsupported("suffix", "rag answers a question, it does not insert text")
        if body.logprobs is not None:
            raise _unsupported("logprobs", _NO_LOGPROBS)
        return
    for param in ("tools", "functions"):
        if getattr(body, param):
            raise _unsupported(param, _NO_TOOLS)
    for param in ("tool_choice", "function_call"):
        choice = getattr(body, param)
        if choice is not None and choice != "none":
            raise _unsupported(param, _NO_TOOLS)
    if body.logprobs or body.top_logprobs is not None:
        raise _unsupported("logprobs" if body.logprobs else "top_logprobs", _NO_LOGPROBS)


# ------------------------------------------------------------------------------ json output
@dataclass(frozen=True)
class Plan:
    """How to shape the JSON answer: the schema it must satisfy (None = rag's full object)."""

    schema: dict[str, Any] | None = None


def _resolve(node: Any, root: dict[str, Any]) -> Any:
    """Follow a local `$ref` ("#/$defs/Source") and pick the non-null branch of an anyOf."""
    for _ in range(20):
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = root
            for part in ref[2:].split("/"):
                target = target.get(part, {}) if isinstance(target, dict) else {}
            node = target
            continue
        branches = node.get("anyOf") or node.get("oneOf")
        if branches and "properties" not in node and "items" not in node:
            typed = [b for b in branches if isinstance(b, dict) and b.get("type") != "null"]
            if len(typed) == 1:
                node = typed[0]
                continue
        return node
    return node


def project(value: Any, schema: Any, root: dict[str, Any]) -> Any:
    """`value` with only the object properties `schema` names (recursively)."""
    node = _resolve(schema, root)
    if not isinstance(node, dict):
        return value
    if isinstance(value, dict) and isinstance(node.get("properties"), dict):
        props = node["properties"]
        return {k: project(v, props[k], root) for k, v in value.items() if k in props}
    if isinstance(value, list) and "items" in node:
        return [project(v, node["items"], root) for v in value]
    return value


def output_plan(fmt: ResponseFormat | None) -> Plan | None:
    """None for plain text; a Plan for JSON output, or a 400 naming why the schema cannot be met."""
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return Plan()
    if fmt.json_schema is None:
        raise APIError(
            400,
            "`response_format.json_schema` is missing; send "
            '{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}',
            param="response_format.json_schema",
            code="invalid_value",
        )
    schema = fmt.json_schema.json_schema
    if not schema:
        return Plan()
    param = "response_format.json_schema.schema"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise APIError(
            400, f"the JSON schema is not valid: {exc.message}", param=param, code="invalid_schema"
        ) from None
    sample = project(_SAMPLE, schema, schema)
    problem = next(iter(Draft202012Validator(schema).iter_errors(sample)), None)
    if problem is not None:
        where = "/".join(str(p) for p in problem.absolute_path) or "the top level"
        raise APIError(
            400,
            f"rag cannot produce an answer that fits the JSON schema "
            f"`{fmt.json_schema.name}` ({problem.message}, at {where}); rag's JSON answer is "
            f"{ANSWER_SHAPE}, and a schema may ask for any subset of those keys",
            param=param,
            code="unsupported_schema",
        )
    return Plan(schema=schema)


def answer_object(answer: Answer, notice: str | None) -> dict[str, Any]:
    """rag's JSON answer: the verified text, its citation numbers and the cited papers."""
    cited = sorted(cited_numbers(answer))
    return {
        "answer": answer.text,
        "citations": cited,
        "sources": [
            {
                "number": s.number,
                "title": s.title,
                "paper_id": s.paper_id,
                "published": s.published.isoformat() if s.published else None,
            }
            for s in answer.sources
            if s.number in cited
        ],
        "abstained": answer.abstained,
        "notice": notice,
    }


def json_content(answer: Answer, notice: str | None, plan: Plan) -> str:
    value = answer_object(answer, notice)
    if plan.schema is not None:
        value = project(value, plan.schema, plan.schema)
    return json.dumps(value, ensure_ascii=False)

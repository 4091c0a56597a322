"""Request and response schemas declared next to the views, parsing and OpenAPI from one source.

A view is registered with `operation(...)`, which adds the Flask route and attaches its spec to
the view function. `openapi_document(app)` walks the app's URL map and builds the OpenAPI 3
document from the specs it finds, so the document describes exactly the routes that exist.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from flask import Blueprint, Flask

from merchant_portal.api.errors import ApiError

F = TypeVar("F", bound=Callable[..., Any])
_RULE_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def check_text(value: str, where: str) -> str:
    """Reject what no database column can hold: NUL and unpaired surrogates."""
    if "\x00" in value:
        raise ApiError(400, "invalid_value", f"{where} must not contain NUL characters", where)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "invalid_value", f"{where} is not valid Unicode text", where) from None
    return value


def parse_datetime(raw: str, where: str) -> datetime:
    """An ISO 8601 timestamp with a UTC offset (e.g. 2026-11-23T10:00:00Z)."""
    try:
        value = datetime.fromisoformat(raw)
        if value.tzinfo is None:
            raise ValueError("naive")
        value.astimezone()  # far-away years overflow here, not in the database
    except (ValueError, OverflowError):
        raise ApiError(
            400, "invalid_value", f"{where} must be an ISO 8601 time with an offset", where
        ) from None
    return value


@dataclass(frozen=True)
class Field:
    """One property of a body or one query/path/header parameter."""

    name: str
    type: str  # string | integer | boolean | object | array
    description: str = ""
    required: bool = False
    nullable: bool = False
    min_length: int | None = None
    max_length: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    enum: tuple[str, ...] | None = None
    format: str | None = None
    pattern: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # more JSON Schema keywords
    check: Callable[[Any, str], Any] | None = None  # a further check after the type's

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": [self.type, "null"] if self.nullable else self.type}
        for key, value in (
            ("description", self.description or None),
            ("minLength", self.min_length),
            ("maxLength", self.max_length),
            ("minimum", self.minimum),
            ("maximum", self.maximum),
            ("enum", list(self.enum) if self.enum else None),
            ("format", self.format),
            ("pattern", self.pattern),
        ):
            if value is not None:
                schema[key] = value
        schema.update(self.extra)
        return schema

    def parse(self, value: Any, where: str) -> Any:
        """Check a JSON value against this field; raise `ApiError` with a field name."""
        if value is None:
            if self.nullable:
                return None
            raise ApiError(400, "invalid_type", f"{where} must not be null", where)
        expected = {"string": str, "integer": int, "boolean": bool, "object": dict, "array": list}
        python_type = expected[self.type]
        is_bool = isinstance(value, bool)
        if not isinstance(value, python_type) or (is_bool and python_type is int):
            raise ApiError(400, "invalid_type", f"{where} must be a {self.type}", where)
        if isinstance(value, str):
            check_text(value, where)
            if self.min_length is not None and len(value) < self.min_length:
                raise ApiError(
                    400, "invalid_value", f"{where} needs {self.min_length}+ characters", where
                )
            if self.max_length is not None and len(value) > self.max_length:
                raise ApiError(
                    400, "invalid_value", f"{where} allows {self.max_length} characters", where
                )
            if self.enum and value not in self.enum:
                allowed = ", ".join(self.enum)
                raise ApiError(400, "invalid_value", f"{where} must be one of {allowed}", where)
            if self.pattern and not re.search(self.pattern, value):
                raise ApiError(400, "invalid_value", f"{where} has the wrong format", where)
            if self.format == "date-time":
                value = parse_datetime(value, where)
        if isinstance(value, int) and not is_bool:
            if self.minimum is not None and value < self.minimum:
                raise ApiError(400, "invalid_value", f"{where} must be ≥ {self.minimum}", where)
            if self.maximum is not None and value > self.maximum:
                raise ApiError(400, "invalid_value", f"{where} must be ≤ {self.maximum}", where)
        return self.check(value, where) if self.check else value

    def parse_text(self, raw: str, where: str) -> Any:
        """A query or path parameter arrives as text; convert it, then check as JSON."""
        if self.type == "integer":
            if not re.fullmatch(r"-?[0-9]{1,18}", raw):  # ASCII: \d also takes "٣"
                raise ApiError(400, "invalid_type", f"{where} must be a whole number", where)
            return self.parse(int(raw), where)
        return self.parse(raw, where)


@dataclass(frozen=True)
class Schema:
    """A named JSON object; request schemas are closed (unknown fields are a client error)."""

    name: str
    fields: tuple[Field, ...]
    description: str = ""
    closed: bool = True

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {f.name: f.json_schema() for f in self.fields},
            "additionalProperties": not self.closed,
        }
        required = [f.name for f in self.fields if f.required]
        if required:
            schema["required"] = required
        if self.description:
            schema["description"] = self.description
        return schema

    def parse(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_body", "the request body must be a JSON object")
        known = {f.name: f for f in self.fields}
        unknown = sorted(set(data) - set(known))
        if self.closed and unknown:
            name = check_text(str(unknown[0]), "field name")[:60]
            raise ApiError(400, "unknown_field", f"unknown field {name!r}", name)
        parsed: dict[str, Any] = {}
        for name, spec in known.items():
            if name in data:
                parsed[name] = spec.parse(data[name], name)
            elif spec.required:
                raise ApiError(400, "missing_field", f"{name} is required", name)
        return parsed


def load_json_body(raw: bytes) -> Any:
    """Parse a body ourselves: malformed, non-UTF-8 or absurdly nested JSON is a 400."""
    if not raw.strip():
        raise ApiError(400, "malformed_json", "the request body must be a JSON object")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "malformed_json", "the request body is not valid JSON") from None


@dataclass(frozen=True)
class Response:
    description: str
    schema: Schema | None = None
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    """Everything the OpenAPI document says about one route."""

    operation_id: str
    summary: str
    description: str = ""
    scope: str | None = None  # None: any valid key; "" : public, no key at all
    body: Schema | None = None
    query: tuple[Field, ...] = ()
    path_params: tuple[Field, ...] = ()
    headers: tuple[Field, ...] = ()
    responses: Mapping[int, Response] = field(default_factory=dict)
    tag: str = "invoices"
    media_type: str = "application/json"


def operation(bp: Blueprint, rule: str, method: str, spec: Operation) -> Callable[[F], F]:
    """Register a view on `bp` and attach its spec for the OpenAPI document."""

    def decorator(view: F) -> F:
        view.__api_operation__ = spec  # type: ignore[attr-defined]
        bp.add_url_rule(rule, endpoint=spec.operation_id, view_func=view, methods=[method])
        return view

    return decorator


def collect_schemas(ops: list[Operation]) -> dict[str, Schema]:
    found: dict[str, Schema] = {}
    for op in ops:
        for schema in [op.body, *(r.schema for r in op.responses.values())]:
            if schema is not None:
                found[schema.name] = schema
    return found


def _parameter(spec: Field, where: str) -> dict[str, Any]:
    param: dict[str, Any] = {
        "name": spec.name,
        "in": where,
        "required": spec.required or where == "path",
        "schema": _openapi30(spec.json_schema()),
    }
    if spec.description:
        param["description"] = spec.description
    return param


def _operation_object(spec: Operation) -> dict[str, Any]:
    doc: dict[str, Any] = {"operationId": spec.operation_id, "summary": spec.summary}
    doc["tags"] = [spec.tag]
    if spec.description:
        doc["description"] = spec.description
    params = [_parameter(f, "path") for f in spec.path_params]
    params += [_parameter(f, "query") for f in spec.query]
    params += [_parameter(f, "header") for f in spec.headers]
    if params:
        doc["parameters"] = params
    if spec.scope == "":
        doc["security"] = []
    elif spec.scope:
        doc["description"] = f"{spec.description}\n\nRequires the `{spec.scope}` scope.".strip()
    if spec.body is not None:
        ref = {"$ref": f"#/components/schemas/{spec.body.name}"}
        doc["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref}}}
    responses: dict[str, Any] = {}
    for status, response in sorted(spec.responses.items()):
        entry: dict[str, Any] = {"description": response.description}
        if response.schema is not None:
            ref = {"$ref": f"#/components/schemas/{response.schema.name}"}
            entry["content"] = {spec.media_type: {"schema": ref}}
        if response.headers:
            entry["headers"] = {h: {"schema": {"type": "string"}} for h in response.headers}
        responses[str(status)] = entry
    doc["responses"] = responses
    return doc


def openapi_document(app: Flask, prefix: str, info: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAPI 3.0 document of every route under `prefix` that carries a spec."""
    paths: dict[str, dict[str, Any]] = {}
    specs: list[Operation] = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        view = app.view_functions.get(rule.endpoint)
        spec: Operation | None = getattr(view, "__api_operation__", None)
        if spec is None or not rule.rule.startswith(prefix):
            continue
        path = _RULE_ARG.sub(r"{\1}", rule.rule.removeprefix(prefix)) or "/"
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation_object(spec)
        specs.append(spec)
    return {
        "openapi": "3.0.3",
        "info": dict(info),
        "servers": [{"url": prefix}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key created by the merchant owner in the portal.",
                }
            },
            "schemas": {
                name: _openapi30(s.json_schema())
                for name, s in sorted(collect_schemas(specs).items())
            },
        },
    }


def _openapi30(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI 3.0 spells `type: [t, "null"]` as `type: t, nullable: true`."""
    out = dict(schema)
    kind = out.get("type")
    if isinstance(kind, list):
        out["type"] = next(k for k in kind if k != "null")
        out["nullable"] = True
    for key in ("properties",):
        if key in out:
            out[key] = {name: _openapi30(sub) for name, sub in out[key].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = _openapi30(out[key])
    return out


def parse_query(fields: tuple[Field, ...], args: Mapping[str, str]) -> dict[str, Any]:
    """Query parameters by their specs; an unknown parameter is a client error, not ignored."""
    known = {f.name: f for f in fields}
    for name in args:
        if name not in known:
            shown = check_text(name, "parameter name")[:60]
            raise ApiError(400, "unknown_parameter", f"unknown query parameter {shown!r}", shown)
    parsed: dict[str, Any] = {}
    for spec in fields:
        raw = args.get(spec.name)
        if raw is not None:
            parsed[spec.name] = spec.parse_text(raw, spec.name)
        elif spec.required:
            raise ApiError(400, "missing_field", f"{spec.name} is required", spec.name)
    return parsed

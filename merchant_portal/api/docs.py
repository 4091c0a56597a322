"""The OpenAPI document and a browsable docs page, both generated from the registered routes."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, current_app, render_template

from merchant_portal.api import PREFIX, bp
from merchant_portal.api.auth import api_route
from merchant_portal.api.errors import ERROR_CODES
from merchant_portal.api.schema import Operation, openapi_document
from merchant_portal.api.schema import Response as Doc

INFO = {
    "title": "CryptoCity Pay merchant API",
    "version": "1.0.0",
    "description": (
        "Create and follow BTC and KZTE invoices from your own till or shop. Authenticate with "
        "`Authorization: Bearer <key>` (keys are created by the owner in the portal). Amounts "
        "are integers in minor units: tiyn for KZT, satoshi for BTC, base units for KZTE. "
        'Errors are `{"error": {"code", "message", "field"}}` with a stable `code`.'
    ),
}


def document() -> dict[str, Any]:
    """Built once per app from its URL map (routes do not change after startup)."""
    cached: dict[str, Any] | None = current_app.extensions.get("cryptocity_openapi")
    if cached is None:
        cached = openapi_document(current_app, PREFIX, INFO)
        current_app.extensions["cryptocity_openapi"] = cached
    return cached


OPENAPI = Operation(
    "openapi",
    "This OpenAPI document",
    scope="",
    responses={200: Doc("OpenAPI 3.0 JSON.")},
    tag="docs",
)


@api_route(bp, "/openapi.json", "GET", OPENAPI)
def openapi() -> Response:
    return Response(
        json.dumps(document(), indent=2, sort_keys=True),
        mimetype="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )


DOCS = Operation(
    "docs",
    "Browsable documentation",
    scope="",
    responses={200: Doc("HTML.")},
    tag="docs",
    media_type="text/html",
)


def _operations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """A flat, template-friendly view of the document."""
    schemas = doc["components"]["schemas"]
    ops = []
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            if op["tags"] == ["docs"]:
                continue
            body_ref = (
                op.get("requestBody", {})
                .get("content", {})
                .get("application/json", {})
                .get("schema", {})
                .get("$ref", "")
            )
            body_name = body_ref.rsplit("/", 1)[-1] if body_ref else ""
            ops.append(
                {
                    "method": method.upper(),
                    "path": PREFIX + path,
                    "id": op["operationId"],
                    "summary": op["summary"],
                    "description": op.get("description", ""),
                    "parameters": op.get("parameters", []),
                    "body_name": body_name,
                    "body": schemas.get(body_name),
                    "responses": op["responses"],
                }
            )
    return ops


@api_route(bp, "/docs", "GET", DOCS)
def docs() -> str:
    doc = document()
    return render_template(
        "integrations/api_docs.html",
        info=doc["info"],
        operations=_operations(doc),
        schemas=doc["components"]["schemas"],
        error_codes=ERROR_CODES,
        openapi_url=f"{PREFIX}/openapi.json",
    )

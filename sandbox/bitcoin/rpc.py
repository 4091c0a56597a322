"""JSON-RPC envelope handling, parameter checking and error mapping like bitcoind.

``handle_body`` turns one HTTP request body into (status, body bytes or None);
the per-method logic lives in ``rpc_chain`` and ``rpc_tx``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .errors import InvalidParameter, MethodNotFound, MiscError, SandboxBitcoinError, TypeErrorRPC
from .jsonenc import dumps
from .state import NodeState

_TYPE_NAMES = {"num": "number", "str": "string", "bool": "bool", "arr": "array", "obj": "object"}


@dataclass(slots=True)
class Param:
    """One positional/named parameter of an RPC method."""

    name: str
    kind: str  # num | str | bool | arr | obj | amount | any
    required: bool = False
    skip_check: bool = False  # parsed by the handler itself (Core's skip_type_check)


@dataclass(slots=True)
class Method:
    """An RPC method: its parameters, help text and implementation."""

    name: str
    params: list[Param]
    help: str
    func: Callable[[NodeState, list[Any]], Any]
    category: str = "Blockchain"
    extra: dict[str, Any] = field(default_factory=dict)


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> None:
    """Add a method to the dispatch table."""
    REGISTRY[method.name] = method


def json_type(value: Any) -> str:
    """UniValue type name of a decoded JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def expect_type(value: Any, kind: str) -> str | None:
    """Core's mismatch text for ``value`` against ``kind``, or None when it fits."""
    got = json_type(value)
    if kind == "any":
        return None
    if kind == "amount":
        ok, want = got in ("number", "string"), "number"
    else:
        want = _TYPE_NAMES[kind]
        ok = got == want
    return None if ok else f"JSON value of type {got} is not of expected type {want}"


def _bind(method: Method, params: Any) -> list[Any]:
    spec = method.params
    if isinstance(params, dict):
        names = [p.name for p in spec]
        for key in params:
            if key not in names:
                raise InvalidParameter(f"Unknown named parameter {key}")
        args = [params.get(n) for n in names]
        while args and args[-1] is None:
            args.pop()
    else:
        args = list(params)
        if len(args) > len(spec):
            raise MiscError(method.help)
    for i, p in enumerate(spec):
        if p.required and (i >= len(args) or args[i] is None):
            raise MiscError(method.help)
    errors: dict[str, str] = {}
    for i, value in enumerate(args):
        p = spec[i]
        if value is None or p.skip_check:
            continue
        problem = expect_type(value, p.kind)
        if problem:
            errors[f"Position {i + 1} ({p.name})"] = problem
    if errors:
        raise TypeErrorRPC("Wrong type passed:\n" + json.dumps(errors, indent=4))
    return args


def call(state: NodeState, name: str, params: Any) -> Any:
    """Run one method; raises SandboxBitcoinError with Core's code on failure."""
    method = REGISTRY.get(name)
    if method is None:
        raise MethodNotFound("Method not found")
    return method.func(state, _bind(method, params))


def _error_obj(code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


def _reply(
    v2: bool, rid: Any, result: Any = None, error: dict[str, Any] | None = None
) -> dict[str, Any]:
    if v2:
        return (
            {"jsonrpc": "2.0", "error": error, "id": rid}
            if error is not None
            else {"jsonrpc": "2.0", "result": result, "id": rid}
        )
    return {"result": result, "error": error, "id": rid}


def _status_for(code: int) -> int:
    if code == -32600:
        return 400
    if code == -32601:
        return 404
    return 500


def _one(state: NodeState, req: Any) -> tuple[int, dict[str, Any] | None]:
    """Process one request object -> (HTTP status if alone, reply or None for notifications)."""
    if not isinstance(req, dict):
        return 400, _reply(False, None, error=_error_obj(-32600, "Invalid Request object"))
    rid = req.get("id")
    version = req.get("jsonrpc")
    v2 = version == "2.0"
    if "jsonrpc" in req and version not in ("1.0", "2.0"):
        return 400, _reply(False, rid, error=_error_obj(-32600, "JSON-RPC version not supported"))
    notification = v2 and "id" not in req
    if "method" not in req:
        err = _error_obj(-32600, "Missing method")
        return (200 if v2 else 400), _reply(v2, rid, error=err)
    if not isinstance(req["method"], str):
        err = _error_obj(-32600, "Method must be a string")
        return (200 if v2 else 400), _reply(v2, rid, error=err)
    params = req.get("params", [])
    if params is None:
        params = []
    if not isinstance(params, list | dict):
        err = _error_obj(-32600, "Params must be an array or object")
        return (200 if v2 else 400), _reply(v2, rid, error=err)
    try:
        try:
            result = call(state, req["method"], params)
        except (ValueError, TypeError, OverflowError, ArithmeticError, KeyError) as exc:
            # Core reports unexpected exceptions as RPC_MISC_ERROR with the exception text.
            raise MiscError(str(exc) or type(exc).__name__) from exc
    except SandboxBitcoinError as exc:
        if notification:
            return 204, None
        return (200 if v2 else _status_for(exc.code)), _reply(
            v2, rid, error=_error_obj(exc.code, exc.message)
        )
    if notification:
        return 204, None
    return 200, _reply(v2, rid, result=result)


def handle_body(state: NodeState, body: bytes) -> tuple[int, bytes | None]:
    """Process an HTTP POST body; returns (status, JSON body ending in newline or None)."""
    try:
        req = json.loads(body.decode("utf-8"), parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        err = {"result": None, "error": _error_obj(-32700, "Parse error"), "id": None}
        return 500, (dumps(err) + "\n").encode()
    if not isinstance(req, list | dict):
        err = {
            "result": None,
            "error": _error_obj(-32700, "Top-level object parse error"),
            "id": None,
        }
        return 500, (dumps(err) + "\n").encode()
    if isinstance(req, list):
        replies = []
        for item in req:
            _status, reply = _one(state, item)
            if reply is not None:
                replies.append(reply)
        return 200, (dumps(replies) + "\n").encode()
    status, reply = _one(state, req)
    if reply is None:
        return 204, None
    return status, (dumps(reply) + "\n").encode()


def help_text(command: str | None) -> str:
    """``help`` output: the grouped method list, or one method's help."""
    if command:
        method = REGISTRY.get(command)
        return method.help if method else f"help: unknown command: {command}"
    groups: dict[str, list[str]] = {}
    for m in REGISTRY.values():
        groups.setdefault(m.category, []).append(m.help.split("\n", 1)[0])
    return "\n\n".join(
        f"== {cat} ==\n" + "\n".join(sorted(lines)) for cat, lines in sorted(groups.items())
    )

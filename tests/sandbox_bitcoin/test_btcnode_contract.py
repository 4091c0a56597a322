"""Contract test: replay the recorded Bitcoin Core fixtures against the stand-in.

The chain history of the recording is rebuilt with our own keys and transactions
(same amounts and fees), fixture identifiers are mapped to ours, and every reply is
compared by shape: HTTP status, header names/order, content type, JSON keys and
their order, value types, 8-decimal amounts, and exact error codes/messages.
"""

from __future__ import annotations

import json
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from btcnode_helpers import AUTH, Client, Key, coinbase_coin, spend

from sandbox.bitcoin.node import RunningNode, start_node
from sandbox.bitcoin.scripts import address_to_script

# ../shared beside the repository, wherever the clone lives (CI clones elsewhere than /work).
FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "bitcoind"
MERCHANT2 = "bcrt1q0p4gn23lev2zg0xy8e0mzgfwug85ypm2hm35mh"
MERCHANT = "bcrt1qp4qx3y25kdxt7pyt9fe59k45k934gzz68tv227"


def load(prefix: str) -> dict[str, Any]:
    (path,) = FIXTURES.glob(f"{prefix}_*.json")
    return json.loads(path.read_text(), parse_float=Decimal)  # type: ignore[no-any-return]


def kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    return {int: "int", Decimal: "decimal", str: "str", list: "list", dict: "dict"}[type(v)]


def compare(ours: Any, theirs: Any, path: str, errors: list[str]) -> None:
    """Record every shape difference between our value and the recorded one."""
    if kind(ours) != kind(theirs):
        errors.append(f"{path}: {kind(ours)} != {kind(theirs)} ({ours!r:.60} vs {theirs!r:.60})")
        return
    if isinstance(theirs, dict):
        if list(ours) != list(theirs):
            errors.append(f"{path}: keys {list(ours)} != {list(theirs)}")
        for key in theirs:
            if key in ours:
                compare(ours[key], theirs[key], f"{path}.{key}", errors)
    elif isinstance(theirs, list):
        if theirs:
            for i, item in enumerate(ours):
                compare(item, theirs[min(i, len(theirs) - 1)], f"{path}[{i}]", errors)
        elif ours:
            errors.append(f"{path}: expected empty list, got {ours!r:.80}")
    elif (
        isinstance(theirs, Decimal)
        and theirs.as_tuple().exponent == -8
        and ours.as_tuple().exponent != -8
    ):
        errors.append(f"{path}: amount {ours} not written with 8 decimals")


class Replayer:
    """Sends fixture requests (with identifiers mapped to ours) and checks the replies."""

    def __init__(self, node: RunningNode) -> None:
        self.node = node
        self.subs: dict[str, str] = {}
        self.errors: list[str] = []
        self.count = 0

    def sub(self, text: str) -> str:
        for theirs, ours in self.subs.items():
            text = text.replace(theirs, ours)
        return text

    def send(self, fx: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        req = fx["request"]
        if "body" in req:
            data: bytes | None = self.sub(json.dumps(req["body"], default=str)).encode()
        else:
            data = req["body_raw"].encode() if req.get("body_raw") is not None else None
        headers = {"Content-Type": "application/json"}
        given = {k.lower(): v for k, v in req.get("headers", {}).items()}
        if "authorization" in given:
            wrong = given["authorization"] != "Basic Zml4dHVyZTpmaXh0dXJlcGFzcw=="
            headers["Authorization"] = "Basic d3Jvbmc6d3Jvbmc=" if wrong else AUTH
        url = f"http://127.0.0.1:{self.node.port}{req.get('path', '/')}"
        request = urllib.request.Request(
            url, data=data, headers=headers, method=req.get("http_method", "POST")
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.status, list(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, list(exc.headers.items()), exc.read()

    def replay(self, prefix: str) -> Any:
        """Replay one fixture, record differences, return our parsed result."""
        fx = load(prefix)
        self.count += 1
        status, headers, body = self.send(fx)
        where = f"{prefix}"
        if status != fx["http_status"]:
            self.errors.append(f"{where}: HTTP {status} != {fx['http_status']}")
        names = [k for k, _v in headers]
        if names != list(fx["response_headers"]):
            self.errors.append(f"{where}: headers {names} != {list(fx['response_headers'])}")
        ctype = dict(headers).get("Content-Type")
        if ctype != fx["response_headers"].get("Content-Type"):
            self.errors.append(f"{where}: content-type {ctype}")
        if fx.get("response") is None:
            if body.decode() != (fx.get("response_raw") or ""):
                self.errors.append(f"{where}: raw body {body!r:.80}")
            return None
        if not body.endswith(b"\n"):
            self.errors.append(f"{where}: body does not end with newline")
        ours = json.loads(body, parse_float=Decimal)
        theirs = json.loads(self.sub(json.dumps(fx["response"], default=str)), parse_float=Decimal)
        theirs = _restore_decimals(fx["response"], theirs)
        compare(ours, theirs, where, self.errors)
        for mine, recorded in _error_pairs(ours, theirs):
            if (mine["code"], mine["message"]) != (recorded["code"], recorded["message"]):
                self.errors.append(f"{where}: error {mine} != {recorded}")
        return ours.get("result") if isinstance(ours, dict) else ours


def _restore_decimals(original: Any, substituted: Any) -> Any:
    # json.dumps(default=str) turned Decimals into strings; put the originals back.
    if isinstance(original, Decimal):
        return original
    if isinstance(original, dict):
        return {
            k2: _restore_decimals(v1, v2)
            for (_k1, v1), (k2, v2) in zip(original.items(), substituted.items(), strict=True)
        }
    if isinstance(original, list):
        return [_restore_decimals(a, b) for a, b in zip(original, substituted, strict=True)]
    return substituted


def _error_pairs(ours: Any, theirs: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    if isinstance(ours, list) and isinstance(theirs, list):
        return [p for a, b in zip(ours, theirs, strict=False) for p in _error_pairs(a, b)]
    if (
        isinstance(ours, dict)
        and isinstance(theirs, dict)
        and isinstance(ours.get("error"), dict)
        and isinstance(theirs.get("error"), dict)
    ):
        return [(ours["error"], theirs["error"])]
    return []


def map_list(r: Replayer, prefix: str, ours: list[str]) -> None:
    """Map the hashes a fixture returned to the ones we returned."""
    for theirs, mine in zip(load(prefix)["response"]["result"], ours, strict=True):
        r.subs[theirs] = mine


@pytest.fixture(scope="module")
def contract_node(tmp_path_factory: pytest.TempPathFactory) -> Any:
    node = start_node(tmp_path_factory.mktemp("contract"))
    yield node
    node.stop()


def test_fixture_contract(contract_node: RunningNode) -> None:
    r = Replayer(contract_node)
    rpc = Client(contract_node)
    shopper = Key("contract-shopper")
    for p in ("001", "002", "003", "004"):
        r.replay(p)
    r.subs["bcrt1qasdmztchhv4256ml85a5ppunrz2m8qgtk7pgu7"] = shopper.address
    map_list(r, "007", r.replay("007"))
    r.replay("008")

    # Step 3: the shopper pays the merchant 0.00123456 with a 2820 sat fee (as recorded).
    coin = coinbase_coin(rpc, 1)
    pay = spend(
        shopper,
        [coin],
        [(shopper.spk, coin[2] - 123456 - 2820), (address_to_script(MERCHANT), 123456)],
    )
    pay_id = rpc("sendrawtransaction", pay.serialize().hex())
    fx_pay = load("019")["response"]["result"]
    r.subs.update(
        {
            fx_pay: pay.serialize().hex(),
            "955ee3dc0224f3dde8ed31ab190ed5d2e1eaa9263fea187777b3967954e78a66": pay_id,
        }
    )
    for p in ("012", "013", "014", "015", "016", "017", "018", "019", "020", "021", "022"):
        r.replay(p)

    # Step 4: confirm it and look at the block from every angle.
    map_list(r, "026", r.replay("026"))
    for p in (
        "027",
        "028",
        "029",
        "030",
        "031",
        "032",
        "033",
        "034",
        "035",
        "036",
        "037",
        "038",
        "039",
        "040",
    ):
        r.replay(p)

    # Step 5: invalidate, re-mine two blocks, reconsider the stale one.
    for p in ("041", "042", "043", "044", "045", "046", "047", "048"):
        r.replay(p)
    map_list(r, "049", r.replay("049"))
    for p in ("050", "051", "052", "053", "054", "055", "056", "057", "058", "059"):
        r.replay(p)

    # Step 6: RBF original (2820 sat), bump (3526 sat), low- and high-fee double spends.
    change = pay_id, 0, coin[2] - 123456 - 2820
    m2 = address_to_script(MERCHANT2)
    original = spend(shopper, [change], [(shopper.spk, change[2] - 200000 - 2820), (m2, 200000)])
    r.subs["37c4b16c1df30829ccb36548f9d0e299204eb9680ea028f2032081c6ef506416"] = rpc(
        "sendrawtransaction", original.serialize().hex()
    )
    for p in ("062", "063"):
        r.replay(p)
    bump = spend(shopper, [change], [(shopper.spk, change[2] - 200000 - 3526), (m2, 200000)])
    r.subs["883d76a6ce8bf18aac72aece2b970be66f2a278588c8c7d5f5efdbae08a06cf7"] = rpc(
        "sendrawtransaction", bump.serialize().hex()
    )
    for p in ("065", "066", "067", "068", "069"):
        r.replay(p)
    thief = Key("contract-thief")
    low = spend(shopper, [change], [(thief.spk, change[2] - 2820)])
    high = spend(shopper, [change], [(thief.spk, change[2] - 3 * 3526)])
    r.subs[load("073")["request"]["body"]["params"][0]] = low.serialize().hex()
    r.subs["3f0fa3f77080df908bae487caad3625e64d3e7b6f5ad8b04cd8df5c710d4d088"] = low.GetTxid()[
        ::-1
    ].hex()
    r.replay("073")
    r.subs[load("076")["request"]["body"]["params"][0]] = high.serialize().hex()
    r.subs["a0417ce590e5c4426371de1643f525d4d6f5682ad605e357cd5a7ce0d238b3ba"] = high.GetTxid()[
        ::-1
    ].hex()
    for p in ("076", "077", "078"):
        r.replay(p)
    map_list(r, "081", r.replay("081"))

    # Step 8: protocol corner cases and errors (wallet RPCs excluded).
    for p in (
        "085",
        "086",
        "087",
        "088",
        "089",
        "090",
        "091",
        "092",
        "093",
        "094",
        "095",
        "096",
        "097",
        "098",
        "099",
        "100",
        "101",
        "102",
        "105",
        "106",
        "107",
        "108",
        "109",
        "110",
        "111",
        "112",
        "113",
        "114",
        "115",
        "130",
        "131",
        "135",
        "136",
        "140",
    ):
        r.replay(p)
    assert r.count > 90
    assert not r.errors, "\n".join(r.errors)

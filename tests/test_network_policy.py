"""pos.network_policy without a database: URL parsing, numeric host forms, the address check,
resolution, and the WEBHOOK_ALLOW_PRIVATE_NETWORKS setting."""

from __future__ import annotations

import ipaddress
import logging
import socket
from pathlib import Path

import pytest

from pos import network_policy
from pos.errors import ConfigError
from pos.network_policy import AddressRefusedError, check_webhook_url, is_public, parse_webhook_url
from pos.settings import Settings


def _check(url: str, require_https: bool = False, allow: bool = False) -> str:
    return check_webhook_url(url, require_https=require_https, allow_private_networks=allow)


# The examples and the other spellings of the same machines and networks.
REFUSED = [
    "http://127.0.0.1/hook",
    "http://[::1]/hook",
    "http://2130706433/hook",  # 127.0.0.1 as one decimal number
    "http://localhost/hook",
    "http://localhost./hook",
    "http://LocalHost:8080/hook",
    "http://shop.localhost/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/hook",
    "http://0x7f.1/hook",  # hex and short form
    "http://0x7f000001/hook",
    "http://017700000001/hook",  # octal
    "http://0177.0.0.1/hook",
    "http://127.1/hook",
    "http://0/hook",
    "http://0.0.0.0/hook",
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6
    "http://[::ffff:a9fe:a9fe]/hook",  # 169.254.169.254, mapped
    "http://[::127.0.0.1]/hook",  # IPv4-compatible (deprecated)
    "http://[2002:7f00:1::]/hook",  # 6to4 of 127.0.0.1
    "http://[64:ff9b::a00:1]/hook",  # NAT64 of 10.0.0.1
    "http://[fe80::1]/hook",
    "http://[fd00::1]/hook",
    "http://[ff02::1]/hook",
    "http://[::]/hook",
    "http://100.64.0.1/hook",  # carrier-grade NAT
    "http://172.16.5.4/hook",
    "http://192.168.1.1/hook",
    "http://192.0.0.8/hook",  # IETF protocol assignments (3.11 calls it global)
    "http://198.18.0.1/hook",
    "http://203.0.113.7/hook",
    "http://224.0.0.1/hook",  # multicast (3.11 calls it global)
    "http://240.0.0.1/hook",
    "http://255.255.255.255/hook",
]


@pytest.mark.parametrize("url", REFUSED)
def test_local_private_and_reserved_addresses_are_refused(url: str) -> None:
    with pytest.raises(AddressRefusedError) as refused:
        _check(url)
    assert refused.value.code == "not_public" and refused.value.field == "url"
    https = url.replace("http://", "https://", 1)
    with pytest.raises(AddressRefusedError, match="public internet address"):
        _check(https, require_https=True)  # production: the same, over https


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7F.0.0.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0177.0.0.01", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1.258", "10.1.1.2"),
        ("3232235777", "192.168.1.1"),
        ("0", "0.0.0.0"),
        ("8.8.8.8", "8.8.8.8"),
        ("134744072", "8.8.8.8"),
    ],
)
def test_numeric_host_forms_read_as_inet_aton_does(host: str, address: str) -> None:
    target = parse_webhook_url(f"http://{host}/", require_https=False)
    assert target.address == ipaddress.IPv4Address(address) and target.host == address
    # The C resolver agrees: what we judge is what a connection would reach.
    [info, *_] = socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)
    assert info[4][0] == address


@pytest.mark.parametrize(
    "host", ["256.1.1.1", "1.2.3.4.5", "08.1.1.1", "0x1.0x100.1.1", "4294967296", "a..b", "-a.b"]
)
def test_numbers_that_are_no_address_and_bad_names_are_malformed(host: str) -> None:
    with pytest.raises(AddressRefusedError) as refused:
        _check(f"http://{host}/")
    assert refused.value.code == "host"


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://8.8.8.8/", "scheme"),
        ("http://", "scheme"),
        ("http://[::1", "malformed"),
        ("http://8.8.8.8:99999/", "malformed"),
        ("http://u:p@8.8.8.8/", "credentials"),
        ("http://u@8.8.8.8/", "credentials"),
        ("http://@8.8.8.8/", "credentials"),
        ("http://8.8.8.8/a b", "malformed"),
        ("http://8.8.8.8/" + "x" * 500, "too_long"),
    ],
)
def test_malformed_urls_are_refused_with_their_reason(url: str, code: str) -> None:
    with pytest.raises(AddressRefusedError) as refused:
        _check(url)
    assert refused.value.code == code


def test_https_is_required_when_asked_and_public_addresses_pass() -> None:
    with pytest.raises(AddressRefusedError) as refused:
        _check("http://8.8.8.8/h", require_https=True)
    assert refused.value.code == "https_required"
    assert (
        _check(" https://8.8.8.8:8443/h?x=1 ", require_https=True) == "https://8.8.8.8:8443/h?x=1"
    )
    assert _check("http://[2606:4700:4700::1111]/h") == "http://[2606:4700:4700::1111]/h"
    assert _check("http://[64:ff9b::808:808]/h")  # NAT64 of a public address (DNS64 networks)
    assert is_public(ipaddress.ip_address("93.184.215.14"))
    assert not is_public(ipaddress.ip_address("::ffff:10.0.0.1"))


def _fake_dns(monkeypatch: pytest.MonkeyPatch, names: dict[str, list[str]]) -> list[str]:
    """A mock of DNS (no resolver here); returns the names looked up, in order."""
    asked: list[str] = []

    def getaddrinfo(host: str, port: int, *args: object, **kwargs: object) -> list[object]:
        asked.append(host)
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in names[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_a_name_is_refused_if_any_of_its_addresses_is_not_public(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_dns(
        monkeypatch,
        {
            "shop.example": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
            "loopback.example": ["127.0.0.1"],
            "mixed.example": ["93.184.215.14", "10.0.0.1"],
            "metadata.example": ["fd00:ec2::254"],
        },
    )
    assert _check("https://shop.example/h", require_https=True) == "https://shop.example/h"
    assert _check("https://SHOP.example./h", require_https=True)  # case and trailing dot
    for name in ("loopback.example", "mixed.example", "metadata.example"):
        with pytest.raises(AddressRefusedError) as refused:
            _check(f"https://{name}/h")
        assert refused.value.code == "not_public"
        assert "10.0.0.1" not in str(refused.value)  # the address it resolved to is not told
    with pytest.raises(AddressRefusedError) as unresolved:
        _check("https://nowhere.example/h")
    assert unresolved.value.code == "unresolvable"


def test_resolve_returns_the_checked_addresses_to_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _fake_dns(monkeypatch, {"shop.example": ["93.184.215.14", "93.184.215.15"]})
    target = parse_webhook_url("https://shop.example:8443/h", require_https=True)
    destinations = network_policy.resolve(target, allow_private_networks=False)
    assert [sockaddr for _family, sockaddr in destinations] == [
        ("93.184.215.14", 8443),
        ("93.184.215.15", 8443),
    ]
    assert asked == ["shop.example"]


def test_the_setting_lifts_the_address_check_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "pos.network_policy")
    assert _check("http://127.0.0.1:8080/h", allow=True) == "http://127.0.0.1:8080/h"
    assert _check("http://localhost/h", allow=True)
    assert "WEBHOOK_ALLOW_PRIVATE_NETWORKS is on" in caplog.text
    with pytest.raises(AddressRefusedError, match="https"):
        _check("http://127.0.0.1/h", require_https=True, allow=True)
    with pytest.raises(AddressRefusedError, match="credentials"):
        _check("http://u:p@127.0.0.1/h", allow=True)


def test_the_setting_is_off_by_default_in_every_mode_and_warns_when_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    production = {
        "CRYPTOCITY_DATA_DIR": str(tmp_path),
        "CRYPTOCITY_MODE": "production",
        "SECRET_KEY": "n3twork-p0licy-test-Key-9f2c7e1a4b8d6053e7a1c9b2",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "BITCOIN_RPC_URL": "http://u:p@node:8332",
    }
    demo = {"CRYPTOCITY_DATA_DIR": str(tmp_path)}
    for env in (demo, production):
        assert Settings.from_env(env).webhook_allow_private_networks is False
        assert Settings.from_env({**env, "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "0"}) == (
            Settings.from_env(env)
        )
        caplog.clear()
        with caplog.at_level(logging.WARNING, "pos.settings"):
            on = Settings.from_env({**env, "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "1"})
        assert on.webhook_allow_private_networks is True
        assert "WEBHOOK_ALLOW_PRIVATE_NETWORKS is on" in caplog.text
    with pytest.raises(ConfigError, match="WEBHOOK_ALLOW_PRIVATE_NETWORKS"):
        Settings.from_env({**demo, "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "maybe"})

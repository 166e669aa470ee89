"""Which webhook addresses the notifier may reach (no network)."""

from __future__ import annotations

import pytest

from notifier.targets import BlockedTarget, check_url, parse_allow, why_blocked


@pytest.mark.parametrize("address, label", [
    ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"),
    ("169.254.169.254", "metadata"), ("fd00:ec2::254", "metadata"),
    ("100.100.100.200", "metadata"), ("169.254.1.1", "link-local"), ("fe80::1%eth0", "link-local"),
    ("10.0.0.1", "private"), ("172.16.5.4", "private"), ("192.168.1.1", "private"),
    ("fc00::1", "private"), ("0.0.0.0", "unspecified"), ("224.0.0.1", "multicast"),
    ("100.64.0.1", "not a public"), ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "metadata"), ("2002:7f00:1::", "loopback"),  # 6to4 of 127/8
    ("64:ff9b::a9fe:a9fe", "metadata"),                                     # NAT64 of it
])
def test_internal_addresses_are_blocked(address, label) -> None:
    reason = why_blocked(address)
    assert reason is not None and label in reason


@pytest.mark.parametrize("address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address) -> None:
    assert why_blocked(address) is None


def test_the_allow_list_admits_what_it_names_only() -> None:
    allow = parse_allow(["127.0.0.2", "10.1.0.0/16"])
    assert why_blocked("127.0.0.2", allow) is None and why_blocked("10.1.9.9", allow) is None
    assert why_blocked("127.0.0.1", allow) is not None
    assert why_blocked("10.2.0.1", allow) is not None


def test_urls_with_ip_literals_are_checked_before_any_connection() -> None:
    for url in ("http://169.254.169.254/latest/", "http://[::1]:8080/x", "https://10.0.0.1/"):
        with pytest.raises(BlockedTarget):
            check_url(url)
    check_url("https://hooks.example.org/x")  # a name: checked when it resolves
    with pytest.raises(BlockedTarget):
        check_url("http:///no-host")

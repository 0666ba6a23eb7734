"""A proxy and object servers set up differently (one side upgraded or configured
alone) are told apart: each object server says its images and limits
(``X-Zerovm-Setup``, ``Config.setup``) and the proxy warns once per server and
setup (``zerocloud.proxy.dispatch.Setups``); no warning sounded before."""

from __future__ import annotations

import test_proxy_filter as proxy_tests
from test_proxy_filter import (
    job,
    objects,
    post,
    ran,
)

from zerocloud.config import Config

# the fixtures this module's tests share with test_proxy_filter
batch_servers, servers, swift = (proxy_tests.batch_servers, proxy_tests.servers,
                                 proxy_tests.swift)


class Warnings:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, text: str, *args) -> None:
        self.lines.append(text % args)


def test_a_server_set_up_otherwise_is_warned_of_once(mw, swift, batch_servers) -> None:
    objects(swift, 3)
    fake, _single = batch_servers(d0=ran())
    theirs = Config.from_conf({'zerovm_maxoutput': '1048576',
                               'zerovm_sysimage_devices': 'lua /l.tar'})
    fake.setup = theirs.setup
    told = mw.dispatcher.setups.logger = Warnings()
    for _ in range(2):
        assert post(mw, job(stdin='swift://~/c/item*')).status_int == 200
    assert told.lines == [
        'object server 10.0.0.1:6200 is not set up as this proxy: zerovm_maxoutput=1048576 '
        '(this proxy: 1073741824), zerovm_sysimage_devices=lua (this proxy: ); the smaller '
        'limit holds for the nodes it runs, and a node naming an image it does not list '
        'fails there: give the proxy and the object servers the same values (was one side '
        'upgraded or configured alone?)']


def test_servers_set_up_as_the_proxy_or_saying_nothing_are_not_warned_of(
        mw, swift, batch_servers) -> None:
    objects(swift, 3)
    for setup in (Config.from_conf({'zerovm_maxconfig': '4096'}).setup, None):
        fake, _single = batch_servers(d0=ran())
        fake.setup = setup
        told = mw.dispatcher.setups.logger = Warnings()
        assert post(mw, job(stdin='swift://~/c/item*')).status_int == 200
        assert told.lines == []

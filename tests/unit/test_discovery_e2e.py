"""Discovery through the whole control plane: etcd and file sources to the data plane."""

import json
from functools import partial

import pytest
import trio

from _control_fakes import FakeCheck, balancer_config
from _etcd import Etcd
from actors.app import run_kglb
from actors.dataplane import MemoryDataPlane
from actors.metrics import render_metrics
from actors.probes import Prober
from actors import _cmd_check, _cmd_plan
from actors._cmd_status import render_table
from actors.status import status_document
from kglb.config import Config, ConfigError, EtcdSource, load


def reals(dataplane):
    """(address, port) -> weight of the main service."""
    for service in dataplane.state.services:
        if not service.key.fwmark:
            return {(r.key.address, r.key.port): r.weight for r in service.reals}
    return {}


async def wait_reals(dataplane, expected, timeout=15.0):
    with trio.fail_after(timeout):
        while reals(dataplane) != expected:
            await trio.sleep(0.02)


async def test_reals_added_and_removed_through_etcd_reach_the_data_plane(tmp_path):
    etcd = Etcd(tmp_path / "etcd")
    etcd.start()
    try:
        etcd.put("/lb/web/a", "10.1.0.1:8081")
        etcd.put("/lb/web/b", '{"host": "10.1.0.2", "port": 8082, "weight": 0.5}')
        source = EtcdSource(endpoints=(etcd.url,), prefix="/lb/web/")
        config = Config(balancers=(balancer_config(hosts=(), source=source, rise=1, fall=1,
                                                   interval_ms=50),))
        dataplane = MemoryDataPlane()
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(partial(
                run_kglb, config, dataplane=dataplane, coalesce=0.0,
                prober=Prober(check=FakeCheck(), jitter=0)))
            await wait_reals(dataplane, {("10.1.0.1", 8081): 1000, ("10.1.0.2", 8082): 500})
            etcd.put("/lb/web/c", "10.1.0.3:8083")  # checked at once, then up after rise
            await wait_reals(dataplane, {("10.1.0.1", 8081): 1000, ("10.1.0.2", 8082): 500,
                                         ("10.1.0.3", 8083): 1000})
            etcd.delete("/lb/web/a")
            await wait_reals(dataplane, {("10.1.0.2", 8082): 500, ("10.1.0.3", 8083): 1000})

            stats = handle.statistics()
            source_status = stats.discovery["web-10.0.0.1:80-tcp"]
            assert source_status.kind == "etcd" and source_status.up
            assert source_status.endpoints == 2
            doc = status_document(stats, now=trio.current_time(), wall=0.0)
            assert doc["balancers"][0]["source"]["kind"] == "etcd"
            assert "source etcd /lb/web/: up, 2 reals" in render_table(doc)
            text = render_metrics(stats, wall=0.0).decode()
            assert 'kglb_trio_discovery_up{service="web",setup="setup1",source="etcd"} 1.0' in text
            assert 'kglb_trio_discovery_endpoints{service="web",setup="setup1",source="etcd"} 2.0' \
                in text
            assert "discovery:static_upstream_count{" not in text  # static discovery only
            handle.shutdown()
    finally:
        etcd.kill()


async def test_a_file_source_from_a_loaded_config_and_a_reload_that_changes_it(tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps([{"targets": ["10.1.0.1", "10.1.0.2"]}]))
    second.write_text(json.dumps([{"targets": ["10.1.0.9"]}]))

    def config_text(path):
        return json.dumps({"balancers": [{
            "name": "web", "setupName": "s",
            "lbService": {"ipvsService": {"tcpAttributes": {"address": {"ipv4": "10.0.0.1"},
                                                            "port": 80}}},
            "upstreamRouting": {}, "dynamicRouting": {},
            "upstreamChecker": {"checker": {"dummy": {}}, "intervalMs": 100,
                                "riseCount": 1, "fallCount": 1},
            "upstreamDiscovery": {"port": 8080, "maxRemoveRatio": 0.5,
                                  "fileAttributes": {"path": str(path), "refreshMs": 50}}}]})

    dataplane = MemoryDataPlane()
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(
            run_kglb, load(config_text(first)), dataplane=dataplane, coalesce=0.0,
            prober=Prober(check=FakeCheck(), jitter=0)))
        await wait_reals(dataplane, {("10.1.0.1", 8080): 1000, ("10.1.0.2", 8080): 1000})
        # A new source replaces every real at once: the config changed, nothing is held.
        assert await handle.reload(config_text(second)) == []
        await wait_reals(dataplane, {("10.1.0.9", 8080): 1000})
        handle.shutdown()


def test_load_reports_every_problem_of_the_new_fields():
    discovery = {"port": 80, "maxRemoveRatio": 1.5,
                 "dnsAttributes": {"name": "bad..name", "type": "MX",
                                   "nameservers": ["127.0.0.1", "[::1]:53", "x:53"]}}
    text = json.dumps({"balancers": [{
        "name": "web", "setupName": "s",
        "lbService": {"ipvsService": {"tcpAttributes": {"address": {"ipv4": "10.0.0.1"},
                                                        "port": 80}}},
        "upstreamRouting": {}, "dynamicRouting": {}, "upstreamChecker": {"checker": {"dummy": {}}},
        "upstreamDiscovery": discovery}]})
    with pytest.raises(ConfigError) as info:
        load(text)
    where = "balancers[0].upstreamDiscovery"
    assert info.value.problems == (
        f"{where}.maxRemoveRatio: must be between 0 and 1, not 1.5",
        f"{where}.dnsAttributes.name: 'bad..name' is not a DNS name",
        f"{where}.dnsAttributes.type: 'MX' is not one of A, AAAA, SRV",
        f"{where}.dnsAttributes.nameservers[0]: '127.0.0.1' is not \"address:port\" "
        f"(an IP address and a port)",
        f"{where}.dnsAttributes.nameservers[2]: 'x:53' is not \"address:port\" "
        f"(an IP address and a port)",
    )


async def test_a_reload_that_changes_the_port_moves_every_real_at_once(autojump_clock):
    """A changed config starts discovery afresh: the removal guard does not keep the old ports."""
    config = Config(balancers=(balancer_config(real_port=8080),))
    dataplane = MemoryDataPlane()
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(
            run_kglb, config, dataplane=dataplane, prober=Prober(check=FakeCheck(), jitter=0)))
        await trio.sleep(1)
        assert set(reals(dataplane)) == {("10.1.0.1", 8080), ("10.1.0.2", 8080)}
        assert await handle.reload(Config(balancers=(balancer_config(real_port=9090),))) == []
        await trio.sleep(1)
        assert set(reals(dataplane)) == {("10.1.0.1", 9090), ("10.1.0.2", 9090)}
        handle.shutdown()


def file_config(path) -> str:
    return json.dumps({"balancers": [{
        "name": "web", "setupName": "s",
        "lbService": {"ipvsService": {"tcpAttributes": {"address": {"ipv4": "10.0.0.1"},
                                                        "port": 80}}},
        "upstreamRouting": {"forwardMethod": "MASQ"}, "dynamicRouting": {},
        "upstreamChecker": {"checker": {"dummy": {}}},
        "upstreamDiscovery": {"port": 8080, "fileAttributes": {"path": str(path)}}}]})


def test_check_names_the_source(tmp_path):
    [line] = _cmd_check.summary(load(file_config(tmp_path / "reals.json")))
    assert f"file discovery {tmp_path / 'reals.json'}, maxRemoveRatio 0.5" in line


async def test_plan_asks_the_source_and_reports_it(tmp_path, capsys):
    path = tmp_path / "reals.json"
    # An IPv6 literal cannot be a real of this AF_INET balancer: left out.
    path.write_text(json.dumps([{"targets": ["10.1.0.1:81", "10.1.0.2", "[2001:db8::1]:80"]}]))
    status = await _cmd_plan.print_plan(load(file_config(path)), str(tmp_path / "owned.json"),
                                        lambda links: MemoryDataPlane())
    out, err = capsys.readouterr()
    assert status == 0
    assert "-a -t 10.0.0.1:80 -r 10.1.0.1:81 -m -w 0  # 10.1.0.1" in out.splitlines()
    assert "-a -t 10.0.0.1:80 -r 10.1.0.2:8080 -m -w 0  # 10.1.0.2" in out.splitlines()
    assert "2001:db8::1" not in out
    assert f"web: source file {path}: up, 2 reals" in err

"""BirdSpeaker's own logic against a fake birdc (a script playing BIRD's answers).

The real daemon is in test_bgp_netns.py; here are the paths a real BIRD rarely
takes on demand: unreachable, refusing a configuration, not answering.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import pytest

from actors.bgp import BirdError, BirdSpeaker
from actors.bgp import bird as bird_module
from actors.dataplane import OperationError
from kglb import AnnounceRoute, Route, WithdrawRoute
from kglb.bird import BirdSettings, Neighbor

# The fake BIRD keeps its state in files next to its "socket": `up` (exists
# while BIRD runs), `refuse` (configure fails), `hang` (no answer), `log`
# (commands received). It announces what the include file says, so the read
# side sees what the write side rendered.
FAKE = f"""#!{sys.executable} -S
import pathlib, re, sys, time
socket, command = pathlib.Path(sys.argv[2]), sys.argv[3:]
home = socket.parent
with open(home / "log", "a") as log:
    log.write(" ".join(command) + "\\n")
if (home / "hang").exists():
    time.sleep(60)
print("BIRD 2.0.12 ready.")
if not (home / "up").exists():
    sys.exit(print(f"Unable to connect to server control socket ({{socket}}): No such file or directory") or 1)
include = home / "kglb-trio.conf"
text = include.read_text() if include.exists() else ""
if command == ["configure"]:
    print("Reading configuration from /etc/bird/bird.conf")
    if (home / "refuse").exists():
        sys.exit(print(f"{{include}}:4:1 syntax error, unexpected GARBAGE") or 1)
    print("Reconfigured")
elif command == ["show", "protocols"]:
    print("Name       Proto      Table      State  Since         Info")
    for table in re.findall(r"ipv\\d table (\\S+);", text):
        print(f"kglb_static_{{table[5:]}} Static     {{table}} up     08:50:54.932  ")
    for name in re.findall(r"protocol bgp (\\S+) ", text):
        print(f"{{name}} BGP        ---        up     08:50:58.984  Established   ")
elif command[:2] == ["show", "route"]:
    for block in re.findall(r"ipv\\d table (\\S+);\\n[^\\n]*\\n[^\\n]*\\n(.*?)\\n}}", text, re.S):
        print(f"Table {{block[0]}}:")
        for prefix, body in re.findall(r"route (\\S+) blackhole {{ (.*?) }};", block[1]):
            print(f"{{prefix}}          blackhole [x 08:52:14.280] * (200)")
            hold = re.search(r"kglb_hold_time_ms = (\\d+)", body)[1]
            pairs = re.findall(r"bgp_community.add\\(\\((\\d+),(\\d+)\\)\\)", body)
            if pairs:
                print("\\tBGP.community: " + " ".join(f"({{a}},{{b}})" for a, b in pairs))
            print(f"\\tkglb_hold_time_ms: {{hold}}")
"""


@pytest.fixture
def bird(tmp_path: Path) -> Path:
    script = tmp_path / "birdc"
    script.write_text(FAKE)
    script.chmod(0o755)
    (tmp_path / "up").touch()
    return tmp_path


def speaker(home: Path) -> BirdSpeaker:
    return BirdSpeaker(BirdSettings(
        neighbors=(Neighbor(address="10.1.0.1"),),
        include_path=str(home / "kglb-trio.conf"),
        socket=str(home / "bird.ctl"),
        birdc=str(home / "birdc"),
    ))


def vip(address: str, *communities: str, hold: int = 0) -> Route:
    return Route(prefix=address, local_asn=65000, peer_asn=65001, communities=communities, hold_time_ms=hold)


def configures(home: Path) -> int:
    return (home / "log").read_text().splitlines().count("configure")


async def test_announce_and_withdraw_rewrite_the_include_and_reconfigure(bird):
    s = speaker(bird)
    await s.announce(vip("10.0.0.1", "65101:30000", hold=500))
    await s.announce(vip("10.0.0.2"))
    assert await s.routes() == {vip("10.0.0.1", "65101:30000"), vip("10.0.0.2")}
    assert "route 10.0.0.1/32 blackhole" in (bird / "kglb-trio.conf").read_text()
    assert oct((bird / "kglb-trio.conf").stat().st_mode & 0o777) == "0o644"

    await s.withdraw(vip("10.0.0.1", "65101:30000"))
    await s.withdraw(vip("10.0.0.9"))  # not announced: nothing to do
    assert await s.routes() == {vip("10.0.0.2")}
    assert configures(bird) == 3
    assert sorted(p.name for p in bird.iterdir()) == ["birdc", "kglb-trio.conf", "log", "up"]


async def test_routes_come_back_as_announced_despite_bird_reordering_communities(bird):
    s = speaker(bird)
    announced = vip("10.0.0.1", "65102:10090", "65101:30000", "65101:30000", hold=900)
    await s.announce(announced)
    (back,) = await s.routes()
    assert back == announced
    assert back.communities == ("65101:30000", "65102:10090")  # a set: sorted, no repeats
    assert back.hold_time_ms == 900


async def test_a_new_speaker_adopts_what_bird_announces(bird):
    await speaker(bird).announce(vip("10.0.0.1", hold=300))
    again = speaker(bird)
    await again.announce(vip("10.0.0.2"))
    assert await again.routes() == {vip("10.0.0.1"), vip("10.0.0.2")}
    assert [r.hold_time_ms for r in sorted(await again.routes(), key=lambda r: r.prefix)] == [300, 0]


async def test_statistics_and_session_state_come_from_the_poll(bird):
    s = speaker(bird)
    assert not s.session_established()  # no session yet
    await s.announce(vip("10.0.0.1"))
    await s.poll()
    stats = s.statistics()
    assert s.session_established()
    assert [(x.name, x.neighbor, x.state, x.established) for x in stats.sessions] == [
        ("kglb_65000_65001_10_1_0_1", "10.1.0.1", "Established", True)]
    assert (stats.routes, stats.reachable, stats.polls, stats.configures) == ((vip("10.0.0.1"),), True, 1, 1)

    (bird / "up").unlink()
    await s.poll()
    stats = s.statistics()
    assert not s.session_established()
    assert (stats.reachable, stats.sessions[0].state) == (False, "unknown")
    assert "Unable to connect" in stats.last_error


async def test_unreachable_bird(bird):
    (bird / "up").unlink()
    s = speaker(bird)
    with pytest.raises(BirdError) as raised:
        await s.routes()
    assert isinstance(raised.value, OSError) and raised.value.errno == errno.ECONNREFUSED
    with pytest.raises(OperationError) as refused:
        await s.announce(vip("10.0.0.1"))
    assert refused.value.op == AnnounceRoute(route=vip("10.0.0.1"))
    assert refused.value.errno == errno.ECONNREFUSED
    assert not (bird / "kglb-trio.conf").exists()


async def test_a_refused_configuration_puts_the_previous_file_back(bird):
    s = speaker(bird)
    await s.announce(vip("10.0.0.1"))
    before = (bird / "kglb-trio.conf").read_text()
    (bird / "refuse").touch()
    with pytest.raises(OperationError) as refused:
        await s.withdraw(vip("10.0.0.1"))
    assert refused.value.op == WithdrawRoute(route=vip("10.0.0.1"))
    assert refused.value.errno == errno.EINVAL
    assert "syntax error, unexpected GARBAGE" in refused.value.message
    assert (bird / "kglb-trio.conf").read_text() == before

    (bird / "refuse").unlink()
    await s.announce(vip("10.0.0.2"))  # the refused withdrawal did not stick in memory either
    assert await s.routes() == {vip("10.0.0.1"), vip("10.0.0.2")}


async def test_a_first_refused_configuration_leaves_no_file(bird):
    (bird / "refuse").touch()
    with pytest.raises(OperationError):
        await speaker(bird).announce(vip("10.0.0.1"))
    assert not (bird / "kglb-trio.conf").exists()


async def test_a_community_bird_cannot_take_is_refused_before_bird_is_touched(bird):
    with pytest.raises(OperationError) as refused:
        await speaker(bird).announce(vip("10.0.0.1", "no-export"))
    assert refused.value.errno == errno.EINVAL
    assert "configure" not in (bird / "log").read_text()


async def test_a_silent_bird_times_out(bird, autojump_clock):
    (bird / "hang").touch()
    s = speaker(bird)
    with pytest.raises(BirdError) as raised:
        await s.routes()
    assert raised.value.errno == errno.ETIMEDOUT
    assert f"no answer in {bird_module.BIRDC_TIMEOUT} s" in str(raised.value)



async def test_run_starts_after_a_first_poll_even_with_bird_down(bird, nursery):
    (bird / "up").unlink()
    s = speaker(bird)
    assert await nursery.start(s.run) is s
    assert (s.statistics().polls, s.statistics().reachable) == (1, False)
    nursery.cancel_scope.cancel()

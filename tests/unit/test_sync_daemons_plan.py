"""kglb.sync_daemons: the daemon, and plan_daemons role by role."""

import pytest

from kglb.sync_daemons import DaemonPlan, SyncDaemon, SyncState, plan_daemons

M = SyncState.MASTER
B = SyncState.BACKUP
MASTER7 = SyncDaemon(state=M, interface="eth1", sync_id=7)
BACKUP7 = SyncDaemon(state=B, interface="eth1", sync_id=7)
MASTER8 = SyncDaemon(state=M, interface="eth1", sync_id=8)
BACKUP_ETH2 = SyncDaemon(state=B, interface="eth2", sync_id=7)


@pytest.mark.parametrize(("kw", "problem"), [
    (dict(state=M, interface="", sync_id=1), "interface"),
    (dict(state=M, interface="a/b", sync_id=1), "interface"),
    (dict(state=M, interface="x" * 16, sync_id=1), "interface"),
    (dict(state=M, interface="eth1", sync_id=256), "sync id"),
    (dict(state=M, interface="eth1", sync_id=-1), "sync id"),
    (dict(state=0, interface="eth1", sync_id=1), "SyncState"),
])
def test_an_invalid_daemon_cannot_exist(kw, problem):
    with pytest.raises(ValueError, match=problem):
        SyncDaemon(**kw)


def test_a_daemon_reads_like_ipvsadm():
    assert str(MASTER7) == "master eth1 syncid 7"
    assert SyncDaemon(state=2, interface="eth1").state is B


@pytest.mark.parametrize(("current", "desired", "owned", "expected"), [
    # nothing anywhere
    ((), (), (), DaemonPlan()),
    # start both roles; they are ours before they run (written ahead by the caller)
    ((), (MASTER7, BACKUP7), (), DaemonPlan(start=(MASTER7, BACKUP7), owned=frozenset({MASTER7, BACKUP7}))),
    # already running as wanted, not recorded (a lost record): adopted, nothing touched
    ((MASTER7, BACKUP7), (MASTER7, BACKUP7), (), DaemonPlan(owned=frozenset({MASTER7, BACKUP7}))),
    # ours, sync id changed: stop then start (the kernel cannot change it in place)
    ((MASTER7,), (MASTER8,), (MASTER7,), DaemonPlan(stop=(M,), start=(MASTER8,), owned=frozenset({MASTER8}))),
    # ours, no longer configured: stopped and forgotten
    ((MASTER7, BACKUP7), (MASTER7,), (MASTER7, BACKUP7), DaemonPlan(stop=(B,), owned=frozenset({MASTER7}))),
    # foreign (keepalived's) and not wanted: left alone
    ((BACKUP7,), (), (), DaemonPlan()),
    # foreign in a role we want differently: a conflict, never stopped
    ((BACKUP7,), (BACKUP_ETH2,), (), DaemonPlan(conflicts=(BACKUP7,))),
    # foreign backup, our master: only the master is ours
    ((BACKUP7,), (MASTER7,), (), DaemonPlan(start=(MASTER7,), owned=frozenset({MASTER7}))),
    # recorded as ours but gone (stopped behind our back): started again
    ((), (MASTER7,), (MASTER7,), DaemonPlan(start=(MASTER7,), owned=frozenset({MASTER7}))),
    # recorded as ours, gone, no longer wanted: forgotten
    ((), (), (MASTER7,), DaemonPlan()),
])
def test_plan_daemons(current, desired, owned, expected):
    assert plan_daemons(current, desired, owned) == expected


def test_two_daemons_of_one_role_are_refused():
    with pytest.raises(ValueError, match="two MASTER"):
        plan_daemons((), (MASTER7, MASTER8), ())

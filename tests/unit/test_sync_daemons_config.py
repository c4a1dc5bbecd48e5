"""ipvsSyncDaemons in ControlPlaneConfig: loaded, and every problem with its path."""

import json

import pytest

from kglb.config import ConfigError, load
from kglb.sync_daemons import SyncDaemon, SyncState


def _load(daemons) -> object:
    return load(json.dumps({"balancers": [], "ipvsSyncDaemons": daemons}))


def test_daemons_load_by_name_or_number_and_either_spelling():
    config = _load([{"state": "MASTER", "interface": "eth1", "syncId": 7},
                    {"state": 2, "interface": "eth1", "sync_id": 7}])
    assert config.sync_daemons == (
        SyncDaemon(state=SyncState.MASTER, interface="eth1", sync_id=7),
        SyncDaemon(state=SyncState.BACKUP, interface="eth1", sync_id=7))


def test_no_daemons_by_default():
    assert load('{"balancers": []}').sync_daemons == ()


def test_every_problem_is_reported_with_its_path():
    with pytest.raises(ConfigError) as caught:
        _load([{"interface": "a/b", "syncId": 700},
               {"state": "BACKUP"},
               {"state": "BACKUP", "interface": "eth1"}])
    assert caught.value.problems == (
        "ipvsSyncDaemons[0].state: required: MASTER or BACKUP",
        "ipvsSyncDaemons[0].syncId: 700 is not in 0-255",
        "ipvsSyncDaemons[0].interface: invalid interface name 'a/b'",
        "ipvsSyncDaemons[1].interface: required: the link that carries the sync traffic",
        "ipvsSyncDaemons[2].state: a second BACKUP daemon: the kernel runs one per role",
    )


def test_an_unknown_state_name_is_refused():
    with pytest.raises(ConfigError, match="ipvsSyncDaemons"):
        _load([{"state": "PRIMARY", "interface": "eth1"}])

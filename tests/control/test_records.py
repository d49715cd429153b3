"""The control plane's records through SQLAlchemy, on SQLite and on PostgreSQL: a throwaway server from
Debian's ``postgresql`` (which ``make test`` installs), or the one ``STRONGROOM_TEST_POSTGRES_URL`` names
(e.g. ``postgresql+psycopg://user:pw@127.0.0.1/strongroom``)."""

from __future__ import annotations

import os

import pytest

from strongroom.control.cloudhsmv2 import ControlPlane
from strongroom.control.records import Base, Store
from strongroom.control.sealed import SealingKey

from .postgres import throwaway_server


@pytest.fixture(scope="module")
def postgres_url():
    given = os.environ.get("STRONGROOM_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    try:
        with throwaway_server() as url:
            yield url
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    else:
        store = Store(request.getfixturevalue("postgres_url"))
        with store.engine.begin() as conn:  # each test starts from empty tables
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
    assert store.engine.dialect.name == request.param
    yield store
    store.close()


def test_records_round_trip_with_their_shapes(store):
    control = ControlPlane(store, sealing=SealingKey(bytes(32)))
    made = control.call("CreateCluster", {"HsmType": "hsm1.medium", "SubnetIds": ["subnet-0a1b2c3d"],
                                          "TagList": [{"Key": "k", "Value": "v"}]})["Cluster"]
    [described] = control.call("DescribeClusters", {"Filters": {"clusterIds": [made["ClusterId"]]}})["Clusters"]
    assert described["SubnetMapping"] == {"us-east-1a": "subnet-0a1b2c3d"}
    assert described["TagList"] == [{"Key": "k", "Value": "v"}]
    assert described["CreateTimestamp"] == pytest.approx(made["CreateTimestamp"])
    control.call("ModifyCluster", {"ClusterId": made["ClusterId"],
                                   "BackupRetentionPolicy": {"Type": "DAYS", "Value": "30"}})
    [described] = control.call("DescribeClusters", {"Filters": {"clusterIds": [made["ClusterId"]]}})["Clusters"]
    assert described["BackupRetentionPolicy"] == {"Type": "DAYS", "Value": "30"}


@pytest.mark.parametrize(("text", "limit", "clipped"), [
    ("An HSM is being replaced.", 300, "An HSM is being replaced."),
    ("The HSM did not start yet; retrying: no such file or directory", 40,
     "The HSM did not start yet; retrying…"),
    ("one\nline   at\ta time", 300, "one line at a time"),
    ("x" * 50, 10, "x" * 9 + "…"),
])
def test_state_messages_are_cut_between_words(text, limit, clipped):
    from strongroom.control.records import clip

    assert clip(text, limit) == clipped
    assert len(clip(text, limit)) <= limit


def test_hsm_data_directories_resolve_under_the_control_planes_own_folder(tmp_path):
    from strongroom.control.provider import LocalProvider

    provider = LocalProvider(tmp_path / "copy" / "hsms", tmp_path / "fleet")
    assert provider.data_dir({"data_dir": "hsm-abcdefghijk-2"}) == tmp_path / "copy" / "hsms" / "hsm-abcdefghijk-2"
    # a record an earlier version stored with the original's absolute path: the copy's own folder, by its name
    assert provider.data_dir({"data_dir": "/srv/original/control/hsms/hsm-abcdefghijk"}) == \
        tmp_path / "copy" / "hsms" / "hsm-abcdefghijk"


def test_the_control_plane_knows_a_removed_hsm_by_the_marker_the_node_leaves(tmp_path):
    from strongroom.control.provider import REMOVED_MARKER, LocalProvider
    from strongroom.replication.log import REMOVED_MARKER as NODE_MARKER

    provider = LocalProvider(tmp_path / "hsms", tmp_path / "fleet")
    placement = {"data_dir": "hsm-abcdefghijk"}
    assert not provider.removed(placement)
    (tmp_path / "hsms" / "hsm-abcdefghijk" / "raft").mkdir(parents=True)
    (tmp_path / "hsms" / "hsm-abcdefghijk" / "raft" / NODE_MARKER).touch()
    assert REMOVED_MARKER.name == NODE_MARKER and provider.removed(placement)

"""The control plane's records through SQLAlchemy: SQLite always; PostgreSQL where a server is given
(``STRONGROOM_TEST_POSTGRES_URL``, e.g. ``postgresql+psycopg://user:pw@127.0.0.1/strongroom``)."""

from __future__ import annotations

import os

import pytest

from strongroom.control.service import ControlPlane
from strongroom.control.state import Store

URLS = ["sqlite"] + ([os.environ["STRONGROOM_TEST_POSTGRES_URL"]] if os.environ.get(
    "STRONGROOM_TEST_POSTGRES_URL") else [])


@pytest.fixture(params=URLS)
def store(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}" if request.param == "sqlite" else request.param
    store = Store(url)
    yield store
    store.close()


def test_records_round_trip_with_their_shapes(store):
    control = ControlPlane(store)
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

"""The cloudhsmv2 operations on the control plane's records: parameter rules, state machines, answer shapes.

Each operation takes the request's JSON members and returns the response's (API version 2017-04-28, names as in
botocore's model). The rules are the service's: ID formats, member lengths and ranges, ``NextToken`` and
``MaxResults`` pagination, the cluster states ``CREATE_IN_PROGRESS`` → ``UNINITIALIZED`` → ``INITIALIZE_IN_PROGRESS``
→ ``INITIALIZED`` → ``ACTIVE`` (``DEGRADED`` while an HSM is replaced) → ``DELETE_IN_PROGRESS`` → ``DELETED``.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable
from typing import Any, Literal, overload

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import StrongroomError
from .api_errors import InternalFailure, InvalidRequest, ResourceLimitExceeded, ResourceNotFound, TagError
from .lifecycle import Lifecycle
from .records import Cluster, Hsm, Store, Tag, new_id
from .sealed import PRECO, SealingKey

HSM_TYPES = ("hsm1.medium", "hsm2m.medium")
CLUSTER_STATES = ("CREATE_IN_PROGRESS", "UNINITIALIZED", "INITIALIZE_IN_PROGRESS", "INITIALIZED", "ACTIVE",
                  "UPDATE_IN_PROGRESS", "MODIFY_IN_PROGRESS", "ROLLBACK_IN_PROGRESS", "DELETE_IN_PROGRESS", "DELETED",
                  "DEGRADED")
MAX_TAGS = 50
_ID = {"cluster": re.compile(r"^cluster-[2-7a-zA-Z]{11,16}$"), "hsm": re.compile(r"^hsm-[2-7a-zA-Z]{11,16}$"),
       "backup": re.compile(r"^backup-[2-7a-zA-Z]{11,16}$")}
_SUBNET = re.compile(r"^subnet-[0-9a-fA-F]{8,17}$")
_TAG_TEXT = re.compile(r"^([\w .:/=+\-@]*)$", re.UNICODE)
Operation = Callable[["ControlPlane", dict[str, Any]], dict[str, Any]]
OPERATIONS: dict[str, Operation] = {}


def changes_state(name: str) -> bool:
    """Whether operation ``name`` changes records (all but ``Describe*`` and ``List*``)."""
    return not name.startswith(("Describe", "List"))


def operation(fn: Operation) -> Operation:
    OPERATIONS["".join(part.capitalize() for part in fn.__name__.split("_"))] = fn
    return fn


# ------------------------------------------------------------------ member rules
def _required(body: dict[str, Any], name: str) -> Any:
    if body.get(name) is None:
        raise InvalidRequest(f"{name} is required")
    return body[name]


@overload
def _string(body: dict[str, Any], name: str, *, required: Literal[True], max_length: int = 256) -> str: ...


@overload
def _string(body: dict[str, Any], name: str, *, required: bool = False, max_length: int = 256) -> str | None: ...


def _string(body: dict[str, Any], name: str, *, required: bool = False, max_length: int = 256) -> str | None:
    """Member ``name`` of ``body``, a string of at most ``max_length`` characters (``None`` when absent).

    Raises:
        InvalidRequest: the member is missing although ``required``, or is not such a string.
    """
    value = _required(body, name) if required else body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise InvalidRequest(f"{name} must be a string of at most {max_length} characters")
    return value


def _resource_id(body: dict[str, Any], name: str, kinds: tuple[str, ...]) -> str:
    value = _string(body, name, required=True, max_length=64)
    if not any(_ID[kind].match(value) for kind in kinds):
        raise InvalidRequest(f"{name} {value!r} is not a valid {' or '.join(kinds)} ID")
    return value


def _max_results(body: dict[str, Any], limit: int) -> int:
    value = body.get("MaxResults", limit)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
        raise InvalidRequest(f"MaxResults must be an integer from 1 to {limit}")
    return value


def _page(items: list[Any], body: dict[str, Any], limit: int) -> tuple[list[Any], str | None]:
    """One page of ``items`` (already in a stable order) and the token of the next."""
    size = _max_results(body, limit)
    token = body.get("NextToken")
    start = 0
    if token is not None:
        try:
            start = int(base64.urlsafe_b64decode(str(token).encode()).decode())
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequest("NextToken is not valid") from None
        if not 0 <= start <= len(items):
            raise InvalidRequest("NextToken is not valid")
    end = start + size
    following = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else None
    return items[start:end], following


def _tags(value: Any, name: str = "TagList") -> list[tuple[str, str]]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_TAGS:
        raise InvalidRequest(f"{name} must hold 1 to {MAX_TAGS} tags")
    tags = []
    for tag in value:
        if not isinstance(tag, dict) or not isinstance(tag.get("Key"), str):
            raise InvalidRequest(f"each tag of {name} needs a Key")
        key, tag_value = tag["Key"], tag.get("Value", "")
        if not isinstance(tag_value, str) or not 1 <= len(key) <= 128 or len(tag_value) > 256 \
                or not _TAG_TEXT.match(key) or not _TAG_TEXT.match(tag_value):
            raise TagError(f"tag {key!r:.40}: keys are 1-128 and values 0-256 letters, digits, spaces or _.:/=+-@")
        if key.lower().startswith("aws:"):
            raise TagError(f"tag key {key!r:.40}: the aws: prefix is reserved")
        tags.append((key, tag_value))
    if len({k for k, _ in tags}) != len(tags):
        raise InvalidRequest(f"{name} holds the same key twice")
    return tags


# ------------------------------------------------------------------ shapes
def hsm_shape(hsm: Hsm) -> dict[str, Any]:
    """The ``Hsm`` shape, plus ``Endpoint`` (``HOST:PORT`` clients connect to): a Strongroom member, which AWS
    SDKs ignore."""
    shape = {"AvailabilityZone": hsm.availability_zone, "ClusterId": hsm.cluster_id, "SubnetId": hsm.subnet_id,
             "EniId": hsm.eni_id, "EniIp": hsm.eni_ip, "HsmId": hsm.hsm_id, "HsmType": hsm.cluster.hsm_type,
             "State": hsm.state, "StateMessage": hsm.state_message}
    if hsm.placement.get("endpoint"):
        shape["Endpoint"] = hsm.placement["endpoint"]
    return shape


def cluster_shape(session: Session, cluster: Cluster) -> dict[str, Any]:
    certificates: dict[str, str] = {}
    if cluster.cluster_csr and cluster.state == "UNINITIALIZED":
        certificates["ClusterCsr"] = cluster.cluster_csr
    if cluster.cluster_certificate:
        certificates["ClusterCertificate"] = cluster.cluster_certificate
    tags = session.scalars(select(Tag).where(Tag.resource_id == cluster.cluster_id).order_by(Tag.key)).all()
    shape: dict[str, Any] = {
        "BackupPolicy": "DEFAULT",
        "BackupRetentionPolicy": {"Type": "DAYS", "Value": cluster.backup_retention_days},
        "ClusterId": cluster.cluster_id, "CreateTimestamp": cluster.create_timestamp,
        "Hsms": [hsm_shape(h) for h in cluster.hsms if h.state != "DELETED"],
        "HsmType": cluster.hsm_type, "SecurityGroup": cluster.security_group, "State": cluster.state,
        "StateMessage": cluster.state_message, "SubnetMapping": dict(cluster.subnet_mapping),
        "VpcId": cluster.vpc_id, "NetworkType": cluster.network_type, "Certificates": certificates,
        "TagList": [{"Key": t.key, "Value": t.value} for t in tags], "Mode": cluster.mode,
    }
    if cluster.source_backup_id:
        shape["SourceBackupId"] = cluster.source_backup_id
    return shape


class ControlPlane:
    """The operations over a :class:`~strongroom.control.records.Store`.

    Args:
        store: the records.
        region: the region this control plane answers for (availability zones are ``<region>a``, ``b`` …).
        lifecycle: runs the HSMs (without one, HSM operations are refused).
        sealing: the key the records' secrets are sealed under (access keys, initial admin passwords).
    """

    def __init__(self, store: Store, region: str = "us-east-1", lifecycle: Lifecycle | None = None, *,
                 sealing: SealingKey) -> None:
        self.store = store
        self.region = region
        self.lifecycle = lifecycle
        self.sealing = sealing
        self.lock = threading.Lock()

    def call(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Run operation ``name`` (e.g. ``"DescribeClusters"``); raises :class:`~.api_errors.ApiError`. Operations that
        change records run one at a time (their checks and writes stay together)."""
        if not changes_state(name):
            return OPERATIONS[name](self, body)
        with self.lock:
            return OPERATIONS[name](self, body)

    def _cluster(self, session: Session, cluster_id: str) -> Cluster:
        cluster = session.get(Cluster, cluster_id)
        if cluster is None or cluster.state == "DELETED":
            raise ResourceNotFound(f"Cluster '{cluster_id}' does not exist")
        return cluster


@operation
def create_cluster(cp: ControlPlane, body: dict[str, Any]) -> dict[str, Any]:
    hsm_type = _string(body, "HsmType", required=True, max_length=32)
    if hsm_type not in HSM_TYPES:
        raise InvalidRequest(f"HsmType must be one of {', '.join(HSM_TYPES)}")
    subnets = _required(body, "SubnetIds")
    if not isinstance(subnets, list) or not 1 <= len(subnets) <= 10 \
            or not all(isinstance(s, str) and _SUBNET.match(s) for s in subnets) or len(set(subnets)) != len(subnets):
        raise InvalidRequest("SubnetIds must hold 1 to 10 distinct subnet IDs (subnet-…), one per availability zone")
    mode = body.get("Mode", "FIPS")
    if mode not in ("FIPS", "NON_FIPS"):
        raise InvalidRequest("Mode must be FIPS or NON_FIPS")
    network_type = body.get("NetworkType", "IPV4")
    if network_type not in ("IPV4", "DUALSTACK"):
        raise InvalidRequest("NetworkType must be IPV4 or DUALSTACK")
    retention = _retention(body.get("BackupRetentionPolicy"))
    if body.get("SourceBackupId") is not None:
        raise InvalidRequest("restoring a cluster from a backup is not available yet")
    tags = _tags(body["TagList"]) if body.get("TagList") is not None else []
    zones = [f"{cp.region}{chr(ord('a') + i)}" for i in range(len(subnets))]
    with cp.store.session() as session:
        cluster = Cluster(cluster_id=new_id("cluster"), state="UNINITIALIZED", hsm_type=hsm_type, mode=mode,
                          network_type=network_type, subnet_mapping=dict(zip(zones, subnets, strict=True)),
                          vpc_id="vpc-" + new_id("x")[2:], security_group="sg-" + new_id("x")[2:],
                          backup_retention_days=retention or "90")
        session.add(cluster)
        session.add_all(Tag(resource_id=cluster.cluster_id, key=k, value=v) for k, v in tags)
        session.flush()
        shape = cluster_shape(session, cluster)
    return {"Cluster": {**shape, "State": "CREATE_IN_PROGRESS"}}


def _retention(policy: Any) -> str | None:
    if policy is None:
        return None
    value = policy.get("Value") if isinstance(policy, dict) else None
    if not isinstance(policy, dict) or policy.get("Type") != "DAYS" or not isinstance(value, str) \
            or not re.fullmatch(r"[0-9]{1,3}", value) or not 7 <= int(value) <= 379:
        raise InvalidRequest("BackupRetentionPolicy must be {Type: DAYS, Value: 7-379}")
    return str(int(policy["Value"]))


@operation
def describe_clusters(cp: ControlPlane, body: dict[str, Any]) -> dict[str, Any]:
    filters = body.get("Filters")
    filters = {} if filters is None else filters
    if not isinstance(filters, dict) or set(filters) - {"clusterIds", "vpcIds", "states"} \
            or not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in filters.values()):
        raise InvalidRequest("Filters may hold clusterIds, vpcIds and states, each a list of strings")
    for state in filters.get("states", []):
        if state not in CLUSTER_STATES:
            raise InvalidRequest(f"{state!r:.40} is not a cluster state")
    with cp.store.session() as session:
        clusters = session.scalars(select(Cluster).order_by(Cluster.create_timestamp, Cluster.cluster_id)).all()
        chosen = [c for c in clusters
                  if ("clusterIds" not in filters or c.cluster_id in filters["clusterIds"])
                  and ("vpcIds" not in filters or c.vpc_id in filters["vpcIds"])
                  and ("states" not in filters or c.state in filters["states"])]
        page, following = _page(chosen, body, 25)
        out: dict[str, Any] = {"Clusters": [_with_preco_password(cp, cluster_shape(session, c), c) for c in page]}
    if following:
        out["NextToken"] = following
    return out


def _with_preco_password(cp: ControlPlane, shape: dict[str, Any], cluster: Cluster) -> dict[str, Any]:
    """``PreCoPassword``, the initial admin password the first HSM made, from its creation until the cluster is
    activated (the owner changes it then; the control plane forgets it)."""
    if cluster.sealed_preco_password is not None and cluster.state != "ACTIVE":
        shape["PreCoPassword"] = cp.sealing.open(PRECO, cluster.cluster_id, cluster.sealed_preco_password)
    return shape


@operation
def modify_cluster(cp: ControlPlane, body: dict[str, Any]) -> dict[str, Any]:
    cluster_id = _resource_id(body, "ClusterId", ("cluster",))
    retention = _retention(body.get("BackupRetentionPolicy"))
    with cp.store.session() as session:
        cluster = cp._cluster(session, cluster_id)
        hsm_type = body.get("HsmType")
        if hsm_type is not None and hsm_type != cluster.hsm_type:
            raise InvalidRequest(f"Cluster '{cluster_id}' cannot change its HsmType to {hsm_type!r:.40}")
        if retention is not None:
            cluster.backup_retention_days = retention
        return {"Cluster": cluster_shape(session, cluster)}


@operation
def delete_cluster(cp: ControlPlane, body: dict[str, Any]) -> dict[str, Any]:
    cluster_id = _resource_id(body, "ClusterId", ("cluster",))
    with cp.store.session() as session:
        cluster = cp._cluster(session, cluster_id)
        if any(h.state != "DELETED" for h in cluster.hsms):
            raise InvalidRequest(f"Cluster '{cluster_id}' still has HSMs; delete them first")
        shape = cluster_shape(session, cluster)
        cluster.state, cluster.state_message = "DELETED", "The cluster has been deleted."
    return {"Cluster": {**shape, "State": "DELETE_IN_PROGRESS"}}


def _tagged(cp: ControlPlane, session: Session, resource_id: str) -> None:
    if resource_id.startswith("cluster-"):
        cp._cluster(session, resource_id)
        return
    raise ResourceNotFound(f"Backup '{resource_id}' does not exist")


@operation
def tag_resource(cp: ControlPlane, body: dict[str, Any]) -> dict[str, Any]:
    resource_id = _resource_id(body, "ResourceId", ("cluster", "backup"))
    tags = _tags(_required(body, "TagList"))
    with cp.store.session() as session:
        _tagged(cp, session, resource_id)
        current = {t.key: t for t in session.scalars(select(Tag).where(Tag.resource_id == resource_id))}
        if len(set(current) | {k for k, _ in tags}) > MAX_TAGS:
            raise ResourceLimitExceeded(f"a resource holds at most {MAX_TAGS} tags")
        for key, value in tags:
            if key in current:
                current[key].value = value
            else:
                session.add(Tag(resource_id=resource_id, key=key, value=value))
    return {}


@operation
def untag_resource(cp: ControlPlane, body: dict[str, Any]) -> dict[str, Any]:
    resource_id = _resource_id(body, "ResourceId", ("cluster", "backup"))
    keys = _required(body, "TagKeyList")
    if not isinstance(keys, list) or not 1 <= len(keys) <= MAX_TAGS or not all(isinstance(k, str) for k in keys):
        raise InvalidRequest(f"TagKeyList must hold 1 to {MAX_TAGS} tag keys")
    with cp.store.session() as session:
        _tagged(cp, session, resource_id)
        for tag in session.scalars(select(Tag).where(Tag.resource_id == resource_id, Tag.key.in_(keys))):
            session.delete(tag)
    return {}


@operation
def list_tags(cp: ControlPlane, body: dict[str, Any]) -> dict[str, Any]:
    resource_id = _resource_id(body, "ResourceId", ("cluster", "backup"))
    with cp.store.session() as session:
        _tagged(cp, session, resource_id)
        tags = session.scalars(select(Tag).where(Tag.resource_id == resource_id).order_by(Tag.key)).all()
        page, following = _page(list(tags), body, 100)
        out: dict[str, Any] = {"TagList": [{"Key": t.key, "Value": t.value} for t in page]}
    if following:
        out["NextToken"] = following
    return out


# ------------------------------------------------------------------ HSMs
def _lifecycle(cp: ControlPlane) -> Lifecycle:
    if cp.lifecycle is None:
        raise InternalFailure("this control plane runs no HSMs")
    return cp.lifecycle


@operation
def create_hsm(cp: ControlPlane, body: dict[str, Any]) -> dict[str, Any]:
    cluster_id = _resource_id(body, "ClusterId", ("cluster",))
    zone = _string(body, "AvailabilityZone", required=True, max_length=32)
    address = _string(body, "IpAddress", max_length=45)
    lifecycle = _lifecycle(cp)
    with cp.store.session() as session:
        cluster = cp._cluster(session, cluster_id)
        if zone not in cluster.subnet_mapping:
            raise InvalidRequest(f"AvailabilityZone {zone!r:.40} is not one of the cluster's: "
                                 f"{', '.join(sorted(cluster.subnet_mapping))}")
        if address is not None and address != "127.0.0.1":
            raise InvalidRequest("IpAddress: this control plane places HSMs on 127.0.0.1")
        live = [h for h in cluster.hsms if h.state != "DELETED"]
        if not live and cluster.state != "UNINITIALIZED":
            raise InvalidRequest(f"Cluster '{cluster_id}' has no HSM left that holds its keys (restoring from a "
                                 "backup is not available yet)")
        if live and cluster.state not in ("ACTIVE", "DEGRADED"):
            raise InvalidRequest(f"Cluster '{cluster_id}' already contains an HSM but has not yet been fully "
                                 "activated")
        hsm = Hsm(hsm_id=new_id("hsm"), cluster=cluster, availability_zone=zone,
                  subnet_id=cluster.subnet_mapping[zone], eni_id="eni-" + new_id("x")[2:], state="CREATE_IN_PROGRESS",
                  placement={})
        session.add(hsm)
        session.flush()
        shape = hsm_shape(hsm)
    lifecycle.wake.set()
    return {"Hsm": shape}


@operation
def delete_hsm(cp: ControlPlane, body: dict[str, Any]) -> dict[str, Any]:
    cluster_id = _resource_id(body, "ClusterId", ("cluster",))
    given = [name for name in ("HsmId", "EniId", "EniIp") if body.get(name) is not None]
    if len(given) != 1:
        raise InvalidRequest("give exactly one of HsmId, EniId and EniIp")
    value = _string(body, given[0], required=True, max_length=64)
    lifecycle = _lifecycle(cp)
    with cp.store.session() as session:
        cluster = cp._cluster(session, cluster_id)
        column = {"HsmId": "hsm_id", "EniId": "eni_id", "EniIp": "eni_ip"}[given[0]]
        if given[0] == "HsmId" and not _ID["hsm"].match(value):
            raise InvalidRequest(f"HsmId {value!r:.40} is not a valid HSM ID")
        matches = [h for h in cluster.hsms if h.state != "DELETED" and getattr(h, column) == value]
        if not matches:
            raise ResourceNotFound(f"HSM {value!r:.40} does not exist in cluster '{cluster_id}'")
        if len(matches) > 1:
            raise InvalidRequest(f"{given[0]} {value!r:.40} names {len(matches)} HSMs; give the HsmId")
        hsm = matches[0]
        if hsm.state in ("CREATE_IN_PROGRESS", "DELETE_IN_PROGRESS"):
            raise InvalidRequest(f"HSM '{hsm.hsm_id}' is {hsm.state}; try again later")
        hsm.state = "DELETE_IN_PROGRESS"
        hsm_id = hsm.hsm_id
    lifecycle.wake.set()
    return {"HsmId": hsm_id}


@operation
def initialize_cluster(cp: ControlPlane, body: dict[str, Any]) -> dict[str, Any]:
    cluster_id = _resource_id(body, "ClusterId", ("cluster",))
    certificate = _string(body, "SignedCert", required=True, max_length=20_000)
    anchor = _string(body, "TrustAnchor", required=True, max_length=20_000)
    lifecycle = _lifecycle(cp)
    with cp.store.session() as session:
        cluster = cp._cluster(session, cluster_id)
        active = [h for h in cluster.hsms if h.state == "ACTIVE"]
        if cluster.state != "UNINITIALIZED" or not cluster.cluster_csr or not active:
            raise InvalidRequest(f"Cluster '{cluster_id}' is {cluster.state}: it can be initialized once it is "
                                 "UNINITIALIZED with its first HSM created (the cluster CSR exists)")
        endpoint = active[0].placement["endpoint"]
    try:
        lifecycle.initialize(cluster_id, endpoint, certificate, anchor)
    except StrongroomError as exc:
        if exc.retryable:
            raise InternalFailure(f"the cluster's HSM did not answer: {exc.message}") from None
        raise InvalidRequest(f"SignedCert and TrustAnchor were refused: {exc.message}") from None
    message = "Cluster is initializing. State will change to INITIALIZED upon completion."
    with cp.store.session() as session:
        cluster = cp._cluster(session, cluster_id)
        cluster.state, cluster.state_message = "INITIALIZE_IN_PROGRESS", message
        cluster.cluster_certificate, cluster.trust_anchor = certificate, anchor
    lifecycle.wake.set()
    return {"State": "INITIALIZE_IN_PROGRESS", "StateMessage": message}

"""The HSM and cluster state machines the control plane drives in the background: HSMs being created and deleted,
initialisation and activation noticed, and health: an HSM that dies is replaced by a new one (same HSM id and
address) that joins the cluster and catches up, the cluster ``DEGRADED`` meanwhile.

One worker thread runs :meth:`Lifecycle.step` about twice a second; API calls only record what they want done.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import ArgumentsBad, StrongroomError
from .appliance import SESSION, Appliance
from .provider import Provider, ProviderError
from .records import Cluster, Hsm, Store, clip
from .sealed import PRECO as PRECO_KIND
from .sealed import SealingKey

log = logging.getLogger("strongroom.control")
STEP_S = 0.5
HEALTH_TIMEOUT_S = 3.0
FAILURES_BEFORE_REPLACING = 2  # consecutive failed health checks
REPLACING = "The HSM is being replaced."  # an HSM's StateMessage while a new node takes its place
_Row = TypeVar("_Row", Cluster, Hsm)


def _row(session: Session, kind: type[_Row], key: str) -> _Row:
    """The record of ``kind`` with primary key ``key``; records are never deleted (a state says DELETED).

    Raises:
        LookupError: there is no such record.
    """
    row = session.get(kind, key)
    if row is None:
        raise LookupError(f"no {kind.__name__} record {key!r}")
    return row


class Lifecycle:
    """Runs HSMs for the control plane's clusters.

    Args:
        store: the control plane's records.
        provider: where HSMs run.
        appliance: the control plane's identity towards HSMs.
        root: a folder for per-cluster files (the owner's trust anchor, read by joining HSMs).
        sealing: the key the first HSM's initial admin password is sealed under in the records.
    """

    def __init__(self, store: Store, provider: Provider, appliance: Appliance, root: Path,
                 sealing: SealingKey) -> None:
        self.store = store
        self.sealing = sealing
        self.provider = provider
        self.appliance = appliance
        self.root = Path(root).resolve()
        self.failures: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.wake = threading.Event()

    # ------------------------------------------------------------------ files and calls
    def anchor_path(self, cluster_id: str) -> Path:
        return self.root / cluster_id / "trust-anchor.pem"

    def hsm_call(self, cluster_id: str, endpoint: str, calls: list[tuple[Any, ...]], login: bool = True,
                 timeout_s: float = 10.0) -> list[Any]:
        return self.appliance.call(endpoint, calls, trust_anchor=self.anchor_path(cluster_id), login=login,
                                   timeout_s=timeout_s)

    def initial_password(self, cluster_id: str, endpoint: str) -> str:
        """The initial admin password of the cluster's first HSM, read from it by the appliance user
        (``initial_password``: random, made inside that HSM).

        Raises:
            StrongroomError: what the HSM answered.
        """
        password: str
        [password] = self.hsm_call(cluster_id, endpoint, [("initial_password", SESSION)])
        return password

    def initialize(self, cluster_id: str, endpoint: str, certificate: str, trust_anchor: str) -> None:
        """Hand the owner's certificate and trust anchor to the cluster's HSM (it checks them).

        Raises:
            StrongroomError: what the HSM refused (``CKR_SIGNATURE_INVALID`` for a certificate that does not fit).
        """
        self.hsm_call(cluster_id, endpoint, [("initialize_cluster", SESSION, certificate, trust_anchor)])
        path = self.anchor_path(cluster_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(trust_anchor)

    # ------------------------------------------------------------------ the worker
    def start(self) -> None:
        self.resume()
        self._thread = threading.Thread(target=self._run, name="lifecycle", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(60)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # logged; the next step tries again
                log.exception("lifecycle step failed")
            self.wake.wait(STEP_S)
            self.wake.clear()

    def resume(self) -> None:
        """Start again the HSMs a previous run of the control plane left running."""
        with self.store.session() as session:
            hsms = [(h.hsm_id, dict(h.placement)) for h in session.scalars(
                select(Hsm).where(Hsm.state.in_(("ACTIVE", "DEGRADED"))))]
        for hsm_id, placement in hsms:
            if placement.get("data_dir") and not self.provider.alive(placement):
                try:
                    placement = self.provider.resume(placement)
                except ProviderError as exc:
                    log.warning("HSM %s did not start again: %s", hsm_id, exc)
                    continue
                with self.store.session() as session:
                    _row(session, Hsm, hsm_id).placement = placement

    def step(self) -> None:
        """One pass over every cluster's HSMs."""
        with self.store.session() as session:
            clusters = [c.cluster_id for c in session.scalars(select(Cluster).where(Cluster.state != "DELETED"))]
        for cluster_id in clusters:
            if self._stop.is_set():
                return
            self._cluster_step(cluster_id)

    def _snapshot(self, cluster_id: str) -> tuple[str, list[dict[str, Any]]]:
        with self.store.session() as session:
            cluster = _row(session, Cluster, cluster_id)
            return cluster.state, [{"hsm_id": h.hsm_id, "state": h.state, "state_message": h.state_message,
                                    "placement": dict(h.placement)}
                                   for h in cluster.hsms]

    def _set(self, cluster_id: str, hsm_id: str | None = None, **fields: Any) -> None:
        with self.store.session() as session:
            target = session.get(Hsm, hsm_id) if hsm_id is not None else session.get(Cluster, cluster_id)
            for name, value in fields.items():
                setattr(target, name, value)

    def _cluster_step(self, cluster_id: str) -> None:
        state, hsms = self._snapshot(cluster_id)
        active = [h for h in hsms if h["state"] == "ACTIVE"]
        for hsm in hsms:
            if hsm["state"] == "CREATE_IN_PROGRESS":
                self._create(cluster_id, state, hsm, active)
            elif hsm["state"] == "DELETE_IN_PROGRESS":
                self._delete(cluster_id, hsm, [h for h in active if h["hsm_id"] != hsm["hsm_id"]])
        state, hsms = self._snapshot(cluster_id)
        active = [h for h in hsms if h["state"] == "ACTIVE"]
        if state in ("INITIALIZE_IN_PROGRESS", "INITIALIZED") and active:
            info = self._info(cluster_id, active[0])
            if info is not None and info.get("initialized") and state == "INITIALIZE_IN_PROGRESS" and all(
                    self.appliance.serves_chain_to(h["placement"]["endpoint"], self.anchor_path(cluster_id))
                    for h in active):
                self._set(cluster_id, state="INITIALIZED", state_message="Cluster initialized; activate it.")
            elif info is not None and info.get("activated") and state == "INITIALIZED":
                self._set(cluster_id, state="ACTIVE", state_message="", sealed_preco_password=None)
        if hsms:
            self._health(cluster_id, state, hsms)
            self.write_client_config(cluster_id)

    def _info(self, cluster_id: str, hsm: dict[str, Any]) -> dict[str, Any] | None:
        info: dict[str, Any]
        try:
            [info] = self.hsm_call(cluster_id, hsm["placement"]["endpoint"], [("hsm_info",)], login=False,
                                   timeout_s=HEALTH_TIMEOUT_S)
            return info
        except (StrongroomError, OSError):
            return None

    def _join_config(self, cluster_id: str, active: list[dict[str, Any]]) -> dict[str, Any]:
        config = {"endpoints": [h["placement"]["endpoint"] for h in active],
                  "trust_anchor": str(self.anchor_path(cluster_id))}
        if self.anchor_path(cluster_id).exists():  # initialised: HSM certificates name the cluster
            config["server_name"] = cluster_id
        return config

    def _admit(self, cluster_id: str, active: list[dict[str, Any]], certificate: bytes) -> None:
        error: Exception | None = None
        for member in active:
            try:
                self.hsm_call(cluster_id, member["placement"]["endpoint"], [("admit_member", SESSION, certificate)])
                return
            except (StrongroomError, OSError) as exc:
                error = exc
        raise ProviderError(f"no member admitted the new HSM: {error}")

    def _launch(self, cluster_id: str, hsm_id: str, active: list[dict[str, Any]],
                previous: dict[str, Any] | None) -> dict[str, Any]:
        """A new node for ``hsm_id``: the cluster's founder when no HSM is active, else one joining through the
        ``active`` members, which admit its fleet certificate first."""
        placement = self.provider.prepare(cluster_id, hsm_id, previous)
        try:
            if not active:
                with self.store.session() as session:
                    mode = _row(session, Cluster, cluster_id).mode
                return self.provider.launch(cluster_id, placement, founder=True, join_config=None, mode=mode)
            self._admit(cluster_id, active, self.provider.certificate(placement))
            return self.provider.launch(cluster_id, placement, founder=False,
                                        join_config=self._join_config(cluster_id, active))
        except BaseException:
            self.provider.destroy(placement)
            raise

    def _create(self, cluster_id: str, state: str, hsm: dict[str, Any], active: list[dict[str, Any]]) -> None:
        try:
            placement = self._launch(cluster_id, hsm["hsm_id"], active, None)
        except (ProviderError, OSError) as exc:
            log.warning("HSM %s not created yet: %s", hsm["hsm_id"], exc)
            self._set(cluster_id, hsm["hsm_id"], state_message=clip(f"The HSM did not start yet; retrying: {exc}"))
            return
        csr, preco = "", b""
        if not active:
            try:
                [csr] = self.hsm_call(cluster_id, placement["endpoint"], [("cluster_csr",)], login=False)
                preco = self.sealing.seal(PRECO_KIND, cluster_id,
                                          self.initial_password(cluster_id, placement["endpoint"]))
            except StrongroomError as exc:
                log.warning("no CSR or initial password from %s: %s", hsm["hsm_id"], exc)
        self._await_owner_chain(cluster_id, placement["endpoint"])
        self._set(cluster_id, hsm["hsm_id"], state="ACTIVE", state_message="", placement=placement,
                  eni_ip=placement["endpoint"].rpartition(":")[0])
        if csr and preco:
            self._set(cluster_id, cluster_csr=csr, sealed_preco_password=preco)

    def _await_owner_chain(self, cluster_id: str, endpoint: str, timeout_s: float = 30.0) -> None:
        """In an initialised cluster, wait until a new HSM serves TLS under the owner's chain (it switches from its
        fleet identity once it has caught up with the cluster's certificate), so that ACTIVE means clients can
        use it."""
        anchor = self.anchor_path(cluster_id)
        deadline = time.monotonic() + timeout_s
        while anchor.exists() and not self.appliance.serves_chain_to(endpoint, anchor):
            if time.monotonic() > deadline or self._stop.is_set():
                log.warning("the HSM at %s does not serve the owner's chain yet", endpoint)
                return
            time.sleep(0.2)

    def _remove_member(self, cluster_id: str, hsm: dict[str, Any], others: list[dict[str, Any]]) -> bool:
        """Take ``hsm`` out of the cluster's membership through the first of ``others`` that does it; True once
        it is out (or never was in, or no member is left to keep it), False when none could now (a leader
        change under way): the caller tries again on its next step rather than leave a dead member counted in
        the majority."""
        raft = hsm["placement"].get("raft")
        if not raft or not others:
            return True
        for member in others:
            try:
                self.hsm_call(cluster_id, member["placement"]["endpoint"], [("remove_member", SESSION, raft)])
                return True
            except ArgumentsBad:
                return True  # not a member: an earlier attempt took it out after all
            except (StrongroomError, OSError) as exc:
                log.warning("member %s did not remove %s: %s", member["hsm_id"], hsm["hsm_id"], exc)
        return False

    def _delete(self, cluster_id: str, hsm: dict[str, Any], others: list[dict[str, Any]]) -> None:
        if not self._remove_member(cluster_id, hsm, others):
            return
        if hsm["placement"]:
            self.provider.destroy(hsm["placement"])
        self._set(cluster_id, hsm["hsm_id"], state="DELETED", state_message="")

    def _health(self, cluster_id: str, state: str, hsms: list[dict[str, Any]]) -> None:
        """Check every running HSM; one that failed twice is replaced (an active cluster) or started again on its
        data (a cluster not yet active, or when the cluster has lost its majority and cannot take a newcomer)."""
        live = [h for h in hsms if h["state"] in ("ACTIVE", "DEGRADED")]
        for hsm in live:
            healthy = self.provider.alive(hsm["placement"]) and self._info(cluster_id, hsm) is not None
            if not healthy and self.provider.removed(hsm["placement"]):
                # an admin took it out of the membership (remove_member): it stopped for good, as if deleted
                self.provider.destroy(hsm["placement"])
                self._set(cluster_id, hsm["hsm_id"], state="DELETED",
                          state_message="An admin removed the HSM from the cluster's membership.")
                continue
            if healthy:
                self.failures.pop(hsm["hsm_id"], None)
                if hsm["state"] == "DEGRADED":
                    self._set(cluster_id, hsm["hsm_id"], state="ACTIVE", state_message="")
                continue
            self.failures[hsm["hsm_id"]] = self.failures.get(hsm["hsm_id"], 0) + 1
            if self.failures[hsm["hsm_id"]] < FAILURES_BEFORE_REPLACING:
                continue
            others = [h for h in live if h is not hsm and self.provider.alive(h["placement"])]
            if state in ("ACTIVE", "DEGRADED") and 2 * len(others) > len(live):
                self._replace(cluster_id, hsm, others)
            else:
                self._restart(cluster_id, hsm)
        if state not in ("ACTIVE", "DEGRADED"):
            return
        _, hsms = self._snapshot(cluster_id)
        # an HSM being created or deleted leaves the cluster ACTIVE; one being replaced or restarted degrades it
        troubled = [h for h in hsms if h["state"] == "DEGRADED"]
        replaced = sum(1 for h in troubled if h["state_message"] == REPLACING)
        message = ""
        if replaced:
            message = "An HSM is being replaced." if replaced == 1 else f"{replaced} HSMs are being replaced."
        elif troubled:
            message = "An HSM is being restarted." if len(troubled) == 1 else \
                f"{len(troubled)} HSMs are being restarted."
        self._set(cluster_id, state="DEGRADED" if troubled else "ACTIVE", state_message=message)

    def _restart(self, cluster_id: str, hsm: dict[str, Any]) -> None:
        """Start a failed HSM again on its own data (it keeps its place in the membership)."""
        self._set(cluster_id, hsm["hsm_id"], state="DEGRADED", state_message="The HSM is being restarted.")
        self.provider.stop(hsm["placement"])
        try:
            placement = self.provider.resume(hsm["placement"])
        except (ProviderError, OSError) as exc:
            log.warning("HSM %s did not start again: %s", hsm["hsm_id"], exc)
            return
        self.failures.pop(hsm["hsm_id"], None)
        self._set(cluster_id, hsm["hsm_id"], placement=placement)

    def _replace(self, cluster_id: str, hsm: dict[str, Any], others: list[dict[str, Any]]) -> None:
        """A new node in place of a dead one: out of the membership, a fresh one in with the same id and
        address, catching up from the others (a majority of the membership is alive)."""
        self._set(cluster_id, hsm["hsm_id"], state="DEGRADED", state_message=REPLACING)
        self._set(cluster_id, state="DEGRADED", state_message="An HSM is being replaced.")
        self.provider.stop(hsm["placement"])
        if not self._remove_member(cluster_id, hsm, others):
            log.warning("HSM %s not replaced yet: it is still in the membership", hsm["hsm_id"])
            return
        try:
            placement = self._launch(cluster_id, hsm["hsm_id"], others, hsm["placement"])
        except (ProviderError, OSError) as exc:
            log.warning("HSM %s not replaced yet: %s", hsm["hsm_id"], exc)
            return
        self.provider.destroy({"data_dir": hsm["placement"].get("data_dir", "")})
        self._await_owner_chain(cluster_id, placement["endpoint"])
        self.failures.pop(hsm["hsm_id"], None)
        self._set(cluster_id, hsm["hsm_id"], state="ACTIVE", state_message="", placement=placement)

    def write_client_config(self, cluster_id: str) -> None:
        """``clusters/<id>/cluster.json``: an SDK configuration of the cluster (its HSMs' endpoints, the owner's
        trust anchor and the name the HSMs' certificates carry, the cluster id), for activating the cluster and for
        applications; written whole, then renamed into place."""
        _, hsms = self._snapshot(cluster_id)
        path = self.anchor_path(cluster_id).parent / "cluster.json"
        config = {"cluster_id": cluster_id, "trust_anchor": "trust-anchor.pem", "server_name": cluster_id,
                  "endpoints": [h["placement"]["endpoint"] for h in hsms
                                if h["state"] in ("ACTIVE", "DEGRADED") and h["placement"].get("endpoint")]}
        if config["endpoints"] and self.anchor_path(cluster_id).exists():
            text = json.dumps(config, indent=2) + "\n"
            if not path.exists() or path.read_text() != text:
                temporary = path.with_name(f".{path.name}.tmp")
                temporary.write_text(text)
                os.replace(temporary, path)

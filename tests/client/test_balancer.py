"""The SDK's balancer against in-memory HSMs (``fake_hsm.py``): failover, retries with one request key,
read-your-writes and the HSM a multi-part operation stays on. No node process, no socket."""

from __future__ import annotations

import time

import pytest

from strongroom.client.connection import ConnectionLost
from strongroom.errors import NodeBehind, NoQuorum, SessionHandleInvalid
from strongroom.vocab import CKA, CKF, CKM, CKR, CKU

from .fake_hsm import FakeCluster, run_with

RW = CKF.SERIAL_SESSION | CKF.RW_SESSION
TOKEN_KEY = {CKA.TOKEN: True, CKA.LABEL: "k"}
MECHANISM = {"mechanism": CKM.ECDSA}


async def _logged_in_session(b) -> int:
    vid = await b.call("open_session", RW)
    await b.call("login", vid, CKU.USER, "alice-pin")
    return vid


# ------------------------------------------------------------------------------------------------- failover
def test_a_read_whose_hsm_drops_is_answered_by_another(monkeypatch):
    fake = FakeCluster(2)
    fake.drop_next("hsm_info")

    async def scenario(b):
        return await b.call("hsm_info")

    assert run_with(fake, monkeypatch, scenario) is None
    dropped, answered = fake.where("hsm_info")
    assert dropped != answered and fake.hsms[dropped].down and not fake.hsms[answered].down


def test_a_session_call_whose_hsm_drops_opens_the_session_and_logs_in_on_another(monkeypatch):
    fake = FakeCluster(2)

    async def scenario(b):
        vid = await _logged_in_session(b)
        fake.drop_next("sign_once")
        return vid, await b.call("sign_once", vid, MECHANISM, 7, b"data")

    vid, value = run_with(fake, monkeypatch, scenario)
    assert value is None
    dropped, answered = fake.where("sign_once")
    assert dropped != answered and fake.hsms[dropped].down and not fake.hsms[answered].down
    assert answered in fake.where("open_session") and answered in fake.where("login")
    login_there = [s for s in fake.sent("login") if s.endpoint == answered][-1]
    assert login_there.args[1:] == (CKU.USER, "alice-pin")
    sign = fake.sent("sign_once")[-1]
    assert sign.args[0] == login_there.args[0] != vid  # the HSM's own session handle, not the virtual one


def test_a_write_whose_hsm_drops_is_sent_again_with_its_request_key(monkeypatch):
    fake = FakeCluster(2)
    fake.drop_next("create_object")

    async def scenario(b):
        vid = await _logged_in_session(b)
        return await b.call("create_object", vid, TOKEN_KEY)

    run_with(fake, monkeypatch, scenario)
    first, second = fake.sent("create_object")
    assert first.endpoint != second.endpoint
    assert len(first.key) == 16 and first.key == second.key


def test_no_hsm_reachable_fails_with_connection_lost(monkeypatch):
    fake = FakeCluster(2)

    async def scenario(b):
        for hsm in fake.hsms.values():
            hsm.die()
        with pytest.raises(ConnectionLost) as caught:
            await b.call("hsm_info")
        return caught.value

    err = run_with(fake, monkeypatch, scenario, timeout_s=0.3)
    assert err.ckr == CKR.DEVICE_REMOVED and err.retryable


# ------------------------------------------------------------------------------------------------- retries
@pytest.mark.parametrize("refusal", [NoQuorum, NodeBehind])
def test_a_refused_write_is_retried_with_the_same_request_key_until_it_commits(monkeypatch, refusal):
    fake = FakeCluster(2)
    fake.answer_next("create_object", refusal, refusal)

    async def scenario(b):
        vid = await _logged_in_session(b)
        return await b.call("create_object", vid, TOKEN_KEY)

    run_with(fake, monkeypatch, scenario)
    attempts = fake.sent("create_object")
    assert len(attempts) == 3
    assert len(attempts[0].key) == 16 and {a.key for a in attempts} == {attempts[0].key}


def test_two_writes_carry_different_request_keys_and_reads_none(monkeypatch):
    fake = FakeCluster(1)

    async def scenario(b):
        vid = await _logged_in_session(b)
        await b.call("create_object", vid, TOKEN_KEY)
        await b.call("create_object", vid, TOKEN_KEY)
        await b.call("get_attribute_value", vid, 5, [CKA.LABEL])

    run_with(fake, monkeypatch, scenario)
    one, two = (s.key for s in fake.sent("create_object"))
    assert one != two and len(one) == len(two) == 16
    assert fake.sent("get_attribute_value")[0].key == b""


@pytest.mark.parametrize("refusal", [NoQuorum, NodeBehind])
def test_a_write_refused_until_its_deadline_raises_the_refusal(monkeypatch, refusal):
    fake = FakeCluster(2)
    for hsm in fake.hsms.values():
        hsm.answers["create_object"] = [refusal] * 1000

    async def scenario(b):
        vid = await _logged_in_session(b)
        started = time.monotonic()
        with pytest.raises(refusal) as caught:
            await b.call("create_object", vid, TOKEN_KEY)
        return caught.value, time.monotonic() - started

    err, elapsed_s = run_with(fake, monkeypatch, scenario, timeout_s=0.5)
    assert err.ckr == refusal.ckr and err.retryable
    assert 0.3 < elapsed_s < 2.0
    attempts = fake.sent("create_object")
    assert len(attempts) > 2
    assert {a.key for a in attempts} == {attempts[0].key}
    assert {a.endpoint for a in attempts} == set(fake.endpoints)  # a refusal sends it to another HSM


def test_an_error_that_is_not_retryable_is_not_sent_again(monkeypatch):
    fake = FakeCluster(2)
    for hsm in fake.hsms.values():
        hsm.answers["create_object"] = [SessionHandleInvalid]

    async def scenario(b):
        vid = await _logged_in_session(b)
        with pytest.raises(SessionHandleInvalid) as caught:
            await b.call("create_object", vid, TOKEN_KEY)
        return caught.value

    assert run_with(fake, monkeypatch, scenario).ckr == CKR.SESSION_HANDLE_INVALID
    assert len(fake.sent("create_object")) == 1


# ------------------------------------------------------------------------------------------------- read-your-writes
def test_every_request_carries_the_highest_log_index_the_client_has_seen(monkeypatch):
    fake = FakeCluster(2)
    first, second = fake.endpoints

    async def scenario(b):
        vid = await _logged_in_session(b)
        fake.hsms[first].index, fake.hsms[second].index = 40, 0
        for _ in range(4):
            await b.call("create_object", vid, TOKEN_KEY)
        fake.hsms[first].index, fake.hsms[second].index = 7, 41  # an older index never lowers what was seen
        for _ in range(6):
            await b.call("hsm_info")

    run_with(fake, monkeypatch, scenario)
    seen = 0
    for sent in fake.log:
        assert sent.after == seen, (sent, seen)
        seen = max(seen, sent.index)
    assert seen == 41
    assert {s.endpoint for s in fake.sent("hsm_info")} == {first, second}


def test_a_hsm_behind_the_clients_writes_sends_the_read_to_another(monkeypatch):
    fake = FakeCluster(2)
    first, second = fake.endpoints

    async def scenario(b):
        vid = await _logged_in_session(b)
        fake.hsms[first].index = fake.hsms[second].index = 12
        await b.call("create_object", vid, TOKEN_KEY)
        fake.answer_next("get_attribute_value", NodeBehind)
        return await b.call("get_attribute_value", vid, 5, [CKA.LABEL])

    run_with(fake, monkeypatch, scenario)
    behind, answered = fake.sent("get_attribute_value")
    assert behind.endpoint != answered.endpoint
    assert behind.after == answered.after == 12


# ------------------------------------------------------------------------------------------------- pinning
def test_a_multi_part_operation_stays_on_the_hsm_that_started_it(monkeypatch):
    fake = FakeCluster(3)

    async def scenario(b):
        vid = await _logged_in_session(b)
        for _ in range(2):
            await b.call("sign_init", vid, MECHANISM, 7)
            for _ in range(6):
                await b.call("sign_update", vid, b"part")
            assert await b.call("sign_final", vid)
        fake.hsms[fake.where("sign_final")[-1]].die()
        await b.call("session_info", vid)  # unpinned after its end: another HSM answers

    run_with(fake, monkeypatch, scenario)
    calls = [s for s in fake.log if s.name in ("sign_init", "sign_update", "sign_final")]
    for operation in (calls[:8], calls[8:]):
        assert len({s.endpoint for s in operation}) == 1, operation
        assert [s.name for s in operation] == ["sign_init", *["sign_update"] * 6, "sign_final"]
    assert fake.where("session_info")[-1] != fake.where("sign_final")[-1]


def test_an_operation_whose_hsm_dies_fails_instead_of_moving(monkeypatch):
    fake = FakeCluster(2)

    async def scenario(b):
        vid = await _logged_in_session(b)
        await b.call("sign_init", vid, MECHANISM, 7)
        (pinned,) = fake.where("sign_init")
        fake.hsms[pinned].answers["sign_update"] = [ConnectionLost]
        with pytest.raises(ConnectionLost) as caught:
            await b.call("sign_update", vid, b"part")
        await b.call("sign_init", vid, MECHANISM, 7)  # the lost operation no longer pins the session
        return pinned, caught.value

    pinned, err = run_with(fake, monkeypatch, scenario)
    assert err.ckr == CKR.DEVICE_REMOVED
    assert fake.where("sign_update") == [pinned]
    assert fake.where("sign_init")[-1] != pinned


def test_a_session_object_keeps_every_session_on_its_hsm(monkeypatch):
    fake = FakeCluster(3)
    session_object = (1 << 63) | 9

    async def scenario(b):
        vid = await _logged_in_session(b)
        for hsm in fake.hsms.values():
            hsm.answers["create_object"] = [session_object]
        assert await b.call("create_object", vid, {CKA.TOKEN: False}) == session_object
        other = await b.call("open_session", RW)
        for _ in range(6):
            await b.call("get_attribute_value", vid, session_object, [CKA.LABEL])
            await b.call("get_attribute_value", other, session_object, [CKA.LABEL])

    run_with(fake, monkeypatch, scenario)
    (home,) = fake.where("create_object")
    assert set(fake.where("get_attribute_value")) == {home}

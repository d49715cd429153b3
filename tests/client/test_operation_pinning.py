"""The HSM a session's operations stay on, as PKCS#11 3.0 §5.2 ends them: an operation that a call ends, by
answering or by failing with anything but ``CKR_BUFFER_TOO_SMALL``, no longer holds its session on that HSM,
while another operation of the same session still does."""

from __future__ import annotations

import pytest

from strongroom.errors import BufferTooSmall, DataLenRange, SessionHandleInvalid, SignatureInvalid
from strongroom.vocab import CKF, CKM, CKU

from .fake_hsm import FakeCluster, run_with

RW = CKF.SERIAL_SESSION | CKF.RW_SESSION
MECHANISM = {"mechanism": CKM.ECDSA}

# (the call that fails, its arguments after the session, the error)
FAILURES = [
    ("sign_update", (b"part",), DataLenRange),
    ("sign_final", (), DataLenRange),
    ("sign", (b"data",), DataLenRange),
    ("encrypt_update", (b"part",), DataLenRange),
    ("decrypt_final", (), DataLenRange),
    ("digest_update", (b"part",), DataLenRange),
    ("verify_update", (b"part",), SignatureInvalid),
    ("verify_final", (b"sig",), SignatureInvalid),
]


async def _session(b) -> int:
    vid = await b.call("open_session", RW)
    await b.call("login", vid, CKU.USER, "alice-pin")
    return vid


@pytest.mark.parametrize(("name", "args", "error"), FAILURES, ids=[f[0] for f in FAILURES])
def test_a_call_that_fails_ends_its_operation_and_unpins_the_session(monkeypatch, name, args, error):
    fake = FakeCluster(3)
    kind = name.split("_")[0]
    init_args = () if kind == "digest" else (7,)

    async def scenario(b):
        vid = await _session(b)
        await b.call(f"{kind}_init", vid, MECHANISM, *init_args)
        (pinned,) = fake.where(f"{kind}_init")
        fake.hsms[pinned].answers[name] = [error]
        with pytest.raises(error):
            await b.call(name, vid, *args)
        fake.hsms[pinned].die()
        await b.call("session_info", vid)  # the operation ended: the session may go to another HSM

    run_with(fake, monkeypatch, scenario)
    assert fake.where(name) == fake.where(f"{name.split('_')[0]}_init")[:1]


def test_a_short_buffer_keeps_the_session_on_its_hsm(monkeypatch):
    fake = FakeCluster(3)

    async def scenario(b):
        vid = await _session(b)
        await b.call("sign_init", vid, MECHANISM, 7)
        (pinned,) = fake.where("sign_init")
        fake.hsms[pinned].answers["sign"] = [BufferTooSmall(64)]
        with pytest.raises(BufferTooSmall):
            await b.call("sign", vid, b"data", out_len=8)
        await b.call("sign", vid, b"data", out_len=64)
        return pinned

    pinned = run_with(fake, monkeypatch, scenario)
    assert fake.where("sign") == [pinned, pinned]


def test_an_operation_ending_leaves_the_other_one_of_its_session_pinned(monkeypatch):
    fake = FakeCluster(3)

    async def scenario(b):
        vid = await _session(b)
        await b.call("sign_init", vid, MECHANISM, 7)
        await b.call("encrypt_init", vid, MECHANISM, 8)
        fake.hsms[fake.where("sign_init")[0]].answers["encrypt_update"] = [DataLenRange]
        with pytest.raises(DataLenRange):
            await b.call("encrypt_update", vid, b"part")
        await b.call("digest_init", vid, MECHANISM)
        await b.call("digest", vid, b"data")  # a digest that answers ends only itself
        for _ in range(4):
            await b.call("sign_update", vid, b"part")
        await b.call("sign_final", vid)

    run_with(fake, monkeypatch, scenario)
    assert len({*fake.where("sign_init"), *fake.where("sign_update"), *fake.where("sign_final"),
                *fake.where("encrypt_update"), *fake.where("digest")}) == 1


def test_a_cancel_unpins_only_the_operations_it_names(monkeypatch):
    fake = FakeCluster(3)

    async def scenario(b):
        vid = await _session(b)
        await b.call("sign_init", vid, MECHANISM, 7)
        await b.call("encrypt_init", vid, MECHANISM, 8)
        await b.call("session_cancel", vid, int(CKF.ENCRYPT))
        await b.call("sign_update", vid, b"part")  # still where its operation is
        pinned = fake.where("sign_init")[0]
        fake.hsms[pinned].answers["session_cancel"] = [SessionHandleInvalid]
        with pytest.raises(SessionHandleInvalid):  # a cancel that failed cancelled nothing
            await b.call("session_cancel", vid, int(CKF.SIGN))
        await b.call("sign_update", vid, b"part")
        await b.call("session_cancel", vid, int(CKF.SIGN | CKF.DECRYPT))
        fake.hsms[pinned].die()
        await b.call("session_info", vid)  # nothing left there: another HSM answers
        return pinned

    pinned = run_with(fake, monkeypatch, scenario)
    assert fake.where("sign_update") == [pinned, pinned]
    assert fake.where("session_info")[-1] != pinned

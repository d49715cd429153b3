"""Wrong passwords count even when the log cannot take them: the answer never changes, and the lockout holds."""

from __future__ import annotations

import pytest

from strongroom.errors import NoQuorum, PinIncorrect, PinLocked
from strongroom.node import HSM, Application
from strongroom.replication import LocalLog
from strongroom.vocab import CKU

from .conftest import ALICE_PW, FAST, user_list


class _Partitioned(LocalLog):
    """A node-local log that can be cut off from its (imaginary) majority."""

    cut_off = False

    def commit(self, change, timeout_s=3.0):
        if self.cut_off:
            raise NoQuorum("cut off")
        return super().commit(change, timeout_s)


def test_failures_the_log_cannot_take_still_lock_and_are_carried_into_the_log(hsm, tmp_path):
    data = hsm.data_dir
    hsm.close()
    node = HSM(data, settings=FAST, replication=lambda machine, _secret: _Partitioned(machine))
    try:
        node.log.cut_off = True
        for _ in range(5):
            app = Application(node)
            with pytest.raises(PinIncorrect):  # the same answer as with a majority: guesses learn nothing
                app.login(app.open_session(), CKU.USER, "alice:wrong-password")
        app = Application(node)
        with pytest.raises(PinLocked):  # the right password no longer opens the account
            app.login(app.open_session(), CKU.USER, f"alice:{ALICE_PW}")
        assert next(u for u in user_list(node) if u["username"] == "alice")["failures"] == 0
        node.log.cut_off = False
        app = Application(node)
        with pytest.raises(PinLocked):  # the next attempt carries the pending failures into the log
            app.login(app.open_session(), CKU.USER, f"alice:{ALICE_PW}")
        [alice] = [u for u in user_list(node) if u["username"] == "alice"]
        assert alice["locked"] and alice["failures"] == 5 and not node.pending_failures
    finally:
        node.close()

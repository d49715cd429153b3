"""The parameter-consistency table (``strongroom.mechanism_rules``) on its own: every row of
tests/mechanism_param_rows.py refused with a message naming the field, every consistent variant accepted, and
every mechanism of the catalogue covered (a rule of its own, or no parameter at all)."""

from __future__ import annotations

import pytest

from strongroom.errors import MechanismParamInvalid
from strongroom.mechanism_catalogue import FIPS, IMPLEMENTED
from strongroom.mechanism_params import Mechanism, PssParams
from strongroom.mechanism_rules import RULES, check
from strongroom.vocab import CKG, CKM, CKR

from .mechanism_param_rows import GOOD, ROWS


@pytest.mark.parametrize(("mech", "fragment"), [(row[1], row[3]) for row in ROWS], ids=[row[0] for row in ROWS])
def test_each_inconsistent_parameter_is_refused_naming_what_to_fix(mech, fragment):
    with pytest.raises(MechanismParamInvalid) as info:
        check(mech)
    assert info.value.ckr == CKR.MECHANISM_PARAM_INVALID
    assert fragment in str(info.value)
    assert "Params(" not in str(info.value)  # a message, not a repr


@pytest.mark.parametrize("mech", [row[1] for row in GOOD], ids=[row[0] for row in GOOD])
def test_each_consistent_parameter_passes(mech):
    check(mech)


def test_every_rule_has_rows_and_every_rule_is_a_catalogue_mechanism():
    walked = {row[1].mechanism for row in ROWS}
    assert set(RULES) - walked == set()
    assert set(RULES) <= set(IMPLEMENTED)


@pytest.mark.parametrize("kind", sorted(set(IMPLEMENTED) - set(RULES)), ids=lambda k: k.name)
def test_every_other_catalogue_mechanism_takes_no_parameter(kind):
    check(Mechanism(kind))
    with pytest.raises(MechanismParamInvalid, match=f"^CKM_{kind.name}: takes no parameter$"):
        check(Mechanism(kind, b"\0"))


@pytest.mark.parametrize("kind", sorted(RULES), ids=lambda k: k.name)
def test_every_mechanism_with_a_rule_needs_its_parameter(kind):
    with pytest.raises(MechanismParamInvalid, match=f"^CKM_{kind.name}: needs its parameter, a {RULES[kind].takes}$"):
        check(Mechanism(kind))


def test_the_fips_mode_holds_the_pss_salt_to_the_hash_length():
    for hash_alg, size in ((CKM.SHA_1, 20), (CKM.SHA256, 32), (CKM.SHA512, 64)):
        params = PssParams(hash_alg, CKG.MGF1_SHA256, size + 1)
        check(Mechanism(CKM.RSA_PKCS_PSS, params))  # NON_FIPS: the key alone bounds it, at the operation
        with pytest.raises(MechanismParamInvalid, match=f"at most the hash's length, {size} bytes, in a FIPS"):
            check(Mechanism(CKM.RSA_PKCS_PSS, params), FIPS)
        check(Mechanism(CKM.RSA_PKCS_PSS, PssParams(hash_alg, CKG.MGF1_SHA256, size)), FIPS)

"""The opt-out policy."""

from __future__ import annotations

import pytest

from core.errors import Invalid, NotFound
from core.optouts import delete_opt_out, is_opted_out, list_opt_outs, record_opt_out
from tests import factories as f


def test_opt_outs_are_normalized_per_channel_and_idempotent(session):
    p = f.make_profile(session)
    first = record_opt_out(session, profile_id=p.id, contact="(312) 555-0101", channel="sms", source="sms_stop")
    again = record_opt_out(session, profile_id=p.id, contact="+13125550101", channel="sms", source="manual")
    assert first.id == again.id and first.contact == "+13125550101"
    assert is_opted_out(session, profile_id=p.id, contact="+13125550101", channel="sms")
    assert not is_opted_out(session, profile_id=p.id, contact="+13125550101", channel="call")
    record_opt_out(session, profile_id=p.id, contact="Ann@Example.com", channel="all", source="manual", reason="asked")
    assert is_opted_out(session, profile_id=p.id, contact="ann@example.com", channel="email")
    rows, total = list_opt_outs(session, profile_id=p.id)
    assert total == 2 and {r.contact for r in rows} == {"+13125550101", "ann@example.com"}


def test_other_business_is_unaffected_and_cannot_delete(session):
    a, b = f.make_profile(session), f.make_profile(session)
    row = record_opt_out(session, profile_id=a.id, contact="ann@example.com", channel="email", source="manual")
    assert not is_opted_out(session, profile_id=b.id, contact="ann@example.com", channel="email")
    assert list_opt_outs(session, profile_id=b.id) == ([], 0)
    with pytest.raises(NotFound):
        delete_opt_out(session, profile_id=b.id, opt_out_id=row.id)
    delete_opt_out(session, profile_id=a.id, opt_out_id=row.id)
    assert not is_opted_out(session, profile_id=a.id, contact="ann@example.com", channel="email")


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"contact": "not a contact"}, "contact"), ({"channel": "fax"}, "channel"), ({"source": "rumour"}, "source")])
def test_bad_opt_out_input(session, kwargs, field):
    p = f.make_profile(session)
    args = {"contact": "ann@example.com", "channel": "email", "source": "manual", **kwargs}
    with pytest.raises(Invalid) as err:
        record_opt_out(session, profile_id=p.id, **args)
    assert err.value.field == field

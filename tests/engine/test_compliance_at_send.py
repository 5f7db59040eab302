"""The law at the moment of sending (DESIGN §10), through the real dispatcher on an injected clock: a
consent revoked, a number put on the do-not-call list or a policy switched on between selection and the
send — or while a paced batch is being handed over — stops that customer's text at the next send; and a
batch that straddles 20:00 local for a Florida, Oklahoma or Maryland number stops at 20:00, while a
number of a state without its own rule keeps the federal 21:00."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core import accounts, consents, dnc
from core.clock import ManualClock
from core.dispatch import run_campaign_pass
from tests.engine import helpers as h

NEW_YORK = ZoneInfo("America/New_York")
CHICAGO = ZoneInfo("America/Chicago")
NOON = datetime(2026, 6, 15, 12, 0, tzinfo=NEW_YORK)


def _shop(session: Any, start: datetime, phones: list[str], *, policy: str = "us_tcpa") -> tuple[Any, Any, dict]:
    """A business whose customers all gave written consent to texts, and a win-back SMS campaign to them."""
    profile = h.business(session, consent_policy=policy)
    h.add_leads(session, profile, [{"phone": p, "name": f"Pat{i} Doe"} for i, p in enumerate(phones)], now=start)
    given = {p: consents.record_consent(session, profile_id=profile.id, contact=p, channel="sms",
                                        level="express_written", now=start).id for p in phones}
    cid = h.campaign(session, profile, method="sms", now=start)
    session.commit()
    return profile, cid, given


def _withdraw(session: Any, profile: Any, given: dict, phone: str, how: str) -> None:
    if how == "consent revoked":
        consents.revoke_consent(session, profile_id=profile.id, consent_id=given[phone])
    elif how == "put on the do-not-call list":
        dnc.add_numbers(session, profile_id=profile.id, numbers=[phone], source="internal")
    else:  # the business had no policy when the campaign was chosen; it switches US rules on, and this
        # customer's consent is only the spoken kind
        consents.revoke_consent(session, profile_id=profile.id, consent_id=given[phone])
        consents.record_consent(session, profile_id=profile.id, contact=phone, channel="sms", level="express")
        accounts.update_profile(session, profile_id=profile.id, consent_policy="us_tcpa")


WHY = {"consent revoked": "no express written consent for texts",
       "put on the do-not-call list": "on the business's do-not-call list",
       "policy switched on": "no express written consent for texts (only express consent is on record)"}
HOW = list(WHY)


def _outcome(session: Any, cid: Any, phone: str) -> tuple[str, list[tuple[str | None, str | None]]]:
    (row,) = [r for r in h.recipients(session, cid) if r.customer_phone == phone]
    tries = [(a.outcome, a.error_message) for a in h.attempts(session, cid) if a.recipient_id == row.id]
    session.rollback()
    return row.status, tries


@pytest.mark.parametrize("how", HOW)
def test_what_changed_after_selection_wins_at_the_next_send(session, factory, how):
    phones = ["+12125550101", "+12125550102"]
    profile, cid, given = _shop(session, NOON, phones, policy="none" if how == "policy switched on" else "us_tcpa")
    assert len(h.recipients(session, cid)) == 2  # both were selected
    _withdraw(session, profile, given, phones[0], how)
    session.commit()
    twilio = h.Scripted("sms", provider="twilio")
    run_campaign_pass(factory, profile_id=profile.id, campaign_id=cid, clock=ManualClock(NOON), worker="w",
                      budget_seconds=5, settings=h.settings(), adapters={"sms": twilio})
    assert [m.to for m in twilio.sent] == [phones[1]]
    status, tries = _outcome(session, cid, phones[0])
    assert status == "opted_out" and tries == []  # decided before any try was recorded


@pytest.mark.parametrize("how", HOW)
def test_what_changes_while_a_batch_is_handed_over_stops_the_later_texts(session, factory, how):
    """Twilio paced at two a second, three texts prepared in one wave (a second's worth): while the first is
    being handed over, the other two customers' consent goes (or their numbers go on the list, or the policy
    is switched on).  Their texts, prepared with the first, are checked again at their moment and never
    leave."""
    phones = ["+12125550101", "+12125550102", "+12125550103"]
    profile, cid, given = _shop(session, NOON, phones, policy="none" if how == "policy switched on" else "us_tcpa")
    twilio = h.Scripted("sms", provider="twilio")
    real = twilio.send

    def send(message):
        if not twilio.sent:
            with factory() as s, s.begin():
                for phone in phones:
                    if phone != message.to:
                        _withdraw(s, profile, given, phone, how)
        return real(message)

    twilio.send = send  # type: ignore[method-assign]
    # one sending thread: the texts are handed over one after the other, each at its paced moment
    run_campaign_pass(factory, profile_id=profile.id, campaign_id=cid, clock=ManualClock(NOON), worker="w",
                      budget_seconds=5, settings=h.settings(twilio_max_per_second=2.0), adapters={"sms": twilio},
                      concurrency=1)
    (first,) = [m.to for m in twilio.sent]
    for phone in phones:
        if phone != first:
            status, tries = _outcome(session, cid, phone)
            assert status == "opted_out"
            # recorded and prepared with the first, refused at its own moment
            assert tries == [("skipped", f"not sent: {WHY[how]}")], tries


@pytest.mark.parametrize(("number", "zone", "close", "why"), [
    ("+13055550100", NEW_YORK, 20, "outside FL's calling hours 08:00–20:00 (Florida Telephone Solicitation Act"),
    ("+14055550100", CHICAGO, 20, "outside OK's calling hours 08:00–20:00 (Oklahoma Telephone Solicitation Act"),
    ("+14105550100", NEW_YORK, 20, "outside MD's calling hours 08:00–20:00 (Maryland Stop the Spam Calls Act"),
    ("+16155550100", CHICAGO, 21, "outside the legal calling hours 08:00–21:00 in the customer's time (TCPA"),
], ids=["florida", "oklahoma", "maryland", "tennessee"])
def test_a_batch_that_straddles_the_states_closing_hour_stops_at_it(session, factory, number, zone, close, why):
    """Three texts prepared two seconds before the closing hour, paced at one a second: two go out, the
    third's moment is the closing hour itself and it waits for 08:00 local the next morning."""
    start = datetime(2026, 6, 15, close - 1, 59, 58, tzinfo=zone)
    phones = [number[:-1] + str(n) for n in range(3)]
    profile, cid, _ = _shop(session, start, phones)
    twilio = h.Scripted("sms", provider="twilio")
    sent_at = h.handed_over_at(twilio)
    run_campaign_pass(factory, profile_id=profile.id, campaign_id=cid, clock=ManualClock(start), worker="w",
                      budget_seconds=5, settings=h.settings(twilio_max_per_second=1.0), adapters={"sms": twilio})
    assert len(sent_at) == 2 and all(t.astimezone(zone).hour == close - 1 for t in sent_at), sent_at
    rows = h.recipients(session, cid)
    (waiting,) = [r for r in rows if r.status == "queued"]
    assert waiting.next_attempt_at == datetime(2026, 6, 16, 8, 0, tzinfo=zone)
    _, tries = _outcome(session, cid, waiting.customer_phone)
    ((outcome, error),) = tries
    assert outcome == "skipped" and error.startswith(f"not sent: {why}"), error
    # the recipient says why it waits, the two that went out say nothing of the kind
    assert waiting.waiting_reason is not None and waiting.waiting_reason.startswith(why), waiting.waiting_reason
    assert all(r.waiting_reason is None for r in rows if r is not waiting)

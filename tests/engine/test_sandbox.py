"""The sandbox channels: deterministic simulated outcomes recorded as events, and the registry."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from core.channels import AdapterMissing, channel_modes, get_channel
from core.channels.base import Channel, OutboundMessage, PermanentError, RetryableError
from core.channels.resend_email import ResendChannel
from core.channels.sandbox import SandboxChannel, message_id
from core.models import OutreachEvent
from tests.engine import helpers as h


def msg(channel: str, key: str, *, attempt: str = "1", clock: str | None = None, test: bool = False,
        **ids) -> OutboundMessage:
    metadata = {"attempt": attempt} | ({"clock": clock} if clock else {})
    return OutboundMessage(channel=channel, to="+12125550100" if channel != "email" else "ann@example.com",
                           idempotency_key=key, profile_id=ids.get("profile_id", uuid.uuid4()),
                           business_name="Bella Vista", customer_name="Ann Lee", text="Hi",
                           campaign_id=ids.get("campaign_id"), recipient_id=ids.get("recipient_id"),
                           metadata=metadata, test=test)


def test_registry_picks_sandbox_without_credentials_and_live_with_them():
    s = h.settings()
    assert channel_modes(s) == {"call": "sandbox", "email": "sandbox", "sms": "sandbox"}
    for ch in ("call", "email", "sms"):
        adapter = get_channel(ch, s)
        assert isinstance(adapter, SandboxChannel) and isinstance(adapter, Channel)
        assert (adapter.channel, adapter.provider, adapter.live) == (ch, "sandbox", False)
    live = h.settings(resend_api_key="re_x", resend_from="a@b.example")
    assert isinstance(get_channel("email", live), ResendChannel) and channel_modes(live)["email"] == "live"
    with pytest.raises(Exception) as err:
        get_channel("fax", s)
    assert "fax" in str(err.value)


def test_live_call_and_sms_without_their_adapter_say_so():
    import importlib.util

    for ch, values in (("call", {"vapi_api_key": "k"}),
                       ("sms", {"twilio_account_sid": "AC1", "twilio_auth_token": "t", "twilio_from_number": "+1"})):
        module = {"call": "core.channels.vapi", "sms": "core.channels.twilio_sms"}[ch]
        if importlib.util.find_spec(module) is not None:
            continue  # the live adapter exists in this installation
        with pytest.raises(AdapterMissing) as err:
            get_channel(ch, h.settings(**values))
        assert "not installed" in err.value.message


def test_outcomes_are_deterministic_per_key(engine):
    factory = h.factory(engine)
    sandbox = SandboxChannel("email", h.settings(), factory=factory)
    m = msg("email", "reengage/fixed/0", test=True)
    assert sandbox.plan(m) == sandbox.plan(m)
    assert message_id(m) == message_id(msg("email", "reengage/fixed/0"))
    assert message_id(m) != message_id(msg("email", "reengage/fixed/1"))


def test_rates_of_simulated_fates():
    sandbox = SandboxChannel("call", h.settings())
    fates: Counter[str] = Counter()
    for i in range(2000):
        m = msg("call", f"reengage/{i}/0", test=True)
        try:
            result = sandbox.send(m)
        except PermanentError:
            fates["permanent"] += 1
            continue
        except RetryableError:
            fates["transient"] += 1
            continue
        fates[sandbox.plan(m)[0][0]] += 1
        assert result.status == "queued"
    assert 10 <= fates["permanent"] <= 60 and 10 <= fates["transient"] <= 80
    assert fates["answered"] > fates["delivered"] > 100 and fates["not_answered"] > 300 and fates["failed"] > 30


def test_without_refusals_every_message_is_taken():
    """``SANDBOX_REFUSALS=false``: a demo (or a check) where every message goes out, outcomes unchanged."""
    sandbox = SandboxChannel("sms", h.settings(sandbox_refusals=False))
    refusing = SandboxChannel("sms", h.settings())
    messages = [msg("sms", f"reengage/{i}/0", test=True) for i in range(2000)]
    assert all(sandbox.send(m).status == "accepted" for m in messages)
    assert sum(_fails(refusing, m) for m in messages) > 20  # the same keys, refused now and then by default
    assert all(sandbox.plan(m) == refusing.plan(m) for m in messages[:50])


def test_send_records_future_outcomes_and_reconcile_answers_from_them(session, engine, now):
    profile = h.business(session)
    h.add_leads(session, profile, h.emails(1), now=now)
    cid = h.campaign(session, profile, now=now)
    r = h.recipients(session, cid)[0]
    factory = h.factory(engine)
    sandbox = SandboxChannel("email", h.settings(sandbox_speed=10), factory=factory)
    # find a step the sandbox accepts: a few are refused on purpose, for good (decided by the step's key) or
    # for one try (decided by the key and the try)
    m = next(x for x in (msg("email", f"reengage/{r.id}/{n}", clock=now.isoformat(), profile_id=profile.id,
                             campaign_id=cid, recipient_id=r.id) for n in range(50))
             if not _fails(sandbox, x))
    assert sandbox.reconcile(m, started_at=now) is None  # nothing went out yet
    result = sandbox.send(m)
    assert result.provider_message_id == message_id(m)
    events = session.scalars(select(OutreachEvent).where(OutreachEvent.provider == "sandbox")
                             .order_by(OutreachEvent.occurred_at)).all()
    session.commit()  # a read holds SQLite's write lock until the transaction ends
    assert events and {e.provider_message_id for e in events} == {result.provider_message_id}
    assert all(now < e.occurred_at < now + timedelta(hours=2) for e in events)  # soon, and scaled by the speed
    assert all(e.recipient_id == r.id and e.processed_at is None and e.payload["sandbox"] for e in events)
    assert events[0].type in ("delivered", "bounced")
    # a second send of the same step records nothing new; reconcile says it went out
    sandbox.send(m)
    assert len(session.scalars(select(OutreachEvent)).all()) == len(events)
    session.commit()
    assert sandbox.reconcile(m, started_at=now).provider_message_id == result.provider_message_id


def _fails(sandbox: SandboxChannel, m: OutboundMessage) -> bool:
    probe = OutboundMessage(**{**m.__dict__, "test": True})
    try:
        sandbox.send(probe)
    except (PermanentError, RetryableError):
        return True
    return False


def test_on_the_real_clock_what_the_provider_reports_comes_after_the_send(session, engine):
    """A paced batch takes a while: each e-mail is dated by its own slot, and the sandbox's delivery
    of it by the moment it was sent — never a "delivered" before its "sent" on a customer's timeline."""
    from core.db import utcnow
    from core.dispatch import run_campaign_pass

    now = utcnow()
    profile = h.business(session)
    h.add_leads(session, profile, h.emails(6), now=now)
    cid = h.campaign(session, profile, now=now, send_window={"days": ["mon", "tue", "wed", "thu", "fri", "sat",
                                                                      "sun"], "start": "00:00", "end": "23:59"})
    session.commit()
    # five e-mails a second, a sandbox 1000 times faster than life: the deliveries land inside the batch
    run_campaign_pass(h.factory(engine), profile_id=profile.id, campaign_id=cid, budget_seconds=5,
                      settings=h.settings(resend_max_per_second=5.0, sandbox_speed=1000.0))
    sent = {e.recipient_id: e.occurred_at for e in h.events(session, cid, kind="sent")}
    delivered = {e.recipient_id: e.occurred_at for e in h.events(session, cid, kind="delivered")}
    # (the sandbox turns away a few tries at random: those wait for a retry)
    assert len(sent) >= 3 and delivered
    assert all(sent[rid] <= at for rid, at in delivered.items())
    assert len(set(sent.values())) > 1  # each send has its own moment
    for r in h.recipients(session, cid):
        assert r.sent_at == sent.get(r.id)

"""Tenancy probes of core.consents, core.dnc and core.compliance: business B's id with business A's
records, as :mod:`tests.test_tenancy` runs them (``**compliance_probes(session, world)`` in its
``probes``).  Each probe makes A's record itself, then asks as B; the caller rolls back after it.

``world`` needs ``a`` and ``b`` (profiles), ``a_campaign`` and ``a_recipient`` (a recipient of that
campaign whose ``contact_key`` is a phone number) and ``now``.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from core import compliance, consents, dnc, targeting
from core.errors import Invalid, NotFound
from core.leads import add_lead
from core.models import Consent, DncNumber, OutreachAttempt

A_NUMBER = "+13055550177"


def _check(condition: bool, why: str) -> None:
    assert condition, why


def _refused(call: Callable[[], Any]) -> None:
    with pytest.raises((NotFound, Invalid)):
        call()


def compliance_probes(s: Session, w: Any) -> dict[str, Callable[[], None]]:
    a, b = w.a.id, w.b.id

    def a_consent() -> Consent:
        return consents.record_consent(s, profile_id=a, contact=A_NUMBER, channel="all", level="express_written",
                                       now=w.now)

    def a_number() -> None:
        dnc.add_numbers(s, profile_id=a, numbers=[A_NUMBER], source="internal")

    def count_a_numbers() -> int:
        return int(s.scalar(select(func.count()).select_from(DncNumber).where(DncNumber.profile_id == a)) or 0)

    def record_consent() -> None:
        mine = consents.record_consent(s, profile_id=b, contact=A_NUMBER, channel="sms", level="express", now=w.now)
        _check(mine.profile_id == b, "B's consent was recorded for another business")
        _check(not consents.list_consents(s, profile_id=a)[1], "B's consent shows in A's records")

    def list_consents() -> None:
        a_consent()
        _check(consents.list_consents(s, profile_id=b) == ([], 0), "A's consent shows in B's records")
        _check(consents.list_consents(s, profile_id=b, search="305") == ([], 0), "B's search finds A's consent")

    def revoke_consent() -> None:
        row = a_consent()
        _refused(lambda: consents.revoke_consent(s, profile_id=b, consent_id=row.id))
        _check(row.revoked_at is None, "B revoked A's consent")

    def consent_level() -> None:
        a_consent()
        _check(consents.consent_level(s, profile_id=b, contacts=[A_NUMBER], channel="call") == {A_NUMBER: None},
               "A's consent counts for B")

    def add_numbers() -> None:
        report = dnc.add_numbers(s, profile_id=b, numbers=[A_NUMBER], source="internal")
        _check(report.added == 1 and count_a_numbers() == 0, "B's number landed on A's list")

    def import_file() -> None:
        report = dnc.import_file(s, profile_id=b, stream=io.StringIO(A_NUMBER + "\n"))
        _check(report.added == 1 and count_a_numbers() == 0, "B's file landed on A's list")

    def dnc_among() -> None:
        a_number()
        _check(dnc.dnc_among(s, profile_id=b, numbers=[A_NUMBER]) == set(), "A's list blocks B's calls")

    def is_dnc() -> None:
        a_number()
        _check(not dnc.is_dnc(s, profile_id=b, number=A_NUMBER), "A's list blocks B's calls")

    def list_numbers() -> None:
        a_number()
        _check(dnc.list_numbers(s, profile_id=b) == ([], 0), "A's list shows to B")

    def remove_number() -> None:
        a_number()
        _refused(lambda: dnc.remove_number(s, profile_id=b, number=A_NUMBER))
        _check(count_a_numbers() == 1, "B took a number off A's list")

    def a_call() -> str:
        phone = w.a_recipient.contact_key
        s.add(OutreachAttempt(id=uuid.uuid4(), profile_id=a, campaign_id=w.a_campaign.id,
                              recipient_id=w.a_recipient.id, step=0, attempt_no=99, channel="call", provider="sandbox",
                              idempotency_key=f"probe-{uuid.uuid4()}", outcome="accepted", detail={},
                              started_at=w.now - timedelta(hours=1)))
        s.flush()
        _check(compliance.recent_contacts(s, profile_id=a, contacts=[phone], now=w.now)[phone]["call"] == 1,
               "the probe's call of A was not counted for A")
        return str(phone)

    def recent_contacts() -> None:
        phone = a_call()
        _check(compliance.recent_contacts(s, profile_id=b, contacts=[phone], now=w.now) == {
            phone: {"call": 0, "sms": 0}}, "A's calls count against B's cap")

    def recent_contact_times() -> None:
        phone = a_call()
        _check(compliance.recent_contact_times(s, profile_id=b, contacts=[phone], now=w.now) == {
            phone: {"call": [], "sms": []}}, "A's calls count against B's cap")

    def hold_caps() -> None:
        compliance.hold_caps(s, profile_id=b, contacts=[A_NUMBER])
        if s.get_bind().dialect.name != "postgresql":
            return  # the embedded database's transaction holds its write lock: nothing per business
        held = set()
        for classid, objid in s.execute(text("SELECT classid::bigint, objid::bigint FROM pg_locks WHERE "
                                             "locktype = 'advisory' AND pid = pg_backend_pid()")):
            key = (int(classid) << 32) | int(objid)
            held.add(key - 2**64 if key >= 2**63 else key)
        _check(compliance._lock_key(b, A_NUMBER) in held, "B's hold took no lock")
        _check(compliance._lock_key(a, A_NUMBER) not in held, "B's hold blocks A's calls to the number")

    return {
        "core.compliance.hold_caps": hold_caps,
        "core.consents.record_consent": record_consent,
        "core.consents.list_consents": list_consents,
        "core.consents.revoke_consent": revoke_consent,
        "core.consents.consent_level": consent_level,
        "core.dnc.add_numbers": add_numbers,
        "core.dnc.import_file": import_file,
        "core.dnc.dnc_among": dnc_among,
        "core.dnc.is_dnc": is_dnc,
        "core.dnc.list_numbers": list_numbers,
        "core.dnc.remove_number": remove_number,
        "core.compliance.campaign_compliance": lambda: _refused(lambda: compliance.campaign_compliance(
            s, profile_id=b, campaign_id=w.a_campaign.id)),
        "core.compliance.recent_contacts": recent_contacts,
        "core.compliance.recent_contact_times": recent_contact_times,
    }


def preview_by_state(s: Session, w: Any) -> None:
    """The audience preview's count of states (``by_state``) takes only the business's own customers."""
    a, b = w.a.id, w.b.id
    # A's customer in Florida, with the written consent texts need (B holds one for the number too, so
    # that only the business of the customer, not B's policy or records, keeps it out of B's count)
    add_lead(s, profile_id=a, customer_name="Ann Able", customer_phone=A_NUMBER, status="Closed",
             created_at=w.now - timedelta(days=300))
    for owner in (a, b):
        consents.record_consent(s, profile_id=owner, contact=A_NUMBER, channel="all", level="express_written",
                                now=w.now)

    def florida(profile_id: uuid.UUID) -> int:
        states = targeting.preview_audience(s, profile_id=profile_id, target_criteria={}, outreach_method="sms",
                                            sample_size=0, now=w.now).by_state
        return int(states.get("FL", {}).get("recipients", 0))

    _check(florida(a) >= 1, "the probe's customer of A was not counted for A")
    _check(florida(b) == 0, "A's customers count in B's audience")

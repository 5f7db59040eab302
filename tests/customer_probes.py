"""Tenancy probes of the customers table and of what reads and writes it (core.customers_sync, the
customer list and page, statuses, leads pushed over the API, returns, the selection rules): business
B's id with business A's records, as :mod:`tests.test_tenancy` runs them (``**customer_probes(session,
world)`` in its ``probes``).  The caller rolls back after each probe.

``world`` needs ``a`` and ``b`` (profiles), ``a_agent``, ``a_lead`` (a lead of A whose customer has the
phone ``A_PHONE``, named "Ann …") and a recipient of A whose phone is opted out of texts
(``+12125550122``) is not needed: the opt-out itself is.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import String, literal, select, update
from sqlalchemy.orm import Session

from core import attribution, customers, customers_sync, leads, targeting
from core.errors import Invalid, NotFound
from core.models import Customer, Profile

A_PHONE = "+12125550111"
A_OPTED_OUT = "+12125550122"


def _check(condition: bool, why: str) -> None:
    assert condition, why


def customer_probes(s: Session, w: Any) -> dict[str, Callable[[], None]]:
    a, b = w.a.id, w.b.id

    def a_customer() -> Customer:
        return s.scalars(select(Customer).where(Customer.profile_id == a, Customer.contact_key == A_PHONE)).one()

    def sync() -> None:
        before = (a_customer().lead_count, a_customer().customer_name)
        _check(customers_sync.sync_customers(s, profile_id=b, keys=[A_PHONE], now=w.now) == 0,
               "B's sync wrote a customer from A's leads")
        s.expire_all()
        _check((a_customer().lead_count, a_customer().customer_name) == before, "B's sync changed A's customer")
        _check(s.scalar(select(Customer.id).where(Customer.profile_id == b, Customer.contact_key == A_PHONE))
               is None, "B got a customer for A's phone")

    def new_leads() -> None:
        # the import's PostgreSQL path only (its batch table is read with = ANY(array)); on SQLite an import
        # syncs with sync_customers, probed above
        if s.get_bind().dialect.name != "postgresql":
            return
        batch = leads._new  # the import's table of the leads a batch inserted
        conn = s.connection()
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {batch.name}")
        batch.create(conn)
        conn.execute(batch.insert().values(contact_key=A_PHONE, id=uuid.uuid4(), customer_name="Bea Bright",
                                           customer_phone=A_PHONE, customer_email=None, status="Booked",
                                           agent_id=None, service_type=None, created_at=w.now))
        before = (a_customer().id, a_customer().lead_count, a_customer().customer_name, a_customer().last_status)
        zones = select(batch.c.contact_key, literal("America/New_York", String).label("timezone"))
        written = customers_sync.sync_new_leads(s, profile_id=b, rows=batch, zones=zones, now=w.now)
        _check(written == 1, f"B's new lead made {written} customers of B (A's customer taken for B's?)")
        s.expire_all()
        _check((a_customer().id, a_customer().lead_count, a_customer().customer_name, a_customer().last_status)
               == before, "B's new lead changed A's customer")
        mine = s.scalars(select(Customer).where(Customer.profile_id == b, Customer.contact_key == A_PHONE)).one()
        _check((mine.customer_name, mine.lead_count, mine.last_status) == ("Bea Bright", 1, "Booked"),
               "B's customer was not made from B's lead alone")

    def anonymize() -> None:
        _check(customers_sync.anonymize(s, profile_id=b, contact_key=A_PHONE, erased_key="erased:x") == 0,
               "B erased A's customer")
        s.expire_all()
        _check(a_customer().customer_name is not None, "A's customer lost its name")

    def scores() -> None:
        s.execute(update(Customer).where(Customer.profile_id == a).values(score=-1))
        customers_sync.refresh_scores(s, profile_id=b, now=w.now)
        s.expire_all()
        _check(a_customer().score == -1, "B's score refresh rescored A's customers")

    def rules() -> None:
        s.execute(update(Profile).where(Profile.id == a).values(consent_policy="us_tcpa"))
        s.execute(update(Profile).where(Profile.id == b).values(consent_policy="none"))
        found = targeting.rules_for(s, profile_id=b, channels=["sms"], campaign_type="winback")
        _check(not found.consent, "B's rules read A's consent policy")

    def usable() -> None:
        rules = targeting.Rules(("sms",), {})
        _check(targeting.usable_channels(s, profile_id=b, rules=rules, contacts=[(A_OPTED_OUT, None)]) == [None],
               "A's opt-out suppressed B's customer")

    def pushed() -> None:
        with pytest.raises(Invalid) as err:
            leads.add_leads(s, profile_id=b, leads=[{"customer_phone": "+12125550166", "agent_id": w.a_agent.id}])
        _check(err.value.errors[0].field == "leads.0.agent_id", "A's agent was accepted for B's lead")

    def listed() -> None:
        rows, total = customers.search_customers(s, profile_id=b, search="Ann")
        _check(total == 0 and not rows, "B's customer search found A's customer")
        everyone, _total = customers.search_customers(s, profile_id=b)
        _check(A_PHONE not in {c.customer_phone for c in everyone}, "B's list shows A's customer")

    def detail() -> None:
        with pytest.raises(NotFound):
            customers.customer_detail(s, profile_id=b, customer_id=a_customer().id)

    def statuses() -> None:
        found = customers.lead_statuses(s, profile_id=b)
        _check(sum(x.leads for x in found) == 1, "B's statuses count A's leads")

    def returned() -> None:
        _check(attribution.mark_returned(s, profile_id=b, lead_ids=[w.a_lead.id], now=w.now) == 0,
               "B's lead ids marked A's recipients returned")

    def ids() -> None:
        _check(customers_sync.customer_ids(s, profile_id=b, keys=[A_PHONE]) == {}, "B found A's customer id")

    return {
        "core.customers_sync.sync_customers": sync,
        "core.customers_sync.sync_new_leads": new_leads,
        "core.customers_sync.anonymize": anonymize,
        "core.customers_sync.refresh_scores": scores,
        "core.customers_sync.customer_ids": ids,
        "core.targeting.rules_for": rules,
        "core.targeting.usable_channels": usable,
        "core.leads.add_leads": pushed,
        "core.customers.search_customers": listed,
        "core.customers.customer_detail": detail,
        "core.customers.lead_statuses": statuses,
        "core.attribution.mark_returned": returned,
    }

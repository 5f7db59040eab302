"""The demo business ``make run`` starts with: a salon with two years of lead
history from its CONNEXT voice agents — repeat customers, dormant ones,
e-mail-only and phone-only customers, the salon's own lead statuses (Booked,
No-show next to New, Contacted, Closed), consent records (most phone customers
agreed in writing to offers by text, fewer to offers by phone, some only to
service texts or calls, a few to nothing), a fifth of the numbers in Florida,
Maryland and Oklahoma, whose own calling hours and caps the compliance panels
show, a few opt-outs and do-not-call numbers — and sample campaigns:

- a win-back e-mail campaign that ran three weeks ago, with its whole history
  (sends, deliveries, opens, clicks, bookings), produced by running the real
  scheduler code with a simulated clock against the sandbox channels, so the
  analytics have data on the first day;
- a sandbox e-mail campaign scheduled a minute and a half after seeding, which the
  scheduler starts and finishes by itself while you watch;
- three drafts (e-mail with an A/B test, calls, SMS) to explore.

Deterministic (fixed random seed) and relative to today, so the demo always
has customers who went quiet six months ago.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.accounts import count_profiles, create_agent, create_profile
from core.campaigns import create_campaign
from core.contacts import normalize_email, normalize_phone
from core.customers_sync import refresh_scores, sync_customers
from core.db import utcnow
from core.models import Consent, DncNumber, Lead
from core.optouts import record_opt_out

DEMO_EMAIL = "demo@bellavista.example"
DEMO_PASSWORD = "bellavista-demo"
BUSINESS = "Bella Vista Salon & Spa"

FIRST = [
    "Olivia", "Emma", "Ava", "Sophia", "Isabella", "Mia", "Charlotte", "Amelia", "Harper", "Evelyn", "Liam",
    "Noah", "Oliver", "Elijah", "James", "William", "Benjamin", "Lucas", "Henry", "Theodore", "Grace", "Chloe",
    "Zoe", "Lily", "Nora", "Hannah", "Layla", "Aria", "Ella", "Scarlett", "Mateo", "Leo", "Jack", "Levi",
    "Ethan", "Daniel", "Sofia", "Camila", "Valentina", "Priya", "Aisha", "Mei", "Yuki", "Fatima", "Diego",
    "Rafael", "Omar", "Kofi", "Ines", "Marta"
]
LAST = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker",
    "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Patel", "Kim", "Chen",
    "Okafor", "Rossi", "Novak"
]
SERVICES = ("Haircut", "Color", "Highlights", "Blowout", "Manicure", "Pedicure", "Facial", "Massage")
SERVICE_WEIGHTS = (30, 14, 8, 10, 12, 8, 9, 9)
# area codes across four US time zones (and one that spans two: 208)
AREAS = ("201", "973", "312", "602", "415", "208")
# about a fifth of the numbers move to states with their own calling rules (core.compliance.STATE_RULES): Florida,
# Maryland and Oklahoma, each area code with a weight (Florida's the most people)
STATE_AREAS = (("305", 3), ("786", 2), ("407", 3), ("813", 3), ("954", 2),  # Florida
               ("410", 2), ("443", 2), ("301", 2),  # Maryland
               ("405", 2), ("918", 2))  # Oklahoma
STATE_SHARE = 0.2
NOTES = (None, None, None, "Prefers Saturday mornings", "Asked about gift cards", "Allergic to some dyes",
         "Booked for a wedding", "Wants a reminder call", "Referred by a friend", "Price-sensitive")
SUMMARIES = ("Caller asked about availability and prices.", "Booked an appointment.",
             "Asked to be called back next week.", "Rescheduled an existing appointment.",
             "Asked about a gift card.")

WINBACK_EMAIL = (
    "Hi {first_name|there},\n\n"
    "It has been a while since your last visit on {last_visit_date|your last visit}, and we miss you at "
    "{business_name}! As a thank-you for being a customer, enjoy {promotion} on your next "
    "{service_type|appointment}.\n\n"
    "Reply to this e-mail or call us to book a time that suits you.\n\n"
    "See you soon,\n{business_name}"
)
WINBACK_CALL = (
    "Hi {first_name|there}, this is {agent_name|the team} calling from {business_name}. We noticed we haven't "
    "seen you since {last_visit_date|a while}, and we'd love to welcome you back with {promotion}. "
    "Would you like me to book an appointment for you?"
)
SPRING_EMAIL = (
    "Hi {first_name|there},\n\n"
    "Spring is the perfect time to refresh your look. Book any color service at {business_name} this month "
    "and enjoy {promotion}.\n\n"
    "Book online at https://bellavista.example/book or simply reply to this e-mail.\n\n"
    "{business_name}"
)
HISTORY_AGO = timedelta(days=21)
# how many of the past campaign's customers came back on their own within its window
RETURN_RATE_CONTACTED = 0.18
RETURN_RATE_HOLDOUT = 0.04
SCHEDULED_AFTER = timedelta(seconds=90)
FEEDBACK_SMS = (
    "Hi {first_name|there}, it's {business_name}. How was your last {service_type|visit}? Reply with a number "
    "from 1 to 5 - we read every answer."
)


def _phone(rng: random.Random, used: set[str]) -> str:
    while True:
        raw = f"({rng.choice(AREAS)}) 555-01{rng.randint(0, 99):02d}"
        if raw not in used:
            used.add(raw)
            return raw


def _leads(rng: random.Random, now: datetime, profile_id: uuid.UUID, agents: list[uuid.UUID]) -> list[Lead]:
    leads: list[Lead] = []
    used_phones: set[str] = set()
    used_emails: set[str] = set()
    for _ in range(360):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        kind = rng.random()
        phone = None if kind < 0.14 else _phone(rng, used_phones)
        email = None
        if kind < 0.14 or kind > 0.34:
            base = f"{first}.{last}".lower()
            email = f"{base}@example.com" if base not in used_emails else f"{base}{rng.randint(2, 99)}@example.com"
            used_emails.add(base)
        visits = min(1 + int(rng.expovariate(0.55)), 9)
        # dormant customers stopped coming a while ago; active ones came recently
        last_seen = rng.choice((rng.uniform(1, 120), rng.uniform(120, 700), rng.uniform(180, 400)))
        service = rng.choices(SERVICES, SERVICE_WEIGHTS)[0]
        for v in range(visits):
            days_ago = min(last_seen + v * rng.uniform(25, 90), 729)
            created = now - timedelta(days=days_ago, hours=rng.uniform(0, 10))
            status = "Closed" if v > 0 else rng.choices(("New", "Contacted", "Closed"), (15, 20, 65))[0]
            leads.append(Lead(
                id=uuid.uuid4(), profile_id=profile_id, agent_id=rng.choice(agents),
                contact_key=normalize_phone(phone) if phone else normalize_email(email or ""),
                customer_name=f"{first} {last}" if rng.random() > 0.04 else None,
                customer_phone=normalize_phone(phone) if phone else None,
                customer_email=normalize_email(email) if email and (v == 0 or rng.random() > 0.3) else None,
                status=status, service_type=service if rng.random() > 0.25 else rng.choice(SERVICES),
                notes=rng.choice(NOTES), call_summary=rng.choice(SUMMARIES) if phone else None,
                sentiment=rng.choice(("positive", "neutral", "positive", "negative")),
                duration=rng.randint(35, 420) if phone else None, source="agent", extra={}, structured_data={},
                created_at=created, updated_at=created,
            ))
            if phone is None and email is None:
                break
    return leads


def _state_numbers(leads: list[Lead]) -> None:
    """About a fifth of the phone numbers in Florida, Maryland and Oklahoma: the area code changes, the rest of
    the (fictional, 555-01xx) number stays.  Its own random sequence, so the rest of the demo stays as it was."""
    rng = random.Random(20261206)
    areas, weights = zip(*STATE_AREAS, strict=True)
    taken = {lead.customer_phone for lead in leads if lead.customer_phone}
    moved: dict[str, str] = {}
    for lead in leads:
        phone = lead.customer_phone
        if phone is None or phone in moved:
            continue
        moved[phone] = phone
        if rng.random() >= STATE_SHARE:
            continue
        first = rng.choices(areas, weights)[0]
        # "+1" + area code + the rest; another of the codes when that number is taken already
        for area in (first, *areas):
            number = f"+1{area}{phone[5:]}"
            if number not in taken:
                taken.add(number)
                moved[phone] = number
                break
    for lead in leads:
        if lead.customer_phone is not None and moved[lead.customer_phone] != lead.customer_phone:
            lead.customer_phone = lead.contact_key = moved[lead.customer_phone]


def _own_words(leads: list[Lead]) -> None:
    """A salon's CRM has its own statuses: some most recent contacts were bookings and no-shows.
    (Its own random sequence, so the rest of the demo stays as it was.)"""
    rng = random.Random(20261204)
    newest: dict[str, Lead] = {}
    for lead in leads:
        if lead.contact_key not in newest or lead.created_at > newest[lead.contact_key].created_at:
            newest[lead.contact_key] = lead
    for lead in newest.values():
        roll = rng.random()
        if lead.status == "Contacted" and roll < 0.35:
            lead.status = "Booked"
        elif lead.status == "New" and roll < 0.3:
            lead.status = "No-show"


def _compliance_records(session: Session, *, profile_id: uuid.UUID, leads: list[Lead], now: datetime) -> None:
    """Consent as a salon collects it, and two numbers on its do-not-call list.  Offers by text or phone need
    consent in writing (``express_written``), which customers give on the booking form, box by box: most ticked
    the box for texts (about 78 %), fewer the one for calls (about 40 %; some ticked one box for both, ``all``);
    others only asked on an agent's call for appointment texts or a call back (``express``, about 14 %); the rest
    gave none."""
    rng = random.Random(20261205)
    first_call: dict[str, datetime] = {}
    for lead in leads:
        if lead.customer_phone and (lead.customer_phone not in first_call
                                    or lead.created_at < first_call[lead.customer_phone]):
            first_call[lead.customer_phone] = lead.created_at
    phones = sorted(first_call)
    form = "Booking form at bellavista.example/book, signed electronically; box ticked: "
    both = ("all", "express_written", "web_form", form + "'Bella Vista may call and text me with offers.'")
    texts = ("sms", "express_written", "web_form", form + "'Bella Vista may text me offers.'")
    calls = ("call", "express_written", "web_form", form + "'Bella Vista may call me with offers.'")
    service_texts = ("sms", "express", "call", "Asked on the call for appointment texts.")
    call_back = ("call", "express", "call", "Asked on the call to be called back about appointments.")
    # (up to this roll, the records a customer has)
    bands = ((0.12, (both,)), (0.40, (texts, calls)), (0.58, (texts, call_back)), (0.78, (texts,)),
             (0.88, (service_texts,)), (0.92, (service_texts, call_back)), (1.0, ()))
    consents = []
    for phone in phones:
        roll = rng.random()
        records = next(given for limit, given in bands if roll < limit)
        consents += [Consent(id=uuid.uuid4(), profile_id=profile_id, contact=phone, channel=channel, level=level,
                             source=source, proof=proof, captured_at=first_call[phone], created_at=now)
                     for channel, level, source, proof in records]
    session.add_all(consents)
    session.add_all([DncNumber(id=uuid.uuid4(), profile_id=profile_id, number=number, source="internal",
                               created_at=now - timedelta(days=90)) for number in (phones[7], phones[23])])
    session.flush()


def seed_demo(session: Session, *, if_empty: bool = False, now: datetime | None = None) -> dict[str, Any]:
    """Create the demo business; with ``if_empty``, only when no business exists yet."""
    if if_empty and count_profiles(session) > 0:
        return {"seeded": False, "login": {"email": DEMO_EMAIL, "password": DEMO_PASSWORD}}
    now = now or utcnow()
    rng = random.Random(20261124)
    profile, api_key, _ = create_profile(session, business_name=BUSINESS, email=DEMO_EMAIL,
                                         password=DEMO_PASSWORD, timezone="America/New_York",
                                         default_region="US", phone="+12015550100")
    profile.booking_url = "https://bellavista.example/book"
    agents = [create_agent(session, profile_id=profile.id, name=name).id
              for name in ("Ava (front desk)", "Max (after hours)", "Luna (bookings)")]
    leads = _leads(rng, now, profile.id, agents)
    _state_numbers(leads)
    _own_words(leads)
    session.add_all(leads)
    session.flush()
    sync_customers(session, profile_id=profile.id, keys=sorted({lead.contact_key for lead in leads}), now=now)
    _compliance_records(session, profile_id=profile.id, leads=leads, now=now)

    phones = sorted({lead.customer_phone for lead in leads if lead.customer_phone})
    emails = sorted({lead.customer_email for lead in leads if lead.customer_email})
    for contact, channel, source, reason in (
        (phones[3], "sms", "sms_stop", "Replied STOP"),
        (phones[11], "all", "manual", "Asked in person not to be contacted"),
        (emails[5], "email", "unsubscribe_link", "Unsubscribed from an e-mail"),
        (emails[17], "email", "bounce", "Mailbox does not exist"),
    ):
        record_opt_out(session, profile_id=profile.id, contact=contact, channel=channel, source=source,
                       reason=reason, now=now - timedelta(days=rng.randint(20, 200)))

    history = _past_campaign(session, profile_id=profile.id, now=now)
    scheduled = create_campaign(session, profile_id=profile.id, data={
        "name": "Spring color refresh", "campaign_type": "promotional", "outreach_method": "email",
        "description": "Runs by itself a minute and a half after the demo was set up (sandbox e-mail).",
        "target_criteria": {"last_contact_days": 45, "service_type": ["Color", "Highlights"],
                            "exclude_contacted_within_days": 14},
        "email_subject": "{first_name|Hi}, spring is here at {business_name}",
        "message_template": SPRING_EMAIL, "variables": {"promotion": "a free gloss with any color service"},
        "send_window": {"start": "00:00", "end": "24:00"}, "rate_limit_per_minute": 120,
        "scheduled_at": (now + SCHEDULED_AFTER).isoformat(), "status": "scheduled",
    }, now=now)
    create_campaign(session, profile_id=profile.id, data={
        "name": "Win back dormant regulars", "campaign_type": "winback", "outreach_method": "email",
        "description": "Customers who have not been in for six months or more; once started it keeps enrolling "
                       "customers as they cross six months.",
        "always_on": True, "reenroll_after_days": 180,
        "target_criteria": {"last_contact_days": 180, "status": "Closed", "min_leads": 2},
        "email_subject": "We miss you, {first_name|friend}!", "message_template": WINBACK_EMAIL,
        "variables": {"promotion": "20% off"},
        "variants": [{"name": "A", "weight": 1},
                     {"name": "B", "weight": 1, "email_subject": "{first_name|Hi}, a treat is waiting at "
                                                                 "{business_name}"}],
    }, now=now)
    create_campaign(session, profile_id=profile.id, data={
        "name": "Call lapsed color clients", "campaign_type": "winback", "outreach_method": "call",
        "target_criteria": {"last_contact_days": 120, "service_type": "Color"},
        "call_script": WINBACK_CALL, "variables": {"promotion": "a free gloss treatment"},
        "agent_id": str(agents[2]), "max_concurrent_calls": 2, "rate_limit_per_minute": 6,
        "send_window": {"start": "10:00", "end": "18:00", "days": ["mon", "tue", "wed", "thu", "fri"]},
    }, now=now)
    create_campaign(session, profile_id=profile.id, data={
        "name": "How did we do?", "campaign_type": "feedback", "outreach_method": "sms",
        "target_criteria": {"last_contact_days": 7, "last_contact_after": (now - timedelta(days=60)).date()
                            .isoformat()},
        "message_template": FEEDBACK_SMS,
    }, now=now)
    refresh_scores(session, profile_id=profile.id, now=now)
    return {
        "seeded": True, "profile_id": str(profile.id), "api_key": api_key,
        "login": {"email": DEMO_EMAIL, "password": DEMO_PASSWORD},
        "customers": len({lead.contact_key for lead in leads}), "leads": len(leads),
        "past_campaign_id": str(history), "scheduled_campaign_id": str(scheduled.id),
        "scheduled_at": scheduled.scheduled_at.isoformat() if scheduled.scheduled_at else None,
    }


def _past_campaign(session: Session, *, profile_id: uuid.UUID, now: datetime) -> uuid.UUID:
    """A campaign that ran three weeks ago, produced by the real engine.

    The scheduler's own code (selection, start, dispatch passes, sandbox
    outcomes applied as events, completion) runs against the seeding
    transaction with a simulated clock: every recipient, attempt, event,
    conversion and counter is what a real run of the sandbox makes.  Provider
    credentials are ignored here: history is always simulated.
    """
    from sqlalchemy.orm import sessionmaker

    from core.campaigns import start_campaign
    from core.config import get_settings
    from core.scheduling import tick

    started = now - HISTORY_AGO
    campaign = create_campaign(session, profile_id=profile_id, data={
        "name": "Autumn win-back", "campaign_type": "winback", "outreach_method": "email",
        "description": "Customers who had not been in for four months. Sent three weeks ago, with a fifth of "
                       "them kept back to measure what it changed.",
        "target_criteria": {"last_contact_days": 120, "status": "Closed"}, "holdout_percent": 20,
        "email_subject": "We miss you, {first_name|friend}!", "message_template": WINBACK_EMAIL,
        "variables": {"promotion": "15% off"}, "send_window": {"start": "08:00", "end": "20:00"},
        "rate_limit_per_minute": 600,
        "variants": [{"name": "A", "weight": 1},
                     {"name": "B", "weight": 1, "email_subject": "{first_name|Hi}, 15% off your next visit"}],
    }, now=started - timedelta(days=2))
    start_campaign(session, profile_id=profile_id, campaign_id=campaign.id, now=started)
    session.flush()
    # the engine's transactions become savepoints of the seeding transaction
    factory = sessionmaker(bind=session.connection(), join_transaction_mode="create_savepoint",
                           expire_on_commit=False)
    # slow, spread-out outcomes (a day of opens and bookings) and no live provider, ever
    settings = get_settings().model_copy(update={
        "resend_api_key": None, "vapi_api_key": None, "twilio_auth_token": None, "sandbox_speed": 0.1,
        "resend_max_per_second": 1000.0, "scheduler_batch_size": 200})
    offsets = [timedelta(seconds=s) for s in (0, 5, 10, 20, 40, 60, 120)]
    offsets += [timedelta(minutes=m) for m in (10, 30, 60, 120, 240, 480)]
    offsets += [timedelta(hours=h) for h in (12, 24, 36, 48, 72)]
    for offset in offsets:
        tick(factory, now=started + offset, worker="demo-history", settings=settings, concurrency=1)
    session.expire_all()
    _returns(session, profile_id=profile_id, campaign_id=campaign.id, started=started)
    return campaign.id


def _returns(session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID, started: datetime) -> None:
    """Customers of the past campaign who called the shop again within its attribution window, as the voice
    agent recorded them — more of the contacted than of those kept back, as a campaign that worked."""
    from core.leads import add_lead
    from core.models import CampaignRecipient

    rng = random.Random(20261125)
    r = CampaignRecipient
    people = session.execute(select(r.status, r.customer_name, r.customer_phone, r.customer_email)
                             .where(r.campaign_id == campaign_id).order_by(r.contact_key)).all()
    for status, name, phone, email in people:
        if rng.random() < (RETURN_RATE_HOLDOUT if status == "holdout" else RETURN_RATE_CONTACTED):
            add_lead(session, profile_id=profile_id, customer_name=name, customer_phone=phone, customer_email=email,
                     status="New", service_type=rng.choice(SERVICES), source="agent",
                     created_at=started + timedelta(days=rng.uniform(1, 12)),
                     notes="Called to book after a while away.")

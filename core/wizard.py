"""Pure helpers of the campaign wizard: per-type presets, the draft → campaign
conversion, which step a field belongs to, how field errors read, and how
long a campaign will take.

Nothing here touches the database or Streamlit: the wizard page keeps a draft
dict in session state and calls these functions; ``core.campaigns`` does the
real validation when the campaign is saved.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core.compliance import FEDERAL, STATE_RULES, rule_for_state
from core.consents import PURPOSE, required_level
from core.errors import DomainError, FieldError, Invalid
from core.models import CONSENT_POLICIES
from core.schemas import DAYS, SendWindow
from core.windows import hhmm_range

STEPS: tuple[str, ...] = ("Basics", "Audience", "Channel", "Content", "Schedule", "Review")

TYPE_LABELS: dict[str, str] = {
    "winback": "Win-back: customers who stopped coming",
    "followup": "Follow-up: recent enquiries that did not book",
    "promotional": "Promotion: a seasonal offer",
    "feedback": "Feedback: ask recent customers how it went",
}
METHOD_LABELS: dict[str, str] = {
    "email": "E-mail",
    "sms": "Text message (SMS)",
    "call": "AI voice call",
    "multi": "Several channels in sequence",
}
CONDITION_LABELS: dict[str, str] = {
    "always": "always",
    "no_response": "only if they have not responded yet",
    "not_answered": "only if no call was answered (no answer or voicemail)",
    "voicemail": "only if the last call reached voicemail",
    "answered": "only if they answered a call",
}
SEND_TIME_LABELS: dict[str, str] = {
    "window": "As soon as the send window allows",
    "best": "At each customer's best hour (learned from your past results)",
}
VARIANT_MODE_LABELS: dict[str, str] = {
    "split": "Split: every customer gets one version, by the shares below",
    "test_then_winner": "Test, then send the winner: a test group tries both, the rest get the better one",
}
CONTENT_FIELDS = ("email_subject", "message_template", "sms_template", "call_script")

# calls and SMS never go out outside 08:00–21:00 recipient time (TCPA), whatever the window says
QUIET_HOURS = (8 * 60, 21 * 60)
AVERAGE_CALL_MINUTES = 3.0


@dataclass(frozen=True)
class Preset:
    """Starting texts and settings for one campaign type.

    The audience assumes nothing about the business's own lead statuses (a CRM export may have none of
    ours): it is about time since the last contact.  ``recent_days`` (when set) adds "last in touch on
    or after that many days ago" — a date, so it is filled in when a draft is made.
    """

    description: str
    target_criteria: dict[str, Any]
    variables: dict[str, str]
    email_subject: str
    message_template: str
    sms_template: str
    call_script: str
    recent_days: int | None = None


# The texts read well with any service name ("Haircut", "Oil change", "MRI scan") or none: the service
# never follows "a"/"an", and a missing date or name falls back to words that still make a sentence.
PRESETS: dict[str, Preset] = {
    "winback": Preset(
        description="Customers we have not seen for six months or more.",
        target_criteria={"last_contact_days": 180},
        variables={"promotion": "20% off your next visit"},
        email_subject="We miss you, {first_name|there}!",
        message_template=(
            "Hi {first_name|there},\n\n"
            "It has been a while since {last_visit_date|your last visit}, and we would love to see you again at "
            "{business_name} for your next {service_type|visit}.\n\n"
            "As a thank-you for being a customer, enjoy {promotion}. Just reply to this e-mail or give us a "
            "call to book a time that suits you.\n\n"
            "See you soon,\n{business_name}\n\n"
            "Don't want these e-mails? Unsubscribe: {unsubscribe_url}"
        ),
        sms_template=(
            "Hi {first_name|there}, we miss you at {business_name}! As a thank-you, enjoy {promotion}. Reply to "
            "book. Reply STOP to opt out."
        ),
        call_script=(
            "Hi {first_name|there}, this is {agent_name|the team} from {business_name}. It has been a while since "
            "{last_visit_date|your last visit}, and we'd love to welcome you back with {promotion}. Would you "
            "like me to book your next {service_type|visit}?"
        ),
    ),
    "followup": Preset(
        description="People who got in touch in the last 30 days and have not been in touch since.",
        target_criteria={"last_contact_days": 2},
        recent_days=30,
        variables={},
        email_subject="{first_name|Hello}, shall we book you in?",
        message_template=(
            "Hi {first_name|there},\n\n"
            "Thanks for getting in touch with {business_name}. We wanted to make sure you have everything you "
            "need for your {service_type|appointment}. If you would like to book, just reply to this e-mail and "
            "we will find a time that works for you.\n\n"
            "Best wishes,\n{business_name}\n\n"
            "Don't want these e-mails? Unsubscribe: {unsubscribe_url}"
        ),
        sms_template=(
            "Hi {first_name|there}, it's {business_name}. Would you like us to book your "
            "{service_type|appointment}? Just reply with a day that suits you. Reply STOP to opt out."
        ),
        call_script=(
            "Hi {first_name|there}, this is {agent_name|the team} from {business_name}, following up on your "
            "recent call. Do you have a moment to find a time for your {service_type|appointment}?"
        ),
    ),
    "promotional": Preset(
        description="A seasonal offer for every customer we can reach.",
        target_criteria={"exclude_contacted_within_days": 14},
        variables={"promotion": "15% off all services this month"},
        email_subject="{first_name|Hello}, a little something from {business_name}",
        message_template=(
            "Hi {first_name|there},\n\n"
            "This month at {business_name} we are offering {promotion}. It is our way of saying thank you to "
            "the customers who make our business what it is.\n\n"
            "Reply to this e-mail or call us to claim your spot - places go quickly.\n\n"
            "Warmly,\n{business_name}\n\n"
            "Don't want these e-mails? Unsubscribe: {unsubscribe_url}"
        ),
        sms_template=(
            "{business_name}: {promotion} for you, {first_name|there}! Reply to book your "
            "{service_type|next visit}. Reply STOP to opt out."
        ),
        call_script=(
            "Hi {first_name|there}, this is {agent_name|the team} from {business_name}. This month we're "
            "offering {promotion} to our customers, and I wanted to make sure you heard about it first. "
            "Would you like me to book you in?"
        ),
    ),
    "feedback": Preset(
        description="Customers in touch in the last three weeks, asked how it went.",
        target_criteria={"last_contact_days": 1},
        recent_days=21,
        variables={},
        email_subject="How was your {service_type|visit}, {first_name|there}?",
        message_template=(
            "Hi {first_name|there},\n\n"
            "Thank you for choosing {business_name} for your {service_type|visit}. How did we do? Just hit "
            "reply and tell us in a sentence or two - we read every answer and use it to get better.\n\n"
            "Thank you,\n{business_name}\n\n"
            "Don't want these e-mails? Unsubscribe: {unsubscribe_url}"
        ),
        sms_template=(
            "Hi {first_name|there}, it's {business_name}. How was your {service_type|visit}? Reply with a "
            "number from 1 to 5 - we read every answer. Reply STOP to opt out."
        ),
        call_script=(
            "Hi {first_name|there}, this is {agent_name|the team} from {business_name}. I'm calling to ask how "
            "your recent {service_type|visit} went. Do you have a minute to tell us how we did?"
        ),
    ),
}

# the starter sequence for several channels: call; no answer or voicemail → a text with the booking link an
# hour later; still no response → an e-mail three days later
STARTER_STEPS: list[dict[str, Any]] = [
    {"channel": "call", "delay_hours": 0.0, "condition": "always"},
    {"channel": "sms", "delay_hours": 1.0, "condition": "not_answered"},
    {"channel": "email", "delay_hours": 72.0, "condition": "no_response"},
]
STARTER_SMS = ("Hi {first_name|there}, it's {business_name} - sorry we missed you! Book a time that suits you: "
               "{booking_link|just reply with a day}\nReply STOP to opt out.")


def default_start(zone: str, now: datetime) -> datetime:
    """When a campaign started "at a date and time" starts unless told otherwise: tomorrow at 10:00 in the
    campaign's time zone — its tomorrow, not the server's (at 19:30 in New York, UTC is already on the next day)."""
    local_today = now.astimezone(ZoneInfo(zone)).date()
    return datetime.combine(local_today + timedelta(days=1), time(10, 0), ZoneInfo(zone))


def preset_criteria(campaign_type: str, today: date | None = None) -> dict[str, Any]:
    """The preset audience of ``campaign_type`` as of ``today``."""
    preset = PRESETS[campaign_type]
    criteria = copy.deepcopy(preset.target_criteria)
    if preset.recent_days:
        criteria["last_contact_after"] = ((today or date.today()) - timedelta(days=preset.recent_days)).isoformat()
    return criteria


def starter_sequence(draft: Mapping[str, Any]) -> dict[str, Any]:
    """``draft`` switched to the starter sequence (call → text with the booking link → e-mail)."""
    out = dict(draft)
    out["outreach_method"] = "multi"
    out["steps"] = [dict(s) for s in STARTER_STEPS]
    out["sms_template"] = STARTER_SMS
    out["channel_chosen"] = True
    return out


def new_draft(*, campaign_type: str = "winback", timezone: str = "America/New_York",
              today: date | None = None) -> dict[str, Any]:
    """A fresh wizard draft for ``campaign_type``, prefilled with its preset."""
    preset = PRESETS[campaign_type]
    window = SendWindow.model_validate({"start": "09:00", "end": "19:00",
                                        "days": ["mon", "tue", "wed", "thu", "fri", "sat"]})
    return {
        "name": "",
        "description": preset.description,
        "campaign_type": campaign_type,
        "target_criteria": preset_criteria(campaign_type, today),
        "outreach_method": "email",
        # until the channel step is done, the audience counts everyone reachable on any channel
        "channel_chosen": False,
        "steps": [],
        "agent_id": None,
        "email_subject": preset.email_subject,
        "message_template": preset.message_template,
        "sms_template": preset.sms_template,
        "call_script": preset.call_script,
        "variables": dict(preset.variables),
        "variant_b": {},
        "variant_b_share": 50,
        "extra_variants": [],
        "variant_mode": "split",
        "test_percent": 20,
        "test_hours": 48.0,
        "start_mode": "now",
        "scheduled_at": None,
        "timezone": timezone,
        "send_window": window.model_dump(mode="json"),
        "send_time": "window",
        "rate_limit_per_minute": 30,
        "max_concurrent_calls": 3,
        "max_attempts": 3,
        "holdout_percent": 0,
        "always_on": False,
        "reenroll_after_days": 180,
    }


def apply_type(draft: dict[str, Any], campaign_type: str) -> dict[str, Any]:
    """Switch the draft to ``campaign_type``: every text the owner has not
    changed from the previous type's preset takes the new type's preset."""
    old = PRESETS.get(draft.get("campaign_type") or "")
    new = PRESETS[campaign_type]
    out = dict(draft)
    out["campaign_type"] = campaign_type
    for name in (*CONTENT_FIELDS, "description"):
        current = (out.get(name) or "").strip()
        if not current or (old is not None and current == getattr(old, name).strip()):
            out[name] = getattr(new, name)
    current = out.get("target_criteria")
    if old is None or not current or _is_preset(current, draft.get("campaign_type") or ""):
        out["target_criteria"] = preset_criteria(campaign_type)
    variables = dict(out.get("variables") or {})
    for key, value in (old.variables if old else {}).items():
        if variables.get(key) == value:
            del variables[key]
    for key, value in new.variables.items():
        variables.setdefault(key, value)
    out["variables"] = variables
    return out


def _is_preset(criteria: Mapping[str, Any], campaign_type: str) -> bool:
    """Whether ``criteria`` are ``campaign_type``'s preset audience (made on any day)."""
    if campaign_type not in PRESETS:
        return False
    preset = preset_criteria(campaign_type)
    return {k: v for k, v in criteria.items() if k != "last_contact_after"} == \
        {k: v for k, v in preset.items() if k != "last_contact_after"} and \
        ("last_contact_after" in criteria) == ("last_contact_after" in preset)


def used_channels(draft: Mapping[str, Any]) -> list[str]:
    """The channels the draft's outreach method uses, in the order they run."""
    method = draft.get("outreach_method") or "email"
    if method == "multi":
        seen: list[str] = []
        for step in draft.get("steps") or []:
            if step.get("channel") and step["channel"] not in seen:
                seen.append(step["channel"])
        return seen
    return [method]


def content_fields_for(draft: Mapping[str, Any]) -> list[str]:
    """The draft's content fields the chosen channels need (in display order).

    The draft keeps one text per channel (``message_template`` is the e-mail
    body, ``sms_template`` the SMS text) so switching channel never shows an
    e-mail where an SMS belongs; :func:`campaign_data` maps them onto the
    campaign's fields.
    """
    channels = used_channels(draft)
    fields: list[str] = []
    if "email" in channels:
        fields += ["email_subject", "message_template"]
    if "sms" in channels:
        fields.append("sms_template")
    if "call" in channels:
        fields.append("call_script")
    return fields


def campaign_field(draft: Mapping[str, Any], field: str) -> str:
    """The campaign field a draft content field is stored in (an SMS campaign's text is its message)."""
    if field == "sms_template" and (draft.get("outreach_method") or "email") == "sms":
        return "message_template"
    return field


def templates_for(draft: Mapping[str, Any], channel: str, *, variant_b: bool = False) -> tuple[str | None, str]:
    """``(subject, body)`` templates the draft uses on ``channel`` (version B's where it has its own)."""
    if channel == "email":
        names: tuple[str | None, str] = ("email_subject", "message_template")
    elif channel == "sms":
        names = (None, "sms_template")
    else:
        names = (None, "call_script")
    overrides = (draft.get("variant_b") or {}) if variant_b else {}

    def pick(name: str | None) -> str | None:
        if name is None:
            return None
        own = overrides.get(name) or ""
        return own if own.strip() else (draft.get(name) or "")

    return pick(names[0]), pick(names[1]) or ""


def campaign_data(draft: Mapping[str, Any], *, status: str) -> dict[str, Any]:
    """The ``core.campaigns.create_campaign`` (or ``update_campaign``) payload for the draft.

    ``status`` is ``"draft"`` or ``"scheduled"``.  Content the chosen channels do not use is sent empty,
    so it cannot fail validation unseen and an edited campaign keeps no text it no longer sends.
    """
    method = draft.get("outreach_method") or "email"
    needed = {campaign_field(draft, name) for name in content_fields_for(draft)}
    data: dict[str, Any] = {
        "name": (draft.get("name") or "").strip(),
        "description": (draft.get("description") or "").strip() or None,
        "campaign_type": draft.get("campaign_type"),
        "outreach_method": method,
        "target_criteria": dict(draft.get("target_criteria") or {}),
        "variables": dict(draft.get("variables") or {}),
        "timezone": draft.get("timezone"),
        "send_window": draft.get("send_window"),
        "rate_limit_per_minute": draft.get("rate_limit_per_minute"),
        "max_attempts": draft.get("max_attempts"),
        "status": status,
        "agent_id": None,
        "steps": [],
        "variants": [],
        "scheduled_at": None,
    }
    for name in ("send_time", "holdout_percent", "always_on", "reenroll_after_days"):
        if draft.get(name) is not None:
            data[name] = draft[name]
    if "call" in used_channels(draft):
        data["max_concurrent_calls"] = draft.get("max_concurrent_calls")
        if draft.get("agent_id"):
            data["agent_id"] = str(draft["agent_id"])
    for name in CONTENT_FIELDS:
        data[name] = None
    for name in content_fields_for(draft):
        data[campaign_field(draft, name)] = draft.get(name) or None
    if method == "multi":
        data["steps"] = [dict(s) for s in draft.get("steps") or [] if s.get("channel")]
    variant_b = {campaign_field(draft, k): v for k, v in (draft.get("variant_b") or {}).items()
                 if campaign_field(draft, k) in needed and (v or "").strip()}
    extra = [dict(v) for v in draft.get("extra_variants") or []]
    if variant_b or extra:
        share = int(draft.get("variant_b_share") or 50)
        share = min(max(share, 1), 99)
        data["variants"] = [{"name": "A", "weight": 100 - share}, {"name": "B", "weight": share, **variant_b},
                            *extra]
        data["variant_mode"] = draft.get("variant_mode") or "split"
        if data["variant_mode"] == "test_then_winner":
            data["test_percent"] = int(draft.get("test_percent") or 20)
            data["test_hours"] = float(draft.get("test_hours") or 48)
    else:
        data["variant_mode"] = "split"
    scheduled = draft.get("scheduled_at")
    if draft.get("start_mode") == "later" and scheduled:
        data["scheduled_at"] = scheduled.isoformat() if isinstance(scheduled, datetime) else scheduled
    return data


def _value(campaign: Any, name: str, default: Any = None) -> Any:
    value = campaign.get(name) if isinstance(campaign, Mapping) else getattr(campaign, name, None)
    return default if value is None else value


COPY_PREFIX = "Copy of "


def draft_from_campaign(campaign: Any, *, copy_of: bool = False, now: datetime | None = None) -> dict[str, Any]:
    """The wizard draft that :func:`campaign_data` turns back into ``campaign`` (a stored campaign or its
    fields): to edit a draft, or — ``copy_of`` — to start a new campaign from any campaign ("Copy of …",
    starting when confirmed).  Texts the campaign's channels do not use are the type's suggestions."""
    kind = _value(campaign, "campaign_type", "winback")
    kind = kind if kind in PRESETS else "winback"
    draft = new_draft(campaign_type=kind, timezone=_value(campaign, "timezone", "America/New_York"))
    method = _value(campaign, "outreach_method", "email")
    name = str(_value(campaign, "name", ""))
    if copy_of:
        name = (COPY_PREFIX + name)[:200]
    draft.update(
        name=name, description=_value(campaign, "description", ""), outreach_method=method, channel_chosen=True,
        target_criteria=copy.deepcopy(dict(_value(campaign, "target_criteria", {}))),
        variables=dict(_value(campaign, "variables", {})),
        steps=[dict(s) for s in _value(campaign, "steps", [])] if method == "multi" else [],
        agent_id=str(_value(campaign, "agent_id")) if _value(campaign, "agent_id") else None,
        send_window=dict(_value(campaign, "send_window", draft["send_window"])),
    )
    for name_ in ("rate_limit_per_minute", "max_concurrent_calls", "max_attempts", "send_time", "holdout_percent",
                  "always_on", "reenroll_after_days", "variant_mode", "test_percent", "test_hours"):
        draft[name_] = _value(campaign, name_, draft[name_])
    # content: the campaign's own texts where its channels use them
    stored = {n: _value(campaign, n) for n in CONTENT_FIELDS}
    if method == "sms":
        stored["sms_template"] = stored["message_template"] or stored["sms_template"]
        stored["message_template"] = None
    for field in CONTENT_FIELDS:
        if stored[field]:
            draft[field] = stored[field]
    variants = [dict(v) for v in _value(campaign, "variants", [])]
    if len(variants) >= 2:
        a, b = variants[0], variants[1]
        total = max(1, int(a.get("weight") or 1) + int(b.get("weight") or 1))

        def own(variant: Mapping[str, Any]) -> dict[str, str]:
            texts = {k: str(variant[k]) for k in CONTENT_FIELDS if variant.get(k)}
            if method == "sms" and "message_template" in texts:
                texts["sms_template"] = texts.pop("message_template")
            return texts

        draft.update(own(a))  # what version A sets is the campaign's text the wizard shows
        draft["variant_b"] = own(b)
        draft["variant_b_share"] = min(90, max(10, 5 * round(20 * int(b.get("weight") or 1) / total)))
        draft["extra_variants"] = variants[2:]
    scheduled = _value(campaign, "scheduled_at")
    if isinstance(scheduled, str):
        scheduled = datetime.fromisoformat(scheduled)
    if not copy_of and scheduled is not None and scheduled > (now or datetime.now(UTC)):
        draft["start_mode"], draft["scheduled_at"] = "later", scheduled.isoformat()
    return draft


# --- errors, step by step ----------------------------------------------------------------

FIELD_LABELS: dict[str, str] = {
    "name": "Campaign name",
    "description": "Description",
    "campaign_type": "Campaign type",
    "target_criteria": "Audience",
    "outreach_method": "Channel",
    "steps": "Channel sequence",
    "agent_id": "Calling agent",
    "email_subject": "E-mail subject",
    "message_template": "Message",
    "sms_template": "SMS text",
    "call_script": "Call script",
    "variables": "Campaign variables",
    "variants": "Version B (A/B test)",
    "scheduled_at": "Start time",
    "timezone": "Time zone",
    "send_window": "Send window",
    "rate_limit_per_minute": "Sending pace",
    "max_concurrent_calls": "Calls at once",
    "max_attempts": "Tries per customer",
    "status": "Status",
    "holdout_percent": "Customers kept back",
    "always_on": "Always on",
    "reenroll_after_days": "Enrol again after",
    "send_time": "When each customer is contacted",
    "variant_mode": "How the A/B test runs",
    "test_percent": "Test group",
    "test_hours": "Test length",
    "auto_pause_failure_rate": "Automatic pause",
    "score_min": "Lowest score",
    "score_max": "Highest score",
}
_FIELD_STEP: dict[str, int] = {
    "name": 1, "description": 1, "campaign_type": 1,
    "target_criteria": 2,
    "outreach_method": 3, "steps": 3, "agent_id": 3,
    "email_subject": 4, "message_template": 4, "sms_template": 4, "call_script": 4, "variables": 4,
    "variants": 4, "variant_mode": 4, "test_percent": 4, "test_hours": 4,
    "holdout_percent": 5, "always_on": 5, "reenroll_after_days": 5, "send_time": 5, "auto_pause_failure_rate": 5,
    "scheduled_at": 5, "timezone": 5, "send_window": 5, "rate_limit_per_minute": 5, "max_concurrent_calls": 5,
    "max_attempts": 5, "status": 6,
}


def step_of(field: str | None) -> int:
    """The wizard step (1–6) where the owner fixes ``field``."""
    head = (field or "").split(".")[0]
    return _FIELD_STEP.get(head, 6)


def field_label(field: str | None, draft: Mapping[str, Any] | None = None) -> str:
    """How the wizard names ``field`` (a campaign field or a draft content field) to a person."""
    parts = (field or "").split(".")
    head = parts[2] if parts[0] == "variants" and len(parts) > 2 else parts[0]
    if parts[0] == "variants" and len(parts) > 2:
        return f"Version B: {field_label(head, draft)}"
    if head == "message_template" and draft is not None:
        channels = used_channels(draft)
        if "email" not in channels and "sms" in channels:
            return "SMS text"
        if "email" in channels:
            return "E-mail message"
    return FIELD_LABELS.get(head, head.replace("_", " ").capitalize() or "Campaign")


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


_PYDANTIC_WORDING = {
    "String should have at least 1 character": "this cannot be empty",
    "Field required": "this is required",
    "Input should be a valid datetime": "pick a date and a time",
}


_RAW_NAME = re.compile(r"\b(?:variants\.\d+\.|target_criteria\.)?([a-z]+(?:_[a-z]+)+)\b")


def _plain(message: str, draft: Mapping[str, Any] | None) -> str:
    """``message`` without the API's field names: "x (message_template)" → "x"; "message_template: x" → "x";
    any other field name that slipped in → its label."""
    known = set(FIELD_LABELS) | set(CONTENT_FIELDS)
    message = re.sub(r"\s*\((?:variants\.\d+\.)?([a-z_]+)\)", lambda m: "" if m.group(1) in known else m.group(0),
                     message)
    message = re.sub(r"^(?:(?:variants\.\d+\.)?[a-z_]+(?:\.[a-z0-9_]+)*: )+", "", message)
    return _RAW_NAME.sub(lambda m: field_label(m.group(1), draft).lower() if m.group(1) in known else m.group(0),
                         message)


def describe_error(error: FieldError, draft: Mapping[str, Any] | None = None) -> str:
    """One field error as a sentence that names the field the way the wizard shows it (never as the API
    names it, like message_template)."""
    message = _PYDANTIC_WORDING.get(error.message, error.message)
    return f"{field_label(error.field, draft)}: {_sentence(_plain(message, draft))}"


def describe_exception(exc: DomainError, draft: Mapping[str, Any] | None = None) -> list[str]:
    """A domain error as the wizard's sentences: one per field at fault."""
    if isinstance(exc, Invalid):
        return [describe_error(e, draft) for e in exc.errors]
    if exc.field:
        return [describe_error(FieldError(exc.field, exc.message), draft)]
    return [_sentence(_plain(exc.message, draft))]


def errors_by_step(errors: list[FieldError], draft: Mapping[str, Any] | None = None) -> dict[int, list[str]]:
    """Field errors grouped by the wizard step that fixes them, as sentences."""
    out: dict[int, list[str]] = {}
    for err in errors:
        out.setdefault(step_of(err.field), []).append(describe_error(err, draft))
    return out


# --- variables ----------------------------------------------------------------------------


def parse_variables(text: str) -> tuple[dict[str, str], list[str]]:
    """``name = value`` lines into a dict, and the lines that could not be read."""
    values: dict[str, str] = {}
    bad: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            name, sep, value = line.partition(":")
        if not sep or not name.strip():
            bad.append(line)
            continue
        values[name.strip().strip("{}").strip()] = value.strip()
    return values, bad


def format_variables(variables: Mapping[str, Any]) -> str:
    """The inverse of :func:`parse_variables`."""
    return "\n".join(f"{k} = {v}" for k, v in variables.items())


# --- how long it will take ----------------------------------------------------------------


@dataclass(frozen=True)
class DurationEstimate:
    """How long sending will take at the campaign's pace inside its send window."""

    sends: int
    per_minute: float
    sending_minutes: float
    window_minutes_per_day: int
    days_per_week: int
    sending_days: float
    calendar_days: float
    follow_up_hours: float

    def sentence(self) -> str:
        """The estimate as a person reads it."""
        if self.sends == 0:
            return "Nobody to contact yet, so there is nothing to estimate."
        pace = f"{_num(self.per_minute)} per minute"
        if self.window_minutes_per_day == 0:
            return ("The send window and the 08:00–21:00 calling hours never overlap, so nothing could be sent; "
                    "widen the send window.")
        if self.sending_minutes <= self.window_minutes_per_day:
            about = "Under a minute" if self.sending_minutes < 1 else f"About {_duration(self.sending_minutes)}"
            text = (f"{about} of sending for {self.sends:,} "
                    f"{'contact' if self.sends == 1 else 'contacts'} at {pace}, within one day's send window.")
        else:
            text = (f"About {_num(self.sending_days)} sending days for {self.sends:,} "
                    f"{'contact' if self.sends == 1 else 'contacts'} at {pace} "
                    f"({_duration(self.window_minutes_per_day)} a day, {self.days_per_week} days a week): roughly "
                    f"{_num(self.calendar_days)} calendar days.")
        if self.follow_up_hours:
            text += f" Later steps wait {_num(self.follow_up_hours)} hours in total on top of that."
        return text


def _num(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:,.1f}"


def _duration(minutes: float) -> str:
    if minutes < 1:
        return "under a minute"
    if minutes < 90:
        n = math.ceil(minutes)
        return f"{n} minute{'s' if n != 1 else ''}"
    return f"{minutes / 60:.1f} hours"


def estimate_duration(
    *, audience: int, outreach_method: str, steps: list[dict[str, Any]] | None = None,
    rate_limit_per_minute: int, max_concurrent_calls: int = 3, send_window: Mapping[str, Any] | None = None,
    provider_per_minute: Mapping[str, float] | None = None, average_call_minutes: float = AVERAGE_CALL_MINUTES,
) -> DurationEstimate:
    """Estimate how long a campaign takes to reach ``audience`` customers.

    The pace is the campaign's rate limit, capped by each channel's provider
    limit (``provider_per_minute``) and, for calls, by how many calls may run at
    once.  Sending happens only inside the send window (and, for calls and SMS,
    08:00–21:00), so long campaigns spread over several days.
    """
    if outreach_method == "multi":
        channels = [s.get("channel") for s in steps or [] if s.get("channel")]
        follow_up = sum(float(s.get("delay_hours") or 0) for s in (steps or [])[1:])
    else:
        channels = [outreach_method]
        follow_up = 0.0
    channels = [c for c in channels if c] or ["email"]
    caps = dict(provider_per_minute or {})
    pace = float(rate_limit_per_minute)
    for ch in set(channels):
        if ch in caps:
            pace = min(pace, float(caps[ch]))
        if ch == "call":
            pace = min(pace, max_concurrent_calls / max(average_call_minutes, 0.1))
    pace = max(pace, 0.01)
    sends = audience * len(channels)
    minutes = sends / pace

    window = SendWindow.model_validate(dict(send_window or {}))
    start, end = window.minutes()
    if any(ch in ("call", "sms") for ch in channels):
        start, end = max(start, QUIET_HOURS[0]), min(end, QUIET_HOURS[1])
    per_day = max(0, end - start)
    days = len(window.days) or len(DAYS)
    sending_days = minutes / per_day if per_day else math.inf
    calendar_days = sending_days * 7 / days if per_day else math.inf
    return DurationEstimate(sends=sends, per_minute=round(pace, 2), sending_minutes=minutes,
                            window_minutes_per_day=per_day, days_per_week=days, sending_days=sending_days,
                            calendar_days=calendar_days, follow_up_hours=follow_up)


# --- the audience in words ----------------------------------------------------------------

DAY_NAMES = {"mon": "Monday", "tue": "Tuesday", "wed": "Wednesday", "thu": "Thursday", "fri": "Friday",
             "sat": "Saturday", "sun": "Sunday"}
OP_WORDS = {"eq": "is", "ne": "is not", "in": "is one of", "not_in": "is none of", "contains": "contains",
             "not_contains": "does not contain", "starts_with": "starts with", "gt": "is more than",
             "gte": "is at least", "lt": "is less than", "lte": "is at most", "is_null": "is empty",
             "not_null": "is filled in"}


def describe_criteria(criteria: Mapping[str, Any], *, agent_names: Mapping[str, str] | None = None) -> list[str]:
    """The audience rules as short sentences (empty rules: every customer)."""
    agent_names = agent_names or {}
    out: list[str] = []
    if criteria.get("last_contact_days"):
        out.append(f"Not in touch for at least {criteria['last_contact_days']} days.")
    if criteria.get("last_contact_after") or criteria.get("last_contact_before"):
        after, before = criteria.get("last_contact_after"), criteria.get("last_contact_before")
        if after and before:
            out.append(f"Last in touch on or after {after} and before {before}.")
        elif after:
            out.append(f"Last in touch on or after {after}.")
        else:
            out.append(f"Last in touch before {before}.")
    statuses = criteria.get("status")
    if statuses:
        values = [statuses] if isinstance(statuses, str) else list(statuses)
        out.append("Their most recent lead is " + " or ".join(values) + ".")
    if criteria.get("agent_id"):
        name = agent_names.get(str(criteria["agent_id"]), "the chosen agent")
        out.append(f"Their most recent lead was handled by {name}.")
    if criteria.get("min_leads") and int(criteria["min_leads"]) > 1:
        out.append(f"In touch at least {criteria['min_leads']} times.")
    services = criteria.get("service_type")
    if services:
        values = [services] if isinstance(services, str) else list(services)
        out.append("Had " + " or ".join(values) + " at some point.")
    low, high = criteria.get("score_min"), criteria.get("score_max")
    if low is not None and high is not None:
        out.append(f"Re-engagement score from {low} to {high}.")
    elif low is not None:
        out.append(f"Re-engagement score at least {low}.")
    elif high is not None:
        out.append(f"Re-engagement score at most {high}.")
    if criteria.get("exclude_contacted_within_days"):
        out.append(f"Not contacted by any campaign in the last {criteria['exclude_contacted_within_days']} days.")
    for f in criteria.get("filters") or []:
        value = f.get("value")
        shown = ", ".join(map(str, value)) if isinstance(value, list) else ("" if value is None else str(value))
        out.append(f"{str(f.get('field', '')).replace('_', ' ').capitalize()} "
                   f"{OP_WORDS.get(str(f.get('op')), f.get('op'))} {shown}".strip() + ".")
    return out or ["Every customer you can reach on this channel."]


# --- who is left out, and the law (DESIGN §10) ----------------------------------------------------------------

TYPE_NOUNS = {"winback": "Win-back", "promotional": "Promotional", "followup": "Follow-up", "feedback": "Feedback"}
PHONE_NOUNS = {"call": "calls", "sms": "texts"}
POLICY_SENTENCES = {
    "us_tcpa": "US rules apply: AI calls and texts that sell something (win-back, promotion, follow-up) need the "
               "customer's written consent; feedback calls and texts need their consent of either kind. E-mail "
               "needs none, and an opt-out always counts.",
    "none": "You take responsibility for consent (Settings): campaigns call and text customers without checking "
            "consent records. Opt-outs and your do-not-call list still count.",
}
CONTACT_WORDS = {"call": "phone number", "sms": "phone number", "email": "e-mail address"}
CHANNEL_ORDER = ("call", "sms", "email")


def policy_sentence(policy: str | None) -> str:
    """The business's consent policy in plain words."""
    return POLICY_SENTENCES.get(policy or "", POLICY_SENTENCES["us_tcpa"])


def _needs_consent(policy: str | None, campaign_type: str, channels: list[str]) -> list[tuple[str, str]]:
    """``(channel, level)`` for each of ``channels`` that needs consent under ``policy``, calls first."""
    if policy not in CONSENT_POLICIES:
        return []
    found = [(ch, required_level(policy, campaign_type, ch)) for ch in ("call", "sms") if ch in channels]
    return [(ch, level) for ch, level in found if level is not None]


def consent_reason(policy: str | None, campaign_type: str, channels: list[str]) -> str | None:
    """Why a customer without consent on record is left out of a campaign of ``campaign_type`` on
    ``channels`` (``None``: none of them needs consent), e.g. "Win-back texts are marketing: US rules need
    the customer's written consent to texts." — from :func:`core.consents.required_level` and
    :data:`core.consents.PURPOSE`."""
    needed = _needs_consent(policy, campaign_type, channels)
    if not needed:
        return None
    kind = TYPE_NOUNS.get(campaign_type, "These")
    what = " and ".join(PHONE_NOUNS[ch] for ch, _ in needed)
    written = any(level == "express_written" for _, level in needed)
    to = f"to {what}" if len(needed) == 1 else "to calls before a call, and to texts before a text"
    if PURPOSE.get(campaign_type, "marketing") == "marketing":
        consent = "written consent" if written else "consent"
        return f"{kind} {what} are marketing: US rules need the customer's {consent} {to}."
    if len(needed) == 1:
        return f"{kind} {what} are not marketing, but US rules still need the customer's consent {to} (written or not)."
    return f"{kind} {what} are not marketing, but US rules still need the customer's consent (written or not) {to}."


def _customers(n: int) -> str:
    return f"{n:,} customer{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class LeftOut:
    """Who a campaign's audience leaves out and why, in plain words (the selection's ``suppressed_by``).

    ``total`` is the audience's ``suppressed`` (customers without a contact for the channels are not in it:
    ``no_contact`` says how many they are)."""

    total: int
    reasons: list[str]  # one sentence per reason that left someone out, the why included
    no_contact: str | None
    past: bool

    def headline(self) -> str:
        if self.total:
            if self.past:
                return (f"{_customers(self.total)} who matched {'was' if self.total == 1 else 'were'} left out "
                        "when the campaign chose its customers:")
            return f"{_customers(self.total)} who {'matches is' if self.total == 1 else 'match are'} left out:"
        if self.no_contact:
            return (f"Nobody {'was' if self.past else 'is'} left out for an opt-out, the do-not-call list or "
                    "missing consent.")
        return "Nobody was left out." if self.past else "Nobody who matches is left out."

    def markdown(self) -> str:
        """The headline and a bullet per reason."""
        bullets = "\n".join(f"- {line}" for line in self.reasons)
        return f"{self.headline()}\n\n{bullets}" if bullets else self.headline()


def left_out(suppressed_by: Mapping[str, Any] | None, *, policy: str | None, campaign_type: str,
             channels: list[str], past: bool = False) -> LeftOut:
    """Who is left out and why, from ``suppressed_by`` (``{"opted_out", "dnc", "no_consent", "no_contact"}``)
    for a campaign of ``campaign_type`` on ``channels`` under the business's consent ``policy``; ``past`` for a
    selection already made (the campaign page), else as the audience stands now (the wizard)."""
    counts = {k: int(v) for k, v in (suppressed_by or {}).items() if isinstance(v, int) and v > 0}
    reasons: list[str] = []
    if n := counts.get("opted_out", 0):
        reasons.append(f"{_customers(n)} opted out.")
    if n := counts.get("dnc", 0):
        verb = ("was" if n == 1 else "were") if past else ("is" if n == 1 else "are")
        reasons.append(f"{n:,} number{'' if n == 1 else 's'} {verb} on your do-not-call list.")
    if n := counts.get("no_consent", 0):
        needed = _needs_consent(policy, campaign_type, channels)
        what = " or ".join(PHONE_NOUNS[ch] for ch, _ in needed)
        have = "had" if past else ("has" if n == 1 else "have")
        if not needed:  # the policy changed since the selection, or nothing here asks for consent any more
            line = f"{_customers(n)} {have} no consent on record."
        elif any(level == "express_written" for _, level in needed):
            line = f"{_customers(n)} {have} no written consent to {what}."
        else:
            line = f"{_customers(n)} {have} not consented to {what}."
        why = consent_reason(policy, campaign_type, channels)
        reasons.append(f"{line} {why}" if why else line)
    no_contact = None
    if n := counts.get("no_contact", 0):
        need = " or ".join(dict.fromkeys(CONTACT_WORDS[ch] for ch in CHANNEL_ORDER if ch in channels))
        if past:
            no_contact = f"{_customers(n)} who matched had no {need or 'contact'}, so they were not counted."
        else:
            no_contact = (f"{_customers(n)} who {'matches has' if n == 1 else 'match have'} no {need or 'contact'}, "
                          "so they are not counted.")
    return LeftOut(total=sum(counts.get(k, 0) for k in ("opted_out", "dnc", "no_consent")), reasons=reasons,
                   no_contact=no_contact, past=past)


def cap_words(cap: int, *, counts_texts: bool, channels: list[str]) -> str:
    """A state's cap for a campaign on ``channels``: "3 calls", "3 calls and texts together", or for texts
    alone where only calls are capped "3 calls (texts not counted)"."""
    if counts_texts:
        return f"{cap} calls and texts together"
    if "call" not in channels and "sms" in channels:
        return f"{cap} calls (texts not counted)"
    return f"{cap} calls"


STATE_COLUMNS = ("State", "Customers", "Hours", "Limit per 24 hours", "Law")


def state_rows(by_state: Mapping[str, Mapping[str, Any]], *, channels: list[str]) -> list[dict[str, Any]]:
    """One row per state with its own rules (``by_state`` of :func:`core.compliance.campaign_compliance` or
    :attr:`core.targeting.Preview.by_state`), with :data:`STATE_COLUMNS`."""
    rows = []
    for code, entry in by_state.items():
        rule = rule_for_state(code)
        rows.append(dict(zip(STATE_COLUMNS, (
            rule.name if rule else code, int(entry.get("recipients") or 0), str(entry.get("hours") or ""),
            cap_words(int(entry.get("cap_per_24h") or 0), counts_texts=bool(entry.get("cap_counts_texts")),
                      channels=channels),
            str(entry.get("source") or "").replace("§ ", "§\u00a0")), strict=True)))  # "§ 501.616" on one line
    return rows


def states_note() -> str:
    """What the per-state table leaves unsaid."""
    return (f"Hours are the customer's local time; elsewhere in the US, calls and texts go out only "
            f"{hhmm_range(FEDERAL.start, FEDERAL.end)}. A limit is per customer, across all your campaigns.")


def no_states_sentence(*, past: bool = False) -> str:
    names = ", ".join(rule.name for rule in STATE_RULES[:-1]) + f" or {STATE_RULES[-1].name}"
    return (f"None of these customers' numbers {'was' if past else 'is'} in a state with rules of its own for "
            f"calls and texts ({names}).")

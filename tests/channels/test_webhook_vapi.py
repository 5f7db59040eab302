"""``POST /webhooks/vapi``: the shared secret, every outcome of a call, replays and strangers."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

import api
from tests.channels import helpers as h

PHONES = ["+12125550101", "+12125550102", "+12125550103"]


@pytest.fixture
def calls(session, factory, fake_vapi, live, now):
    """A call campaign of three customers, one pass run: three calls placed at the fake."""
    profile = h.business(session)
    h.add_leads(session, profile, [{"phone": p, "name": f"Ann{i} Lee", "email": f"ann{i}@example.com"}
                                   for i, p in enumerate(PHONES)], now=now)
    cid = h.campaign(session, profile, method="call", now=now)
    session.commit()
    report = h.run(factory, profile.id, cid, now, live)
    assert report.sent == 3
    ids = {c["customer"]["number"]: c["id"] for c in fake_vapi.created()}
    return profile, cid, ids


def test_status_updates_are_kept_on_the_timeline(session, calls, fake_vapi, post):
    _, cid, ids = calls
    answer = fake_vapi.deliver(fake_vapi.status_update(ids[PHONES[0]], "ringing"), post)
    assert answer.status_code == 200 and answer.json() == {"received": 1, "applied": 1, "replayed": 0, "ignored": 0}
    (event,) = [e for e in h.events(session, provider="vapi")]
    assert (event.type, event.payload, event.provider_event_id) == (
        "status", {"status": "ringing"}, f"{ids[PHONES[0]]}:status-update:ringing")
    assert h.recipient(session, cid, PHONES[0]).status == "sent"


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", h.VAPI_SECRET + "x"], ids=["missing", "empty", "forged",
                                                                                        "longer"])
def test_a_wrong_or_missing_secret_changes_nothing(session, calls, fake_vapi, client, secret):
    _, _, ids = calls
    call_id = ids[PHONES[0]]
    fake_vapi.end_call(call_id, transcript="AI: Hi\nUser: Book me in", success_evaluation="true")
    _url, headers, body = fake_vapi.signed(fake_vapi.end_of_call_report(call_id), secret=secret)
    if secret is None:
        headers.pop("x-vapi-secret", None)
    before = h.snapshot(session)
    answer = client.post("/webhooks/vapi", content=body, headers=headers)
    assert answer.status_code == 401 and "x-vapi-secret" in answer.json()["detail"]
    assert h.snapshot(session) == before


def test_without_a_configured_secret_everything_is_refused(session, engine, calls, fake_vapi, live):
    _, _, ids = calls
    app = api.create_app(engine=engine, settings=live.model_copy(update={"vapi_webhook_secret": None}))
    with TestClient(app) as c:
        _url, headers, body = fake_vapi.signed(fake_vapi.status_update(ids[PHONES[0]], "ringing"))
        answer = c.post("/webhooks/vapi", content=body, headers=headers)
    assert answer.status_code == 401 and "VAPI_WEBHOOK_SECRET" in answer.json()["detail"]
    assert h.events(session, provider="vapi") == []


def test_an_answered_successful_call_converts_once(session, calls, fake_vapi, post):
    profile, cid, ids = calls
    call_id = ids[PHONES[0]]
    fake_vapi.end_call(call_id, ended_reason="customer-ended-call",
                       transcript="AI: Hi Ann, shall I book you in?\nUser: Yes, Saturday at ten please.",
                       summary="Ann booked a colour for Saturday 10:00.", success_evaluation="true",
                       structured_data={"appointment_booked": True, "appointment_time": "Saturday 10:00"},
                       recording_url="https://storage.vapi.ai/rec/abc-mono.wav", cost=0.21, duration=95)
    report = fake_vapi.end_of_call_report(call_id)
    first = fake_vapi.deliver(report, post)
    assert first.status_code == 200 and first.json()["applied"] == 2  # answered, then converted
    r = h.recipient(session, cid, PHONES[0])
    assert r.status == "answered" and r.answered_at is not None and r.delivered_at is not None
    assert r.converted and r.converted_at is not None and r.responded_at is not None
    data = r.response_data
    assert data["transcript"].endswith("Saturday at ten please.") and data["summary"].startswith("Ann booked")
    assert data["recording_url"] == "https://storage.vapi.ai/rec/abc-mono.wav"
    assert data["structured_data"]["appointment_time"] == "Saturday 10:00"
    assert data["success"] == "true" and data["cost"] == 0.21 and data["duration_seconds"] == 95
    assert data["ended_reason"] == "customer-ended-call"
    (lead,) = h.leads_of(session, profile.id, source="campaign")
    assert (lead.status, lead.campaign_id, lead.customer_phone) == ("New", cid, PHONES[0])
    assert lead.call_summary.startswith("Ann booked") and lead.recording_url.endswith("mono.wav")
    # the call no longer counts as in progress
    attempt = next(a for a in h.attempts(session, cid) if a.provider_message_id == call_id)
    assert attempt.completed_at is not None
    # Vapi sends the report again (or somebody replays it): nothing changes
    before = h.snapshot(session)
    again = fake_vapi.deliver(report, post)
    assert again.status_code == 200 and again.json() == {"received": 2, "applied": 0, "replayed": 2, "ignored": 0}
    assert h.snapshot(session) == before
    counts = h.results_match(session, cid)
    assert (counts["answered_count"], counts["converted_count"], counts["responded_count"]) == (1, 1, 1)


@pytest.mark.parametrize(("reason", "status", "kind", "error"), [
    ("customer-did-not-answer", "sent", "not_answered", None),
    ("customer-busy", "sent", "not_answered", None),
    ("voicemail", "delivered", "delivered", None),
    ("twilio-failed-to-connect-call", "failed", "failed", "the call could not be connected"),
])
def test_outcomes_of_a_call(session, calls, fake_vapi, post, reason, status, kind, error):
    _, cid, ids = calls
    call_id = ids[PHONES[1]]
    fake_vapi.end_call(call_id, ended_reason=reason, duration=30)
    assert fake_vapi.deliver(fake_vapi.end_of_call_report(call_id), post).status_code == 200
    r = h.recipient(session, cid, PHONES[1])
    assert r.status == status and r.response_data["ended_reason"] == reason
    assert not r.converted and r.answered_at is None
    if error:
        assert error in r.error_message
    (event,) = [e for e in h.events(session, provider="vapi")]
    assert event.type == kind
    attempt = next(a for a in h.attempts(session, cid) if a.provider_message_id == call_id)
    assert attempt.completed_at is not None
    h.results_match(session, cid)


def test_a_status_update_that_settles_the_outcome_is_applied_at_once(session, calls, fake_vapi, post):
    _, cid, ids = calls
    fake_vapi.deliver(fake_vapi.status_update(ids[PHONES[2]], "ended", ended_reason="customer-busy"), post)
    (event,) = h.events(session, provider="vapi")
    assert event.type == "not_answered" and event.provider_event_id.endswith(":status-update:ended:customer-busy")
    # a reason only the report can settle waits for it
    fake_vapi.deliver(fake_vapi.status_update(ids[PHONES[1]], "ended", ended_reason="pipeline-error-openai-llm-failed"),
                      post)
    assert h.events(session, provider="vapi")[-1].type == "status"
    assert h.recipient(session, cid, PHONES[1]).status == "sent"


def test_asking_not_to_be_called_again_opts_out(session, calls, fake_vapi, post):
    profile, cid, ids = calls
    call_id = ids[PHONES[0]]
    fake_vapi.end_call(call_id, transcript="AI: Hi Ann!\nUser: Please don't call me again.",
                       structured_data={"do_not_call": True}, success_evaluation="false")
    assert fake_vapi.deliver(fake_vapi.end_of_call_report(call_id), post).json()["applied"] == 2
    r = h.recipient(session, cid, PHONES[0])
    assert r.status == "opted_out" and not r.converted
    assert (PHONES[0], "call", "call_request") in h.opt_outs(session, profile.id)


def test_a_request_said_only_in_the_transcript_is_honoured(session, calls, fake_vapi, post):
    profile, _, ids = calls
    call_id = ids[PHONES[1]]
    fake_vapi.end_call(call_id, transcript="AI: Hi, this is Bella Vista.\nUser: Stop calling me, thanks.")
    fake_vapi.deliver(fake_vapi.end_of_call_report(call_id), post)
    assert (PHONES[1], "call", "call_request") in h.opt_outs(session, profile.id)


def test_a_call_we_did_not_place_is_acknowledged_and_ignored(session, calls, fake_vapi, post, client):
    before = h.snapshot(session)
    message = {"message": {"type": "end-of-call-report", "endedReason": "customer-ended-call",
                           "call": {"id": "3e1b9a52-0000-4000-8000-000000000000"},
                           "artifact": {"transcript": "User: hello"}, "analysis": {"successEvaluation": "true"}}}
    answer = client.post("/webhooks/vapi", content=json.dumps(message),
                         headers={"x-vapi-secret": h.VAPI_SECRET, "Content-Type": "application/json"})
    assert answer.status_code == 200 and answer.json()["ignored"] == 2 and answer.json()["applied"] == 0
    after = h.snapshot(session)
    assert after["recipients"] == before["recipients"] and after["leads"] == before["leads"]
    # other server messages are acknowledged and not stored
    speech = {"message": {"type": "speech-update", "status": "started"}}
    other = client.post("/webhooks/vapi", content=json.dumps(speech), headers={"x-vapi-secret": h.VAPI_SECRET})
    assert other.status_code == 200 and other.json()["received"] == 0
    bad = client.post("/webhooks/vapi", content=b"not json", headers={"x-vapi-secret": h.VAPI_SECRET})
    assert bad.status_code == 400


def test_metadata_finds_the_recipient_before_the_call_id_is_recorded(session, calls, fake_vapi, post):
    """A webhook may overtake the dispatcher's record of the call id: the metadata names the recipient."""
    _, cid, ids = calls
    r = h.recipient(session, cid, PHONES[2])
    message = fake_vapi.status_update(ids[PHONES[2]], "ended", ended_reason="voicemail")
    message["message"]["call"]["id"] = "not-recorded-yet"
    assert fake_vapi.deliver(message, post).json()["applied"] == 1
    assert h.recipient(session, cid, PHONES[2]).status == "delivered"
    assert r.id == h.events(session, provider="vapi")[0].recipient_id


def test_a_call_refused_for_concurrency_is_placed_again(session, factory, calls, fake_vapi, post, live, now):
    _, cid, ids = calls
    call_id = ids[PHONES[0]]
    fake_vapi.end_call(call_id, ended_reason="call.start.error-subscription-concurrency-limit-reached", duration=0)
    assert fake_vapi.deliver(fake_vapi.end_of_call_report(call_id), post).status_code == 200
    r = h.recipient(session, cid, PHONES[0])
    assert r.status == "queued" and r.sent_at is None and r.next_attempt_at is not None
    assert "never started" in r.error_message
    first = next(a for a in h.attempts(session, cid) if a.provider_message_id == call_id)
    assert (first.outcome, first.error_code) == ("retryable", "concurrency_limited")
    # a replayed report changes nothing (it is not a failure either)
    fake_vapi.deliver(fake_vapi.status_update(call_id, "ended",
                                              ended_reason="call.start.error-subscription-concurrency-limit-reached"),
                      post)
    assert h.recipient(session, cid, PHONES[0]).status == "queued"
    report = h.run(factory, r.profile_id, cid, h.calling_hours_after(r.next_attempt_at), live)
    assert report.sent == 1
    calls_to = fake_vapi.calls_to(PHONES[0])
    assert len(calls_to) == 2 and calls_to[0]["id"] == call_id  # the first one never rang
    r = h.recipient(session, cid, PHONES[0])
    assert r.status == "sent" and r.provider_message_id == calls_to[1]["id"]
    second = [a for a in h.attempts(session, cid) if a.recipient_id == r.id]
    assert [(a.attempt_no, a.outcome) for a in second] == [(1, "retryable"), (2, "accepted")]

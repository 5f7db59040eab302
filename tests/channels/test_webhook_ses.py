"""``POST /webhooks/ses``: Amazon SES notifications as SNS delivers them.

Real SNS messages come from moto in server mode (a topic, an HTTP subscription to a catcher on
127.0.0.1, ``Publish`` → moto posts the signed notification, ``SignatureVersion`` 2); others are
signed here with a certificate a private CA issued (versions 1 and 2, subscription
confirmations).  The signing certificates are served to the app by an injected SNS client that
maps ``https://sns.<region>.amazonaws.com/…`` to moto or to the test's certificate.  Each
verification is also checked independently: cryptography's own RSA verify over the canonical
string built here from AWS's documentation."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
import httpx
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer
from pydantic import SecretStr

import api
from core.channels import smtp_email as smtp
from core.webhooks import ses
from tests.channels import helpers as h
from tests.fakes.loopback import LoopbackFake
from tests.fakes.smtp import SmtpPeer, TlsFiles, free_port, tls_files

REGION = "us-east-1"
SENDER = "hello@bellavista.example"
OWN_CERT_URL = f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
# moto's server picks the service from a request's credential scope (it checks no signature)
MOTO_AUTH = f"AWS4-HMAC-SHA256 Credential=test/20260101/{REGION}/sns/aws4_request, SignedHeaders=host, Signature=0"
EMAILS = ["ann@example.com", "bo@example.com", "cy@example.com", "di@example.com", "ed@example.com"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def independent_canonical(message: dict[str, Any]) -> bytes:
    """The string SNS signs, written from AWS's documentation (not from the code under test)."""
    if message["Type"] == "Notification":
        keys = ["Message", "MessageId"] + (["Subject"] if "Subject" in message else []) + \
            ["Timestamp", "TopicArn", "Type"]
    else:
        keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{k}\n{message[k]}\n" for k in keys).encode()


def independently_valid(message: dict[str, Any], pem: bytes) -> bool:
    key = x509.load_pem_x509_certificate(pem).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    algorithm = hashes.SHA1() if message["SignatureVersion"] == "1" else hashes.SHA256()
    try:
        key.verify(base64.b64decode(message["Signature"]), independent_canonical(message), padding.PKCS1v15(),
                   algorithm)
    except InvalidSignature:
        return False
    return True


class Catcher(LoopbackFake):
    """The HTTP endpoint SNS (moto) delivers to: keeps each request as it came."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self._listen()

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        self.received.append((dict(headers), body))
        return 200, {}


class LocalSns(ses.SnsClient):
    """The app's way to SNS in these tests: certificates and confirmations from moto (or the test's own
    certificate), with every URL asked for recorded."""

    def __init__(self, moto_url: str, own: dict[str, bytes]) -> None:
        super().__init__()
        self.moto_url, self.own = moto_url, own
        self.asked: list[str] = []
        self.answers: list[tuple[str, int, str]] = []
        self.down = False

    def get(self, url: str) -> bytes:
        self.asked.append(url)
        if self.down:
            raise httpx.ConnectError("network unreachable")
        if url in self.own:
            return self.own[url]
        parts = urlsplit(url)
        answer = httpx.get(f"{self.moto_url}{parts.path}" + (f"?{parts.query}" if parts.query else ""),
                           headers={"Authorization": MOTO_AUTH})
        self.answers.append((url, answer.status_code, answer.text))
        answer.raise_for_status()
        return answer.content


class Sns:
    """moto's SNS with one topic whose HTTP subscription is the catcher, and a signer of our own."""

    def __init__(self, tls: TlsFiles) -> None:
        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.url = f"http://127.0.0.1:{self.port}"
        self.catcher = Catcher()
        key = serialization.load_pem_private_key(tls.key.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        self.key, self.cert_pem = key, tls.cert.read_bytes()

    def __enter__(self) -> Sns:
        self.server.start()
        self.catcher.__enter__()
        self.client = boto3.client("sns", region_name=REGION, endpoint_url=self.url, aws_access_key_id="testing",
                                   aws_secret_access_key="testing")
        self.topic = self.client.create_topic(Name="ses-events")["TopicArn"]
        self.other_topic = self.client.create_topic(Name="someone-elses")["TopicArn"]
        self.client.subscribe(TopicArn=self.topic, Protocol="http",
                              Endpoint=f"{self.catcher.url}/webhooks/ses")
        return self

    def __exit__(self, *exc: object) -> None:
        self.catcher.__exit__()
        self.server.stop()

    def publish(self, ses_message: dict[str, Any]) -> tuple[dict[str, str], bytes]:
        """Publish SES's JSON to the topic; what SNS posted to the subscriber."""
        before = len(self.catcher.received)
        self.client.publish(TopicArn=self.topic, Message=json.dumps(ses_message))
        assert len(self.catcher.received) == before + 1
        return self.catcher.received[-1]

    def signed(self, message: dict[str, Any], *, version: str = "2", cert_url: str = OWN_CERT_URL) -> bytes:
        """``message`` signed here (SNS's canonical string, SHA1 or SHA256 with RSA)."""
        message = {**message, "SignatureVersion": version, "SigningCertURL": cert_url}
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(independent_canonical(message), padding.PKCS1v15(), algorithm)
        return json.dumps({**message, "Signature": base64.b64encode(signature).decode()}).encode()

    def notification(self, ses_message: dict[str, Any], *, topic: str | None = None, **extra: Any) -> dict[str, Any]:
        return {"Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": topic or self.topic,
                "Message": json.dumps(ses_message), "Timestamp": now_iso(),
                "UnsubscribeURL": f"https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe", **extra}

    def confirmation(self, *, topic: str | None = None, subscribe_url: str | None = None) -> dict[str, Any]:
        topic = topic or self.topic
        token = uuid.uuid4().hex * 2
        return {"Type": "SubscriptionConfirmation", "MessageId": str(uuid.uuid4()), "Token": token,
                "TopicArn": topic, "Timestamp": now_iso(),
                "Message": f"You have chosen to subscribe to the topic {topic}.\nTo confirm the subscription, "
                           "visit the SubscribeURL included in this message.",
                "SubscribeURL": subscribe_url or (f"https://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription"
                                                  f"&TopicArn={quote(topic)}&Token={token}")}


def mail(ses_id: str, our_id: str | None, to: str, tags: dict[str, list[str]] | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {
        "timestamp": now_iso(), "messageId": ses_id, "source": SENDER,
        "sourceArn": f"arn:aws:ses:{REGION}:123456789012:identity/bellavista.example",
        "sendingAccountId": "123456789012", "destination": [to], "headersTruncated": False,
        "headers": [{"name": "From", "value": f"Bella Vista <{SENDER}>"}, {"name": "To", "value": to}]
        + ([{"name": "Message-ID", "value": our_id}] if our_id else []),
        "commonHeaders": {"from": [f"Bella Vista <{SENDER}>"], "to": [to], "subject": "We miss you"}}
    if our_id:
        value["commonHeaders"]["messageId"] = our_id
    if tags is not None:
        value["tags"] = tags
    return value


def bounce(mail_part: dict[str, Any], bounce_type: str = "Permanent", subtype: str = "General",
           diagnostic: str = "smtp; 550 5.1.1 user unknown", to: list[str] | None = None) -> dict[str, Any]:
    recipients = [{"emailAddress": a, "action": "failed", "status": "5.1.1", "diagnosticCode": diagnostic}
                  for a in (to or mail_part["destination"])]
    return {"notificationType": "Bounce", "mail": mail_part, "bounce": {
        "bounceType": bounce_type, "bounceSubType": subtype, "bouncedRecipients": recipients,
        "timestamp": now_iso(), "feedbackId": f"0100{uuid.uuid4().hex}-000000",
        "reportingMTA": "dsn; a8-30.smtp-out.amazonses.com"}}


# --- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def sns(tls: TlsFiles) -> Iterator[Sns]:
    with Sns(tls) as server:
        yield server


@pytest.fixture
def local_sns(sns: Sns) -> LocalSns:
    return LocalSns(sns.url, {OWN_CERT_URL: sns.cert_pem})


@pytest.fixture
def peer() -> Iterator[SmtpPeer]:
    with SmtpPeer(security="none", reply="ses") as server:  # answers "250 Ok <id>", as SES does
        yield server
    smtp.close_connections()


@pytest.fixture
def live(peer: SmtpPeer, sns: Sns):  # type: ignore[no-untyped-def]
    return h.live_settings(email_provider="smtp", smtp_url=peer.url(), email_from=SENDER,
                           smtp_max_per_second=100_000.0, ses_topic_arns=f"{sns.topic}, arn:aws:sns:eu-west-1:1:x")


@pytest.fixture
def app(engine, live, local_sns) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(api.create_app(engine=engine, settings=live), raise_server_exceptions=True) as client:
        client.app.state.sns_client = local_sns  # type: ignore[attr-defined]
        yield client


def post(app: TestClient, body: bytes, kind: str = "Notification") -> httpx.Response:
    # SNS posts JSON as text/plain
    return app.post("/webhooks/ses", content=body, headers={"Content-Type": "text/plain; charset=UTF-8",
                                                            "x-amz-sns-message-type": kind})


@pytest.fixture
def campaign(session, factory, peer, live, now):  # type: ignore[no-untyped-def]
    """An e-mail campaign sent over SMTP: address → (SES id, our Message-ID) as the server saw them."""
    profile = h.business(session)
    h.add_leads(session, profile, [{"email": e, "name": f"Pat{i} Doe"} for i, e in enumerate(EMAILS)], now=now)
    cid = h.campaign(session, profile, method="email", now=now)
    session.commit()
    assert h.run(factory, profile.id, cid, now, live).sent == len(EMAILS)
    sent = {m.rcpt_tos[0]: (m.server_id, m.message_id) for m in peer.messages}
    return profile, cid, sent


# --- the signature ---------------------------------------------------------------------------------------------


def test_a_real_sns_notification_verifies_and_an_independent_check_agrees(sns, local_sns, live):
    headers, body = sns.publish({"notificationType": "Delivery"})
    message = json.loads(body)
    assert headers["Content-Type"].startswith("text/plain") and message["SignatureVersion"] == "2"
    assert ses.verify(settings=live, body=body, client=local_sns) == message
    pem = local_sns.get(message["SigningCertURL"])
    assert independently_valid(message, pem)
    assert ses.canonical(message) == independent_canonical(message)
    tampered = {**message, "Message": message["Message"].replace("Delivery", "Bounce")}
    assert not independently_valid(tampered, pem)
    with pytest.raises(ses.SignatureError, match="does not match"):
        ses.verify(settings=live, body=json.dumps(tampered).encode(), client=local_sns)
    # the certificate is fetched once per URL
    asked = len(local_sns.asked)
    ses.verify(settings=live, body=body, client=local_sns)
    assert len(local_sns.asked) == asked


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("with_subject", [False, True])
def test_both_signature_versions_with_and_without_a_subject(sns, local_sns, live, version, with_subject):
    extra = {"Subject": "Amazon SES Email Event Notification"} if with_subject else {}
    body = sns.signed(sns.notification({"notificationType": "Delivery"}, **extra), version=version)
    message = ses.verify(settings=live, body=body, client=local_sns)
    assert independently_valid(message, sns.cert_pem)
    if with_subject:  # the subject is signed: changing it breaks the signature
        forged = json.dumps({**message, "Subject": "something else"}).encode()
        with pytest.raises(ses.SignatureError):
            ses.verify(settings=live, body=forged, client=local_sns)


def forgeries(sns: Sns) -> dict[str, bytes]:
    ses_json = bounce(mail("0100-not-ours", None, "ann@example.com"))
    good = sns.notification(ses_json)
    stale = {**good, "Timestamp": (datetime.now(UTC) - timedelta(hours=3)).isoformat().replace("+00:00", "Z")}
    signed = json.loads(sns.signed(good))
    return {
        "not json": b"Type=Notification",
        "no signature": json.dumps({k: v for k, v in signed.items() if k != "Signature"}).encode(),
        "tampered": json.dumps({**signed, "Message": signed["Message"].replace("Permanent", "Transient")}).encode(),
        "signature not base64": json.dumps({**signed, "Signature": "%%%"}).encode(),
        "unknown version": sns.signed(good, version="3"),
        "http certificate": sns.signed(good, cert_url=OWN_CERT_URL.replace("https:", "http:")),
        "certificate elsewhere": sns.signed(good, cert_url="https://sns.us-east-1.amazonaws.com.evil.example/c.pem"),
        "not a pem": sns.signed(good, cert_url=f"https://sns.{REGION}.amazonaws.com/cert.txt"),
        "host too short": sns.signed(good, cert_url="https://sns.ab.amazonaws.com/x.pem"),
        "other topic": sns.signed(sns.notification(ses_json, topic=sns.other_topic)),
        "stale": sns.signed(stale),
        "future": sns.signed({**good, "Timestamp": (datetime.now(UTC) + timedelta(minutes=10)).isoformat()}),
    }


def test_a_forged_or_stale_message_changes_nothing(session, app, sns, local_sns, campaign):
    before = h.snapshot(session)
    for name, body in forgeries(sns).items():
        answer = post(app, body)
        assert answer.status_code == 401, (name, answer.text)
        assert answer.json()["detail"]
    assert h.snapshot(session) == before
    assert local_sns.asked == [OWN_CERT_URL] * len(local_sns.asked)  # no certificate from elsewhere was fetched


def test_without_ses_topic_arns_nothing_is_accepted(engine, live, local_sns, sns):
    settings = live.model_copy(update={"ses_topic_arns": None})
    with TestClient(api.create_app(engine=engine, settings=settings)) as client:
        client.app.state.sns_client = local_sns  # type: ignore[attr-defined]
        answer = post(client, sns.signed(sns.notification({"notificationType": "Delivery"})))
    assert answer.status_code == 401 and "SES_TOPIC_ARNS" in answer.json()["detail"]


def test_a_certificate_that_cannot_be_fetched_asks_sns_to_retry(session, app, sns, local_sns, campaign):
    local_sns.own.clear()
    local_sns.down = True
    before = h.snapshot(session)
    answer = post(app, sns.signed(sns.notification({"notificationType": "Delivery"})))
    assert answer.status_code == 503 and h.snapshot(session) == before


# --- subscriptions -------------------------------------------------------------------------------------------


def test_a_subscription_is_confirmed_at_sns(app, sns, local_sns):
    message = sns.confirmation()
    answer = post(app, sns.signed(message, version="1"), "SubscriptionConfirmation")
    assert answer.status_code == 200 and answer.json()["received"] == 0
    url, status, text = local_sns.answers[-1]
    assert url == message["SubscribeURL"] and status == 200 and "<ConfirmSubscriptionResponse" in text
    assert f"<SubscriptionArn>{sns.topic}:" in text


def test_a_subscription_of_another_topic_or_to_another_host_is_not_confirmed(app, sns, local_sns):
    for message in (sns.confirmation(topic=sns.other_topic),
                    sns.confirmation(subscribe_url="https://attacker.example/?Action=ConfirmSubscription"),
                    sns.confirmation(subscribe_url=f"http://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription")):
        answer = post(app, sns.signed(message), "SubscriptionConfirmation")
        assert answer.status_code == 401, answer.text
    assert all(url == OWN_CERT_URL for url in local_sns.asked)  # no confirmation was requested


# --- SES's notifications applied -----------------------------------------------------------------------------


def test_bounces_complaints_and_deliveries_of_a_campaign(session, app, sns, campaign):
    profile, cid, sent = campaign
    ann, bo, cy, di, ed = EMAILS

    def notify(ses_json: dict[str, Any]) -> dict[str, int]:
        _headers, body = sns.publish(ses_json)  # a real SNS message, signed by moto
        answer = post(app, body)
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert notify(bounce(mail(sent[ann][0], sent[ann][1], ann)))["applied"] == 1
    assert notify(bounce(mail(sent[bo][0], sent[bo][1], bo), "Transient", "MailboxFull",
                         "smtp; 452 4.2.2 mailbox full"))["applied"] == 1
    assert notify({"notificationType": "Complaint", "mail": mail(sent[cy][0], sent[cy][1], cy), "complaint": {
        "complainedRecipients": [{"emailAddress": cy}], "timestamp": now_iso(), "feedbackId": "f1",
        "complaintFeedbackType": "abuse", "userAgent": "Yahoo!-Mail-Feedback/2.0"}})["applied"] == 1
    delivered = {"notificationType": "Delivery", "mail": mail(sent[di][0], sent[di][1], di), "delivery": {
        "timestamp": now_iso(), "processingTimeMillis": 546, "recipients": [di],
        "smtpResponse": "250 ok: Message 64111812 accepted", "reportingMTA": "a8-70.smtp-out.amazonses.com"}}
    _headers, body = sns.publish(delivered)
    assert post(app, body).json()["applied"] == 1
    before = h.snapshot(session)
    assert post(app, body).json() == {"received": 1, "applied": 0, "replayed": 1, "ignored": 0}  # SNS retried
    assert h.snapshot(session) == before
    stranger = notify(bounce(mail("0100018f-not-one-of-ours-000000", "<x@elsewhere.example>", "zz@example.com")))
    assert stranger == {"received": 1, "applied": 0, "replayed": 0, "ignored": 1}

    rows = {r.customer_email: r for r in h.recipients(session, cid)}
    assert rows[ann].status == "failed"
    assert "Permanent bounce (General): smtp; 550 5.1.1" in str(rows[ann].error_message)
    assert rows[bo].status == "failed" and "mailbox full" in str(rows[bo].error_message)
    assert rows[cy].status == "opted_out" and "spam" in str(rows[cy].error_message)
    assert rows[di].status == "delivered" and rows[ed].status == "sent"
    assert h.opt_outs(session, profile.id) == {(ann, "email", "bounce"), (cy, "email", "complaint")}
    assert {e.provider for e in h.events(session, campaign_id=cid)} == {"smtp"}
    h.results_match(session, cid)


def test_event_publishing_opens_clicks_and_tags(session, app, sns, campaign):
    _profile, cid, sent = campaign
    ann, bo = EMAILS[0], EMAILS[1]
    rows = {r.customer_email: r for r in h.recipients(session, cid)}
    tags = {"ses:configuration-set": ["reengage"], "recipient_id": [str(rows[bo].id)], "step": ["0"]}
    opened = {"eventType": "Open", "mail": mail(sent[ann][0], sent[ann][1], ann),
              "open": {"ipAddress": "192.0.2.1", "timestamp": now_iso(), "userAgent": "Mozilla/5.0"}}
    clicked = {"eventType": "Click", "mail": mail(sent[ann][0], sent[ann][1], ann), "click": {
        "ipAddress": "192.0.2.1", "timestamp": now_iso(), "userAgent": "Mozilla/5.0",
        "link": "https://bellavista.example/book", "linkTags": {}}}
    # an event about an e-mail whose SES id is not (yet) on record: its tags name the recipient
    early = {"eventType": "Delivery", "mail": mail("0100018f-recorded-later-000000", None, bo, tags), "delivery": {
        "timestamp": now_iso(), "recipients": [bo], "smtpResponse": "250 ok"}}
    for event in (opened, clicked, early):
        assert post(app, sns.publish(event)[1]).json()["applied"] == 1
    a, b = h.recipient(session, cid, ann), h.recipient(session, cid, bo)
    assert a.response_data["opened_at"] and a.responded_at is not None
    assert a.response_data["clicked_url"] == "https://bellavista.example/book"
    assert b.status == "delivered"


def test_our_message_id_finds_an_email_the_server_gave_no_id(session, factory, sns, app, live, now):
    with SmtpPeer(security="none", reply="plain") as relay:  # "250 OK": no id to store
        settings = live.model_copy(update={"smtp_url": SecretStr(relay.url())})
        profile = h.business(session)
        h.add_leads(session, profile, [{"email": "fay@example.com", "name": "Fay"}], now=now)
        cid = h.campaign(session, profile, method="email", now=now)
        session.commit()
        assert h.run(factory, profile.id, cid, now, settings).sent == 1
        (got,) = relay.messages
    smtp.close_connections()
    (attempt,) = h.attempts(session, cid)
    assert attempt.provider_message_id == got.message_id.strip("<>")
    ses_json = bounce(mail("0100018f-ses-own-id-000000", got.message_id, "fay@example.com"))
    assert post(app, sns.publish(ses_json)[1]).json()["applied"] == 1
    assert h.recipient(session, cid, "fay@example.com").status == "failed"


def test_one_notification_may_name_several_recipients(sns):
    ses_json = bounce(mail("0100018f-abc-000000", None, "a@example.com"), to=["a@example.com", "b@example.com"])
    found = ses.parse(sns.notification(ses_json))
    assert [(i.type, i.payload["to"]) for i, _ in found] == [("bounced", "a@example.com"), ("bounced", "b@example.com")]
    assert len({i.event_id for i, _ in found}) == 2
    assert ses.parse(sns.notification({"notificationType": "Complaint", "mail": mail("x1", None, "a@example.com"),
                                       "complaint": {"complainedRecipients": [{"emailAddress": "a@example.com"}],
                                                     "complaintFeedbackType": "not-spam"}}))[0][0].type == "status"
    assert ses.parse({"Type": "Notification", "MessageId": "m", "Message": "Successfully validated SNS topic"}) == []

"""SMS through Amazon SNS (``Publish`` to a phone number) with boto3.

Settings: ``AWS_REGION``; the credentials come the usual AWS way (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, a profile, an instance or task role — boto3's own chain);
``SNS_ENDPOINT_URL`` points at another endpoint (a local server in tests); ``SNS_SENDER_ID``
and ``SNS_ORIGINATION_NUMBER`` become the ``AWS.SNS.SMS.SenderID`` and
``AWS.MM.SMS.OriginationNumber`` attributes where set.

Every text is sent as ``Promotional`` (``AWS.SNS.SMS.SMSType``): re-engagement texts are
marketing, and AWS keeps ``Transactional`` — routed at a higher price for reliability — for
critical messages such as one-time passwords.

SNS silently drops a text to a number that replied STOP to an SNS sender, so the number is
checked first (``CheckIfPhoneNumberIsOptedOut``) and an opted-out number is reported as such
(the dispatcher records the opt-out).  Errors (``ClientError`` codes of the Query protocol):
throttling → retry later without using up a try; ``InternalError`` → retry after reconciling;
``InvalidParameter``/``ParameterValueInvalid`` → permanent; refused credentials or keys
(``AuthorizationError``, ``InvalidClientTokenId``, ``KMS…``) → pause the campaign with the reason;
a connection that could not be opened → an ordinary retry (nothing was sent).  A failure before
``Publish`` was sent (the opt-out check) never needs reconciling.

SNS is send-only here: no delivery webhooks (a text stays ``sent``), no idempotency key and no
way to look a text up, so a ``Publish`` whose answer was lost cannot be settled:
:meth:`SnsChannel.reconcile` says the outcome is unknown (the recipient fails rather than risk a
second text).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from core.channels import send_timeout, shared
from core.channels.base import (
    OptedOutError,
    OutboundMessage,
    OutcomeUnknown,
    PermanentError,
    QuotaExceededError,
    RetryableError,
    SendResult,
)
from core.config import Settings, get_settings
from core.templates import sms_length

PROVIDER = "sns"
THROTTLED = "rate_limited"
NOT_SENT = "not_sent"
SMS_TYPE = "Promotional"
MAX_BYTES = 1600  # SNS refuses a longer Publish to a phone number
THROTTLE_CODES = frozenset({"Throttling", "Throttled", "ThrottlingException", "ThrottledException",
                            "TooManyRequestsException", "RequestLimitExceeded"})
RETRY_CODES = frozenset({"InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable"})
SETUP_CODES = frozenset({"AuthorizationError", "InvalidClientTokenId", "SignatureDoesNotMatch",
                         "UnrecognizedClientException", "AccessDenied", "AccessDeniedException", "ExpiredToken",
                         "ExpiredTokenException", "InvalidAccessKeyId", "MissingAuthenticationToken", "OptInRequired",
                         "InvalidSecurity"})
PERMANENT_CODES = frozenset({"InvalidParameter", "ParameterValueInvalid", "InvalidParameterValue",
                             "ValidationException", "EndpointDisabled"})

def _shared_client(settings: Settings) -> Any:
    """The process's SNS client for this region and endpoint (thread-safe, shared by every send).  botocore
    retries nothing: a repeated ``Publish`` could send a text twice."""
    timeout = send_timeout(settings)

    def make() -> Any:
        config = Config(connect_timeout=min(5.0, timeout), read_timeout=timeout,
                        retries={"total_max_attempts": 1}, max_pool_connections=10)
        return boto3.session.Session().client("sns", region_name=settings.aws_region,
                                               endpoint_url=settings.sns_endpoint_url, config=config)

    return shared(("sns", settings.aws_region or "", settings.sns_endpoint_url, timeout), make)


class SnsChannel:
    """Live SMS through Amazon SNS."""

    channel = "sms"
    provider = PROVIDER
    live = True
    # no idempotency key: a Publish whose answer was lost is settled (as unknown) before any retry
    retry_needs_reconcile = True
    # cannot be asked afterwards whether a message went out: the hand-over is recorded right before it, so a
    # try never handed over is sent again after a crash and only one that was is "outcome unknown"
    handoff_marked = True

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        if not self.settings.aws_region:
            raise ValueError("AWS_REGION is needed for live SMS through AWS SNS")
        self.client = _shared_client(self.settings)

    def attributes(self) -> dict[str, dict[str, str]]:
        """The message attributes of every text: its type and, where set, the sender."""
        s = self.settings
        out = {"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": SMS_TYPE}}
        if s.sns_sender_id:
            out["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": s.sns_sender_id}
        if s.sns_origination_number:
            out["AWS.MM.SMS.OriginationNumber"] = {"DataType": "String", "StringValue": s.sns_origination_number}
        return out

    def send(self, message: OutboundMessage) -> SendResult:
        """Send one text; raises what the dispatcher should do when SNS did not take it."""
        if len(message.text.encode("utf-8")) > MAX_BYTES:
            raise PermanentError(f"The text is longer than the {MAX_BYTES} bytes AWS SNS sends at once; shorten the "
                                 f"message template", code="too_long")
        try:
            opted_out = self.client.check_if_phone_number_is_opted_out(phoneNumber=message.to).get("isOptedOut")
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, published=False) from None
        if opted_out:
            raise OptedOutError(f"AWS SNS lists {message.to} as opted out (the number replied STOP to an SNS "
                                f"sender)", code="opted_out")
        try:
            answer = self.client.publish(PhoneNumber=message.to, Message=message.text,
                                         MessageAttributes=self.attributes())
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, published=True) from None
        if not answer.get("MessageId"):
            raise RetryableError("AWS SNS answered without a message id", code="no_id")
        return SendResult(provider_message_id=str(answer["MessageId"]), status="accepted",
                          detail={"segments": sms_length(message.text).segments, "sms_type": SMS_TYPE})

    def _error(self, exc: ClientError | BotoCoreError, *, published: bool) -> Exception:
        """What an SNS failure means; ``published``: the failed request was the ``Publish`` itself (it may
        have gone through), not the check before it."""
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return QuotaExceededError("No AWS credentials were found for SNS — set AWS_ACCESS_KEY_ID and "
                                      "AWS_SECRET_ACCESS_KEY (or a role), then resume the campaign",
                                      code="no_credentials")
        if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
            return RetryableError(f"could not reach AWS SNS ({type(exc).__name__})", code=NOT_SENT)
        if isinstance(exc, ReadTimeoutError):
            return RetryableError(f"AWS SNS did not answer in time ({type(exc).__name__})",
                                  code="timeout" if published else NOT_SENT)
        if isinstance(exc, BotoCoreError):
            return RetryableError(f"the connection to AWS SNS failed ({type(exc).__name__})",
                                  code="network" if published else NOT_SENT)
        error = exc.response.get("Error") or {}
        code = str(error.get("Code") or "")
        status = int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        reason = f"AWS SNS {code or status}: {str(error.get('Message') or '').strip() or 'no details'}"
        if code in THROTTLE_CODES or status == 429:
            return RetryableError(reason, code=THROTTLED, retry_after=1.0)
        if code in SETUP_CODES or code.startswith("KMS") or status == 403:
            return QuotaExceededError(f"AWS SNS refused to send for this account ({reason}) — check the AWS "
                                      f"credentials, their permission to sns:Publish, and AWS_REGION, then resume "
                                      f"the campaign", code=code or f"http_{status}")
        if code in PERMANENT_CODES:
            return PermanentError(reason, code=code)
        if code in RETRY_CODES or status >= 500:
            return RetryableError(reason, code=code if published else NOT_SENT)
        return PermanentError(reason, code=code or f"http_{status}")

    def reconcile(self, message: OutboundMessage, *, started_at: datetime) -> SendResult | None:
        """SNS keeps no record we could ask, and takes no idempotency key: whether a ``Publish`` whose answer
        was lost went out cannot be known."""
        raise OutcomeUnknown("AWS SNS cannot be asked whether a text went out (it has no look-up and no "
                             "idempotency key)", code="no_lookup")

    def check(self) -> str:
        """Read the account's SMS settings (nothing is sent); a sentence, or the reason it failed."""
        try:
            attributes = self.client.get_sms_attributes().get("attributes") or {}
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, published=False) from None
        facts = [f"texts are sent as {SMS_TYPE}"]
        if attributes.get("MonthlySpendLimit"):
            facts.append(f"the monthly SMS spend limit is ${attributes['MonthlySpendLimit']}")
        sender = self.settings.sns_origination_number or self.settings.sns_sender_id
        if sender:
            facts.append(f"the sender is {sender}")
        return f"Connected to AWS SNS in {self.settings.aws_region}: {', '.join(facts)}."

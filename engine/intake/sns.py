"""CloudWatch alarms through an Amazon SNS HTTPS subscription (POST /alerts/sns).

SNS posts each message as JSON with `Content-Type: text/plain; charset=UTF-8`
and the headers x-amz-sns-message-type, x-amz-sns-message-id and
x-amz-sns-topic-arn (Amazon SNS developer guide, "HTTP/HTTPS headers" and the
JSON formats of Notification, SubscriptionConfirmation and
UnsubscribeConfirmation). A message is taken in this order, so nothing is
fetched for a message that is refused anyway:

1. No topic configured: 503, saying to set `sns_topics`.
2. A body that is not an SNS message: 400 naming the field.
3. A topic not listed in `sns_topics`: 403. A valid signature proves that SNS
   sent the message, not that it is one of *your* topics: anyone can point
   their own topic at this URL.
4. Its signature (engine/intake/sns_signature.py), with the certificate fetched
   from a host in `sns_cert_hosts` and cached by URL: 401 when it does not hold.
5. A SubscriptionConfirmation is confirmed by fetching its SubscribeURL (same
   host rule), answered with {"confirmed": topic}; one that cannot be fetched
   is answered 400 with the reason. An UnsubscribeConfirmation is acknowledged
   and nothing else.
6. A Notification's Message is CloudWatch's alarm JSON (engine/intake/cloudwatch.py):
   the alert it changes (two when the alarm leaves INSUFFICIENT_DATA: see
   `alarm_changes`), with the MessageId as delivery key, so SNS's retries of
   one message are stored once. A Message that is not an alarm: 400.

Raw message delivery must be off: it drops the envelope and its signature.

SNS takes every answer from 200 to 499 as delivered and sends a message again
only after a 5xx or none (developer guide, "Step 1: make sure your endpoint is
ready"). Whatever the sender sent is refused with a 4xx, never a 5xx; only when
SNS itself was out of reach (a timeout or a 5xx fetching its certificate or
SubscribeURL) is the answer 503, so that the alarm or the confirmation comes again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import aiohttp
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import NoDecode

from engine.intake.cloudwatch import (
    alarm_changes,
    identity_fingerprint,
    parse_alarm_message,
    read_alarm,
)
from engine.intake.errors import IntakeError, intake_error
from engine.intake.limits import (
    MAX_KEY,
    MAX_NAME,
    MAX_VALUE,
    cap_identity,
    cap_pairs,
    cap_text,
    capped_link,
    in_range_or_none,
)
from engine.intake.sns_signature import BadSignature, BadUrl, check_url, public_key, verify
from engine.intake.sources import (
    Forbidden,
    Received,
    Request,
    Unauthorized,
    Unavailable,
    WebhookPlugin,
    WebhookSource,
    register_webhook,
)
from engine.models import Alert, AlertStatus
from engine.routing import ChannelFor

DEFAULT_CERT_HOSTS = ("sns.*.amazonaws.com",)
MAX_CERT_BYTES = 16 * 1024
MAX_CONFIRM_BYTES = 64 * 1024
FETCH_TIMEOUT_S = 5.0
"""Each fetch; SNS itself waits 15 s for the answer to its POST."""
CACHED_CERTS = 16
CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE = "UnsubscribeConfirmation"
NOTIFICATION = "Notification"
_SHOWN = 120


class SnsConfig(BaseModel):
    """GRACE's settings for SNS: `sns_topics` (GRACE_SNS_TOPICS, comma-separated) and
    `sns_cert_hosts` (GRACE_SNS_CERT_HOSTS)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sns_topics: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="ARNs of the SNS topics whose alarms GRACE takes"
    )
    sns_cert_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_CERT_HOSTS),
        description="hosts SNS certificates and confirmations are fetched from (* = one label)",
    )

    # Named for SNS alone: GRACE's Settings inherits this model, and a validator named
    # like one of its own (`_split_commas`) would be hidden by it.
    @field_validator("sns_topics", "sns_cert_hosts", mode="before")
    @classmethod
    def _sns_lists(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class SnsMessage(BaseModel):
    """The JSON body of every SNS HTTP(S) message, names as on the wire.

    The signature fields default to "" so that a message without them is
    refused as unsigned (401), not as malformed.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    Type: Literal["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]
    MessageId: Annotated[str, Field(min_length=1, max_length=MAX_KEY)]
    TopicArn: Annotated[str, Field(min_length=1, max_length=MAX_VALUE)]
    Message: str
    Timestamp: str
    Subject: str | None = None
    SubscribeURL: str | None = None
    Token: str | None = None
    SignatureVersion: str = ""
    Signature: str = ""
    SigningCertURL: str = ""
    UnsubscribeURL: str | None = None


class FetchError(Exception):
    """A fetch that did not bring back what was asked; the text says why.

    `transient`: SNS could not be reached or failed (a timeout, a 5xx), which a
    later try may not meet; anything else (a 404, a redirect, too large) would
    fail the same way again.
    """

    def __init__(self, reason: str, *, transient: bool = False) -> None:
        super().__init__(reason)
        self.transient = transient


class Fetcher:
    """GETs of small documents from SNS: no redirects, a size cap, a timeout.

    The session is made on first use (inside the running loop) and closed by aclose().
    """

    def __init__(self, timeout_s: float = FETCH_TIMEOUT_S) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def get(self, url: str, *, limit: int) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    failed = response.status >= 500
                    raise FetchError(f"it answered HTTP {response.status}", transient=failed)
                body = bytearray()
                async for chunk in response.content.iter_chunked(8192):
                    body += chunk
                    if len(body) > limit:
                        raise FetchError(f"it is larger than {limit:,} bytes")
                return bytes(body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FetchError(f"{type(exc).__name__} while fetching it", transient=True) from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class SnsSource:
    """The `sns` webhook source: verified SNS messages, CloudWatch alarms in them."""

    name = "sns"
    content_types = frozenset({"text/plain", "application/json"})

    def __init__(self, config: SnsConfig, fetcher: Fetcher | None = None) -> None:
        self.topics = frozenset(topic.strip() for topic in config.sns_topics if topic.strip())
        self.cert_hosts = tuple(config.sns_cert_hosts)
        self.fetcher = fetcher or Fetcher()
        self._keys: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()

    def check_headers(self, headers: Mapping[str, str]) -> None:
        """Refuse what the headers already tell, before the body is read."""
        self._require_topics()
        if headers.get("x-amz-sns-rawdelivery", "").strip().lower() == "true":
            raise Unauthorized(
                "raw message delivery is on: turn it off on the subscription, "
                "GRACE verifies the signature it leaves out"
            )
        topic = headers.get("x-amz-sns-topic-arn")
        if topic is not None:
            self._require_listed(topic)

    async def receive(self, request: Request) -> Received:
        self._require_topics()
        message = _message(request.body)
        self._require_listed(message.TopicArn)
        _headers_agree(request.headers, message)
        await self._verify(message)
        if message.Type == CONFIRMATION:
            await self._confirm(message)
            return Received([], answer={"confirmed": message.TopicArn})
        if message.Type == UNSUBSCRIBE:
            return Received([], answer={"unsubscribed": message.TopicArn})
        alerts = _alerts(message, request.received_at, request.channel_for)
        return Received(alerts, delivery_key=cap_identity(message.MessageId))

    def read(
        self,
        body: bytes,
        *,
        received_at: datetime,
        channel_for: ChannelFor,
        headers: Mapping[str, str] | None = None,
    ) -> list[Alert]:
        """The alert of a Notification body, unverified (`grace simulate`)."""
        message = _message(body)
        return _alerts(message, received_at, channel_for) if message.Type == NOTIFICATION else []

    async def aclose(self) -> None:
        await self.fetcher.aclose()

    # -- refusals ----------------------------------------------------------------

    def _require_topics(self) -> None:
        if not self.topics:
            raise Unavailable(
                "SNS is off: set GRACE_SNS_TOPICS (YAML: sns_topics) to the ARNs of the "
                "topics GRACE may take CloudWatch alarms from"
            )

    def _require_listed(self, topic: str) -> None:
        if topic not in self.topics:
            raise Forbidden(
                f"topic {_shown(topic)} is not listed in sns_topics (GRACE_SNS_TOPICS): "
                "GRACE takes alarms only from the topics it is told to"
            )

    async def _verify(self, message: SnsMessage) -> None:
        if not message.SigningCertURL:
            raise Unauthorized("the message carries no SigningCertURL: it is not signed")
        try:
            key = await self._key(message.SigningCertURL)
            verify(key, message.model_dump())
        except (BadSignature, BadUrl) as exc:
            raise Unauthorized(f"not verified as sent by SNS: {exc}") from None

    async def _key(self, url: str) -> rsa.RSAPublicKey:
        """The certificate's key, fetched once per URL (SNS signs with few certificates)."""
        check_url(url, self.cert_hosts, what="SigningCertURL", pem=True)
        if (key := self._keys.get(url)) is not None:
            self._keys.move_to_end(url)
            return key
        try:
            pem = await self.fetcher.get(url, limit=MAX_CERT_BYTES)
        except FetchError as exc:
            if exc.transient:
                raise _retry_later("its signing certificate could not be fetched", exc) from None
            raise BadUrl(f"the signing certificate could not be fetched: {exc}") from None
        key = public_key(pem)
        self._keys[url] = key
        while len(self._keys) > CACHED_CERTS:
            self._keys.popitem(last=False)
        return key

    async def _confirm(self, message: SnsMessage) -> None:
        """Visit the SubscribeURL, which is how SNS learns that this endpoint wants the topic."""
        assert message.SubscribeURL is not None  # _message requires it for confirmations
        try:
            url = check_url(message.SubscribeURL, self.cert_hosts, what="SubscribeURL")
            await self.fetcher.get(url, limit=MAX_CONFIRM_BYTES)
        except (BadUrl, FetchError) as exc:
            if isinstance(exc, FetchError) and exc.transient:
                raise _retry_later("the subscription could not be confirmed", exc) from None
            why = f"SubscribeURL: the subscription could not be confirmed: {exc}"
            raise IntakeError(why) from None


def _retry_later(what: str, exc: FetchError) -> Unavailable:
    """SNS was out of reach: 503, the one answer after which SNS sends the message again
    (it takes every answer from 200 to 499 as delivered)."""
    return Unavailable(f"{what}, SNS is out of reach ({exc}); SNS will send it again")


def _message(body: bytes) -> SnsMessage:
    try:
        message = SnsMessage.model_validate_json(body)
    except ValidationError as error:
        raise intake_error(error) from None
    if message.Type != NOTIFICATION:
        for name in ("SubscribeURL", "Token"):
            if not getattr(message, name):
                raise IntakeError(f"{name}: Field required in a {message.Type}")
    return message


def _headers_agree(headers: Mapping[str, str], message: SnsMessage) -> None:
    # The headers are not signed, but a mismatch means the body is not what was sent.
    said = headers.get("x-amz-sns-message-type")
    if said is not None and said != message.Type:
        raise IntakeError(
            f"x-amz-sns-message-type: {_shown(said)} but the body's Type is {message.Type}"
        )
    topic = headers.get("x-amz-sns-topic-arn")
    if topic is not None and topic != message.TopicArn:
        raise IntakeError("x-amz-sns-topic-arn: another topic than the body's TopicArn")


def _alerts(message: SnsMessage, received_at: datetime, channel_for: ChannelFor) -> list[Alert]:
    """The alerts one state change settles (cloudwatch.alarm_changes), keyed by the MessageId."""
    reading = read_alarm(parse_alarm_message(message.Message))
    changed = _instant(reading.changed_at) or _instant(message.Timestamp)
    key = f"message:{cap_identity(message.MessageId)}"
    text = cap_text("\n".join(t for t in (reading.description, reading.reason) if t))
    alerts = []
    for n, parts in enumerate(alarm_changes(reading)):
        name = cap_text(parts.name.strip(), MAX_NAME)
        labels = cap_pairs(_labels(name, parts.labels))
        annotations = {**parts.annotations, "subject": message.Subject or ""}
        firing = parts.status is AlertStatus.FIRING
        alerts.append(
            Alert(
                source="sns",
                source_key=key if n == 0 else f"{key}:{n}",
                name=name,
                status=parts.status,
                labels=labels,
                annotations=cap_pairs((k, v) for k, v in annotations.items() if v),
                text=text,
                starts_at=changed if firing else None,
                ends_at=None if firing else changed,
                link=capped_link(parts.link),
                fingerprint=identity_fingerprint(parts.identity or {}),
                channel=channel_for(labels),
                received_at=received_at,
            )
        )
    return alerts


def _instant(text: str) -> datetime | None:
    """CloudWatch's `2024-11-26T03:00:12.871+0000` or SNS's `…Z`; None when neither."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return in_range_or_none(value if value.tzinfo is not None else value.replace(tzinfo=UTC))


def _labels(name: str, labels: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    yield "alertname", name  # first, so the label cap never cuts it
    for key, value in labels.items():
        if key and value and key != "alertname":
            yield key, value


def _shown(value: str) -> str:
    return repr(value if len(value) <= _SHOWN else value[:_SHOWN] + "…")


def _factory(config: SnsConfig) -> WebhookSource:
    return SnsSource(config)


register_webhook(
    WebhookPlugin(
        "sns",
        "CloudWatch alarms through an Amazon SNS HTTPS subscription (signature verified)",
        SnsConfig,
        _factory,
    )
)

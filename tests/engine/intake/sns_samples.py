"""SNS samples, and signing them the way SNS does, with a key and certificate of our own.

The samples in samples/sns/ are shaped as SNS posts them (Amazon SNS developer
guide, "HTTP/HTTPS notification JSON format" and its confirmation formats;
CloudWatch's alarm JSON as AWS's aws-lambda-go keeps it in its test data).
Their Signature and SigningCertURL are placeholders: `signed` replaces them.

The string to sign is written out here from the developer guide's field lists,
not taken from engine/intake/sns_signature.py, so the tests check that module
against the documentation rather than against itself.
"""

from __future__ import annotations

import base64
import functools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from engine.intake.sns import FetchError

SAMPLES = Path(__file__).parent / "samples" / "sns"
TOPIC = "arn:aws:sns:us-east-1:123456789012:grace-cloudwatch-alarms"
RDS_TOPIC = "arn:aws:sns:eu-west-1:210987654321:ops-alarms"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0a1b2c3d4e5f.pem"

_SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_SIGNED["UnsubscribeConfirmation"] = _SIGNED["SubscriptionConfirmation"]


@functools.cache
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def certificate_pem(key: rsa.RSAPrivateKey | None = None) -> bytes:
    """A self-signed certificate for the key, as SNS serves its own at SigningCertURL."""
    key = key or private_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.us-east-1.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text())


def string_to_sign(message: dict[str, Any]) -> bytes:
    fields = _SIGNED[message["Type"]]
    # surrogatepass: the fuzz suite signs text no JSON reader accepts; it is refused
    # for its JSON, and signing it must not fail first.
    text = "".join(f"{f}\n{message[f]}\n" for f in fields if f in message)
    return text.encode("utf-8", "surrogatepass")


def signed(
    message: dict[str, Any],
    *,
    version: str = "1",
    cert_url: str = CERT_URL,
    key: rsa.RSAPrivateKey | None = None,
) -> dict[str, Any]:
    """The message signed as SNS signs it: SHA1withRSA (1) or SHA256withRSA (2)."""
    message = {**message, "SignatureVersion": version, "SigningCertURL": cert_url}
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = (key or private_key()).sign(string_to_sign(message), padding.PKCS1v15(), digest)
    message["Signature"] = base64.b64encode(signature).decode()
    return message


def with_alarm(message: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The message with fields of its alarm JSON changed (None removes one)."""
    alarm = json.loads(message["Message"])
    for key, value in changes.items():
        if value is None:
            alarm.pop(key, None)
        else:
            alarm[key] = value
    return {**message, "Message": json.dumps(alarm)}


def headers(message: dict[str, Any]) -> dict[str, str]:
    return {
        "x-amz-sns-message-type": message["Type"],
        "x-amz-sns-message-id": message["MessageId"],
        "x-amz-sns-topic-arn": message["TopicArn"],
        "content-type": "text/plain; charset=UTF-8",
    }


def body(message: dict[str, Any]) -> bytes:
    return json.dumps(message, indent=2).encode()


class FakeFetcher:
    """Serves documents by URL and counts every fetch, as the source's only way out."""

    def __init__(self, documents: dict[str, bytes | FetchError] | None = None) -> None:
        self.documents: dict[str, bytes | FetchError] = {
            CERT_URL: certificate_pem(),
            **(documents or {}),
        }
        self.fetched: list[str] = []
        self.closed = False

    async def get(self, url: str, *, limit: int) -> bytes:
        self.fetched.append(url)
        document = self.documents.get(url, FetchError("it answered HTTP 404"))
        if isinstance(document, FetchError):
            raise document
        return document

    async def aclose(self) -> None:
        self.closed = True

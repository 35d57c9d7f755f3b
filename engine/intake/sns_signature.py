"""Proof that a message came from Amazon SNS: its signature, and where its certificate lives.

SNS signs every message it posts to an HTTP(S) subscriber (Amazon SNS developer
guide, "Verifying the signatures of Amazon SNS messages"; AWS's own validators,
aws-php-sns-message-validator and aws-js-sns-message-validator, do the same):

- The string to sign is `Name\\nvalue\\n` for each signed field present, in byte
  order of the names. A Notification signs Message, MessageId, Subject (only
  when present), Timestamp, TopicArn and Type; a SubscriptionConfirmation and
  an UnsubscribeConfirmation sign Message, MessageId, SubscribeURL, Timestamp,
  Token, TopicArn and Type. Values are used as the JSON decodes them.
- `Signature` is base64 of an RSA PKCS#1 v1.5 signature of that string:
  SignatureVersion "1" with SHA-1, "2" with SHA-256.
- The key is in the X.509 certificate at `SigningCertURL`, which must be
  fetched over https from SNS itself: anything under amazonaws.com would let
  anyone with an S3 bucket sign "SNS" messages.

Hosts are matched against GRACE's setting `sns_cert_hosts`, globs of host names
in which `*` stands for one whole DNS label (never a dot) and never for an S3
endpoint label (s3, s3-…), whose hosts serve anybody's bucket. Plain http is
allowed only for a loopback host that is listed there (tests serve their own
certificate on 127.0.0.1).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
_MAX_SIGNATURE = 2048


class BadSignature(Exception):
    """The message does not prove that SNS sent it; the text says why."""


class BadUrl(Exception):
    """A URL from a message that GRACE will not fetch; the text says why."""


def string_to_sign(message: Mapping[str, object]) -> bytes:
    """The bytes SNS signed for this message, by its Type."""
    names = NOTIFICATION_FIELDS if message.get("Type") == "Notification" else CONFIRMATION_FIELDS
    lines = []
    for name in names:  # already in byte order
        value = message.get(name)
        if value is not None:
            lines.append(f"{name}\n{value}\n")
    return "".join(lines).encode()


def verify(key: rsa.RSAPublicKey, message: Mapping[str, object]) -> None:
    """Raise BadSignature unless the message's Signature is SNS's for its content."""
    version = message.get("SignatureVersion")
    algorithm = _HASHES.get(version) if isinstance(version, str) else None
    if algorithm is None:
        raise BadSignature('SignatureVersion must be "1" or "2"')
    signature = message.get("Signature")
    if not isinstance(signature, str) or not signature:
        raise BadSignature("the message carries no Signature")
    try:
        raw = base64.b64decode(signature[:_MAX_SIGNATURE], validate=True)
    except (binascii.Error, ValueError):
        raise BadSignature("Signature is not base64") from None
    try:
        key.verify(raw, string_to_sign(message), padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise BadSignature("the signature does not match the message") from None


def public_key(pem: bytes) -> rsa.RSAPublicKey:
    """The RSA key of a PEM certificate; BadSignature when it is not one."""
    try:
        key = x509.load_pem_x509_certificate(pem).public_key()
    except ValueError:
        raise BadSignature("the signing certificate is not a PEM X.509 certificate") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise BadSignature("the signing certificate's key is not RSA")
    return key


def check_url(url: str, hosts: Iterable[str], *, what: str, pem: bool = False) -> str:
    """The URL when GRACE may fetch it: https (or http to a listed loopback host),
    a host matching `hosts`, no credentials, the default port unless loopback, and
    for a certificate a path ending in .pem. BadUrl otherwise."""
    try:
        parts = urlsplit(url)
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        raise BadUrl(f"{what} is not a URL") from None
    listed = host_allowed(host, hosts)
    loopback = host in LOOPBACK
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback and listed):
        raise BadUrl(f"{what} must be an https URL")
    if not listed:
        raise BadUrl(f"{what} is not on a host listed in sns_cert_hosts")
    if parts.username is not None or parts.password is not None:
        raise BadUrl(f"{what} must not carry credentials")
    if port not in (None, 443) and not loopback:
        raise BadUrl(f"{what} must use the default https port")
    if pem and not parts.path.endswith(".pem"):
        raise BadUrl(f"{what} must point at a .pem certificate")
    return url


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    """Whether `host` matches one of the globs, label by label."""
    labels = host.rstrip(".").split(".")
    return bool(host) and any(_host_matches(labels, p.lower().split(".")) for p in patterns)


def _host_matches(labels: list[str], pattern: list[str]) -> bool:
    if len(labels) != len(pattern):
        return False
    for label, glob in zip(labels, pattern, strict=True):
        if not label or not fnmatch.fnmatchcase(label, glob):
            return False
        if glob != label and (label == "s3" or label.startswith("s3-")):
            return False  # a wildcard never stands for an S3 endpoint
    return True

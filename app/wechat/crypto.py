"""WXBizMsgCrypt: signatures, AES-256-CBC with 32-byte PKCS#7, signed envelopes. Reference §1."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from app.wechat._xml import MAX_XML_BYTES, build_xml, parse_fields
from app.wechat.errors import (
    AppIdMismatch,
    CryptoError,
    DecryptError,
    IllegalBuffer,
    InvalidAesKey,
    InvalidBase64,
    MalformedMessage,
    SignatureError,
)

__all__ = ["MessageCrypto", "OpenedMessage", "sha1_signature", "BLOCK_SIZE"]

BLOCK_SIZE = 32  # WeChat pads to the key length, not the 16-byte AES block (§1.4)
_PREFIX_LEN = 16
_LEN_FIELD = struct.Struct(">I")
_HEADER_LEN = _PREFIX_LEN + _LEN_FIELD.size
_PADDINGS = [bytes([n]) * n for n in range(BLOCK_SIZE + 1)]  # _PADDINGS[n]: n bytes of value n
# Envelopes (<xml><Encrypt/><ToUserName/>…</xml>) are flat: nothing below the root's children.
_ENVELOPE_DEPTH = 2
_AES_KEY_RE = re.compile(r"[A-Za-z0-9]{43}\Z")


def sha1_signature(*parts: str) -> str:
    """Sort the parts, concatenate, SHA-1, lowercase hex. Reference §1.5."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def _same(expected: str, given: str) -> bool:
    # compare_digest refuses non-ASCII str, so compare bytes; attacker input may be anything.
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "surrogatepass"))


def _derive_key(encoding_aes_key: str) -> bytes:
    if not isinstance(encoding_aes_key, str) or not _AES_KEY_RE.match(encoding_aes_key):
        raise InvalidAesKey("EncodingAESKey must be 43 characters [A-Za-z0-9]")
    key = base64.b64decode(encoding_aes_key + "=")
    if len(key) != 32:  # pragma: no cover - 43 base64 chars always give 32 bytes
        raise InvalidAesKey("EncodingAESKey does not decode to 32 bytes")
    return key


def _pad(data: bytes) -> bytes:
    n = BLOCK_SIZE - len(data) % BLOCK_SIZE
    return data + bytes([n]) * n


def _padding_length(data: bytes) -> int:
    # Strict: the official PHP sample tolerates a bad pad; we treat it as a failed decryption.
    n = data[-1]
    if not 1 <= n <= BLOCK_SIZE or not data.endswith(_PADDINGS[n]):
        raise DecryptError("invalid PKCS#7 padding")
    return n


def _cipher(key: bytes) -> Cipher:
    # WeChat's IV is the key's first 16 bytes (§1.4), so one Cipher per key serves every message;
    # each message still gets its own fresh encryptor/decryptor context.
    return Cipher(algorithms.AES(key), modes.CBC(key[:16]))


@dataclass(frozen=True)
class OpenedMessage:
    """A verified, decrypted push: inner XML plus which outer form and key were used. Ref §1.6."""

    xml: str
    # "AppId" (platform events), "ToUserName" (authorizer messages), or None for the envelope
    # the WeChat SDKs' encrypt helpers build (<Encrypt>, <MsgSignature>, <TimeStamp>, <Nonce>).
    outer_tag: str | None
    outer_value: str | None
    used_previous_key: bool
    receive_id: str  # the appid sealed inside: the platform the push is for


class MessageCrypto:
    """Sign, verify, encrypt and decrypt WeChat pushes for one component. Reference §1."""

    def __init__(
        self,
        token: str,
        encoding_aes_key: str,
        appid: str,
        previous_encoding_aes_key: str | None = None,
        *,
        max_body_bytes: int = MAX_XML_BYTES,
    ) -> None:
        if not token or not appid:
            raise ValueError("token and appid are required")
        self._token = token
        self._appid = appid
        self._appid_bytes = appid.encode("utf-8")
        self._cipher = _cipher(_derive_key(encoding_aes_key))
        self._previous_cipher = (
            _cipher(_derive_key(previous_encoding_aes_key)) if previous_encoding_aes_key else None
        )
        self._max_body_bytes = max_body_bytes

    def __repr__(self) -> str:  # never show token or keys
        return f"MessageCrypto(appid={self._appid!r})"

    @property
    def appid(self) -> str:
        """The receive-id this instance expects and writes. Reference §1.3."""
        return self._appid

    # --- signatures ---------------------------------------------------------------------

    def signature(self, timestamp: str, nonce: str, encrypt: str) -> str:
        """msg_signature over token, timestamp, nonce, Encrypt. Reference §1.5."""
        return sha1_signature(self._token, str(timestamp), str(nonce), encrypt)

    def url_signature(self, timestamp: str, nonce: str) -> str:
        """Plain `signature` over token, timestamp, nonce. Reference §1.5."""
        return sha1_signature(self._token, str(timestamp), str(nonce))

    def verify_signature(
        self, msg_signature: str, timestamp: str, nonce: str, encrypt: str
    ) -> None:
        """Constant-time check of msg_signature or raise SignatureError. Reference §1.5, §1.8."""
        if not _same(self.signature(timestamp, nonce, encrypt), msg_signature or ""):
            raise SignatureError("msg_signature mismatch")

    def verify_url_signature(self, signature: str, timestamp: str, nonce: str) -> None:
        """Constant-time check of the URL `signature` or raise SignatureError. Reference §1.5."""
        if not _same(self.url_signature(timestamp, nonce), signature or ""):
            raise SignatureError("signature mismatch")

    # --- raw encrypt / decrypt ----------------------------------------------------------

    def encrypt(
        self,
        plaintext: str,
        *,
        random_prefix: bytes | None = None,
        use_previous_key: bool = False,
    ) -> str:
        """Base64 `Encrypt` of random|len|msg|appid, padded to 32 bytes. Reference §1.3, §1.4."""
        if random_prefix is None:
            # 16 hex characters: alphanumeric like the official samples, one urandom call.
            random_prefix = secrets.token_hex(_PREFIX_LEN // 2).encode("ascii")
        elif len(random_prefix) != _PREFIX_LEN:
            raise ValueError("random_prefix must be exactly 16 bytes")
        msg = plaintext.encode("utf-8")
        full = random_prefix + _LEN_FIELD.pack(len(msg)) + msg + self._appid_bytes
        encryptor = self._pick_cipher(use_previous_key).encryptor()
        return base64.b64encode(encryptor.update(_pad(full)) + encryptor.finalize()).decode()

    def decrypt(self, encrypt: str) -> str:
        """Decrypt `Encrypt` (current key, then previous) and check appid. Ref §1.2-1.4."""
        return self._decrypt(encrypt)[0]

    def _pick_cipher(self, use_previous_key: bool) -> Cipher:
        if not use_previous_key:
            return self._cipher
        if self._previous_cipher is None:
            raise ValueError("no previous EncodingAESKey configured")
        return self._previous_cipher

    def _decrypt(self, encrypt: str) -> tuple[str, bool]:
        ciphertext = _b64decode(encrypt)
        try:
            return self._decrypt_with(self._cipher, ciphertext), False
        except (DecryptError, AppIdMismatch) as first:
            if self._previous_cipher is None:
                raise
            # Rotation (§1.2): a push may still be sealed with the key we just replaced.
            try:
                return self._decrypt_with(self._previous_cipher, ciphertext), True
            except CryptoError:
                raise first from None

    def _decrypt_with(self, cipher: Cipher, ciphertext: bytes) -> str:
        decryptor = cipher.decryptor()
        full = decryptor.update(ciphertext) + decryptor.finalize()
        # random(16) | length(4) | message | receive-id | padding, read in place without copies.
        end = len(full) - _padding_length(full)
        if end < _HEADER_LEN:
            raise IllegalBuffer("decrypted buffer shorter than its header")
        (msg_len,) = _LEN_FIELD.unpack_from(full, _PREFIX_LEN)
        if msg_len > end - _HEADER_LEN:
            raise IllegalBuffer("length field exceeds the decrypted buffer")
        stop = _HEADER_LEN + msg_len
        if full[stop:end] != self._appid_bytes:
            raise AppIdMismatch("receive-id does not match our appid")
        try:
            return full[_HEADER_LEN:stop].decode("utf-8")
        except UnicodeDecodeError:
            raise IllegalBuffer("message is not valid UTF-8") from None

    # --- envelopes ----------------------------------------------------------------------

    def open_message(
        self, body: bytes | str, msg_signature: str, timestamp: str, nonce: str
    ) -> OpenedMessage:
        """Parse the outer XML, verify msg_signature, decrypt; keeps key/form details. Ref §1.8."""
        envelope = read_envelope(body, max_bytes=self._max_body_bytes)
        return self.open_envelope(envelope, msg_signature, timestamp, nonce)

    def open_envelope(
        self, envelope: dict[str, str], msg_signature: str, timestamp: str, nonce: str
    ) -> OpenedMessage:
        """open_message for an envelope already read (to pick the platform by its AppId)."""
        encrypt = envelope.get("Encrypt")
        if not encrypt:
            raise MalformedMessage("outer XML needs exactly one non-empty <Encrypt>")
        if "AppId" in envelope and "ToUserName" in envelope:
            raise MalformedMessage("outer XML has both <AppId> and <ToUserName>")
        # The outer tag only routes: msg_signature covers <Encrypt> alone, and the receive-id
        # inside it is what proves the sender. So an envelope without one is accepted too.
        form = (
            "AppId" if "AppId" in envelope else "ToUserName" if "ToUserName" in envelope else None
        )
        self.verify_signature(msg_signature, timestamp, nonce, encrypt)
        xml, used_previous = self._decrypt(encrypt)
        outer_value = envelope.get(form) if form else None
        return OpenedMessage(xml, form, outer_value, used_previous, self._appid)

    def signs(
        self, envelope: dict[str, str], msg_signature: str, timestamp: str, nonce: str
    ) -> bool:
        """Whether this platform's token made msg_signature (to route an envelope without an
        AppId among several platforms)."""
        expected = self.signature(timestamp, nonce, envelope.get("Encrypt") or "")
        return _same(expected, msg_signature or "")

    def decrypt_message(
        self, body: bytes | str, msg_signature: str, timestamp: str, nonce: str
    ) -> str:
        """Verify msg_signature (constant time), decrypt, return the inner XML. Reference §1.8."""
        return self.open_message(body, msg_signature, timestamp, nonce).xml

    def encrypt_message(
        self,
        inner_xml: str,
        timestamp: str,
        nonce: str,
        *,
        to_user_name: str | None = None,
        random_prefix: bytes | None = None,
    ) -> tuple[str, str]:
        """Build a push as WeChat does: (outer XML body, msg_signature). Reference §1.6."""
        encrypt = self.encrypt(inner_xml, random_prefix=random_prefix)
        outer = {"ToUserName": to_user_name} if to_user_name is not None else {"AppId": self._appid}
        body = build_xml({**outer, "Encrypt": encrypt})
        return body, self.signature(timestamp, nonce, encrypt)

    def encrypt_reply(
        self,
        reply: str,
        timestamp: str,
        nonce: str,
        *,
        use_previous_key: bool = False,
        random_prefix: bytes | None = None,
    ) -> str:
        """Encrypted passive reply <xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/>. Ref §1.7."""
        encrypt = self.encrypt(
            reply, random_prefix=random_prefix, use_previous_key=use_previous_key
        )
        return build_xml(
            {
                "Encrypt": encrypt,
                "MsgSignature": self.signature(timestamp, nonce, encrypt),
                "TimeStamp": _bare_int(str(timestamp)),
                "Nonce": str(nonce),
            }
        )

    def open_reply(self, body: bytes | str) -> str:
        """Verify and decrypt an encrypted passive reply (used by the sandbox). Reference §1.7."""
        values = parse_fields(body, max_bytes=self._max_body_bytes, max_depth=_ENVELOPE_DEPTH)
        for tag in ("Encrypt", "MsgSignature", "TimeStamp", "Nonce"):
            if not values.get(tag):
                raise MalformedMessage(f"reply XML needs a non-empty <{tag}>")
        self.verify_signature(
            values["MsgSignature"], values["TimeStamp"], values["Nonce"], values["Encrypt"]
        )
        return self._decrypt(values["Encrypt"])[0]


def read_envelope(body: bytes | str, *, max_bytes: int = MAX_XML_BYTES) -> dict[str, str]:
    """The outer XML of a push as fields (bounded like every parse). Reference §1.6."""
    return parse_fields(body, max_bytes=max_bytes, max_depth=_ENVELOPE_DEPTH)


def _bare_int(text: str) -> int | str:
    # The official sample writes TimeStamp without CDATA; keep the exact text when not canonical.
    if text.isascii() and text.isdigit() and str(int(text)) == text:
        return int(text)
    return text


def _b64decode(encrypt: str) -> bytes:
    try:
        text = encrypt.encode("ascii")
        data = binascii.a2b_base64(text)
    except (binascii.Error, ValueError, AttributeError):
        raise InvalidBase64("Encrypt is not valid base64") from None
    # Canonical form only: what decodes must encode back to exactly the same text, which also
    # refuses everything the lenient decoder skipped (whitespace, stray characters, surplus "=",
    # stray low bits). WeChat never sends anything else.
    if binascii.b2a_base64(data, newline=False) != text:
        raise InvalidBase64("Encrypt is not canonical base64")
    # CBC needs whole AES blocks, and WeChat's padding always yields whole 32-byte blocks.
    if not data or len(data) % BLOCK_SIZE:
        raise DecryptError(f"ciphertext length {len(data)} is not a positive multiple of 32")
    return data

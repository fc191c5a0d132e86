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

from app.wechat._xml import MAX_XML_BYTES, build_xml, parse_root, unique_children
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


def _unpad(data: bytes) -> bytes:
    # Strict: the official PHP sample tolerates a bad pad; we treat it as a failed decryption.
    n = data[-1]
    if not 1 <= n <= BLOCK_SIZE or data[-n:] != bytes([n]) * n:
        raise DecryptError("invalid PKCS#7 padding")
    return data[:-n]


@dataclass(frozen=True)
class OpenedMessage:
    """A verified, decrypted push: inner XML plus which outer form and key were used. Ref §1.6."""

    xml: str
    outer_tag: str  # "AppId" (platform events) or "ToUserName" (authorizer messages)
    outer_value: str
    used_previous_key: bool


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
        self._key = _derive_key(encoding_aes_key)
        self._previous_key = (
            _derive_key(previous_encoding_aes_key) if previous_encoding_aes_key else None
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
        key = self._pick_key(use_previous_key)
        encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
        return base64.b64encode(encryptor.update(_pad(full)) + encryptor.finalize()).decode()

    def decrypt(self, encrypt: str) -> str:
        """Decrypt `Encrypt` (current key, then previous) and check appid. Ref §1.2-1.4."""
        return self._decrypt(encrypt)[0]

    def _pick_key(self, use_previous_key: bool) -> bytes:
        if not use_previous_key:
            return self._key
        if self._previous_key is None:
            raise ValueError("no previous EncodingAESKey configured")
        return self._previous_key

    def _decrypt(self, encrypt: str) -> tuple[str, bool]:
        ciphertext = _b64decode(encrypt)
        try:
            return self._decrypt_with(self._key, ciphertext), False
        except (DecryptError, AppIdMismatch) as first:
            if self._previous_key is None:
                raise
            # Rotation (§1.2): a push may still be sealed with the key we just replaced.
            try:
                return self._decrypt_with(self._previous_key, ciphertext), True
            except CryptoError:
                raise first from None

    def _decrypt_with(self, key: bytes, ciphertext: bytes) -> str:
        decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
        full = _unpad(decryptor.update(ciphertext) + decryptor.finalize())
        if len(full) < _PREFIX_LEN + _LEN_FIELD.size:
            raise IllegalBuffer("decrypted buffer shorter than its header")
        (msg_len,) = _LEN_FIELD.unpack_from(full, _PREFIX_LEN)
        start = _PREFIX_LEN + _LEN_FIELD.size
        if msg_len > len(full) - start:
            raise IllegalBuffer("length field exceeds the decrypted buffer")
        receive_id = full[start + msg_len :]
        if receive_id != self._appid_bytes:
            raise AppIdMismatch("receive-id does not match our appid")
        try:
            return full[start : start + msg_len].decode("utf-8")
        except UnicodeDecodeError:
            raise IllegalBuffer("message is not valid UTF-8") from None

    # --- envelopes ----------------------------------------------------------------------

    def open_message(
        self, body: bytes | str, msg_signature: str, timestamp: str, nonce: str
    ) -> OpenedMessage:
        """Parse the outer XML, verify msg_signature, decrypt; keeps key/form details. Ref §1.8."""
        root = parse_root(body, max_bytes=self._max_body_bytes)
        children = unique_children(root)
        encrypt_el = children.get("Encrypt")
        if encrypt_el is None or len(encrypt_el) or not encrypt_el.text:
            raise MalformedMessage("outer XML needs exactly one non-empty <Encrypt>")
        forms = [tag for tag in ("AppId", "ToUserName") if tag in children]
        if len(forms) != 1:
            raise MalformedMessage("outer XML needs exactly one of <AppId> or <ToUserName>")
        encrypt = encrypt_el.text
        self.verify_signature(msg_signature, timestamp, nonce, encrypt)
        xml, used_previous = self._decrypt(encrypt)
        return OpenedMessage(xml, forms[0], children[forms[0]].text or "", used_previous)

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
        root = parse_root(body, max_bytes=self._max_body_bytes)
        children = unique_children(root)
        values = {}
        for tag in ("Encrypt", "MsgSignature", "TimeStamp", "Nonce"):
            element = children.get(tag)
            if element is None or len(element) or not element.text:
                raise MalformedMessage(f"reply XML needs a non-empty <{tag}>")
            values[tag] = element.text
        self.verify_signature(
            values["MsgSignature"], values["TimeStamp"], values["Nonce"], values["Encrypt"]
        )
        return self._decrypt(values["Encrypt"])[0]


def _bare_int(text: str) -> int | str:
    # The official sample writes TimeStamp without CDATA; keep the exact text when not canonical.
    if text.isascii() and text.isdigit() and str(int(text)) == text:
        return int(text)
    return text


def _b64decode(encrypt: str) -> bytes:
    try:
        data = base64.b64decode(encrypt, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise InvalidBase64("Encrypt is not valid base64") from None
    # Canonical form only (no surplus "=", no stray low bits): WeChat never sends anything else.
    if base64.b64encode(data).decode("ascii") != encrypt:
        raise InvalidBase64("Encrypt is not canonical base64")
    # CBC needs whole AES blocks, and WeChat's padding always yields whole 32-byte blocks.
    if not data or len(data) % BLOCK_SIZE:
        raise DecryptError(f"ciphertext length {len(data)} is not a positive multiple of 32")
    return data

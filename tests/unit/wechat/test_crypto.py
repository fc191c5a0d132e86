"""Message crypto: official vectors, round trips, tamper detection, hostile input. Ref §1."""

import base64
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.wechat import errors
from app.wechat.crypto import MessageCrypto, sha1_signature
from tests.unit.wechat.conftest import APPID, KEY, OLD_KEY, TOKEN, load_vectors

VECTORS = load_vectors()
PROPS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
TS, NONCE = "1714112445", "415670741"


def _raw_encrypt(key_text: str, plaintext: bytes) -> str:
    """AES-CBC without any padding logic, to forge buffers the library must reject."""
    key = base64.b64decode(key_text + "=")
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(plaintext) + enc.finalize()).decode()


def _signed(crypto: MessageCrypto, encrypt: str, form: str = "AppId") -> tuple[str, str]:
    body = (
        f"<xml><{form}><![CDATA[{APPID}]]></{form}><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    )
    return body, crypto.signature(TS, NONCE, encrypt)


# --- official vectors (byte-exact) -----------------------------------------------------------


@pytest.mark.parametrize("v", VECTORS["vectors"], ids=lambda v: v["id"])
def test_official_vector_signature_decrypt_encrypt(v: dict) -> None:
    c = MessageCrypto(v["token"], v["encoding_aes_key"], v["appid"])
    assert c.signature(v["timestamp"], v["nonce"], v["encrypt"]) == v["msg_signature"]
    assert c.decrypt(v["encrypt"]) == v["plaintext"]
    prefix = v["random_prefix"].encode("ascii")
    assert c.encrypt(v["plaintext"], random_prefix=prefix) == v["encrypt"]


@pytest.mark.parametrize("v", VECTORS["vectors"], ids=lambda v: v["id"])
def test_official_vector_through_envelope(v: dict) -> None:
    c = MessageCrypto(v["token"], v["encoding_aes_key"], v["appid"])
    body = (
        "<xml><ToUserName><![CDATA[gh_97417a04a28d]]></ToUserName>"
        f"<Encrypt><![CDATA[{v['encrypt']}]]></Encrypt></xml>"
    )
    assert c.decrypt_message(body, v["msg_signature"], v["timestamp"], v["nonce"]) == v["plaintext"]
    opened = c.open_message(body.encode(), v["msg_signature"], v["timestamp"], v["nonce"])
    assert (opened.outer_tag, opened.outer_value, opened.used_previous_key) == (
        "ToUserName",
        "gh_97417a04a28d",
        False,
    )


def test_an_envelope_built_by_a_wechat_sdk_opens_without_a_routing_tag(
    crypto: MessageCrypto,
) -> None:
    """wechatpy's encrypt_message (like EasyWeChat's and WxJava's encrypt helpers) seals a push
    as <Encrypt>, <MsgSignature>, <TimeStamp>, <Nonce>: the signature and the receive-id inside
    <Encrypt> prove it, so the missing <AppId>/<ToUserName> is no reason to refuse it."""
    from wechatpy.crypto import WeChatCrypto

    inner = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Content>hi</Content></xml>"
    body = WeChatCrypto(TOKEN, KEY, APPID).encrypt_message(inner, NONCE, TS)
    signature = body.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
    opened = crypto.open_message(body.encode(), signature, TS, NONCE)
    assert (opened.outer_tag, opened.outer_value, opened.xml) == (None, None, inner)
    with pytest.raises(errors.SignatureError):
        crypto.open_message(body.encode(), "0" * 40, TS, NONCE)
    foreign = WeChatCrypto(TOKEN, KEY, "wxsomeoneelse0001").encrypt_message(inner, NONCE, TS)
    foreign_signature = foreign.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
    with pytest.raises(errors.AppIdMismatch):
        crypto.open_message(foreign.encode(), foreign_signature, TS, NONCE)


def test_official_reply_vector_encrypt_reply() -> None:
    v = VECTORS["vectors"][1]
    c = MessageCrypto(v["token"], v["encoding_aes_key"], v["appid"])
    reply = c.encrypt_reply(
        v["plaintext"], v["timestamp"], v["nonce"], random_prefix=v["random_prefix"].encode()
    )
    assert f"<Encrypt><![CDATA[{v['encrypt']}]]></Encrypt>" in reply
    assert f"<MsgSignature><![CDATA[{v['msg_signature']}]]></MsgSignature>" in reply
    assert f"<TimeStamp>{v['timestamp']}</TimeStamp>" in reply
    assert c.open_reply(reply) == v["plaintext"]


@pytest.mark.parametrize("v", VECTORS["url_signature_vectors"], ids=lambda v: v["id"])
def test_official_url_signature(v: dict) -> None:
    c = MessageCrypto(v["token"], KEY, APPID)
    assert c.url_signature(v["timestamp"], v["nonce"]) == v["signature"]
    c.verify_url_signature(v["signature"], v["timestamp"], v["nonce"])
    with pytest.raises(errors.SignatureError) as info:
        c.verify_url_signature(v["signature"][:-1] + "0", v["timestamp"], v["nonce"])
    assert info.value.code == -40001


def test_sha1_signature_sorts_plainly() -> None:
    assert sha1_signature("b", "a", "+c") == sha1_signature("+c", "a", "b")


# --- round trips -----------------------------------------------------------------------------


@PROPS
@given(text=st.text(max_size=300))
def test_any_text_round_trips(crypto: MessageCrypto, text: str) -> None:
    assert crypto.decrypt(crypto.encrypt(text)) == text
    body, sig = crypto.encrypt_message(text, TS, NONCE)
    assert crypto.decrypt_message(body, sig, TS, NONCE) == text


@pytest.mark.parametrize("n", range(0, 100))
def test_every_length_around_block_boundaries(crypto: MessageCrypto, n: int) -> None:
    for text in ("a" * n, "é" * n, "微" * (n // 3 + 1)):
        encrypt = crypto.encrypt(text)
        full_len = 16 + 4 + len(text.encode()) + len(APPID)
        # 32-byte PKCS#7: an aligned buffer still gets a whole extra block.
        assert len(base64.b64decode(encrypt)) == (full_len // 32 + 1) * 32
        assert crypto.decrypt(encrypt) == text


def test_random_prefix_is_random_and_validated(crypto: MessageCrypto) -> None:
    assert crypto.encrypt("x") != crypto.encrypt("x")
    with pytest.raises(ValueError):
        crypto.encrypt("x", random_prefix=b"short")


def test_to_user_name_form(crypto: MessageCrypto) -> None:
    body, sig = crypto.encrypt_message("<xml/>", TS, NONCE, to_user_name="gh_3c884a361561")
    opened = crypto.open_message(body, sig, TS, NONCE)
    assert (opened.outer_tag, opened.outer_value, opened.xml) == (
        "ToUserName",
        "gh_3c884a361561",
        "<xml/>",
    )


# --- tampering -------------------------------------------------------------------------------


@pytest.fixture
def push(crypto: MessageCrypto) -> tuple[str, str, bytes]:
    encrypt = crypto.encrypt("<xml><InfoType>component_verify_ticket</InfoType></xml>")
    return encrypt, crypto.signature(TS, NONCE, encrypt), base64.b64decode(encrypt)


@PROPS
@given(data=st.data())
def test_any_ciphertext_bit_flip_is_rejected(crypto: MessageCrypto, push, data) -> None:
    encrypt, sig, raw = push
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    flipped = bytearray(raw)
    flipped[bit // 8] ^= 1 << (bit % 8)
    body, _ = _signed(crypto, base64.b64encode(bytes(flipped)).decode())
    with pytest.raises(errors.SignatureError):
        crypto.decrypt_message(body, sig, TS, NONCE)


@pytest.mark.parametrize("which", ["signature", "timestamp", "nonce"])
def test_every_bit_flip_of_signature_timestamp_nonce_is_rejected(crypto, push, which) -> None:
    encrypt, sig, _ = push
    body, _ = _signed(crypto, encrypt)
    args = {"signature": sig, "timestamp": TS, "nonce": NONCE}
    target = args[which]
    for i in range(len(target)):
        for bit in range(7):  # ASCII stays ASCII
            changed = target[:i] + chr(ord(target[i]) ^ (1 << bit)) + target[i + 1 :]
            bad = {**args, which: changed}
            with pytest.raises(errors.SignatureError):
                crypto.decrypt_message(body, bad["signature"], bad["timestamp"], bad["nonce"])


def test_padding_bit_flips_rejected_without_signature(crypto: MessageCrypto, push) -> None:
    # Below the signature layer, strict PKCS#7 still refuses a damaged pad.
    _, _, raw = push
    for bit in range(8 * 16):
        flipped = bytearray(raw)
        flipped[len(raw) - 32 - 16 + bit // 8] ^= 1 << (bit % 8)
        with pytest.raises((errors.DecryptError, errors.AppIdMismatch)):
            crypto.decrypt(base64.b64encode(bytes(flipped)).decode())


def test_wrong_appid_rejected(crypto: MessageCrypto) -> None:
    other = MessageCrypto(TOKEN, KEY, "wx0000000000000000")
    body, sig = other.encrypt_message("<xml/>", TS, NONCE)
    with pytest.raises(errors.AppIdMismatch) as info:
        crypto.decrypt_message(body, sig, TS, NONCE)
    assert info.value.code == -40005


def test_non_ascii_signature_input_is_a_signature_error(crypto: MessageCrypto, push) -> None:
    encrypt, _, _ = push
    body, _ = _signed(crypto, encrypt)
    for bad in ("é" * 40, "", "\udcff"):
        with pytest.raises(errors.SignatureError):
            crypto.decrypt_message(body, bad, TS, NONCE)


# --- hostile input ---------------------------------------------------------------------------

BOMB = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">'
    '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
    "<xml><AppId>&c;</AppId><Encrypt>x</Encrypt></xml>"
)
XXE = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    "<xml><AppId>&e;</AppId><Encrypt>x</Encrypt></xml>"
)
DTD_ONLY = '<!DOCTYPE xml SYSTEM "http://example.com/x.dtd"><xml><AppId>a</AppId></xml>'


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"not xml",
        b"<xml><AppId>a</AppId><Encrypt>abc",
        b"<root><AppId>a</AppId><Encrypt>abc</Encrypt></root>",
        b"<xml><AppId>a</AppId></xml>",
        b"<xml><AppId>a</AppId><Encrypt></Encrypt></xml>",
        b"<xml><AppId>a</AppId><Encrypt>a</Encrypt><Encrypt>b</Encrypt></xml>",
        b"<xml><AppId>a</AppId><ToUserName>b</ToUserName><Encrypt>abc</Encrypt></xml>",
        b"<xml><AppId>a</AppId><Encrypt><x>abc</x></Encrypt></xml>",
        b"<xml>junk<AppId>a</AppId><Encrypt>abc</Encrypt></xml>",
        b"<xml><AppId>a</AppId>junk<Encrypt>abc</Encrypt></xml>",
        b"\x00\x01\x02",
        "<xml><AppId>\ud800</AppId><Encrypt>abc</Encrypt></xml>",
        b"\xff\xfe<\x00x\x00",
        BOMB.encode(),
        XXE.encode(),
        DTD_ONLY.encode(),
        b"<xml>" + b"<a>" * 50 + b"</a>" * 50 + b"</xml>",
    ],
)
def test_malformed_outer_xml(crypto: MessageCrypto, body: bytes | str) -> None:
    with pytest.raises(errors.MalformedMessage) as info:
        crypto.decrypt_message(body, "0" * 40, TS, NONCE)
    assert info.value.code == -40002


def test_oversize_body_rejected_before_parsing(crypto: MessageCrypto) -> None:
    body = "<xml><AppId>a</AppId><Encrypt>" + "A" * 70_000 + "</Encrypt></xml>"
    with pytest.raises(errors.MalformedMessage, match="larger"):
        crypto.decrypt_message(body, "0" * 40, TS, NONCE)
    small = MessageCrypto(TOKEN, KEY, APPID, max_body_bytes=100)
    body, sig = crypto.encrypt_message("x" * 200, TS, NONCE)
    with pytest.raises(errors.MalformedMessage):
        small.decrypt_message(body, sig, TS, NONCE)


@pytest.mark.parametrize("encrypt", ["@@@@", "abc", "YWJj=", "YW Jj", "aGVsbG8=\n", "ü", "YR=="])
def test_bad_base64(crypto: MessageCrypto, encrypt: str) -> None:
    body, sig = _signed(crypto, encrypt)
    with pytest.raises(errors.InvalidBase64) as info:
        crypto.decrypt_message(body, sig, TS, NONCE)
    assert info.value.code == -40010
    assert isinstance(info.value, errors.DecryptError)


@pytest.mark.parametrize("size", [16, 31, 33, 48, 100])
def test_bad_ciphertext_lengths(crypto: MessageCrypto, size: int) -> None:
    body, sig = _signed(crypto, base64.b64encode(b"\x01" * size).decode())
    with pytest.raises(errors.DecryptError) as info:
        crypto.decrypt_message(body, sig, TS, NONCE)
    assert info.value.code == -40007


def _forge(msg: bytes, *, length: int | None = None, appid: bytes = APPID.encode()) -> bytes:
    size = len(msg) if length is None else length
    return b"R" * 16 + struct.pack(">I", size) + msg + appid


@pytest.mark.parametrize(
    "tail",
    [bytes([0]) * 32, bytes([33]) * 32, bytes([5, 5, 5, 4, 5]), bytes(31) + bytes([40])],
)
def test_strict_padding(crypto: MessageCrypto, tail: bytes) -> None:
    full = _forge(b"x" * 10)
    filler = b"\x00" * ((-len(full) - len(tail)) % 32)
    with pytest.raises(errors.DecryptError) as info:
        crypto.decrypt(_raw_encrypt(KEY, full + filler + tail))
    assert info.value.code == -40007


def _padded(data: bytes) -> bytes:
    n = 32 - len(data) % 32
    return data + bytes([n]) * n


@pytest.mark.parametrize(
    "plain",
    [
        b"R" * 10,  # shorter than the 20-byte header
        _forge(b"abc", length=1000),  # length field overflows
        _forge(b"abc", length=2**32 - 1),
        _forge(b"\xff\xfe\xfd"),  # not UTF-8
    ],
)
def test_illegal_buffers(crypto: MessageCrypto, plain: bytes) -> None:
    with pytest.raises(errors.IllegalBuffer) as info:
        crypto.decrypt(_raw_encrypt(KEY, _padded(plain)))
    assert info.value.code == -40008


def test_length_field_counts_bytes_not_characters(crypto: MessageCrypto) -> None:
    plain = _forge("微信".encode(), length=2)  # character count: receive-id check must fail
    with pytest.raises(errors.AppIdMismatch):
        crypto.decrypt(_raw_encrypt(KEY, _padded(plain)))


@PROPS
@given(body=st.binary(max_size=400) | st.text(max_size=400))
def test_arbitrary_bodies_only_raise_crypto_errors(crypto: MessageCrypto, body) -> None:
    with pytest.raises(errors.CryptoError):
        crypto.decrypt_message(body, "0" * 40, TS, NONCE)


@PROPS
@given(encrypt=st.text(min_size=1, max_size=200))
def test_arbitrary_signed_encrypt_values_only_raise_crypto_errors(crypto, encrypt: str) -> None:
    try:
        crypto.decrypt(encrypt)
    except errors.CryptoError:
        pass


# --- keys and rotation -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["A" * 42, "A" * 44, "A" * 42 + "+", "A" * 42 + "=", "", "é" * 43])
def test_invalid_aes_keys(bad: str) -> None:
    with pytest.raises(errors.InvalidAesKey) as info:
        MessageCrypto(TOKEN, bad, APPID)
    assert info.value.code == -40004
    with pytest.raises(errors.InvalidAesKey):
        MessageCrypto(TOKEN, KEY, APPID, previous_encoding_aes_key=bad or "short")


def test_rotation_falls_back_to_previous_key() -> None:
    old = MessageCrypto(TOKEN, OLD_KEY, APPID)
    new = MessageCrypto(TOKEN, KEY, APPID, previous_encoding_aes_key=OLD_KEY)
    body, sig = old.encrypt_message("<xml>old</xml>", TS, NONCE)
    opened = new.open_message(body, sig, TS, NONCE)
    assert (opened.xml, opened.used_previous_key) == ("<xml>old</xml>", True)
    # Reply with the key that decrypted the request (§1.2): the old side can read it.
    reply = new.encrypt_reply("pong", TS, NONCE, use_previous_key=opened.used_previous_key)
    assert old.open_reply(reply) == "pong"
    body, sig = new.encrypt_message("<xml>new</xml>", TS, NONCE)
    assert new.open_message(body, sig, TS, NONCE).used_previous_key is False


def test_rotation_without_matching_key_fails() -> None:
    stranger = MessageCrypto(TOKEN, "Q" * 43, APPID)
    new = MessageCrypto(TOKEN, KEY, APPID, previous_encoding_aes_key=OLD_KEY)
    for i in range(20):
        body, sig = stranger.encrypt_message(f"<xml>{i}</xml>", TS, NONCE)
        with pytest.raises((errors.DecryptError, errors.AppIdMismatch)):
            new.decrypt_message(body, sig, TS, NONCE)
    with pytest.raises(ValueError):
        MessageCrypto(TOKEN, KEY, APPID).encrypt("x", use_previous_key=True)


def test_error_family_and_codes() -> None:
    expected = {
        errors.SignatureError: -40001,
        errors.MalformedMessage: -40002,
        errors.InvalidAesKey: -40004,
        errors.AppIdMismatch: -40005,
        errors.EncryptError: -40006,
        errors.DecryptError: -40007,
        errors.IllegalBuffer: -40008,
        errors.InvalidBase64: -40010,
    }
    for cls, code in expected.items():
        err = cls("x")
        assert isinstance(err, errors.CryptoError) and isinstance(err, errors.WeChatError)
        assert err.code == code and str(code) in str(err)


def test_repr_hides_secrets(crypto: MessageCrypto) -> None:
    assert TOKEN not in repr(crypto) and KEY not in repr(crypto)
    with pytest.raises(ValueError):
        MessageCrypto("", KEY, APPID)

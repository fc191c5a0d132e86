"""Benchmark app.wechat message crypto against bare primitives measured in the same run.

Run: python bench/bench_crypto.py [--seconds 0.2]
Rows: verify+decrypt of a typical component_verify_ticket push (outer XML parse, constant-time
msg_signature check, AES-256-CBC, strict PKCS#7, receive-id check) and building a signed push
(encrypt + outer XML + signature). Each has a baseline: bare SHA-1 over the same sorted inputs plus
bare AES-CBC of the same ciphertext size via `cryptography`. The ratio (ours ÷ baseline time) is the
number to watch; absolute ops/s depend on the machine.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import platform
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cryptography  # noqa: E402
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402

from app.wechat.crypto import MessageCrypto  # noqa: E402
from app.wechat.events import build_event_xml, parse_event  # noqa: E402

TOKEN = "grantdeskToken123"
KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APPID = "wx6d80ca40ad4e00fc"
TS, NONCE = "1714112445", "415670741"
TICKET = "ticket@@@" + "Xy7_kPq2LmN9" * 7


def ops_per_second(func: Callable[[], object], seconds: float) -> float:
    """Best-of-3 throughput, each round sized to last about `seconds`."""
    timer = timeit.Timer(func)
    number, _ = timer.autorange()
    number = max(1, int(number * seconds / 0.2))
    best = min(timer.repeat(repeat=3, number=number))
    return number / best


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.2, help="time per round (default 0.2)")
    seconds = parser.parse_args().seconds

    crypto = MessageCrypto(TOKEN, KEY, APPID)
    inner = build_event_xml(
        "component_verify_ticket",
        {"AppId": APPID, "CreateTime": int(TS), "ComponentVerifyTicket": TICKET},
    )
    body, signature = crypto.encrypt_message(inner, TS, NONCE)
    encrypt = crypto.encrypt(inner)
    ciphertext = base64.b64decode(encrypt)
    key = base64.b64decode(KEY + "=")
    plain_same_size = b"\x00" * len(ciphertext)
    assert crypto.decrypt_message(body, signature, TS, NONCE) == inner

    def bare_verify_decrypt() -> bytes:
        hashlib.sha1("".join(sorted((TOKEN, TS, NONCE, encrypt))).encode()).hexdigest()
        dec = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
        return dec.update(ciphertext) + dec.finalize()

    def bare_encrypt_sign() -> str:
        enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
        out = base64.b64encode(enc.update(plain_same_size) + enc.finalize()).decode()
        return hashlib.sha1("".join(sorted((TOKEN, TS, NONCE, out))).encode()).hexdigest()

    rows = [
        (
            "verify+decrypt push",
            lambda: crypto.decrypt_message(body, signature, TS, NONCE),
            bare_verify_decrypt,
        ),
        ("encrypt+sign push", lambda: crypto.encrypt_message(inner, TS, NONCE), bare_encrypt_sign),
        (
            "verify+decrypt+parse_event",
            lambda: parse_event(crypto.decrypt_message(body, signature, TS, NONCE)),
            bare_verify_decrypt,
        ),
    ]
    print(
        f"python {platform.python_version()}, cryptography {cryptography.__version__}, "
        f"inner XML {len(inner.encode())} B, ciphertext {len(ciphertext)} B, body {len(body)} B"
    )
    header = f"{'operation':<28} {'ours ops/s':>12} {'baseline ops/s':>15} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    baselines: dict[Callable[[], object], float] = {}
    for label, ours, baseline in rows:
        ours_ops = ops_per_second(ours, seconds)
        if baseline not in baselines:  # one measurement per baseline keeps rows comparable
            baselines[baseline] = ops_per_second(baseline, seconds)
        base_ops = baselines[baseline]
        print(f"{label:<28} {ours_ops:>12,.0f} {base_ops:>15,.0f} {base_ops / ours_ops:>6.2f}x")
    print("ratio = baseline ops/s ÷ ours ops/s (time cost relative to bare SHA-1 + AES-CBC)")


if __name__ == "__main__":
    main()

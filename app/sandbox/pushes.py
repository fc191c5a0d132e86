"""Pushes to the platform's URLs: a delivery queue, a worker thread, retries, faults (§2.4)."""

import queue
import secrets
import threading
import time
from urllib.parse import urlencode

import requests
from flask import Flask, current_app, g
from sqlalchemy import select

from app.sandbox import clock, runtime
from app.sandbox.models import Delivery, DeliveryAttempt, db
from app.wechat.crypto import MessageCrypto
from app.wechat.events import build_event_xml


def crypto() -> MessageCrypto:
    """The platform's message crypto (token, EncodingAESKey, component appid)."""
    config = current_app.config
    return MessageCrypto(
        config["WECHAT_TOKEN"], config["WECHAT_ENCODING_AES_KEY"], config["WECHAT_COMPONENT_APPID"]
    )


def signed_post(
    url: str,
    inner_xml: str,
    *,
    to_user_name: str | None = None,
    extra_query: dict | None = None,
    timeout: float | None = None,
):
    """POST an encrypted, signed push like WeChat; return (http_status, reply, error)."""
    request_url, body = seal(url, inner_xml, to_user_name=to_user_name, extra_query=extra_query)
    return post(request_url, body, timeout or current_app.config["SANDBOX_PUSH_TIMEOUT"])


def seal(
    url: str,
    inner_xml: str,
    *,
    to_user_name: str | None = None,
    extra_query: dict | None = None,
) -> tuple[str, bytes]:
    """Encrypt and sign a push like WeChat: (URL with the signed query, body bytes)."""
    timestamp, nonce = str(int(clock.now())), str(secrets.randbelow(10**10))
    box = crypto()
    body, msg_signature = box.encrypt_message(
        inner_xml, timestamp, nonce, to_user_name=to_user_name
    )
    query = {
        "signature": box.url_signature(timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
        **(extra_query or {}),
        "encrypt_type": "aes",
        "msg_signature": msg_signature,
    }
    separator = "&" if "?" in url else "?"
    return url + separator + urlencode(query), body.encode("utf-8")


def post(request_url: str, body: bytes, timeout: float):
    """One HTTP attempt of a sealed push: (http_status, reply text, error name)."""
    try:
        response = requests.post(
            request_url,
            data=body,
            headers={"Content-Type": "text/xml; charset=utf-8", "User-Agent": "Mozilla/4.0"},
            timeout=timeout,
        )
    except requests.RequestException as exc:
        return None, None, type(exc).__name__
    return response.status_code, response.text, None


def queue_event(info_type: str, fields: dict, authorizer_appid: str | None = None) -> Delivery:
    """Record an event push to the authorization-event URL; it is sent after the commit."""
    from app.sandbox.tokens import platform

    inner = build_event_xml(
        info_type,
        {
            "AppId": current_app.config["WECHAT_COMPONENT_APPID"],
            "CreateTime": int(clock.now()),
            **fields,
        },
    )
    delivery = Delivery(
        info_type=info_type,
        authorizer_appid=authorizer_appid,
        url=platform().event_url,
        inner_xml=inner,
        created_at=clock.now(),
    )
    db.session.add(delivery)
    db.session.flush()
    g.setdefault("sandbox_outbox", []).append(delivery.id)
    return delivery


def send_outbox() -> None:
    """Hand the deliveries queued in this context to the pusher (call after committing)."""
    ids = g.pop("sandbox_outbox", [])
    pusher = runtime.get().pusher
    for delivery_id in ids:
        pusher.submit(delivery_id)


class Pusher:
    """Delivers pushes off the request thread (or inline with SANDBOX_SYNC_PUSHES)."""

    def __init__(self, app: Flask):
        self.app = app
        self.queue: queue.Queue[int] = queue.Queue()
        self.pending = 0
        self.held: list[int] = []  # out-of-order fault: waits for the next delivery
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None

    @property
    def sync(self) -> bool:
        return bool(self.app.config["SANDBOX_SYNC_PUSHES"])

    def submit(self, delivery_id: int) -> None:
        """Apply push faults, then deliver (inline or through the worker)."""
        faults = runtime.get(self.app).push_faults
        ids = [delivery_id]
        if faults.get("duplicate"):
            ids.append(self._duplicate(delivery_id))
        if faults.get("out_of_order"):
            with self.cond:
                self.held.extend(ids)
                if len(self.held) < 2:
                    return  # wait for a later delivery to overtake this one
                ids, self.held = self.held[::-1], []
        for one in ids:
            self._schedule(one, float(faults.get("delay") or 0))

    def _duplicate(self, delivery_id: int) -> int:
        with self.app.app_context(), runtime.get(self.app).lock:
            original = db.session.get(Delivery, delivery_id)
            copy = Delivery(
                info_type=original.info_type,
                authorizer_appid=original.authorizer_appid,
                url=original.url,
                inner_xml=original.inner_xml,
                created_at=original.created_at,
                duplicate_of=original.id,
            )
            db.session.add(copy)
            db.session.commit()
            return copy.id

    def _schedule(self, delivery_id: int, delay: float) -> None:
        if self.sync:
            time.sleep(delay)
            self.deliver(delivery_id)
            return
        with self.cond:
            self.pending += 1
        self._ensure_worker()
        if delay:
            threading.Timer(delay, self.queue.put, args=(delivery_id,)).start()
        else:
            self.queue.put(delivery_id)

    def _ensure_worker(self) -> None:
        with self.cond:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(
                    target=self._work, name="sandbox-pusher", daemon=True
                )
                self.thread.start()

    def _work(self) -> None:
        while True:
            delivery_id = self.queue.get()
            try:
                self.deliver(delivery_id)
            except Exception:  # a broken delivery must not kill the worker
                self.app.logger.exception("sandbox push %s failed", delivery_id)
            finally:
                with self.cond:
                    self.pending -= 1
                    self.cond.notify_all()

    def flush(self, timeout: float = 30.0) -> bool:
        """Release held deliveries and wait until nothing is pending; False on timeout."""
        with self.cond:
            held, self.held = self.held, []
        for delivery_id in held:
            self._schedule(delivery_id, 0)
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(remaining)
        return True

    def deliver(self, delivery_id: int) -> None:
        """POST one delivery: up to N attempts until the reply is exactly `success`."""
        config = self.app.config
        with self.app.app_context():
            delivery = db.session.get(Delivery, delivery_id)
            if delivery is None:  # the world was reset while this push waited
                return
            url, inner = delivery.url, delivery.inner_xml
            db.session.rollback()
            status = "failed"
            for number in range(1, config["SANDBOX_PUSH_ATTEMPTS"] + 1):
                if number > 1:
                    time.sleep(config["SANDBOX_PUSH_RETRY_DELAY"])
                http_status, reply, error = signed_post(url, inner)
                with runtime.get(self.app).lock:
                    db.session.add(
                        DeliveryAttempt(
                            delivery_id=delivery_id,
                            number=number,
                            at=clock.now(),
                            http_status=http_status,
                            reply=(reply or "")[:2000] if error is None else None,
                            error=error,
                        )
                    )
                    db.session.commit()
                if http_status == 200 and reply == "success":
                    status = "delivered"
                    break
            with runtime.get(self.app).lock:
                db.session.get(Delivery, delivery_id).status = status
                db.session.commit()


def deliveries(limit: int = 100) -> list[Delivery]:
    """The most recent deliveries, newest first."""
    query = select(Delivery).order_by(Delivery.id.desc()).limit(limit)
    return list(db.session.execute(query).scalars())

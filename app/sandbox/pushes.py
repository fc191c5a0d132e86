"""Pushes to the platforms' URLs: a delivery queue, a worker thread, retries, faults (§2.4).

Every push is sealed with its own platform's keys and follows that platform's push faults."""

import queue
import secrets
import threading
import time
from urllib.parse import urlencode

import requests
from flask import Flask, current_app, g

from app.sandbox import clock, platforms, runtime
from app.sandbox.models import Delivery, DeliveryAttempt, Platform, db
from app.wechat.crypto import MessageCrypto
from app.wechat.events import build_event_xml


def signed_post(
    box: MessageCrypto,
    url: str,
    inner_xml: str,
    *,
    to_user_name: str | None = None,
    extra_query: dict | None = None,
    timeout: float | None = None,
):
    """POST an encrypted, signed push like WeChat; return (http_status, reply, error)."""
    request_url, body = seal(
        box, url, inner_xml, to_user_name=to_user_name, extra_query=extra_query
    )
    return post(request_url, body, timeout or current_app.config["SANDBOX_PUSH_TIMEOUT"])


def seal(
    box: MessageCrypto,
    url: str,
    inner_xml: str,
    *,
    to_user_name: str | None = None,
    extra_query: dict | None = None,
) -> tuple[str, bytes]:
    """Encrypt and sign a push like WeChat with a platform's crypto: (URL with the signed
    query, body bytes)."""
    timestamp, nonce = str(int(clock.now())), str(secrets.randbelow(10**10))
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


def queue_event(
    platform: Platform, info_type: str, fields: dict, authorizer_appid: str | None = None
) -> Delivery:
    """Record an event push to the platform's authorization-event URL; it is sent after the
    commit."""
    inner = build_event_xml(
        info_type, {"AppId": platform.appid, "CreateTime": int(clock.now()), **fields}
    )
    delivery = Delivery(
        platform_id=platform.id,
        info_type=info_type,
        authorizer_appid=authorizer_appid,
        url=platform.event_url,
        inner_xml=inner,
        created_at=clock.now(),
    )
    db.session.add(delivery)
    db.session.flush()
    g.setdefault("sandbox_outbox", []).append((delivery.id, platform.appid))
    return delivery


def send_outbox() -> None:
    """Hand the deliveries queued in this context to the pusher (call after committing)."""
    queued = g.pop("sandbox_outbox", [])
    pusher = runtime.get().pusher
    for delivery_id, component_appid in queued:
        pusher.submit(delivery_id, component_appid)


class Pusher:
    """Delivers pushes off the request thread (or inline with SANDBOX_SYNC_PUSHES)."""

    def __init__(self, app: Flask):
        self.app = app
        self.queue: queue.Queue[int] = queue.Queue()
        self.pending = 0
        # out-of-order fault, per platform: waits for the platform's next delivery
        self.held: dict[str, list[int]] = {}
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None

    @property
    def sync(self) -> bool:
        return bool(self.app.config["SANDBOX_SYNC_PUSHES"])

    def submit(self, delivery_id: int, component_appid: str) -> None:
        """Apply the platform's push faults, then deliver (inline or through the worker)."""
        faults = runtime.get(self.app).pushes_of(component_appid)
        ids = [delivery_id]
        if faults.get("duplicate"):
            ids.append(self._duplicate(delivery_id))
        if faults.get("out_of_order"):
            with self.cond:
                held = self.held.setdefault(component_appid, [])
                held.extend(ids)
                if len(held) < 2:
                    return  # wait for a later delivery to overtake this one
                ids, self.held[component_appid] = held[::-1], []
        for one in ids:
            self._schedule(one, float(faults.get("delay") or 0))

    def _duplicate(self, delivery_id: int) -> int:
        with self.app.app_context(), runtime.get(self.app).lock:
            original = db.session.get(Delivery, delivery_id)
            copy = Delivery(
                platform_id=original.platform_id,
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
            held = [one for ids in self.held.values() for one in ids]
            self.held = {}
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
            box = platforms.crypto(db.session.get(Platform, delivery.platform_id))
            db.session.rollback()
            status = "failed"
            for number in range(1, config["SANDBOX_PUSH_ATTEMPTS"] + 1):
                if number > 1:
                    time.sleep(config["SANDBOX_PUSH_RETRY_DELAY"])
                http_status, reply, error = signed_post(box, url, inner)
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

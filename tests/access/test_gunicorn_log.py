"""gunicorn.conf.py serves the portal with masked access and error logs (a real gunicorn)."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
SECRETS = ["authcode0SECRET0aaa", "ticket0SECRET0bbb", "token0SECRET0ccc", "key0SECRET0ddd"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_gunicorn_access_log_masks_codes_and_tokens(tmp_path):
    access_log, error_log = tmp_path / "access.log", tmp_path / "error.log"
    port = _free_port()
    env = {
        **os.environ,
        "GRANTDESK_CONFIG": "development",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.sqlite'}",
        "GUNICORN_ACCESS_LOG": str(access_log),
        "GUNICORN_ERROR_LOG": str(error_log),
    }
    command = [
        *(sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"),
        *("--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "2", "wsgi:app"),
    ]
    # Every page reads the database (the provider's name, the signed-in user): migrate it first.
    flask = (sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade")
    subprocess.run(flask, cwd=ROOT, env=env, check=True, capture_output=True)
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:  # readiness: the port answers
            try:
                requests.get(f"{url}/login", timeout=2)
                break
            except requests.ConnectionError:
                assert server.poll() is None, "gunicorn exited"
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        query = (
            f"auth_code={SECRETS[0]}&expires_in=600&component_verify_ticket={SECRETS[1]}"
            f"&access_token={SECRETS[2]}&encoding_aes_key={SECRETS[3]}"
        )
        referer = f"https://mp.weixin.qq.com/?pre_auth_code={SECRETS[0]}"
        response = requests.get(f"{url}/login?{query}", headers={"Referer": referer}, timeout=5)
        assert response.status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    logged = access_log.read_text()
    assert "GET /login?auth_code=***&expires_in=600" in logged
    assert "pre_auth_code=***" in logged  # the referrer
    everything = logged + error_log.read_text()
    assert not [s for s in SECRETS if s in everything]

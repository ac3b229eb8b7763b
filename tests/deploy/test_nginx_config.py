"""frontend/nginx.conf, the production proxy, checked by a real nginx (Debian's; `.ci/run` installs
it, so in CI these never skip).

The file is a conf.d server block: frontend/Dockerfile copies it to /etc/nginx/conf.d/default.conf
of nginx:1.27-alpine, whose main nginx.conf includes it inside `http { }`. `MAIN_CONF` below is that
main file, with only its paths (pid, logs, temp directories) moved into a temporary directory and
its `user nginx;` left out (no such user on Debian).

What this proves: `nginx -t` accepts the server block verbatim (directives, their contexts and
values, the map, the regex locations); and, run for real with `backend:8000` replaced by a
loopback stub, that it routes as its comments say (API and websocket to the backend with the
forwarded headers, the SPA's fallback, asset caching, security headers, the body limits).
What it does not prove: the image's own nginx (1.27, Alpine's build) accepts it — this is Debian's
nginx (1.22 on bookworm), so a directive newer than 1.22 would fail here though fine there, not the
reverse; nor that Docker's DNS (127.0.0.11) resolves `backend`: the config names its upstream only
through a variable (`set $backend`), which nginx resolves per request, never while loading — so the
verbatim check needs no hosts mapping, and `test_the_backend_is_reached_only_through_the_resolved_variable`
keeps it that way.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from backend.devtools.ferretdb import free_port

ROOT = Path(__file__).resolve().parents[2]
SERVER_BLOCK = ROOT / "frontend" / "nginx.conf"
TLS_SCRIPT = ROOT / "frontend" / "docker-entrypoint.d" / "40-iaze-tls.sh"
OPENSSL = shutil.which("openssl")
# /usr/sbin is not on every user's PATH.
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (.ci/run installs nginx-light)")

# nginx:1.27-alpine's /etc/nginx/nginx.conf, paths moved under {prefix}; Debian's mime.types.
MAIN_CONF = """\
worker_processes  1;
error_log  {prefix}/error.log notice;
pid        {prefix}/nginx.pid;

events {{
    worker_connections  1024;
}}

http {{
    {mime}
    default_type  application/octet-stream;

    log_format  main  '$remote_addr - $remote_user [$time_local] "$request" '
                      '$status $body_bytes_sent "$http_referer" '
                      '"$http_user_agent" "$http_x_forwarded_for"';

    access_log  {prefix}/access.log  main;

    sendfile        on;
    keepalive_timeout  65;

    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;

    include {prefix}/conf.d/*.conf;
}}
"""
MIME_TYPES = Path("/etc/nginx/mime.types")


def _lay_out(prefix: Path, server_block: str) -> Path:
    """The image's layout under `prefix`; answers the main config's path."""
    (prefix / "conf.d").mkdir(parents=True)
    (prefix / "tmp").mkdir()
    (prefix / "conf.d" / "default.conf").write_text(server_block)
    mime = f"include {MIME_TYPES};" if MIME_TYPES.exists() else ""
    main = prefix / "nginx.conf"
    main.write_text(MAIN_CONF.format(prefix=prefix, mime=mime))
    return main


def _nginx(prefix: Path, main: Path, *args: str) -> list[str]:
    assert NGINX is not None
    return [NGINX, "-p", str(prefix), "-c", str(main), *args]


def test_the_image_puts_the_server_block_in_conf_d_of_nginx_1_27_alpine() -> None:
    """What MAIN_CONF stands for: the image's own main nginx.conf, including this file."""
    dockerfile = (ROOT / "frontend" / "Dockerfile").read_text()
    assert "FROM nginx:1.27-alpine" in dockerfile
    assert re.search(r"^COPY nginx\.conf /etc/nginx/conf\.d/default\.conf$", dockerfile, re.MULTILINE)


def test_nginx_accepts_the_server_block_verbatim_as_the_image_includes_it(tmp_path: Path) -> None:
    main = _lay_out(tmp_path / "etc", SERVER_BLOCK.read_text())
    result = subprocess.run(_nginx(tmp_path / "etc", main, "-t"), capture_output=True, text=True, timeout=30)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "test is successful" in output
    # Warnings (a duplicate MIME type, a directive ignored in its place) pass -t: none allowed.
    assert "[warn]" not in output, output


def test_the_backend_is_reached_only_through_the_resolved_variable() -> None:
    """A literal `proxy_pass http://backend:8000` would be resolved once, when nginx starts: a
    restarted backend container (a new address) would then be unreachable until nginx restarts,
    and `nginx -t` outside Docker could not load it. Every proxy_pass goes through $backend, and
    the block has the resolver that re-resolves it."""
    text = re.sub(r"#.*", "", SERVER_BLOCK.read_text())
    targets = re.findall(r"\bproxy_pass\s+([^;]+);", text)
    assert targets, "no proxy_pass found"
    assert set(targets) == {"$backend"}, targets
    assert re.search(r"\bresolver\s+127\.0\.0\.11\b[^;]*\bvalid=", text)
    assert re.search(r"\bset\s+\$backend\s+http://backend:8000;", text)
    assert "upstream" not in text


# ---- the config run for real, its backend a loopback stub ----


@dataclass
class Stub:
    """Stands in for the backend: records each request it gets and answers 200 with its path."""

    port: int = 0
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)


def _start_stub() -> tuple[Stub, ThreadingHTTPServer]:
    stub = Stub()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            stub.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
            body = json.dumps({"path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = _answer
        do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return stub, server


@dataclass
class Proxy:
    url: str
    stub: Stub
    ws_log: Path  # where the websocket location's access log goes (stdout in the image)
    tls_url: str = ""  # https://…, when run with a certificate


@pytest.fixture(scope="module")
def proxy() -> Iterator[Proxy]:
    # Not under pytest's tmp_path (mode 0700): run as root, nginx's workers are `nobody`, and they
    # must read the site.
    with tempfile.TemporaryDirectory(prefix="iaze-nginx-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        yield from _run(base)


@pytest.fixture(scope="module")
def tls_proxy() -> Iterator[Proxy]:
    """The same server block after the image's start script found a certificate in the TLS
    directory (a self-signed one here): what docker-compose.yml's ./tls mount turns on."""
    assert OPENSSL is not None, "openssl is needed for the HTTPS run (.ci/run installs it)"
    with tempfile.TemporaryDirectory(prefix="iaze-nginx-tls-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        tls = base / "tls"
        (tls / "acme" / ".well-known" / "acme-challenge").mkdir(parents=True)
        (tls / "acme" / ".well-known" / "acme-challenge" / "token-1").write_text("proof-1")
        subprocess.run(
            [OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
             "-keyout", str(tls / "privkey.pem"), "-out", str(tls / "fullchain.pem")],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        yield from _run(base, tls=tls)


def _run(base: Path, tls: Path | None = None) -> Iterator[Proxy]:
    stub, stub_server = _start_stub()
    site = base / "html"
    (site / "assets").mkdir(parents=True)
    (site / "index.html").write_text("<!doctype html><title>IAZE</title>")
    (site / "assets" / "app-1a2b3c.js").write_text("console.log('iaze');")
    port = free_port()
    server_block = SERVER_BLOCK.read_text()
    ws_log = base / "ws-access.log"
    # Only what cannot exist here changes: the port, the site's directory, the backend's address
    # (an IP address in the variable: nginx then needs no resolver) and a log file to read back.
    for old, new in (
        ("listen 80;", f"listen 127.0.0.1:{port};"),
        ("access_log /dev/stdout iaze_no_query;", f"access_log {ws_log} iaze_no_query;"),
        ("root /usr/share/nginx/html;", f"root {site};"),
        ("http://backend:8000", f"http://127.0.0.1:{stub.port}"),
        ("include /etc/nginx/tls.d/*.conf;", f"include {base / 'tls.d'}/*.conf;"),
        ("root /etc/nginx/tls/acme;", f"root {base / 'tls' / 'acme'};"),
    ):
        assert server_block.count(old) == 1, old
        server_block = server_block.replace(old, new)
    tls_url = ""
    if tls is not None:  # the image's start script, pointed at this directory and a free port
        tls_port = free_port()
        env = {
            **os.environ,
            "IAZE_TLS_DIR": str(tls),
            "IAZE_TLS_CONF_DIR": str(base / "tls.d"),
            "IAZE_TLS_LISTEN": f"127.0.0.1:{tls_port}",
        }
        subprocess.run(["sh", str(TLS_SCRIPT)], check=True, env=env, capture_output=True, timeout=30)
        tls_url = f"https://127.0.0.1:{tls_port}"
    prefix = base / "etc"
    main = _lay_out(prefix, server_block)
    proc = subprocess.Popen(
        _nginx(prefix, main, "-g", "daemon off;"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _answers(f"{url}/nginx-health"):
            if proc.poll() is not None:
                pytest.fail(f"nginx exited: {proc.stderr.read() if proc.stderr else ''}")
            if time.monotonic() > deadline:
                pytest.fail(f"nginx did not answer {url}/nginx-health within 30 s")
            time.sleep(0.1)
        yield Proxy(url, stub, ws_log, tls_url)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        stub_server.shutdown()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.TransportError:
        return False


SECURITY_HEADERS = {"x-content-type-options": "nosniff", "referrer-policy": "same-origin", "x-frame-options": "DENY"}


def _has_security_headers(response: httpx.Response) -> bool:
    return all(response.headers.get(name) == value for name, value in SECURITY_HEADERS.items())


def test_the_spa_falls_back_to_index_html_revalidated_and_assets_are_cached_for_good(proxy: Proxy) -> None:
    page = httpx.get(f"{proxy.url}/tickets/123")
    assert page.status_code == 200 and "<title>IAZE</title>" in page.text
    assert page.headers["cache-control"] == "no-cache"
    asset = httpx.get(f"{proxy.url}/assets/app-1a2b3c.js")
    assert asset.status_code == 200 and "iaze" in asset.text
    assert asset.headers["cache-control"] == "max-age=315360000"
    # A missing asset is a 404, never index.html served as JavaScript.
    assert httpx.get(f"{proxy.url}/assets/gone-000.js").status_code == 404
    for response in (page, asset, httpx.get(f"{proxy.url}/nginx-health")):
        assert _has_security_headers(response), response.headers
        assert "nginx/" not in response.headers.get("server", "")  # server_tokens off
    assert proxy.stub.seen == []  # none of these reached the backend


def test_the_api_goes_to_the_backend_with_the_client_address_and_keeps_the_security_headers(proxy: Proxy) -> None:
    response = httpx.get(f"{proxy.url}/api/v1/tickets?status=espera", headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 200 and response.json() == {"path": "/api/v1/tickets?status=espera"}
    assert _has_security_headers(response)
    method, path, headers = proxy.stub.seen[-1]
    assert (method, path) == ("GET", "/api/v1/tickets?status=espera")
    assert headers["x-real-ip"] == "127.0.0.1"
    # nginx appends the address it got the connection from (backend/auth/address.py reads the last).
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["host"] == "127.0.0.1"  # $host: the name the client asked for, without its port
    for path in ("/health/ready", "/docs", "/openapi.json"):
        assert httpx.get(f"{proxy.url}{path}").json() == {"path": path}


def test_the_websocket_upgrade_reaches_the_backend(proxy: Proxy) -> None:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13"}
    httpx.get(f"{proxy.url}/api/v1/ws?token=t", headers=headers)
    _, path, seen = proxy.stub.seen[-1]
    assert path == "/api/v1/ws?token=t"
    assert seen["upgrade"] == "websocket" and seen["connection"] == "upgrade"
    assert seen["sec-websocket-key"] == key


def test_the_websocket_token_never_reaches_the_access_log(proxy: Proxy) -> None:
    """The socket authenticates with ?token=<JWT>: a log line with it would hand a 12-hour session
    to whoever reads the logs."""
    httpx.get(f"{proxy.url}/api/v1/ws?token=SECRET-JWT-VALUE")
    deadline = time.monotonic() + 5
    while "/api/v1/ws" not in (logged := proxy.ws_log.read_text() if proxy.ws_log.exists() else ""):
        assert time.monotonic() < deadline, "the websocket request was not logged"
        time.sleep(0.05)
    assert "SECRET-JWT-VALUE" not in logged and "token=" not in logged, logged


def _head_only(proxy: Proxy, path: str, length: int) -> str:
    """Sends a POST's head announcing `length` bytes and no body: nginx refuses a body past its
    limit from Content-Length alone. Answers the status line nginx sends back."""
    host, port = proxy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n"
        conn.sendall(f"{head}Content-Length: {length}\r\n\r\n".encode())
        return conn.makefile("rb").readline().decode().strip()


def test_bodies_past_20_mb_are_refused_except_an_agents_file_up_to_101_mb(proxy: Proxy) -> None:
    mb = 1024 * 1024
    assert _head_only(proxy, "/api/v1/auth/login", 21 * mb).startswith("HTTP/1.1 413")
    assert _head_only(proxy, "/api/v1/tickets/abc/messages", 102 * mb).startswith("HTTP/1.1 413")
    before = len(proxy.stub.seen)
    # Streamed on as it arrives (proxy_request_buffering off): the backend sees the request at once.
    assert _head_only(proxy, "/api/v1/tickets/abc/messages", 100 * mb).startswith("HTTP/1.1 200")
    assert [(m, p) for m, p, _ in proxy.stub.seen[before:]] == [("POST", "/api/v1/tickets/abc/messages")]


def test_without_a_certificate_the_start_script_writes_nothing_and_the_site_stays_on_http(tmp_path: Path) -> None:
    env = {**os.environ, "IAZE_TLS_DIR": str(tmp_path / "tls"), "IAZE_TLS_CONF_DIR": str(tmp_path / "tls.d")}
    result = subprocess.run(["sh", str(TLS_SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "tls.d").iterdir()) == []
    assert "HTTP only" in result.stdout


def test_with_a_certificate_the_site_is_served_over_https_and_http_is_sent_there(tls_proxy: Proxy) -> None:
    """Seed 001: HTTPS for every communication. The image's healthcheck (/nginx-health over plain
    HTTP) and certbot's ACME challenge stay on port 80; everything else moves to https."""
    page = httpx.get(f"{tls_proxy.tls_url}/tickets/123", verify=False)
    assert page.status_code == 200 and "<title>IAZE</title>" in page.text
    assert page.headers["strict-transport-security"] == "max-age=31536000"
    assert _has_security_headers(page)
    api = httpx.get(f"{tls_proxy.tls_url}/api/v1/tickets?status=espera", verify=False)
    assert api.json() == {"path": "/api/v1/tickets?status=espera"}
    assert tls_proxy.stub.seen[-1][2]["x-forwarded-proto"] == "https"
    for path in ("/tickets/123", "/api/v1/auth/login", "/api/v1/ws?token=t"):
        moved = httpx.get(f"{tls_proxy.url}{path}")
        assert moved.status_code == 301 and moved.headers["location"] == f"https://127.0.0.1{path}", path
    assert httpx.get(f"{tls_proxy.url}/nginx-health").status_code == 200
    challenge = httpx.get(f"{tls_proxy.url}/.well-known/acme-challenge/token-1")
    assert challenge.status_code == 200 and challenge.text == "proof-1"

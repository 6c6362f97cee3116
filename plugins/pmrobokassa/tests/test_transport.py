"""The module's HTTP transport against real local servers: a proxy named by the environment is used, an
answer is read only up to its bound, and its text is decoded in the character set it declares."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import certifi
import pytest

from billcore.testing.fixtures import FAST_SHUTDOWN
from pmrobokassa import gateway, protocol

from .helpers import SETTINGS


class _Recorder(BaseHTTPRequestHandler):
    """Answers every request with the class's ``body`` and ``content_type``; records request lines."""

    protocol_version = "HTTP/1.1"
    lines: list[str] = []
    body = b""
    content_type = "text/xml"

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).lines.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.send_header("Content-Type", type(self).content_type)
        self.send_header("Content-Length", str(len(type(self).body)))
        self.end_headers()
        self.wfile.write(type(self).body)

    do_GET = do_POST = _answer  # noqa: N815 - http.server's naming

    def log_message(self, *args):
        pass


@pytest.fixture
def server(app) -> Iterator[ThreadingHTTPServer]:
    """A local HTTP/1.1 server answering "no operation" to everything (change ``_Recorder.body``)."""
    _Recorder.lines = []
    _Recorder.body = protocol.build_opstate_xml(protocol.OpState(result_code=3, description="no operation")).encode()
    _Recorder.content_type = "text/xml"
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=httpd.serve_forever, kwargs=FAST_SHUTDOWN, daemon=True).start()
    gateway.close_http_pools()
    try:
        yield httpd
    finally:
        gateway.close_http_pools()
        httpd.shutdown()
        httpd.server_close()


def test_a_call_goes_through_the_proxy_the_environment_names(server, monkeypatch):
    for name in ("http_proxy", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.server_port}")
    settings = {**SETTINGS, "url": "http://robokassa.invalid/rk/Merchant/Index.aspx"}
    assert gateway.op_state(settings, 5).result_code == 3  # answered by the proxy: the name never resolved
    [line] = _Recorder.lines
    assert line.startswith("POST http://robokassa.invalid/rk/") and line.endswith("/OpStateExt"), line


def test_an_answer_over_the_bound_is_refused_unread(server, monkeypatch):
    monkeypatch.setattr(gateway, "ANSWER_MAX", 1000)
    _Recorder.body = b"<" + b"x" * 5000 + b">"
    settings = {**SETTINGS, "url": f"http://127.0.0.1:{server.server_port}/rk/Merchant/Index.aspx"}
    with pytest.raises(gateway.GatewayUnavailable) as refused:
        gateway.op_state(settings, 5)
    assert "over 1000 bytes" in str(refused.value) and refused.value.sent  # it was sent: it may have acted
    _Recorder.body = b"OK5"
    _Recorder.content_type = "text/plain"
    # the connection left with an unread rest was not reused: the next call still gets its own answer
    assert gateway.recurring(settings, {"InvoiceID": "5"}, payment_id=5) == "OK5"


def test_the_answer_is_read_in_its_declared_character_set(server):
    _Recorder.body = "ERROR: подпись неверна (29)".encode("cp1251")
    _Recorder.content_type = "text/plain; charset=windows-1251"
    settings = {**SETTINGS, "url": f"http://127.0.0.1:{server.server_port}/rk/Merchant/Index.aspx"}
    assert gateway.recurring(settings, {"InvoiceID": "5"}, payment_id=5) == "ERROR: подпись неверна (29)"
    _Recorder.content_type = "text/plain; charset=no-such-charset"  # unknown: read as UTF-8, never a crash
    assert gateway.recurring(settings, {"InvoiceID": "5"}, payment_id=5).startswith("ERROR: ")


def _clear_proxies(monkeypatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy",
                 "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)


def test_a_proxy_without_a_scheme_is_taken_as_http(server, monkeypatch):
    _clear_proxies(monkeypatch)
    monkeypatch.setenv("http_proxy", f"127.0.0.1:{server.server_port}")
    settings = {**SETTINGS, "url": "http://robokassa.invalid/rk/Merchant/Index.aspx"}
    assert gateway.op_state(settings, 5).result_code == 3
    assert _Recorder.lines[0].startswith("POST http://robokassa.invalid/")


def test_no_proxy_with_a_network_goes_direct(server, monkeypatch):
    _clear_proxies(monkeypatch)
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("no_proxy", "127.0.0.0/8")
    settings = {**SETTINGS, "url": f"http://127.0.0.1:{server.server_port}/rk/Merchant/Index.aspx"}
    assert gateway.op_state(settings, 5).result_code == 3
    assert _Recorder.lines[0].startswith("POST /rk/")  # asked directly, not through a proxy


@pytest.mark.parametrize("proxy", ["socks5://user:proxy-secret@127.0.0.1:1080",  # no SOCKS in urllib3 alone
                                   "http://user:proxy-secret@127.0.0.1:99999"],  # urllib3 quotes it whole
                         ids=["socks", "bad-port"])
def test_a_proxy_that_cannot_be_used_fails_the_call_as_never_sent(server, monkeypatch, proxy):
    _clear_proxies(monkeypatch)
    monkeypatch.setenv("http_proxy", proxy)
    settings = {**SETTINGS, "url": "http://robokassa.invalid/rk/Merchant/Index.aspx"}
    with pytest.raises(gateway.GatewayUnavailable) as failed:
        gateway.op_state(settings, 5)
    assert failed.value.sent is False and not _Recorder.lines
    assert "proxy-secret" not in str(failed.value)  # the message may reach the log and the history


def test_a_ca_bundle_folder_is_used_as_a_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path))
    assert gateway._ca_options() == {"ca_cert_dir": str(tmp_path)}
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    assert gateway._ca_options() == {"ca_certs": str(bundle)}
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert gateway._ca_options() == {"ca_certs": certifi.where()}

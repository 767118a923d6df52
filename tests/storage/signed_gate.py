"""A loopback gate that checks signed URLs the way GCS and S3 do, in front of an emulator.

Neither emulator checks a signed URL: gcp-storage-emulator and moto serve ``GET /bucket/key``
whatever the query string holds (read in their sources: no ``X-Goog-*`` or ``X-Amz-Expires``
handling). So a test that only fetched from them would prove nothing about signatures or expiry.
This gate plays the store's part: it recomputes the V4 string-to-sign from the request, verifies
the signature (GCS: RSA-SHA256 with the service account's public key; S3: HMAC-SHA256 with the
secret key), refuses an expired link (``X-Goog-Date``/``X-Amz-Date`` + expiry), and only then
forwards the GET to the emulator. Anything else gets 403 with the reason.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit


class SignedGate:
    """``GET`` of a signed link, checked, then served from ``upstream`` (the emulator that was signed for)."""

    def __init__(
        self,
        upstream: str,
        *,
        gcs_public_key=None,
        s3_secret: str | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.upstream = upstream.rstrip("/")
        self.host = urlsplit(upstream).netloc  # the host the link was signed for
        self.gcs_public_key = gcs_public_key
        self.s3_secret = s3_secret
        self.clock = clock
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server name
                reason = gate.check(self.path)
                if reason:
                    self._answer(403, reason.encode())
                    return
                try:
                    # The link as signed (moto refuses an anonymous GET of a private bucket).
                    with urllib.request.urlopen(gate.upstream + self.path, timeout=10) as r:
                        self._answer(200, r.read())
                except urllib.error.HTTPError as exc:
                    self._answer(exc.code, exc.read())

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the gate."""
        self.server.shutdown()
        self.server.server_close()

    def via(self, link: str) -> str:
        """``link`` sent to the gate instead of the emulator (same path and query)."""
        parts = urlsplit(link)
        gate = urlsplit(self.url)
        return urlunsplit((gate.scheme, gate.netloc, parts.path, parts.query, ""))

    # ------------------------------------------------------------------ checks
    def check(self, raw_path: str) -> str:
        """Why the request must be refused ("" = it may pass)."""
        path, _, query = raw_path.partition("?")
        params = dict(parse_qsl(query, keep_blank_values=True))
        if "X-Goog-Signature" in params:
            return self._check_gcs(path, params)
        if "X-Amz-Signature" in params:
            return self._check_s3(path, params)
        return "not signed: the store is private"

    def _expired(self, stamp: str, expires: str) -> str:
        signed = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
        if self.clock() > signed + int(expires):
            return f"expired: signed {stamp}, valid {expires} s"
        return ""

    def _check_gcs(self, path: str, params: dict[str, str]) -> str:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        signature = params.pop("X-Goog-Signature")
        query = "&".join(sorted(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in params.items()))
        canonical = "\n".join(["GET", path, query, f"host:{self.host}\n", "host", "UNSIGNED-PAYLOAD"])
        scope = params["X-Goog-Credential"].split("/", 1)[1]
        to_sign = "\n".join(
            ["GOOG4-RSA-SHA256", params["X-Goog-Date"], scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        try:
            self.gcs_public_key.verify(
                bytes.fromhex(signature), to_sign.encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except (InvalidSignature, ValueError):
            return "signature does not match"
        return self._expired(params["X-Goog-Date"], params["X-Goog-Expires"])

    def _check_s3(self, path: str, params: dict[str, str]) -> str:
        signature = params.pop("X-Amz-Signature")
        query = "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items())
        )
        canonical = "\n".join(["GET", path, query, f"host:{self.host}\n", "host", "UNSIGNED-PAYLOAD"])
        scope = params["X-Amz-Credential"].split("/", 1)[1]
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", params["X-Amz-Date"], scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        day, region, service, _ = scope.split("/")
        key = ("AWS4" + (self.s3_secret or "")).encode()
        for part in (day, region, service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return "signature does not match"
        return self._expired(params["X-Amz-Date"], params["X-Amz-Expires"])

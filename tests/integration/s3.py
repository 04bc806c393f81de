"""A real S3-compatible server for the cloud sink's tests: @20minutes/s3rver
(tests/servers, installed by `make servers`), which checks SigV4 signatures,
on a free loopback port, and a small client that lists and downloads what
the sink uploaded, signing its requests with SigV4 itself (an independent
implementation of what libcurl does for the sink)."""
import datetime
import gzip
import hashlib
import hmac
import json
import os
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

from conftest import ROOT, ServerProcess, free_port

SERVERS = ROOT / "tests" / "servers"
REGION = "us-east-1"
EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def _sign(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


class S3Server:
    def __init__(self, tmp: Path, bucket="ingest", key_id="AKIDTEST", secret="s3cr3t-test-key", tls=None):
        """tls: (key.pem, cert.pem) to serve HTTPS."""
        script = SERVERS / "s3rver.js"
        assert (SERVERS / "node_modules" / "@20minutes" / "s3rver").exists(), \
            "the test S3 server is not installed: run `make servers`"
        self.script = script
        self.dir = tmp / "s3"
        self.log = tmp / "s3rver.log"
        self.port = free_port()
        self.bucket = bucket
        self.key_id, self.secret = key_id, secret
        self.tls = tls
        self.endpoint = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.server = ServerProcess(self.log, "s3rver")

    def start(self):
        tls = {"S3RVER_TLS_KEY": str(self.tls[0]), "S3RVER_TLS_CERT": str(self.tls[1])} if self.tls else {}
        # its continuation tokens use a cipher OpenSSL 3 keeps in the legacy
        # provider: without it a listing past 1000 keys is a 500
        self.server.spawn(["node", "--openssl-legacy-provider", self.script, self.dir, self.port, self.bucket,
                           f"{self.key_id}:{self.secret}"], "listening on", env={**os.environ, **tls})
        return self

    def kill(self):
        """SIGKILL, as a crash or a pulled cable would end it."""
        self.server.kill()

    stop = kill

    def puts(self):
        """Objects the server stored (a PUT of a key it had counts again),
        as its log says."""
        return self.log.read_text(errors="replace").count('Stored object "') if self.log.exists() else 0

    # -- a client, signing with SigV4 --
    def request(self, method, path, query=(), body=b""):
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        host = f"127.0.0.1:{self.port}"
        canon_path = urllib.parse.quote(path, safe="/-_.~")
        qs = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
                      for k, v in sorted(query))
        payload = hashlib.sha256(body).hexdigest()
        headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
        signed = ";".join(sorted(headers))
        canon = "\n".join([method, canon_path, qs, *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed,
                           payload])
        scope = f"{day}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canon.encode()).hexdigest()])
        k = _sign(_sign(_sign(_sign(("AWS4" + self.secret).encode(), day), REGION), "s3"), "aws4_request")
        sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.key_id}/{scope}, SignedHeaders={signed}, "
                                    f"Signature={sig}")
        url = f"{self.endpoint}{canon_path}" + (f"?{qs}" if qs else "")
        req = urllib.request.Request(url, data=body or None, method=method, headers=headers)
        ctx = None
        if self.tls:
            import ssl
            ctx = ssl.create_default_context(cafile=str(self.tls[1]))
        try:
            with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def keys(self, prefix=""):
        """Every object key in the bucket (ListObjectsV2, all pages)."""
        out, token = [], None
        while True:
            q = [("list-type", "2"), ("prefix", prefix)] + ([("continuation-token", token)] if token else [])
            status, body = self.request("GET", f"/{self.bucket}", q)
            assert status == 200, f"list: HTTP {status}: {body[:300]!r}"
            root = ET.fromstring(body)
            tag = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
            out += [c.find(f"{tag}Key").text for c in root.findall(f"{tag}Contents")]
            if (root.findtext(f"{tag}IsTruncated") or "false") != "true":
                return out
            token = root.findtext(f"{tag}NextContinuationToken")

    def get(self, key):
        status, body = self.request("GET", f"/{self.bucket}/{key}")
        assert status == 200, f"get {key}: HTTP {status}: {body[:300]!r}"
        return body

    def objects(self, prefix=""):
        """{key: [record dicts]}: every object downloaded, gunzip'd, parsed."""
        return {k: [json.loads(line) for line in gzip.decompress(self.get(k)).splitlines()]
                for k in self.keys(prefix)}

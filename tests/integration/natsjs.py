"""Real NATS servers for the nats sink's tests: nats-server -js (Debian's
package), one or a 3-node JetStream cluster on free loopback ports, and a
small client that speaks the NATS text protocol itself to read a stream
back through the JetStream API ($JS.API.STREAM.INFO / MSG.GET)."""
import base64
import json
import socket
from pathlib import Path

from conftest import ServerProcess, free_port, wait_for


class NatsServer:
    def __init__(self, tmp: Path, name="n1", port=None, cluster_port=None, routes=(), extra=()):
        self.tmp, self.name = tmp, name
        self.extra = list(extra)
        self.port = port or free_port()
        self.cluster_port = cluster_port
        self.routes = list(routes)
        self.dir = tmp / f"nats-{name}"
        self.log = tmp / f"nats-{name}.log"
        self.url = f"nats://127.0.0.1:{self.port}"
        self.server = ServerProcess(self.log, f"nats-server {name}")

    def start(self):
        args = ["nats-server", "-js", "-sd", self.dir, "-a", "127.0.0.1", "-p", self.port, "-n", self.name]
        if self.cluster_port:
            args += ["--cluster_name", "ingest-test", "--cluster", f"nats://127.0.0.1:{self.cluster_port}",
                     "--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
        self.server.spawn(args + self.extra, "Server is ready")
        return self

    def kill(self):
        self.server.kill()


def cluster(tmp: Path, n=3):
    """n servers routed to each other, started; JetStream meta leader
    elected (a stream can be created)."""
    ports = [free_port() for _ in range(n)]
    cports = [free_port() for _ in range(n)]
    servers = [NatsServer(tmp, f"n{i + 1}", ports[i], cports[i], [c for j, c in enumerate(cports) if j != i])
               for i in range(n)]

    def leader():
        # until a meta leader is elected, the request goes unanswered
        c = Client(servers[0].port)
        try:
            return c.request("$JS.API.INFO", b"", timeout=1).get("error") is None
        except (TimeoutError, socket.timeout):
            return False
        finally:
            c.close()
    try:
        for s in servers:
            s.start()
        wait_for(leader, 60, "a JetStream meta leader", interval=0.2)
    except BaseException:
        for s in servers:   # the fixture's teardown never runs for a failed setup
            s.kill()
        raise
    return servers


class Client:
    """Just enough NATS: CONNECT, SUB, PUB, one request at a time."""

    def __init__(self, port, auth=None):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self._line()   # INFO
        conn = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True}
        if isinstance(auth, dict):
            conn.update(auth)              # {"auth_token": ...}
        elif auth:
            conn.update(user=auth[0], **{"pass": auth[1]})
        self.s.sendall(b"CONNECT " + json.dumps(conn).encode() + b"\r\n")
        self.s.sendall(b"SUB _INBOX.t.* 1\r\nPING\r\n")
        while self._line() != b"PONG":
            pass
        self.n = 0

    def close(self):
        self.s.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise ConnectionError("the NATS server closed the connection")
            self.buf += d
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _take(self, n):
        while len(self.buf) < n + 2:
            d = self.s.recv(65536)
            if not d:
                raise ConnectionError("the NATS server closed the connection")
            self.buf += d
        b, self.buf = self.buf[:n], self.buf[n + 2:]
        return b

    def request(self, subject, payload=b"", timeout=10):
        """The JSON answer of a JetStream API request."""
        self.n += 1
        inbox = f"_INBOX.t.{self.n}"
        self.s.settimeout(timeout)
        self.s.sendall(f"PUB {subject} {inbox} {len(payload)}\r\n".encode() + payload + b"\r\n")
        while True:
            line = self._line()
            if line == b"PING":
                self.s.sendall(b"PONG\r\n")
                continue
            parts = line.split()
            if parts[:1] == [b"MSG"]:
                body = self._take(int(parts[-1]))
            elif parts[:1] == [b"HMSG"]:
                total = self._take(int(parts[-1]))
                hl = int(parts[-2])
                if b"503" in total[:hl]:
                    return {"error": {"code": 503, "description": "no responders"}}
                body = total[hl:]
            else:
                continue
            if parts[1].decode() == inbox:
                return json.loads(body) if body else {}


def parse_headers(raw: bytes):
    lines = raw.decode().split("\r\n")
    out = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def stream_messages(port, stream="INGEST", auth=None):
    """Every message of the stream, in stream order: dicts of subject, seq,
    headers and data (bytes)."""
    c = Client(port, auth)
    try:
        info = c.request(f"$JS.API.STREAM.INFO.{stream}")
        assert "error" not in info, info
        st = info["state"]
        out = []
        for seq in range(st["first_seq"], st["last_seq"] + 1) if st["messages"] else ():
            r = c.request(f"$JS.API.STREAM.MSG.GET.{stream}", json.dumps({"seq": seq}).encode())
            if "error" in r:
                continue   # deleted
            m = r["message"]
            out.append({"subject": m["subject"], "seq": m["seq"], "data": base64.b64decode(m.get("data", "")),
                        "headers": parse_headers(base64.b64decode(m["hdrs"])) if m.get("hdrs") else {}})
        return info, out
    finally:
        c.close()


def _crc16(data: bytes) -> int:
    """CRC-16/XMODEM, the check NKeys end with."""
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = (crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1
            crc &= 0xffff
    return crc


def _nkey(prefix):
    """(public "O/A/U...", seed "S...", private key) of a new NKey:
    ed25519, base32 of prefix, key and CRC-16."""
    import base64 as b32
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    k = Ed25519PrivateKey.generate()
    raw = k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    pub = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    seed = 18 << 3

    def enc(b):
        return b32.b32encode(b + _crc16(b).to_bytes(2, "little")).decode().rstrip("=")
    return enc(bytes([prefix]) + pub), enc(bytes([seed | prefix >> 5, (prefix & 31) << 3]) + raw), k


def _jwt(claims, signer):
    import base64 as b64
    import hashlib
    import time as t

    def u(b):
        return b64.urlsafe_b64encode(b).decode().rstrip("=")
    claims = {"iat": int(t.time()), **claims}
    claims["jti"] = base64.b32encode(hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()) \
        .decode().rstrip("=")
    body = u(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode()) + "." + u(json.dumps(claims).encode())
    return body + "." + u(signer.sign(body.encode()))


def operator_setup(tmp: Path):
    """An operator, an account with JetStream and a user, as nsc would make
    them: (server config text, user .creds file text)."""
    op_pub, _, op_k = _nkey(14 << 3)
    acc_pub, _, acc_k = _nkey(0)
    usr_pub, usr_seed, _ = _nkey(20 << 3)
    op = _jwt({"iss": op_pub, "sub": op_pub, "name": "op", "nats": {"type": "operator", "version": 2}}, op_k)
    lim = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True, "conn": -1,
           "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}
    acc = _jwt({"iss": op_pub, "sub": acc_pub, "name": "ingest",
                "nats": {"limits": lim, "default_permissions": {"pub": {}, "sub": {}}, "type": "account",
                         "version": 2}}, op_k)
    usr = _jwt({"iss": acc_pub, "sub": usr_pub, "name": "node",
                "nats": {"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user",
                         "version": 2}}, acc_k)
    sys_pub, _, _ = _nkey(0)   # JetStream wants a system account
    sys_acc = _jwt({"iss": op_pub, "sub": sys_pub, "name": "SYS",
                    "nats": {"limits": {k: v for k, v in lim.items() if not k.endswith(("storage", "streams",
                                                                                         "consumer"))},
                             "type": "account", "version": 2}}, op_k)
    (tmp / "op.jwt").write_text(op)
    conf = (f"operator: {tmp / 'op.jwt'}\nsystem_account: {sys_pub}\nresolver: MEMORY\n"
            f"resolver_preload: {{ {acc_pub}: {acc}, {sys_pub}: {sys_acc} }}\n")
    creds = (f"-----BEGIN NATS USER JWT-----\n{usr}\n------END NATS USER JWT------\n\n"
             f"-----BEGIN USER NKEY SEED-----\n{usr_seed}\n------END USER NKEY SEED------\n")
    return conf, creds


def nkey_user():
    """A new NKey user: (public key "U...", seed "SU..."), as nk -gen user
    makes them."""
    return _nkey(20 << 3)[:2]

"""mi_client — wire protocol v1 in pure Python (stdlib only), for tests and gateways.

Frames are a 36-byte little-endian header plus payload (see DESIGN.md,
"Wire protocol v1"):

    magic "MI" | version u8 | type u8 | flags u16 | topic u16 | len u32 |
    pcrc u32 | seq u64 | ts_ns u64 | hcrc u32 (CRC-32 of bytes 0..31)

Typical use::

    with Client("127.0.0.1", 7400, "dev-1") as c:
        last = c.hello()                       # WELCOME seq: last durable seq
        acked, nacks = c.send_and_wait_acks([(last + 1, b"x"), (last + 2, b"y")])

Keys mode (``[auth] mode = keys``): give the device's 32-byte key (and its
fingerprint if the registry holds one); hello() then answers the CHALLENGE
with AUTH and checks the server's proof in WELCOME::

    Client("127.0.0.1", 7400, "dev-1", key=base64.b64decode(line)).hello()

Per-frame MACs (keys mode, flags bit 1): after hello(), ``send_data(seq,
data, mac=True)`` or ``send_and_wait_acks(frames, mac=True)`` append the
16-byte MAC keyed with ``Client.session_key``; encode_data_mac() builds one.

Sealed frames (keys mode, flags bit 2): ``send_data(seq, data, seal=True)``
encrypts with XChaCha20-Poly1305 under the session key; that one needs
libsodium (loaded with ctypes), everything else is the standard library.

UDP (one DATA frame per datagram, no handshake): encode_udp(device, seq,
data) builds the datagram; in keys mode pass key= (the device key itself).

encode_frame() takes overrides (magic, version, length, pcrc, hcrc) so tests
can build malformed frames; Client.send_raw() writes arbitrary bytes.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import select
import socket
import struct
import time
import zlib
from dataclasses import dataclass

HDR = struct.Struct("<2sBBHHIIQQI")
HDR_LEN = HDR.size  # 36
MAGIC = b"MI"
VERSION = 1
MAX_FRAME_CAP = 16 << 20

HELLO, CHALLENGE, AUTH, WELCOME, DATA, ACK, NACK, PING, PONG, BYE = range(1, 11)
TYPE_NAMES = {HELLO: "HELLO", CHALLENGE: "CHALLENGE", AUTH: "AUTH", WELCOME: "WELCOME",
              DATA: "DATA", ACK: "ACK", NACK: "NACK", PING: "PING", PONG: "PONG", BYE: "BYE"}

F_FPR, F_MAC, F_SEALED = 1, 2, 4

NACK_CRC, NACK_TOO_LARGE, NACK_SEQ, NACK_TOPIC, NACK_AUTH_FAILED, NACK_NOT_AUTH, \
    NACK_OVERLOADED, NACK_MALFORMED = range(1, 9)
NACK_NAMES = {NACK_CRC: "bad checksum", NACK_TOO_LARGE: "too large", NACK_SEQ: "bad sequence",
              NACK_TOPIC: "topic not allowed", NACK_AUTH_FAILED: "authentication failed",
              NACK_NOT_AUTH: "not authenticated", NACK_OVERLOADED: "overloaded",
              NACK_MALFORMED: "malformed"}


class ProtocolError(Exception):
    """The peer sent bytes that break framing."""


class ConnectionClosed(Exception):
    """The peer closed the connection."""


class AuthError(Exception):
    """The server's proof in WELCOME is wrong: it does not hold the device key."""


class NackError(Exception):
    """A NACK answered the handshake."""

    def __init__(self, frame: "Frame"):
        self.frame = frame
        self.code, self.reason = parse_nack(frame.payload)
        super().__init__(f"NACK seq {frame.seq}: {self.code} "
                         f"{NACK_NAMES.get(self.code, 'unknown')}: {self.reason}")


@dataclass
class Frame:
    type: int
    flags: int
    topic: int
    seq: int
    ts_ns: int
    payload: bytes
    pcrc_ok: bool = True

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.type, f"type {self.type}")


def encode_frame(type: int, payload: bytes = b"", seq: int = 0, topic: int = 0,
                 ts_ns: int = 0, flags: int = 0, *, magic: bytes = MAGIC,
                 version: int = VERSION, length: int | None = None,
                 pcrc: int | None = None, hcrc: int | None = None) -> bytes:
    """One frame; the keyword-only overrides build malformed ones."""
    payload = bytes(payload)
    h = HDR.pack(magic, version, type, flags, topic,
                 len(payload) if length is None else length,
                 zlib.crc32(payload) if pcrc is None else pcrc, seq, ts_ns, 0)[:32]
    return h + struct.pack("<I", zlib.crc32(h) if hcrc is None else hcrc) + payload


MAC_LEN = 16


def frame_mac(session_key: bytes, header: bytes, data: bytes) -> bytes:
    """Per-frame MAC (DATA flags bit 1): keyed BLAKE2b-128 over header bytes
    0..11 and 16..31 (all but pcrc and hcrc) followed by the data."""
    return hashlib.blake2b(bytes(header[:12]) + bytes(header[16:32]) + bytes(data),
                           key=session_key, digest_size=MAC_LEN).digest()


def encode_data_mac(session_key: bytes, seq: int, data: bytes, topic: int = 0, ts_ns: int = 0,
                    flags: int = 0, *, mac: bytes | None = None, pcrc: int | None = None,
                    length: int | None = None) -> bytes:
    """A DATA frame ending with its MAC: len and pcrc count the MAC as payload,
    the MAC covers the header fields but the two CRCs, then data.  mac, pcrc
    and length override what is computed (tests: bad MACs, short frames)."""
    data = bytes(data)
    flags |= F_MAC
    ln = len(data) + MAC_LEN if length is None else length
    h = HDR.pack(MAGIC, VERSION, DATA, flags, topic, ln, 0, seq, ts_ns, 0)
    m = frame_mac(session_key, h, data) if mac is None else mac
    payload = data + m
    return encode_frame(DATA, payload, seq, topic, ts_ns, flags, length=ln,
                        pcrc=zlib.crc32(payload) if pcrc is None else pcrc)


def encode_udp(device: str | bytes, seq: int, data: bytes, key: bytes | None = None, topic: int = 0,
               ts_ns: int = 0, *, flags: int = 0, mac: bytes | None = None,
               pcrc: int | None = None) -> bytes:
    """One UDP datagram (docs/PROTOCOL.md, UDP): a DATA frame whose payload is
    u8 id_len || device id || data.  With key (keys mode: the device's 32-byte
    key) flags bit 1 is set and the payload ends with the MAC keyed with that
    key over the header and id_len || id || data.  flags, mac and pcrc
    override what is computed (tests: malformed or forged datagrams)."""
    dev = device.encode() if isinstance(device, str) else bytes(device)
    body = bytes([len(dev)]) + dev + bytes(data)
    if key is None:
        if mac is not None:
            raise ValueError("mac= needs key= (a datagram without a key carries no MAC)")
        return encode_frame(DATA, body, seq, topic, ts_ns, flags, pcrc=pcrc)
    if len(key) != 32:
        raise ValueError("key must be 32 bytes")
    return encode_data_mac(key, seq, body, topic, ts_ns, flags, mac=mac, pcrc=pcrc)


_sodium = None


def _libsodium():
    """libsodium through ctypes: the standard library has no XChaCha20-Poly1305."""
    global _sodium
    if _sodium is None:
        import ctypes
        import ctypes.util
        name = ctypes.util.find_library("sodium") or "libsodium.so.23"
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:
            raise RuntimeError(f"sealed frames need libsodium ({name}): {e}") from e
        if lib.sodium_init() < 0:
            raise RuntimeError("libsodium failed to initialise")
        _sodium = lib
    return _sodium


def seal_payload(session_key: bytes, server_nonce: bytes, header: bytes, data: bytes) -> bytes:
    """XChaCha20-Poly1305 of data (docs/PROTOCOL.md, Sealed DATA): nonce = the
    session's 16-byte server nonce || seq (u64 LE, from the header), associated
    data = header bytes 0..11 and 16..31.  Returns ciphertext || 16-byte tag."""
    import ctypes
    lib = _libsodium()
    nonce = bytes(server_nonce) + bytes(header[16:24])
    ad = bytes(header[:12]) + bytes(header[16:32])
    out = ctypes.create_string_buffer(len(data) + MAC_LEN)
    olen = ctypes.c_ulonglong(0)
    r = lib.crypto_aead_xchacha20poly1305_ietf_encrypt(
        out, ctypes.byref(olen), bytes(data), ctypes.c_ulonglong(len(data)), ad,
        ctypes.c_ulonglong(len(ad)), None, nonce, bytes(session_key))
    if r != 0:
        raise RuntimeError("crypto_aead_xchacha20poly1305_ietf_encrypt failed")
    return out.raw[:olen.value]


def encode_data_sealed(session_key: bytes, server_nonce: bytes, seq: int, data: bytes, topic: int = 0,
                       ts_ns: int = 0, flags: int = 0) -> bytes:
    """A sealed DATA frame (flags bit 2): len = data + 16, pcrc over the
    sealed payload."""
    data = bytes(data)
    flags |= F_SEALED
    ln = len(data) + MAC_LEN
    h = HDR.pack(MAGIC, VERSION, DATA, flags, topic, ln, 0, seq, ts_ns, 0)
    return encode_frame(DATA, seal_payload(session_key, server_nonce, h, data), seq, topic, ts_ns, flags)


def decode_header(buf: bytes) -> tuple:
    """(type, flags, topic, len, pcrc, seq, ts_ns) of a checked 36-byte header."""
    magic, ver, typ, flags, topic, ln, pcrc, seq, ts, hcrc = HDR.unpack_from(buf)
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {magic!r}")
    if ver != VERSION:
        raise ProtocolError(f"unsupported version {ver}")
    if zlib.crc32(bytes(buf[:32])) != hcrc:
        raise ProtocolError("bad header checksum")
    if ln > MAX_FRAME_CAP:
        raise ProtocolError(f"length {ln} above the 16 MiB cap")
    return typ, flags, topic, ln, pcrc, seq, ts


class Decoder:
    """Incremental: feed() any split of the stream, get whole frames back."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self.buf += data
        out = []
        while len(self.buf) >= HDR_LEN:
            typ, flags, topic, ln, pcrc, seq, ts = decode_header(self.buf)
            if len(self.buf) < HDR_LEN + ln:
                break
            pl = bytes(self.buf[HDR_LEN:HDR_LEN + ln])
            del self.buf[:HDR_LEN + ln]
            out.append(Frame(typ, flags, topic, seq, ts, pl, zlib.crc32(pl) == pcrc))
        return out


def hello_payload(device: str | bytes, nonce: bytes | None = None,
                  fingerprint: bytes | None = None) -> bytes:
    dev = device.encode() if isinstance(device, str) else bytes(device)
    nonce = os.urandom(16) if nonce is None else nonce
    return bytes([len(dev)]) + dev + nonce + (fingerprint or b"")


def parse_nack(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a NACK payload: u16 code + UTF-8 reason."""
    if len(payload) < 2:
        return 0, ""
    return struct.unpack_from("<H", payload)[0], payload[2:].decode("utf-8", "replace")


def parse_welcome(payload: bytes) -> tuple[int, bytes]:
    """(max_frame, server proof) of a WELCOME payload."""
    if len(payload) < 4:
        raise ProtocolError(f"WELCOME payload of {len(payload)} bytes")
    return struct.unpack_from("<I", payload)[0], payload[4:36]


def keyed_hash(key: bytes, *parts: bytes) -> bytes:
    """Keyed BLAKE2b-256 of the concatenated parts (libsodium crypto_generichash)."""
    return hashlib.blake2b(b"".join(parts), key=key, digest_size=32).digest()


def auth_proof(key: bytes, label: bytes, server_nonce: bytes, client_nonce: bytes,
               device: str | bytes, fingerprint: bytes | None = None) -> bytes:
    """label (b"MI1-auth" or b"MI1-srv") || nonces || device id || fingerprint."""
    dev = device.encode() if isinstance(device, str) else bytes(device)
    return keyed_hash(key, label, server_nonce, client_nonce, dev, fingerprint or b"")


def session_key(key: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return keyed_hash(key, b"MI1-sess", server_nonce, client_nonce)


def gen_payload(device: str, seq: int, size: int) -> bytes:
    """Payload mi-send --count gives seq: "DEVICE:SEQ;" repeated, cut to size."""
    unit = f"{device}:{seq};".encode()
    return (unit * (size // len(unit) + 1))[:size]


class Client:
    def __init__(self, host: str = "127.0.0.1", port: int = 7400, device: str = "py-dev",
                 timeout: float = 5.0, key: bytes | None = None,
                 fingerprint: bytes | None = None):
        self.host, self.port, self.device, self.timeout = host, port, device, timeout
        if key is not None and len(key) != 32:
            raise ValueError("key must be 32 bytes")
        if fingerprint is not None and len(fingerprint) != 32:
            raise ValueError("fingerprint must be 32 bytes")
        self.key, self.fingerprint = key, fingerprint
        self.session_key: bytes | None = None
        self.server_nonce: bytes | None = None
        self.auth_frame: bytes | None = None   # the AUTH bytes last sent (replay tests)
        self.sock: socket.socket | None = None
        self.dec = Decoder()
        self.pending: list[Frame] = []
        self.welcome_seq: int | None = None
        self.max_frame: int | None = None

    def __enter__(self):
        if self.sock is None:
            self.connect()
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"Client({self.host}:{self.port} device {self.device})"

    def connect(self) -> "Client":
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.dec, self.pending = Decoder(), []
        return self

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def hello(self, nonce: bytes | None = None, fingerprint: bytes | None = None,
              timeout: float | None = None) -> int:
        """HELLO then WELCOME; returns the device's last durable seq.
        With a key (keys mode) answers the CHALLENGE with AUTH and verifies
        the server proof in WELCOME (AuthError if wrong).  Raises NackError
        if refused, ProtocolError on another answer (e.g. CHALLENGE without
        a key)."""
        if self.sock is None:
            self.connect()
        fingerprint = self.fingerprint if fingerprint is None else fingerprint
        nonce = os.urandom(16) if nonce is None else nonce
        flags = F_FPR if fingerprint else 0
        self.send_raw(encode_frame(HELLO, hello_payload(self.device, nonce, fingerprint),
                                   flags=flags))
        f = self.read_frame(timeout)
        if f is None:
            raise TimeoutError(f"{self!r}: no answer to HELLO")
        if f.type == NACK:
            raise NackError(f)
        srv_nonce = None
        if f.type == CHALLENGE:
            if self.key is None:
                raise ProtocolError(f"{self!r}: server wants keys mode (CHALLENGE) but no key given")
            if len(f.payload) != 16:
                raise ProtocolError(f"{self!r}: CHALLENGE payload of {len(f.payload)} bytes")
            srv_nonce = self.server_nonce = f.payload
            proof = auth_proof(self.key, b"MI1-auth", srv_nonce, nonce, self.device, fingerprint)
            self.auth_frame = encode_frame(AUTH, proof)
            self.send_raw(self.auth_frame)
            f = self.read_frame(timeout)
            if f is None:
                raise TimeoutError(f"{self!r}: no answer to AUTH")
            if f.type == NACK:
                raise NackError(f)
        if f.type != WELCOME:
            raise ProtocolError(f"{self!r}: HELLO answered with {f.type_name}")
        if self.key is not None and srv_nonce is None:
            self.close()
            raise AuthError(f"{self!r}: WELCOME without CHALLENGE: the server does not prove "
                            "it holds the device key (server in open mode?)")
        self.max_frame, srv_proof = parse_welcome(f.payload)
        if srv_nonce is not None:
            want = auth_proof(self.key, b"MI1-srv", srv_nonce, nonce, self.device, fingerprint)
            if not hmac.compare_digest(want, srv_proof):
                self.close()
                raise AuthError(f"{self!r}: WELCOME carries a wrong server proof")
            self.session_key = session_key(self.key, srv_nonce, nonce)
        self.welcome_seq = f.seq
        return f.seq

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def send_frame(self, type: int, payload: bytes = b"", seq: int = 0, **kw):
        self.send_raw(encode_frame(type, payload, seq, **kw))

    def encode_data(self, seq: int, payload: bytes, topic: int = 0, ts_ns: int = 0,
                    flags: int = 0, mac: bool = False, seal: bool = False) -> bytes:
        """A DATA frame; mac=True appends the per-frame MAC, seal=True seals
        it (both need the session key of a keys-mode hello())."""
        if seal:
            if self.session_key is None:
                raise ValueError(f"{self!r}: seal=True needs a session key (keys-mode hello())")
            return encode_data_sealed(self.session_key, self.server_nonce, seq, payload, topic, ts_ns, flags)
        if mac:
            if self.session_key is None:
                raise ValueError(f"{self!r}: mac=True needs a session key (keys-mode hello())")
            return encode_data_mac(self.session_key, seq, payload, topic, ts_ns, flags)
        return encode_frame(DATA, payload, seq, topic, ts_ns, flags)

    def send_data(self, seq: int, payload: bytes, topic: int = 0, ts_ns: int = 0,
                  flags: int = 0, mac: bool = False, seal: bool = False):
        self.send_raw(self.encode_data(seq, payload, topic, ts_ns, flags, mac, seal))

    def read_frame(self, timeout: float | None = None) -> Frame | None:
        """Next frame from the server, or None after timeout seconds
        (default: the client's timeout).  Raises ConnectionClosed on EOF."""
        if self.pending:
            return self.pending.pop(0)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            left = max(0.0, deadline - time.monotonic())
            if not select.select([self.sock], [], [], left)[0]:
                return None   # timeout 0 still polls once
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError as e:
                raise ConnectionClosed(f"{self!r}: {e}") from e
            if not data:
                raise ConnectionClosed(f"{self!r}: closed by the server")
            self.pending += self.dec.feed(data)
            if self.pending:
                return self.pending.pop(0)

    def send_and_wait_acks(self, frames, topic: int = 0,
                           timeout: float | None = None, mac: bool = False,
                           seal: bool = False) -> tuple[int, dict]:
        """Sends frames (an iterable of (seq, payload) or dicts of send_data
        arguments) batched into few writes, then waits until an ACK covers
        the highest seq not NACKed.  Returns (highest ACK seq seen,
        {seq: (code, reason)}).  Raises TimeoutError when the ACKs do not come."""
        acked, nacks, seqs, buf = 0, {}, [], bytearray()

        def take(f):
            nonlocal acked
            if f.type == ACK:
                acked = max(acked, f.seq)
            elif f.type == NACK:
                nacks[f.seq] = parse_nack(f.payload)
            elif f.type == PING:
                self.send_frame(PONG, seq=f.seq)

        def flush():
            self.send_raw(bytes(buf))
            buf.clear()
            # read what came meanwhile so the server never blocks on our ACKs
            while (f := self.read_frame(0)) is not None:
                take(f)

        for f in frames:
            kw = dict(f) if isinstance(f, dict) else {"seq": f[0], "payload": f[1]}
            kw.setdefault("topic", topic)
            kw.setdefault("mac", mac)
            kw.setdefault("seal", seal)
            seqs.append(kw["seq"])
            if kw["mac"] or kw["seal"]:
                buf += self.encode_data(kw.pop("seq"), kw.pop("payload"), **kw)
            else:
                del kw["mac"], kw["seal"]
                buf += encode_frame(DATA, kw.pop("payload"), kw.pop("seq"), **kw)
            if len(buf) >= 256 << 10:
                flush()
        flush()
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            want = max((s for s in seqs if s not in nacks), default=0)
            if acked >= want:
                return acked, nacks
            f = self.read_frame(max(0.0, deadline - time.monotonic()))
            if f is None:
                raise TimeoutError(f"{self!r}: ACK {acked} < seq {want} after waiting")
            take(f)

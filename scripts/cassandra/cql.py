#!/usr/bin/env python3
"""Minimal CQL client (native protocol v4, standard library only) for scripts/cassandra.sh.

    cql.py [--host H] [--port P] [--timeout S] [--quiet] [-e STATEMENT]...

Runs each statement (default: SELECT release_version FROM system.local) at consistency ONE and
prints result rows, one per line, columns separated by " | ". Exit status: 0 all statements
succeeded, 1 the server returned an error, 2 no usable connection (refused, timeout, not CQL).
Used as the readiness probe: a node is up when the default statement returns a row.
Works against Cassandra 3.x-5.x and ScyllaDB (all speak v4); no auth, no compression, no paging.
"""
import argparse
import datetime
import ipaddress
import socket
import struct
import sys
import uuid

VERSION = 0x04
OP_ERROR, OP_STARTUP, OP_READY, OP_AUTHENTICATE, OP_QUERY, OP_RESULT = 0x00, 0x01, 0x02, 0x03, 0x07, 0x08
CONSISTENCY_ONE = 0x0001


class ConnError(Exception):
    pass


class ServerError(Exception):
    pass


def string(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


class Reader:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, n):
        if self.pos + n > len(self.buf):
            raise ConnError("truncated frame body")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def int(self):
        return struct.unpack(">i", self.take(4))[0]

    def short(self):
        return struct.unpack(">H", self.take(2))[0]

    def string(self):
        return self.take(self.short()).decode("utf-8", "replace")

    def bytes(self):
        n = self.int()
        return None if n < 0 else self.take(n)

    def option(self):
        tid = self.short()
        if tid == 0x0000:
            return ("custom", self.string())
        if tid in (0x0020, 0x0022):
            return (tid, self.option())
        if tid == 0x0021:
            return (tid, self.option(), self.option())
        if tid == 0x0030:
            self.string(), self.string()
            return (tid, [(self.string(), self.option()) for _ in range(self.short())])
        if tid == 0x0031:
            return (tid, [self.option() for _ in range(self.short())])
        return (tid,)


def fmt(typ, v):
    """Render a value as text; types the probe does not know are shown as hex."""
    if v is None:
        return "null"
    t = typ[0]
    if t in (0x0001, 0x000D):
        return v.decode("utf-8", "replace")
    if t in (0x0002, 0x0005, 0x0009, 0x0013, 0x0014, 0x000E):
        return str(int.from_bytes(v, "big", signed=True))
    if t == 0x0004:
        return "true" if v != b"\x00" else "false"
    if t == 0x0007:
        return repr(struct.unpack(">d", v)[0])
    if t == 0x0008:
        return repr(struct.unpack(">f", v)[0])
    if t == 0x000B:
        ms = int.from_bytes(v, "big", signed=True)
        epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        return (epoch + datetime.timedelta(milliseconds=ms)).isoformat()
    if t in (0x000C, 0x000F):
        return str(uuid.UUID(bytes=v))
    if t == 0x0010:
        return str(ipaddress.ip_address(v))
    return "0x" + v.hex()


class Conn:
    def __init__(self, host, port, timeout):
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise ConnError(f"connect {host}:{port}: {e}")
        self.sock.settimeout(timeout)
        self.stream = 0

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except OSError as e:
                raise ConnError(f"recv: {e}")
            if not chunk:
                raise ConnError("connection closed by server")
            buf += chunk
        return buf

    def request(self, opcode, body):
        self.stream = (self.stream + 1) % 32768
        header = struct.pack(">BBhBi", VERSION, 0, self.stream, opcode, len(body))
        try:
            self.sock.sendall(header + body)
        except OSError as e:
            raise ConnError(f"send: {e}")
        while True:
            version, flags, stream, op, length = struct.unpack(">BBhBi", self.recv_exact(9))
            if version & 0x7F != VERSION:
                raise ConnError(f"not a CQL v4 server (response version byte {version:#x})")
            body = Reader(self.recv_exact(length))
            if stream != self.stream:  # server events (stream -1) and strays
                continue
            if flags & 0x02:  # tracing id
                body.take(16)
            if flags & 0x08:  # warnings
                for _ in range(body.short()):
                    print("warning: " + body.string(), file=sys.stderr)
            if flags & 0x04:  # custom payload
                for _ in range(body.short()):
                    body.string(), body.bytes()
            if op == OP_ERROR:
                code = body.int()
                raise ServerError(f"error {code:#06x}: {body.string()}")
            return op, body

    def startup(self):
        body = struct.pack(">H", 1) + string("CQL_VERSION") + string("3.0.0")
        op, _ = self.request(OP_STARTUP, body)
        if op == OP_AUTHENTICATE:
            raise ConnError("server requires authentication (not supported by this probe)")
        if op != OP_READY:
            raise ConnError(f"unexpected STARTUP response opcode {op:#x}")

    def query(self, cql):
        q = cql.encode()
        body = struct.pack(">i", len(q)) + q + struct.pack(">HB", CONSISTENCY_ONE, 0)
        op, r = self.request(OP_QUERY, body)
        if op != OP_RESULT:
            raise ConnError(f"unexpected QUERY response opcode {op:#x}")
        kind = r.int()
        if kind != 0x0002:  # void, set_keyspace, schema_change...
            return []
        flags, ncols = r.int(), r.int()
        if flags & 0x0002:
            r.bytes()  # paging state
        if flags & 0x0004:
            raise ConnError("rows without metadata")
        if flags & 0x0001:
            r.string(), r.string()
        types = []
        for _ in range(ncols):
            if not flags & 0x0001:
                r.string(), r.string()
            r.string()
            types.append(r.option())
        return [[fmt(t, r.bytes()) for t in types] for _ in range(r.int())]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9042)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds, per connect/response")
    ap.add_argument("--quiet", action="store_true", help="do not print rows")
    ap.add_argument("-e", "--execute", action="append", metavar="STATEMENT")
    args = ap.parse_args()
    stmts = args.execute or ["SELECT release_version FROM system.local"]
    try:
        conn = Conn(args.host, args.port, args.timeout)
        conn.startup()
        for stmt in stmts:
            rows = conn.query(stmt)
            if not args.quiet:
                for row in rows:
                    print(" | ".join(row))
            if not args.execute and not rows:
                raise ServerError("system.local returned no row")
    except ConnError as e:
        print(f"cql: {e}", file=sys.stderr)
        return 2
    except (ServerError, struct.error) as e:
        print(f"cql: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

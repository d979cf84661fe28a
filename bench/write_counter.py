"""Documents written, counted on the wire: a loopback proxy in front of the MongoDB server.

SecantusDB costs CPU per document written, and its ``top`` counts commands (a batched
``update_many`` of 25 documents is one), and it keeps no ``metrics.document`` counters. So
``bench.db_ops`` puts this proxy between the workers / dispatcher and the server and reads each
write command's reply: ``insert`` / ``delete`` → ``n``, ``update`` → ``nModified`` + upserts,
``findAndModify`` → ``lastErrorObject.n``, client-level ``bulkWrite`` → each operation's own
result. Per collection. OP_MSG only (what every current driver speaks), no compression.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections import Counter
from typing import Any

import bson

OP_MSG = 2013
WRITES = ("insert", "update", "delete", "findAndModify", "bulkWrite")


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return bytes(buf)


def _read_message(sock: socket.socket) -> bytes:
    head = _read_exact(sock, 4)
    (length,) = struct.unpack("<i", head)
    return head + _read_exact(sock, length - 4)


def _sections(message: bytes) -> tuple[int, int, dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """(requestID, responseTo, body, document sequences) of an OP_MSG; empty body otherwise."""
    _, request_id, response_to, opcode = struct.unpack("<iiii", message[:16])
    body: dict[str, Any] = {}
    seqs: dict[str, list[dict[str, Any]]] = {}
    if opcode != OP_MSG:
        return request_id, response_to, body, seqs
    (flags,) = struct.unpack("<I", message[16:20])
    end = len(message) - (4 if flags & 1 else 0)
    i = 20
    while i < end:
        kind = message[i]
        i += 1
        (size,) = struct.unpack("<i", message[i : i + 4])
        if kind == 0:
            body = bson.decode(message[i : i + size])
        else:
            chunk = message[i + 4 : i + size]
            name, _, rest = chunk.partition(b"\0")
            seqs[name.decode()] = list(bson.decode_all(rest))
        i += size
    return request_id, response_to, body, seqs


class WriteCounter:
    """A TCP proxy on 127.0.0.1 to ``target``; ``documents`` counts documents written per collection."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.documents: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.documents)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pending: dict[int, tuple[str, dict[str, Any], dict[str, list[dict[str, Any]]]]] = {}
            threading.Thread(target=self._requests, args=(client, upstream, pending), daemon=True).start()
            threading.Thread(target=self._replies, args=(upstream, client, pending), daemon=True).start()

    def _requests(self, src: socket.socket, dst: socket.socket, pending: dict[int, Any]) -> None:
        try:
            while True:
                message = _read_message(src)
                request_id, _, body, seqs = _sections(message)
                name = next(iter(body), "")
                if name in WRITES:
                    pending[request_id] = (name, body, seqs)
                dst.sendall(message)
        except (OSError, ConnectionError):
            for s in (src, dst):
                s.close()

    def _replies(self, src: socket.socket, dst: socket.socket, pending: dict[int, Any]) -> None:
        try:
            while True:
                message = _read_message(src)
                _, response_to, reply, _ = _sections(message)
                request = pending.pop(response_to, None)
                if request is not None:
                    self._count(*request, reply)
                dst.sendall(message)
        except (OSError, ConnectionError):
            for s in (src, dst):
                s.close()

    def _count(self, name: str, body: dict[str, Any], seqs: dict[str, Any], reply: dict[str, Any]) -> None:
        found: Counter[str] = Counter()
        if name == "bulkWrite":
            ns = [
                n.get("ns", "?").split(".", 1)[-1] for n in (seqs.get("nsInfo") or body.get("nsInfo") or [])
            ]
            ops = seqs.get("ops") or body.get("ops") or []
            for result in (reply.get("cursor") or {}).get("firstBatch") or []:
                op = ops[result.get("idx", 0)] if result.get("idx", 0) < len(ops) else {}
                kind = next(iter(op), "update")
                coll = ns[op[kind]] if isinstance(op.get(kind), int) and op[kind] < len(ns) else "?"
                if kind == "update":
                    found[coll] += int(result.get("nModified", 0)) + (1 if result.get("upserted") else 0)
                else:
                    found[coll] += int(result.get("n", 0))
        else:
            coll = str(body.get(name))
            if name == "update":
                found[coll] += int(reply.get("nModified", 0)) + len(reply.get("upserted") or [])
            elif name == "findAndModify":
                found[coll] += int((reply.get("lastErrorObject") or {}).get("n", 0))
            else:
                found[coll] += int(reply.get("n", 0))
        with self._lock:
            self.documents.update(found)

    def close(self) -> None:
        self._server.close()

#!/usr/bin/env python3
"""A stand-in for Kafka's bin/kafka-topics.sh, for librdkafka's test suite run against Sluice
(scripts/librdkafka_suite.sh points KAFKA_PATH here): --create (--partitions,
--replication-factor, --config k=v), --alter --partitions, --delete, each one request over the
Kafka protocol (CreateTopics v2, CreatePartitions v1, DeleteTopics v1), standard library only.
Exits non-zero with the broker's error, as kafka-topics.sh does.
"""
import argparse
import socket
import struct
import sys


def string(text):
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def nullable(text):
    return struct.pack(">h", -1) if text is None else string(text)


def call(bootstrap, api_key, version, body):
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        header = struct.pack(">hhi", api_key, version, 1) + string("kafka-topics-shim")
        frame = header + body
        sock.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", read(sock, 4))[0]
        return read(sock, size)[4:]  # after the correlation id


def read(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise SystemExit("the broker closed the connection")
        out += chunk
    return out


class Reader:
    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, fmt):
        value = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return value[0]

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        text = self.data[self.at:self.at + n].decode()
        self.at += n
        return text


def errors(reader, with_message):
    reader.take(">i")  # throttle
    failed = []
    for _ in range(reader.take(">i")):
        name = reader.string()
        code = reader.take(">h")
        message = reader.string() if with_message else None
        if code:
            failed.append(f"{name}: error {code} {message or ''}")
    return failed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap-server", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--create", action="store_true")
    parser.add_argument("--alter", action="store_true")
    parser.add_argument("--delete", action="store_true")
    parser.add_argument("--partitions", type=int, default=-1)
    parser.add_argument("--replication-factor", type=int, default=-1)
    parser.add_argument("--config", action="append", default=[])
    args = parser.parse_args()
    topic = args.topic.strip('"')
    if args.create:
        configs = [c.split("=", 1) for c in args.config]
        body = struct.pack(">i", 1) + string(topic)
        body += struct.pack(">ihi", args.partitions, args.replication_factor, 0)
        body += struct.pack(">i", len(configs))
        for name, value in configs:
            body += string(name) + nullable(value)
        body += struct.pack(">i?", 30000, False)
        failed = errors(Reader(call(args.bootstrap_server, 19, 2, body)), True)
    elif args.alter:
        body = struct.pack(">i", 1) + string(topic) + struct.pack(">ii", args.partitions, -1)
        body += struct.pack(">i?", 30000, False)
        failed = errors(Reader(call(args.bootstrap_server, 37, 1, body)), True)
    elif args.delete:
        body = struct.pack(">i", 1) + string(topic) + struct.pack(">i", 30000)
        failed = errors(Reader(call(args.bootstrap_server, 20, 1, body)), False)
    else:
        raise SystemExit("one of --create, --alter, --delete")
    if failed:
        raise SystemExit("\n".join(failed))
    print(f"Done: {topic}")


main()

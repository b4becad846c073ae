#!/usr/bin/python3
"""Request bodies and check calls for contrib/bench/api/run.sh.

    api_client.py bodies DIR TASK_UUID NAMESPACE NAME VERSION
        writes DIR/get.grpc and DIR/create.grpc (gRPC length-prefixed
        GetTaskRequest / CreateTaskRequest, as h2load -d sends them) and
        DIR/create.json (the REST TaskRequest)
    api_client.py create HOST:PORT NAMESPACE NAME VERSION
        CreateTask over gRPC; prints the new task's uuid
    api_client.py check HOST:PORT BODYFILE METHOD
        sends a body file made above with python3-grpcio, checks the status
        is OK (h2load only sees the HTTP status, not grpc-status); prints
        one line

The messages are encoded by hand (string fields only), like
contrib/bench/grpc_check.py: no protoc and no generated code.
"""
import os
import struct
import sys

import grpc


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, value):
    data = value if isinstance(value, bytes) else value.encode()
    return varint((num << 3) | 2) + varint(len(data)) + data


def fields(buf):
    """(number, wire type, value) of a message's top-level fields."""
    i = 0
    while i < len(buf):
        key, shift = 0, 0
        while True:
            b = buf[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        wire = key & 7
        if wire == 0:
            v, shift = 0, 0
            while True:
                b = buf[i]
                i += 1
                v |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            yield key >> 3, wire, v
        elif wire == 2:
            n, shift = 0, 0
            while True:
                b = buf[i]
                i += 1
                n |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            yield key >> 3, wire, buf[i:i + n]
            i += n
        elif wire == 1:
            yield key >> 3, wire, buf[i:i + 8]
            i += 8
        elif wire == 5:
            yield key >> 3, wire, buf[i:i + 4]
            i += 4
        else:
            raise ValueError("wire type %d" % wire)


def get(buf, num):
    for n, _, v in fields(buf):
        if n == num:
            return v
    return None


def grpc_frame(msg):
    return b"\0" + struct.pack(">I", len(msg)) + msg


def create_request(ns, name, version):
    # CreateTaskRequest: name = 1, namespace = 2, version = 3
    return field(1, name) + field(2, ns) + field(3, version)


PATHS = {"GetTask": "/tasker.v1.TaskService/GetTask",
         "CreateTask": "/tasker.v1.TaskService/CreateTask"}


def call(target, method, msg):
    with grpc.insecure_channel(target) as ch:
        return ch.unary_unary(PATHS[method])(msg, timeout=20)


def main(argv):
    if len(argv) == 7 and argv[1] == "bodies":
        d, task, ns, name, version = argv[2:]
        with open(os.path.join(d, "get.grpc"), "wb") as f:
            f.write(grpc_frame(field(1, task)))          # GetTaskRequest.task_uuid = 1
        with open(os.path.join(d, "create.grpc"), "wb") as f:
            f.write(grpc_frame(create_request(ns, name, version)))
        with open(os.path.join(d, "create.json"), "w") as f:
            f.write('{"name": "%s", "namespace": "%s", "version": "%s", "context": {}}'
                    % (name, ns, version))
        return 0
    if len(argv) == 6 and argv[1] == "create":
        reply = call(argv[2], "CreateTask", create_request(*argv[3:6]))
        task = get(reply, 1)                              # CreateTaskResponse.task = 1
        print(get(task, 1).decode())                      # Task.task_uuid = 1
        return 0
    if len(argv) == 5 and argv[1] == "check":
        target, path, method = argv[2:]
        with open(path, "rb") as f:
            body = f.read()
        try:
            reply = call(target, method, body[5:])
        except grpc.RpcError as e:
            print("check %s: FAIL %s %s" % (method, e.code().name, e.details()))
            return 1
        task = get(reply, 1)
        uuid = get(task, 1) if task else None
        if not uuid:
            print("check %s: FAIL no task in the reply" % method)
            return 1
        print("check %s: ok, task %s" % (method, uuid.decode()))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/python3
"""One real gRPC call to helloworld.Greeter/SayHello; checks status and reply.

usage: grpc_check.py HOST:PORT [NAME]

Uses Debian's python3-grpcio with raw bytes (no generated code): the request
is HelloRequest{name: NAME} and the reply must be HelloReply{message:
"Hello NAME"} with gRPC status OK.  Prints one line and exits 0 on success,
1 otherwise.
"""
import sys

import grpc


def encode_string_field(field, value):
    data = value.encode()
    if len(data) > 127:
        raise ValueError("name too long for this tiny encoder")
    return bytes([(field << 3) | 2, len(data)]) + data


def decode_string_field(buf, field):
    """Returns the last occurrence of a length-delimited field, or ''."""
    i, out = 0, ""
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
            while buf[i] & 0x80:
                i += 1
            i += 1
        elif wire == 2:
            n, shift = 0, 0
            while True:
                b = buf[i]
                i += 1
                n |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            if key >> 3 == field:
                out = buf[i:i + n].decode()
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
    return out


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    target = sys.argv[1]
    name = sys.argv[2] if len(sys.argv) == 3 else "world"
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary("/helloworld.Greeter/SayHello")
        try:
            reply, info = call.with_call(encode_string_field(1, name), timeout=10)
        except grpc.RpcError as err:
            print("grpc-check %s: FAIL status=%s details=%r"
                  % (target, err.code().name, err.details()))
            return 1
    message = decode_string_field(reply, 1)
    want = "Hello " + name
    code = info.code()
    if code != grpc.StatusCode.OK or message != want:
        print("grpc-check %s: FAIL status=%s message=%r (want %r)"
              % (target, code.name, message, want))
        return 1
    print("grpc-check %s: ok status=%s(%d) message=%r"
          % (target, code.name, code.value[0], message))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Builds the C++ gRPC Greeter peer (contrib/bench/cxx-greeter).
#
# usage: build-peer.sh [BUILD_DIR]
#   BUILD_DIR defaults to $BENCH_BUILD_DIR, then to contrib/bench/.build.
# Prints the path of the built binary on stdout.
#
# Needs (Debian 12): g++ make pkg-config libgrpc++-dev libprotobuf-dev
#                    protobuf-compiler protobuf-compiler-grpc
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build_dir=${1:-${BENCH_BUILD_DIR:-$here/.build}}
mkdir -p "$build_dir"
build_dir=$(cd "$build_dir" && pwd)

missing=()
for tool in g++ make pkg-config protoc grpc_cpp_plugin; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]} == 0)) && ! pkg-config --exists grpc++ protobuf; then
  missing+=("pkg-config:grpc++/protobuf")
fi
if ((${#missing[@]})); then
  echo "build-peer.sh: missing ${missing[*]}" >&2
  echo "  apt-get install g++ make pkg-config libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc" >&2
  exit 1
fi

jobs=$(nproc 2>/dev/null || echo 1)
make -s -C "$here/cxx-greeter" -j"$jobs" BUILD_DIR="$build_dir" >&2
echo "$build_dir/cxx-greeter-server"

#!/bin/sh
# Installs the Debian 12 packages needed to build tasker and run its tests.
set -e
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
	build-essential autoconf automake libtool pkg-config git ca-certificates \
	libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libprotobuf-dev \
	libssl-dev zlib1g-dev libinih-dev libcmocka-dev clang-format openssl \
	libpq-dev postgresql libyaml-dev libjansson-dev \
	libjwt-dev libmicrohttpd-dev libcurl4-openssl-dev libsystemd-dev \
	python3 python3-grpcio python3-h2 python3-protobuf python3-jwt python3-cryptography nghttp2-client \
	golang-go golang-google-grpc-dev golang-github-golang-protobuf-1-5-dev dpkg-dev \
	groff-base man-db logrotate debhelper devscripts fakeroot lintian

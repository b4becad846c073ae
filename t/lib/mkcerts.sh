#!/bin/sh
# mkcerts.sh DIR: makes a throw-away PKI for the TLS tests in DIR:
#   ca.pem, ca.key          self-signed test CA
#   server.pem, server.key  server certificate for localhost, 127.0.0.1, ::1
#   client.pem, client.key  client certificate (CN=tasker-test-client) for mTLS
# Keys are EC P-256, so this takes well under a second. Nothing here is
# meant to outlive the test run that made it.
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
dir=$1
mkdir -p "$dir"
cd "$dir"

DAYS=2
SSL="openssl"

key() {
	$SSL genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
	chmod 600 "$1"
}

# sign NAME SUBJECT EXTFILE: NAME.key, NAME.csr -> NAME.pem signed by the CA
sign() {
	$SSL req -new -key "$1.key" -subj "$2" -out "$1.csr"
	$SSL x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
		-days "$DAYS" -sha256 -extfile "$3" -out "$1.pem" 2>/dev/null
	rm -f "$1.csr" "$3"
}

key ca.key
$SSL req -x509 -new -key ca.key -subj "/CN=tasker test CA" -days "$DAYS" -sha256 \
	-addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" \
	-out ca.pem

key server.key
cat > server.ext <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
EXT
sign server "/CN=localhost" server.ext

key client.key
cat > client.ext <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
EXT
sign client "/CN=tasker-test-client" client.ext

rm -f ca.srl

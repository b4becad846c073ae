#!/usr/bin/env bash
#
# Build grpc-go's interop client and server (google.golang.org/grpc/interop/
# {client,server}) offline, from Debian's golang-google-grpc source package,
# so that integration tests can use them as real third-party gRPC peers.
#
# Usage: t/peers/build-grpc-go-interop.sh [--force] [--verify]
#   --force   rebuild even if cached binaries are up to date
#   --verify  also re-run the self-check against cached binaries
#
# Output (under ${TASKER_PEER_CACHE:-/var/cache/tasker-peers}/grpc-go/):
#   bin/interop_client, bin/interop_server
#   testdata/ca.pem, testdata/server1.pem, testdata/server1.key
#       (the certs the interop binaries use by default; server1.pem is valid
#        for *.test.google.fr, so clients need
#        --server_host_override=foo.test.google.fr)
#   testdata/x509/*.pem   (grpc-go's other test PKI, handy for mTLS tests)
#   supported-cases.txt   (every --test_case the built client knows)
#   gopath/src/google.golang.org/grpc  (the source tree; keep it: see below)
#
# The last line on stdout is the bin directory; everything else goes to stderr.
# Needs root only when packages or the deb-src entry have to be installed.

set -euo pipefail

SCRIPT="$(readlink -f "${BASH_SOURCE[0]}")"
SCRIPT_DIR="$(dirname "$SCRIPT")"
CASES_FILE="$SCRIPT_DIR/grpc-go-cases.txt"

CACHE_ROOT="${TASKER_PEER_CACHE:-/var/cache/tasker-peers}"
PEER_DIR="$CACHE_ROOT/grpc-go"
BIN_DIR="$PEER_DIR/bin"
TESTDATA_DIR="$PEER_DIR/testdata"
# Private GOPATH. The interop binaries resolve their default cert paths via
# runtime.Caller() in google.golang.org/grpc/testdata, i.e. to an absolute
# path inside this tree, so it stays in the cache rather than in a temp dir.
GOPATH_PRIV="$PEER_DIR/gopath"
GRPC_SRC="$GOPATH_PRIV/src/google.golang.org/grpc"

SRC_PKG=golang-google-grpc
DEB_SRC_FILE=/etc/apt/sources.list.d/tasker-deb-src.sources
DEB_SRC_LIST=/etc/apt/sources.list.d/tasker-deb-src.list

# Everything the build needs, all from Debian. golang-google-grpc-dev already
# depends on most of the Go libraries; they are listed so that a missing one
# is obvious here rather than as a failed import later.
PACKAGES=(
  golang-go
  golang-google-grpc-dev
  golang-github-golang-protobuf-1-5-dev
  golang-google-protobuf-dev
  golang-google-genproto-dev
  golang-golang-x-net-dev
  golang-golang-x-oauth2-dev
  golang-golang-x-oauth2-google-dev
  golang-golang-x-sys-dev
  golang-golang-x-text-dev
  golang-github-google-go-cmp-dev
  golang-google-cloud-compute-metadata-dev
  dpkg-dev # dpkg-source, used by `apt-get source` to unpack and patch
  xz-utils # the orig and debian tarballs are .tar.xz
)

log() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'build-grpc-go-interop: error: %s\n' "$*" >&2
  exit 1
}

FORCE=0
VERIFY=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    --verify) VERIFY=1 ;;
    -h | --help)
      sed -n '3,/^$/s/^# \{0,1\}//p' "$SCRIPT" >&2
      exit 0
      ;;
    *) die "unknown argument: $arg (try --help)" ;;
  esac
done

# Cached binaries are reused while they are newer than this script; editing
# the script (e.g. a new Debian version or build flag) forces a rebuild.
is_fresh() {
  local f
  for f in "$BIN_DIR/interop_client" "$BIN_DIR/interop_server"; do
    [[ -x "$f" && "$f" -nt "$SCRIPT" ]] || return 1
  done
  for f in ca.pem server1.pem server1.key; do
    [[ -s "$TESTDATA_DIR/$f" ]] || return 1
  done
}

# ---------------------------------------------------------------------------
# Packages
# ---------------------------------------------------------------------------

pkg_installed() {
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

apt_updated=0
apt_update() {
  log "apt-get update"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 ||
    die "apt-get update failed"
  apt_updated=1
}

ensure_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    pkg_installed "$p" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  ((EUID == 0)) || die "missing packages (${missing[*]}); run as root to install them"
  # Only refresh the lists when apt does not know a package (e.g. a fresh
  # container with empty /var/lib/apt/lists).
  for p in "${missing[@]}"; do
    if ! apt-cache show "$p" >/dev/null 2>&1; then
      apt_update
      break
    fi
  done
  log "installing: ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
    # Stale lists give 404s on download: refresh once and retry.
    ((apt_updated)) && die "apt-get install ${missing[*]} failed"
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
      die "apt-get install ${missing[*]} failed"
  fi
}

# ---------------------------------------------------------------------------
# deb-src entries
# ---------------------------------------------------------------------------

have_source_index() {
  [[ -n "$(apt-cache showsrc "$SRC_PKG" 2>/dev/null | head -n1)" ]]
}

# Write a deb-src twin of every enabled `Types: deb` stanza of the deb822
# files in sources.list.d (all fields, e.g. URIs/Suites/Components/Signed-By,
# copied verbatim; only the Types line changes), so no mirror is hard-coded.
write_deb822_src() {
  local f files=()
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" && "$f" != "$DEB_SRC_FILE" ]] && files+=("$f")
  done
  ((${#files[@]})) || return 1
  awk '
    function flush() {
      if (n && is_deb && !disabled) {
        if (out++) print ""
        for (i = 1; i <= n; i++) print lines[i]
      }
      n = 0; is_deb = 0; disabled = 0
    }
    FNR == 1 { flush() }
    /^[[:space:]]*$/ { flush(); next }
    /^#/ { next }
    /^Types:/ {
      # Only binary-only stanzas: one that already has deb-src needs no twin.
      is_deb = ($0 ~ /[[:space:]]deb([[:space:]]|$)/ && $0 !~ /deb-src/)
      lines[++n] = "Types: deb-src"
      next
    }
    /^Enabled:[[:space:]]*[Nn]o/ { disabled = 1 }
    { lines[++n] = $0 }
    END { flush() }
  ' "${files[@]}" >"$DEB_SRC_FILE.tmp"
  if [[ -s "$DEB_SRC_FILE.tmp" ]]; then
    mv "$DEB_SRC_FILE.tmp" "$DEB_SRC_FILE"
    log "wrote $DEB_SRC_FILE (from ${files[*]})"
    return 0
  fi
  rm -f "$DEB_SRC_FILE.tmp"
  return 1
}

# Older installs still use one-line entries in /etc/apt/sources.list.
write_legacy_src() {
  [[ -f /etc/apt/sources.list ]] || return 1
  sed -n -E 's/^[[:space:]]*deb([[:space:]])/deb-src\1/p' /etc/apt/sources.list >"$DEB_SRC_LIST.tmp"
  if [[ -s "$DEB_SRC_LIST.tmp" ]]; then
    mv "$DEB_SRC_LIST.tmp" "$DEB_SRC_LIST"
    log "wrote $DEB_SRC_LIST (from /etc/apt/sources.list)"
    return 0
  fi
  rm -f "$DEB_SRC_LIST.tmp"
  return 1
}

ensure_deb_src() {
  have_source_index && return 0
  ((EUID == 0)) || die "no deb-src entry for $SRC_PKG; run as root to add one"
  if [[ ! -f "$DEB_SRC_FILE" && ! -f "$DEB_SRC_LIST" ]]; then
    write_deb822_src || write_legacy_src ||
      die "found no 'Types: deb' entry in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list to mirror as deb-src"
  fi
  apt_update
  have_source_index ||
    die "apt still has no source package $SRC_PKG after adding deb-src entries (see $DEB_SRC_FILE)"
}

# ---------------------------------------------------------------------------
# Source
# ---------------------------------------------------------------------------

# Unpack the source package into the private GOPATH. The version is pinned to
# the installed golang-google-grpc-dev when the archive still has it, so the
# binary package and the interop sources agree.
fetch_source() {
  local dl="$1" ver tree
  ver="$(dpkg-query -W -f='${source:Version}' golang-google-grpc-dev)"
  # As root, apt drops privileges to _apt for downloads; let it write here.
  if ((EUID == 0)) && id _apt >/dev/null 2>&1; then chown _apt "$dl"; fi
  log "apt-get source $SRC_PKG=$ver"
  if ! (cd "$dl" && apt-get source -q "$SRC_PKG=$ver" >&2); then
    log "version $ver not available as source, taking the archive's current one"
    (cd "$dl" && apt-get source -q "$SRC_PKG" >&2) || die "apt-get source $SRC_PKG failed"
  fi
  tree="$(find "$dl" -mindepth 1 -maxdepth 1 -type d -name "$SRC_PKG-*" | head -n1)"
  [[ -n "$tree" && -f "$tree/interop/client/client.go" && -f "$tree/interop/server/server.go" ]] ||
    die "unpacked source in $dl has no interop/client and interop/server"
  rm -rf "$GRPC_SRC"
  mkdir -p "$(dirname "$GRPC_SRC")"
  mv "$tree" "$GRPC_SRC"
  log "grpc-go source: $(head -n1 "$GRPC_SRC/debian/changelog")"
}

# ---------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------

build() {
  local out="$1" go
  go="$(command -v go)" || die "go not found (golang-go installed?)"
  log "$("$go" version)"
  # GOPATH mode: the private tree comes first so google.golang.org/grpc (and
  # its interop packages) all come from the unpacked source, while every other
  # import resolves to Debian's /usr/share/gocode. No network is used.
  export GO111MODULE=off
  export GOPATH="$GOPATH_PRIV:/usr/share/gocode"
  export GOCACHE="$PEER_DIR/go-build-cache"
  export GOENV=off   # ignore any per-user `go env -w` settings
  export GOPROXY=off # never reach for a module proxy
  # No -trimpath: it would break the compiled-in default cert paths.
  export GOFLAGS=-buildvcs=false
  # Pure-Go net resolver and static binaries; no C compiler needed.
  export CGO_ENABLED=0
  log "building interop client and server (GOPATH=$GOPATH)"
  (cd "$GRPC_SRC" &&
    "$go" build -o "$out/interop_client" google.golang.org/grpc/interop/client >&2 &&
    "$go" build -o "$out/interop_server" google.golang.org/grpc/interop/server >&2) ||
    die "go build failed; a missing import means a Debian golang-*-dev package is missing (apt-cache search the import path)"
}

copy_testdata() {
  local td="$GRPC_SRC/testdata" f
  for f in ca.pem server1.pem server1.key; do
    [[ -s "$td/$f" ]] || die "test certificate $td/$f not found in the source"
  done
  rm -rf "$TESTDATA_DIR"
  mkdir -p "$TESTDATA_DIR/x509"
  cp "$td/ca.pem" "$td/server1.pem" "$td/server1.key" "$TESTDATA_DIR/"
  if [[ -d "$td/x509" ]]; then cp "$td"/x509/*.pem "$TESTDATA_DIR/x509/"; fi
  # The client's --test_case names, straight from its source.
  grep -oE '^[[:space:]]*case "[a-z0-9_]+":' "$GRPC_SRC/interop/client/client.go" |
    sed -E 's/.*"(.*)".*/\1/' >"$PEER_DIR/supported-cases.txt"
}

# ---------------------------------------------------------------------------
# Self-check: grpc-go client against grpc-go server, plaintext and TLS, for
# every case in grpc-go-cases.txt. The interop server has no bind-address
# flag (it listens on ":PORT"); the client only ever dials 127.0.0.1.
# ---------------------------------------------------------------------------

SERVER_PIDS=()
SERVER_PORT=""
FREE_PORT=""
WORK=""
cleanup() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n "$WORK" ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

# Sets FREE_PORT to a random TCP port that nothing listens on (LISTEN = state
# 0A in /proc/net/tcp{,6}); the caller retries if it loses a race for it.
free_port() {
  local used port i
  # Ports are hex in /proc; compare in hex (awk here may be mawk: no strtonum).
  used="$(awk '$4 == "0A" { n = split($2, a, ":"); print a[n] }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null | sort -u)"
  for ((i = 0; i < 100; i++)); do
    port=$((20000 + RANDOM % 40000))
    if ! grep -qx "$(printf '%04X' "$port")" <<<"$used"; then
      FREE_PORT="$port"
      return 0
    fi
  done
  return 1
}

# start_server BIN LOG [flags...]: sets SERVER_PORT once the server accepts
# connections. Called directly, not in $(...), so the server stays a child of
# this shell and cleanup() can stop it by pid.
start_server() {
  local bin="$1" logf="$2" port pid try i
  shift 2
  for ((try = 0; try < 5; try++)); do
    free_port || die "no free TCP port found"
    port="$FREE_PORT"
    "$bin" --port="$port" "$@" >"$logf" 2>&1 &
    pid=$!
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        SERVER_PIDS+=("$pid")
        SERVER_PORT="$port"
        return 0
      fi
      sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  die "interop_server $* did not start; last log: $(tail -n5 "$logf")"
}

verify() {
  local bin="$1" work="$2" cases=() c mode port_plain port_tls failed=0 passed=0
  local supported="$PEER_DIR/supported-cases.txt"
  [[ -f "$CASES_FILE" ]] || die "case list $CASES_FILE not found"
  mapfile -t cases < <(grep -vE '^[[:space:]]*(#|$)' "$CASES_FILE")
  ((${#cases[@]})) || die "case list $CASES_FILE is empty"
  for c in "${cases[@]}"; do
    grep -qx "$c" "$supported" || die "test case '$c' in $CASES_FILE is not supported by this interop client"
  done

  start_server "$bin/interop_server" "$work/server-plain.log"
  port_plain="$SERVER_PORT"
  start_server "$bin/interop_server" "$work/server-tls.log" \
    --use_tls --tls_cert_file="$TESTDATA_DIR/server1.pem" --tls_key_file="$TESTDATA_DIR/server1.key"
  port_tls="$SERVER_PORT"
  log "self-check: plaintext server on :$port_plain, TLS server on :$port_tls"

  for mode in plaintext tls; do
    for c in "${cases[@]}"; do
      local args=(--server_host=127.0.0.1 --test_case="$c")
      if [[ "$mode" == tls ]]; then
        args+=(--server_port="$port_tls" --use_tls --use_test_ca
          --ca_file="$TESTDATA_DIR/ca.pem" --server_host_override=foo.test.google.fr)
      else
        args+=(--server_port="$port_plain")
      fi
      if timeout 30 "$bin/interop_client" "${args[@]}" >"$work/client.log" 2>&1; then
        passed=$((passed + 1))
      else
        failed=$((failed + 1))
        log "FAIL $mode $c: $(tail -n3 "$work/client.log")"
      fi
    done
  done
  log "self-check: $passed passed, $failed failed"
  ((failed == 0)) || die "grpc-go interop self-check failed"
}

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

if ((!FORCE && !VERIFY)) && is_fresh; then
  echo "$BIN_DIR"
  exit 0
fi

mkdir -p "$PEER_DIR" 2>/dev/null || die "cannot create $PEER_DIR (set TASKER_PEER_CACHE or run as root)"
# Serialise concurrent test runs; re-check once we hold the lock.
exec 9>"$PEER_DIR/.lock"
flock 9

WORK="$(mktemp -d "$PEER_DIR/.work.XXXXXX")"

if ((!FORCE)) && is_fresh; then
  if ((VERIFY)); then verify "$BIN_DIR" "$WORK"; fi
  echo "$BIN_DIR"
  exit 0
fi

ensure_packages
ensure_deb_src
mkdir -p "$WORK/dl" "$WORK/bin"
fetch_source "$WORK/dl"
copy_testdata
build "$WORK/bin"
verify "$WORK/bin" "$WORK"

# Install only verified binaries, each with an atomic rename.
mkdir -p "$BIN_DIR"
for b in interop_client interop_server; do
  mv -f "$WORK/bin/$b" "$BIN_DIR/$b"
done
log "testdata: $TESTDATA_DIR/{ca.pem,server1.pem,server1.key}"
echo "$BIN_DIR"

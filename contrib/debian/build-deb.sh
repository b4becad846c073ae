#!/bin/sh
# build-deb.sh [-t TARBALL] [-o OUTDIR] [-k]: builds the Debian packages of
# tasker (tasker, libtasker-rpc0, libtasker-rpc-dev) from a release tarball
# and checks them with lintian.
#
#   -t TARBALL  the tarball to package (default: "make dist" in a scratch
#               build of this source tree, which must have a configure
#               script: run "autoreconf -fi" first)
#   -o OUTDIR   where the .deb, .changes, .buildinfo and lintian.log go
#               (default: ./deb)
#   -k          keep the work directory
#
# The packaging is the tarball's own contrib/debian, copied to debian/.
# The test suite is not run (DEB_BUILD_OPTIONS=nocheck): it needs a
# database and runs separately. Needs dpkg-dev, debhelper, lintian and the
# Build-Depends of contrib/debian/control; devscripts (dch) when the
# tarball's version is not the one of the changelog.
#
# Exit status: 0 when the packages were built and lintian reported no
# error (its warnings are printed and kept in lintian.log), 1 otherwise.
set -eu

top=$(cd "$(dirname "$0")/../.." && pwd)
tarball=
outdir=$(pwd)/deb
keep=
while getopts t:o:k opt; do
	case $opt in
	t) tarball=$(cd "$(dirname "$OPTARG")" && pwd)/$(basename "$OPTARG") ;;
	o) outdir=$OPTARG ;;
	k) keep=1 ;;
	*) sed -n '2,20s/^# \{0,1\}//p' "$0" >&2; exit 1 ;;
	esac
done

say() { printf 'build-deb: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

for tool in dpkg-buildpackage dh lintian; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (apt-get install dpkg-dev debhelper lintian)"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/tasker-deb.XXXXXX")
cleanup() {
	if [ -n "$keep" ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---------------------------------------------------------------- the tarball
if [ -z "$tarball" ]; then
	[ -x "$top/configure" ] || die "$top/configure is missing: run autoreconf -fi there first"
	say "make dist in $work/dist"
	mkdir "$work/dist"
	(cd "$work/dist" && "$top/configure" >configure.log 2>&1 && make dist >dist.log 2>&1) || {
		tail -n 30 "$work/dist/configure.log" "$work/dist/dist.log" >&2 2>/dev/null || :
		die "make dist failed"
	}
	tarball=$(ls "$work"/dist/tasker-*.tar.gz)
fi
[ -f "$tarball" ] || die "no tarball $tarball"
name=$(basename "$tarball" .tar.gz)
version=${name#tasker-}
case $version in
[0-9]*) ;;
*) die "$tarball: expected tasker-VERSION.tar.gz" ;;
esac

# ---------------------------------------------------------------- the source package tree
say "packaging tasker $version"
cp "$tarball" "$work/tasker_$version.orig.tar.gz"
tar -xzf "$tarball" -C "$work"
src=$work/$name
[ -d "$src/contrib/debian" ] || die "$tarball has no contrib/debian"
cp -R "$src/contrib/debian" "$src/debian"
rm -f "$src/debian/build-deb.sh"

# A snapshot of another version than the changelog's gets an entry of its own.
deb_upstream=$(cd "$src" && dpkg-parsechangelog -S Version | sed 's/-[^-]*$//')
if [ "$deb_upstream" != "$version" ]; then
	command -v dch >/dev/null 2>&1 || die "changelog is at $deb_upstream, tarball at $version: install devscripts (dch)"
	say "changelog is at $deb_upstream: adding an entry for $version"
	(cd "$src" && DEBFULLNAME="tasker developers" DEBEMAIL="tasker-devel@example.org" \
		dch --newversion "$version-1" --distribution unstable --force-distribution \
		"Package version $version." >/dev/null 2>&1) || die "dch failed"
fi

# ---------------------------------------------------------------- build
jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
say "dpkg-buildpackage (log: build.log)"
if ! (cd "$src" && DEB_BUILD_OPTIONS="nocheck parallel=$jobs" \
	dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
	tail -n 40 "$work/build.log" >&2 || :
	mkdir -p "$outdir" && cp "$work/build.log" "$outdir/"
	die "dpkg-buildpackage failed"
fi
changes=$(ls "$work"/tasker_*_*.changes)

# ---------------------------------------------------------------- lintian
say "lintian $(basename "$changes")"
status=0
lintian --fail-on error --display-info "$changes" >"$work/lintian.log" 2>&1 || status=$?
sed 's/^/  /' "$work/lintian.log" >&2
mkdir -p "$outdir"
for f in "$work"/*.deb "$work"/*.changes "$work"/*.buildinfo "$work/build.log" "$work/lintian.log"; do
	[ -e "$f" ] && cp "$f" "$outdir/"
done
if [ "$status" -ne 0 ]; then
	die "lintian reported errors (exit $status)"
fi
say "$(grep -c '^W:' "$work/lintian.log" || :) warning(s), no errors; packages in $outdir:"
(cd "$outdir" && ls -1 ./*.deb) >&2

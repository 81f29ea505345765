#!/usr/bin/env bash
# Builds the Debian package from a copy of the tree and checks it:
#
#   - `dpkg-buildpackage -us -uc -b` succeeds, with the unit and fuzz-replay suites it runs
#     (dh_auto_test) on the package's configuration (schema_dir=/usr/share/xdm/schemas);
#   - `lintian` reports no error;
#   - the package holds the binaries, the units, the man pages, every XSD of schemas/, the
#     sysusers file, and /etc/xdm/xdm.conf as a conffile;
#   - it would install on this system: `dpkg --dry-run -i` (dependencies and conflicts against
#     the installed packages; nothing is changed);
#   - what it installs works together, run from an extracted copy: the xdms binary's built-in
#     schema_dir is /usr/share/xdm/schemas, the packaged xdm.conf passes --check-config for the
#     proxy and the three roles with the packaged schemas, `systemd-analyze verify` accepts the
#     units (ExecStart pointed at the extracted binaries), every man page renders without
#     warnings.
#
#   bash tests/pkg/build_deb.sh [-v]
#
# Prints one PASS/FAIL line per check and `counts: P passed, F failed`; exits non-zero when a
# check failed. The source tree is not written to: the build runs in a temporary directory.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VERBOSE=0
[ "${1:-}" = "-v" ] && VERBOSE=1
TMP=$(mktemp -d /tmp/xdm-deb-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
PASSED=0
FAILED=0

pass() { echo "PASS $1"; PASSED=$((PASSED + 1)); }
fail() {
    echo "FAIL $1"
    shift
    [ $# -gt 0 ] && printf '%s\n' "$@" | sed 's/^/    /' | tail -40
    FAILED=$((FAILED + 1))
}
finish() {
    echo "counts: $PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    exit $?
}

# The tracked and new (not ignored) files, as a commit of the working tree would have them.
mkdir -p "$TMP/src"
(cd "$ROOT" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -x -C "$TMP/src"

start=$(date +%s)
# The package's own test run is hermetic: no database of the calling environment (the
# PostgreSQL suites run in tools/xdm test itself).
if (cd "$TMP/src" && DEB_BUILD_OPTIONS="parallel=2" timeout 600 \
        env -u XDM_TEST_PG_CONNINFO dpkg-buildpackage -us -uc -b) >"$TMP/build.log" 2>&1; then
    pass "dpkg-buildpackage -us -uc -b ($(($(date +%s) - start)) s)"
else
    fail "dpkg-buildpackage -us -uc -b" "$(tail -40 "$TMP/build.log")"
    finish
fi
[ "$VERBOSE" -eq 1 ] && cat "$TMP/build.log"

DEB=$(ls "$TMP"/xdm-server_*_*.deb 2>/dev/null | head -1)
CHANGES=$(ls "$TMP"/xdm-server_*_*.changes 2>/dev/null | head -1)
[ -n "$DEB" ] && [ -n "$CHANGES" ] || { fail "the .deb and .changes exist" "$(ls "$TMP")"; finish; }

# Errors fail; warnings and the rest are listed (lintian warns about running as root).
if lintian --fail-on error "$CHANGES" >"$TMP/lintian.log" 2>&1; then
    pass "lintian: no errors ($(grep -c '^W:' "$TMP/lintian.log") warnings)"
    grep '^[WE]:' "$TMP/lintian.log" | sed 's/^/    /'
else
    fail "lintian: no errors" "$(cat "$TMP/lintian.log")"
fi

dpkg-deb -c "$DEB" | awk '{print $NF}' | sed 's|^\./|/|' >"$TMP/contents"
missing=()
for f in /usr/sbin/xdms /usr/sbin/aggproxy /usr/sbin/xdmctl \
         /lib/systemd/system/xdm-aggproxy.service /lib/systemd/system/xdm-xdms@.service \
         /usr/lib/sysusers.d/xdm-server.conf /etc/xdm/xdm.conf \
         /usr/share/man/man8/xdms.8.gz /usr/share/man/man8/aggproxy.8.gz \
         /usr/share/man/man8/xdmctl.8.gz /usr/share/man/man5/xdm.conf.5.gz \
         /usr/share/doc/xdm-server/copyright; do
    grep -qxF "$f" "$TMP/contents" || missing+=("$f")
done
for xsd in "$ROOT"/schemas/*.xsd; do
    f=/usr/share/xdm/schemas/$(basename "$xsd")
    grep -qxF "$f" "$TMP/contents" || missing+=("$f")
done
if [ ${#missing[@]} -eq 0 ]; then
    pass "contents: binaries, units, sysusers, man pages, $(ls "$ROOT"/schemas/*.xsd | wc -l) XSDs, xdm.conf"
else
    fail "contents" "missing: ${missing[*]}"
fi

dpkg-deb -e "$DEB" "$TMP/control"
if [ "$(cat "$TMP/control/conffiles" 2>/dev/null)" = "/etc/xdm/xdm.conf" ]; then
    pass "conffiles: /etc/xdm/xdm.conf"
else
    fail "conffiles: /etc/xdm/xdm.conf" "$(cat "$TMP/control/conffiles" 2>&1)"
fi
if grep -q 'systemd-sysusers.*xdm-server.conf' "$TMP/control/postinst" &&
   grep -q "deb-systemd-helper enable 'xdm-aggproxy.service'" "$TMP/control/postinst"; then
    pass "postinst creates the xdm account and enables xdm-aggproxy.service"
else
    fail "postinst creates the xdm account and enables xdm-aggproxy.service" \
        "$(cat "$TMP/control/postinst")"
fi

if dpkg --dry-run -i "$DEB" >"$TMP/dry.log" 2>&1; then
    pass "dpkg --dry-run -i: installable here"
else
    fail "dpkg --dry-run -i: installable here" "$(cat "$TMP/dry.log")"
fi

X="$TMP/root"
dpkg-deb -x "$DEB" "$X"
help=$("$X/usr/sbin/xdms" --help)
if grep -q 'schema_dir .*(default /usr/share/xdm/schemas)' <<<"$help"; then
    pass "xdms: built-in schema_dir is /usr/share/xdm/schemas"
else
    fail "xdms: built-in schema_dir is /usr/share/xdm/schemas" \
        "$("$X/usr/sbin/xdms" --help | grep schema_dir)"
fi

out=$("$X/usr/sbin/aggproxy" --config "$X/etc/xdm/xdm.conf" --check-config 2>&1)
ok=$([ "$out" = "configuration OK" ] && echo 1 || echo 0)
for role in shared-list presence rls; do
    o=$("$X/usr/sbin/xdms" --role "$role" --config "$X/etc/xdm/xdm.conf" \
        --option "schema_dir=$X/usr/share/xdm/schemas" --check-config 2>&1)
    [ "$o" = "configuration OK" ] || ok=0
    out="$out"$'\n'"$role: $o"
done
if [ "$ok" -eq 1 ]; then
    pass "the packaged xdm.conf passes --check-config (aggproxy, three roles, packaged schemas)"
else
    fail "the packaged xdm.conf passes --check-config" "$out"
fi
if grep -q '^shared_list_url = unix:/run/xdm/shared-list/xdms.sock$' "$X/etc/xdm/xdm.conf" &&
   grep -q '^socket = /run/xdm/shared-list/xdms.sock$' "$X/etc/xdm/xdm.conf" &&
   grep -q '^RuntimeDirectory=xdm/%i$' "$X/lib/systemd/system/xdm-xdms@.service"; then
    pass "the proxy's upstream is the socket in the XDMS unit's RuntimeDirectory"
else
    fail "the proxy's upstream is the socket in the XDMS unit's RuntimeDirectory"
fi

# verify checks that ExecStart= is executable, so it points at the extracted binaries.
mkdir -p "$TMP/units"
for u in "$X"/lib/systemd/system/*.service; do
    sed "s|/usr/sbin/|$X/usr/sbin/|g" "$u" >"$TMP/units/$(basename "$u")"
done
if (cd "$TMP/units" && systemd-analyze verify --man=no ./xdm-aggproxy.service \
        ./xdm-xdms@.service ./xdm-xdms@presence.service) >"$TMP/verify.log" 2>&1 &&
   [ ! -s "$TMP/verify.log" ]; then
    pass "systemd-analyze verify: the units"
else
    fail "systemd-analyze verify: the units" "$(cat "$TMP/verify.log")"
fi

bad=""
for page in "$X"/usr/share/man/man*/*.gz; do
    w=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
    [ -z "$w" ] || bad="$bad$(basename "$page"): $w"$'\n'
done
if [ -z "$bad" ]; then
    pass "man pages render without warnings"
else
    fail "man pages render without warnings" "$bad"
fi

finish

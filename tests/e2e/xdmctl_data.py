#!/usr/bin/env python3
"""End-to-end checks of xdmctl's data management (tools/xdmctl_data.c) on real deployments:

- backup under write load: writers PUT documents through the proxy without pause while
  `xdmctl --data ROOT backup DEST` runs; DEST restored into a new ROOT with `xdmctl restore`, the
  servers started on it serve every document acknowledged before the backup began, with the same
  ETag and bytes, and the users of the proxy; a document written after the backup ended is not
  there (404);
- restore refuses a ROOT a server has open, a ROOT that already has stores (unless --force),
  a damaged backup and a backup without its manifest; backup refuses a non-empty destination;
- export, import and check (see each check below);
- migration with `import --from kamailio` and `--from openxcap`: the servers' xcap tables as a
  SQLite file, as SQLite's .dump, as mysqldump writes them (plain, --hex-blob, MySQL 8's
  _binary) and as pg_dump --inserts and --column-inserts write them from a real local
  PostgreSQL (tools/pglocal.py) loaded with the servers' own schemas
  (tests/e2e/files/migrate/); each row's fate reported, the documents served byte for byte.

    python3 tests/e2e/xdmctl_data.py --build build [-v] [--keep] [--filter NAME]

Uses run.py's deployments (real binaries, free loopback ports, temporary data); prints one
PASS/FAIL line per check and `counts: P passed, F failed`; exits non-zero when a check failed, a
process died or a sanitizer report appears in a log. Every loop is bounded in count and time.
"""

import binascii
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tools"))
import run as e2e  # noqa: E402  (the case runner: HTTP and the Digest client)
from harness import (BIN_XDMCTL, XDMS_ROLES, Deployment, Fail, Settings, Tally,  # noqa: E402
                     expect, script_args, selected)
import pglocal  # noqa: E402  (local PostgreSQL on a free loopback port, stopped by PID)
import xdmcluster  # noqa: E402  (what `tools/xdm run --cluster` starts)

ALICE = "sip:alice@example.com"
PASSWORD = "secret"
CT = [("Content-Type", "application/resource-lists+xml")]
ENVS = ("shared-list", "presence", "rls", "ut", "aggproxy")
WRITERS = 3
MAX_DOCS = 300          # per writer: bounds the load loop in count (a user may have 1000)
PAUSE = 0.01            # between two PUTs of one writer
LOAD_SECONDS = 20       # bounds it in time


class Context:
    def __init__(self, args):
        self.runner = Settings.of(args)
        self.deps = []
        self.verbose = args.verbose

    def deploy(self, name, start=True, users=True):
        dep = Deployment(self.runner, "xdmctl-" + name)
        self.deps.append(dep)
        if users:
            dep.add_user("alice", ALICE, PASSWORD)
        return dep.start() if start else dep

    def xdmctl(self, dep, *args, timeout=60):
        """Runs xdmctl --data <dep's ROOT> ARGS; returns (rc, stdout, stderr)."""
        argv = [os.path.join(self.runner.build, BIN_XDMCTL), "--data",
                os.path.join(dep.tmp, "data")] + list(args)
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                           env=self.runner.env, cwd=dep.tmp)
        out, err = p.stdout.decode(), p.stderr.decode()
        log = os.path.join(dep.tmp, "xdmctl-%s.log" % args[0])
        with open(log, "a") as f:
            f.write("# %s\n%s%s" % (" ".join(argv), out, err))
        dep.extra_logs.append(log)
        if self.verbose:
            print("  xdmctl %s -> %d\n%s%s" % (" ".join(args), p.returncode, out, err))
        return p.returncode, out, err


def doc_body(w, n):
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n'
            b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">'
            b'<list name="w%d"><entry uri="sip:u%d@example.com"/></list></resource-lists>\n'
            % (w, n))


def doc_uri(w, n):
    return "/xcap-root/resource-lists/users/%s/w%d-%d" % (ALICE, w, n)


def put(addr, user, uri, body):
    r = e2e.digest_request(addr, user, "PUT", uri, CT, body, 10)
    if r.status not in (200, 201):
        raise Fail("PUT %s: %s" % (uri, r.summary()))
    return r.header("ETag")


def lines_of(out):
    return [l.split("\t")[0] for l in out.splitlines()]


# --------------------------------------------------------------------------------------------

def backup_under_load(ctx, src, dest, *xdmctl_args):
    """Writers PUT through src's proxy without pause while `xdmctl backup dest` runs; returns
    (the documents acknowledged before the backup began, the late document's URI)."""
    addr = src.procs["proxy"].http_addr
    acked = []          # (monotonic time of the 2xx, uri, etag, body), in order of the answers
    lock = threading.Lock()
    stop = threading.Event()
    errors = []

    def writer(w):
        user = e2e.DigestUser("alice", ALICE, PASSWORD)
        deadline = time.monotonic() + LOAD_SECONDS
        try:
            for n in range(MAX_DOCS):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                uri, body = doc_uri(w, n), doc_body(w, n)
                etag = put(addr, user, uri, body)
                with lock:
                    acked.append((time.monotonic(), uri, etag, body))
                time.sleep(PAUSE)
        except (Fail, OSError, Fail) as e:
            errors.append(str(e))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        began = time.monotonic()
        with lock:
            before = [a for a in acked if a[0] < began]
        rc, out, err = ctx.xdmctl(src, *(list(xdmctl_args) + ["backup", dest]))
        ended = time.monotonic()
        time.sleep(0.5)
        with lock:
            during = [a for a in acked if began <= a[0]]
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    expect(not errors, "writers failed: %s" % errors[:3])
    expect(rc == 0, "backup exited %d: %s" % (rc, err))
    expect(err == "", "backup wrote to stderr: %r" % err)
    expect(lines_of(out) == list(ENVS), "backup listed %r" % out)
    expect(len(before) >= 10, "only %d documents written before the backup" % len(before))
    expect(any(a[0] < ended for a in during), "no write was acknowledged while the backup ran")
    if ctx.verbose:
        print("  %d documents before the backup, %d during/after" % (len(before), len(during)))

    # A document whose write began after the backup ended.
    late_user = e2e.DigestUser("alice", ALICE, PASSWORD)
    late = "/xcap-root/resource-lists/users/%s/after-backup" % ALICE
    put(addr, late_user, late, doc_body(99, 99))
    return before, late


def expect_restored(dep, before, late):
    """The servers on dep serve every document of before with its ETag and bytes, the proxy's
    user came back too, and the late document is not there."""
    daddr = dep.procs["proxy"].http_addr
    user = e2e.DigestUser("alice", ALICE, PASSWORD)
    for _, uri, etag, body in before:
        r = e2e.digest_request(daddr, user, "GET", uri, [], b"", 10)
        expect(r.status == 200, "restored GET %s: %s" % (uri, r.summary()))
        expect(r.header("ETag") == etag, "GET %s: ETag %s, acknowledged %s"
               % (uri, r.header("ETag"), etag))
        expect(r.body == body, "GET %s: other bytes: %r" % (uri, r.body[:200]))
    r = e2e.digest_request(daddr, user, "GET", late, [], b"", 10)
    expect(r.status == 404, "a document written after the backup is in it: %s" % r.summary())


def check_backup_under_load(ctx):
    src = ctx.deploy("src")
    before, late = backup_under_load(ctx, src, os.path.join(src.tmp, "backup"))
    with open(os.path.join(src.tmp, "backup", "MANIFEST")) as f:
        manifest = f.read().splitlines()
    expect(manifest[0] == "xdm-backup 1", "manifest starts %r" % manifest[:1])
    expect([l.split()[1] for l in manifest if l.startswith("store ")] == list(ENVS),
           "manifest stores: %r" % manifest)

    dst = ctx.deploy("dst", start=False, users=False)
    rc, out, err = ctx.xdmctl(dst, "restore", os.path.join(src.tmp, "backup"))
    expect(rc == 0 and err == "", "restore exited %d: %s" % (rc, err))
    expect(lines_of(out) == list(ENVS), "restore listed %r" % out)
    dst.start()
    expect_restored(dst, before, late)
    ctx.restored = dst
    ctx.backup = os.path.join(src.tmp, "backup")


def check_refusals(ctx):
    if not getattr(ctx, "backup", None):
        raise Fail("needs backup_under_load first")
    backup = ctx.backup
    dst = ctx.restored  # servers running on it
    root = os.path.join(dst.tmp, "data")

    rc, out, err = ctx.xdmctl(dst, "restore", backup, "--force")
    expect(rc == 1 and out == "", "restore on a running ROOT exited %d: %r" % (rc, out))
    expect(err == "xdmctl: a process has the store in %s/shared-list open; stop the servers on "
           "%s first\n" % (root, root), "restore on a running ROOT: %r" % err)

    for proc in e2e.ALL_PROCS:
        msg = dst.procs[proc].stop()
        expect(msg is None, msg or "")
    rc, out, err = ctx.xdmctl(dst, "restore", backup)
    expect(rc == 1 and err == "xdmctl: %s/shared-list/data.mdb exists: restore into a new data "
           "directory, or add --force to replace it\n" % root,
           "restore over stores without --force exited %d: %r" % (rc, err))
    rc, out, err = ctx.xdmctl(dst, "restore", backup, "--force")
    expect(rc == 0 and err == "" and lines_of(out) == list(ENVS),
           "restore --force exited %d: %r %r" % (rc, out, err))

    rc, out, err = ctx.xdmctl(dst, "backup", backup)
    expect(rc == 1 and err == "xdmctl: %s exists and is not empty\n" % backup,
           "backup into a non-empty directory exited %d: %r" % (rc, err))

    damaged = os.path.join(dst.tmp, "damaged")
    shutil.copytree(backup, damaged)
    path = os.path.join(damaged, "rls", "data.mdb")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 4096)
    fresh = ctx.deploy("fresh", start=False, users=False)
    rc, out, err = ctx.xdmctl(fresh, "restore", damaged)
    expect(rc == 1 and err.startswith("xdmctl: %s: missing or not of the " % path)
           and err.endswith(" bytes the manifest lists; the backup is damaged\n"),
           "damaged backup: %d %r" % (rc, err))
    os.unlink(os.path.join(damaged, "MANIFEST"))
    rc, out, err = ctx.xdmctl(fresh, "restore", damaged)
    expect(rc == 1 and err == "xdmctl: %s is not a complete backup: cannot open %s/MANIFEST: No "
           "such file or directory\n" % (damaged, damaged), "no manifest: %d %r" % (rc, err))
    expect(os.listdir(os.path.join(fresh.tmp, "data")) == [], "a refused restore wrote to ROOT")


def tree_files(top):
    """{relative path: bytes} of every file under top."""
    out = {}
    for d, _, files in os.walk(top):
        for f in files:
            path = os.path.join(d, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, top)] = fh.read()
    return out


def check_export(ctx):
    dep = ctx.deploy("export")
    dep.add_user("bob", "sip:bob@example.com", PASSWORD)
    addr = dep.procs["proxy"].http_addr
    alice = e2e.DigestUser("alice", ALICE, PASSWORD)
    bob = e2e.DigestUser("bob", "sip:bob@example.com", PASSWORD)
    with open(os.path.join(HERE, "files", "pres-rules1.xml"), "rb") as f:
        rules = f.read()
    docs = [  # (user, URI below the root, media type, body, exported file)
        (alice, "resource-lists/users/sip:alice@example.com/index", CT[0][1], doc_body(1, 1),
         "resource-lists/users/sip:alice@example.com/index"),
        (alice, "resource-lists/users/sip:alice@example.com/my%20friends%3F%25", CT[0][1],
         doc_body(1, 2), "resource-lists/users/sip:alice@example.com/my%20friends%3F%25"),
        (alice, "resource-lists/users/sip:alice@example.com/.hidden", CT[0][1], doc_body(1, 3),
         "resource-lists/users/sip:alice@example.com/%2Ehidden"),
        (alice, "pres-rules/users/sip:alice@example.com/index", "application/auth-policy+xml",
         rules, "pres-rules/users/sip:alice@example.com/index"),
        (bob, "resource-lists/users/sip:bob@example.com/index", CT[0][1], doc_body(2, 1),
         "resource-lists/users/sip:bob@example.com/index"),
    ]
    for user, uri, mt, body, _ in docs:
        r = e2e.digest_request(addr, user, "PUT", "/xcap-root/" + uri, [("Content-Type", mt)],
                               body, 10)
        expect(r.status == 201, "PUT %s: %s" % (uri, r.summary()))

    dest = os.path.join(dep.tmp, "export-all")
    rc, out, err = ctx.xdmctl(dep, "export", dest)  # the servers run
    expect(rc == 0 and err == "", "export exited %d: %r" % (rc, err))
    expect(out == "shared-list\t4 documents\npresence\t1 documents\nrls\t0 documents\nut\t0 documents\n",
           "export listed %r" % out)
    want = {d[4]: d[3] for d in docs}
    got = tree_files(dest)
    expect(got == want, "exported %r, expected %r" % (sorted(got), sorted(want)))

    dest = os.path.join(dep.tmp, "export-bob")
    rc, out, err = ctx.xdmctl(dep, "export", dest, "--user", "sip:bob@example.com")
    expect(rc == 0 and err == "", "export --user exited %d: %r" % (rc, err))
    expect(out == "shared-list\t1 documents\npresence\t0 documents\nrls\t0 documents\n"
           "ut\t0 documents\n", "listed %r" % out)
    got = tree_files(dest)
    expect(got == {docs[4][4]: docs[4][3]}, "exported for bob: %r" % sorted(got))

    rc, out, err = ctx.xdmctl(dep, "export", dest)
    expect(rc == 1 and err == "xdmctl: %s exists and is not empty\n" % dest,
           "export into a non-empty directory: %d %r" % (rc, err))
    ctx.exported = (dep, os.path.join(dep.tmp, "export-all"), docs)


def check_import(ctx):
    if not getattr(ctx, "exported", None):
        raise Fail("needs export first")
    src_dep, tree, docs = ctx.exported
    # Refused while the servers run on the data directory (they would not see the writes).
    src_root = os.path.join(src_dep.tmp, "data")
    rc, out, err = ctx.xdmctl(src_dep, "import", tree)
    expect(rc == 1 and out == "" and err == "xdmctl: a process has the store in %s/shared-list "
           "open; stop the servers on %s first\n" % (src_root, src_root),
           "import beside running servers: %d %r" % (rc, err))

    # The exported tree plus files the XDMS would refuse: each one reported, the rest imported.
    bad = os.path.join(src_dep.tmp, "import-src")
    shutil.copytree(tree, bad)
    extra = {
        "resource-lists/users/sip:carol@example.com/index": b"<not-a-list/>",
        "resource-lists/users/sip:carol@example.com/broken": b"<resource-lists",
        "nope/users/sip:carol@example.com/index": doc_body(3, 3),
        "resource-lists/users/sip:carol@example.com/%zz": doc_body(3, 4),
    }
    for rel, body in extra.items():
        os.makedirs(os.path.dirname(os.path.join(bad, rel)), exist_ok=True)
        with open(os.path.join(bad, rel), "wb") as f:
            f.write(body)
    dst = ctx.deploy("import", start=False)
    # As docs/operations.md shows it, with the public XCAP root references are checked against.
    rc, out, err = ctx.xdmctl(dst, "import", bad, "--xcap-root",
                              "https://xcap.example.com/xcap-root/")
    expect(rc == 1 and out == "imported 5 documents, refused 4\n", "import: %d %r" % (rc, out))
    refused = sorted(err.splitlines())
    expect(len(refused) == 4 and all(l.startswith("xdmctl: refused ") for l in refused),
           "import reported %r" % err)
    want = [
        "xdmctl: refused nope/users/sip:carol@example.com/index: no XDMS serves the application "
        "usage \"nope\"",
        "xdmctl: refused resource-lists/users/sip:carol@example.com/%zz: not a document "
        "selector: invalid percent-encoding in the path",
    ]
    for w in want:
        expect(w in refused, "missing %r in %r" % (w, refused))
    expect("xdmctl: refused resource-lists/users/sip:carol@example.com/index: 409 "
           "schema-validation-error: the document element must be <resource-lists> in namespace "
           "urn:ietf:params:xml:ns:resource-lists" in refused, "schema refusal: %r" % refused)
    expect(any(l.startswith("xdmctl: refused resource-lists/users/sip:carol@example.com/broken: "
                            "409 not-well-formed: ") for l in refused),
           "not-well-formed refusal: %r" % refused)

    # The servers on the imported stores serve the documents, bytes unchanged.
    dst.add_user("bob", "sip:bob@example.com", PASSWORD)
    dst.start()
    addr = dst.procs["proxy"].http_addr
    users = {}
    for user, uri, _, body, _ in docs:
        u = users.setdefault(user.uri, e2e.DigestUser(user.label, user.uri, PASSWORD))
        r = e2e.digest_request(addr, u, "GET", "/xcap-root/" + uri, [], b"", 10)
        expect(r.status == 200 and r.body == body, "GET %s after import: %s" % (uri, r.summary()))


def check_check(ctx):
    dep = ctx.deploy("check")
    addr = dep.procs["proxy"].http_addr
    alice = e2e.DigestUser("alice", ALICE, PASSWORD)
    with open(os.path.join(HERE, "files", "rls1.xml"), "rb") as f:
        rls = f.read()
    for uri, mt, body in [
            ("resource-lists/users/%s/index" % ALICE, CT[0][1], doc_body(1, 1)),
            ("rls-services/users/%s/index" % ALICE, "application/rls-services+xml", rls)]:
        r = e2e.digest_request(addr, alice, "PUT", "/xcap-root/" + uri, [("Content-Type", mt)],
                               body, 10)
        expect(r.status == 201, "PUT %s: %s" % (uri, r.summary()))
    rc, out, err = ctx.xdmctl(dep, "check")  # beside the running servers
    expect(rc == 0 and err == "", "check of a sound store: %d %r %r" % (rc, out, err))
    expect(out == "shared-list: 1 documents, 1 change records, 0 problems\n"
           "presence: 0 documents, 0 change records, 0 problems\n"
           "rls: 2 documents, 2 change records, 0 problems\n"
           "ut: 0 documents, 0 change records, 0 problems\n", "check printed %r" % out)

    for proc in e2e.ALL_PROCS:
        msg = dep.procs[proc].stop()
        expect(msg is None, msg or "")
    poke = os.path.join(ctx.runner.build, "tests", "store_poke")
    root = os.path.join(dep.tmp, "data")
    bad = os.path.join(dep.tmp, "bad.xml")
    with open(bad, "wb") as f:
        f.write(b"<not-a-list/>")
    same = os.path.join(dep.tmp, "same.xml")
    with open(same, "wb") as f:
        f.write(doc_body(1, 1))
    for argv in [
            # a document that fails its schema, written past the engine
            [root + "/shared-list", "put", "resource-lists", "users", ALICE, "bad", bad],
            # a new ETag without a change record
            [root + "/shared-list", "put", "resource-lists", "users", ALICE, "index", same],
            # a wrong byte count
            [root + "/shared-list", "quota", ALICE, "7"],
            # a service URI missing from the RLS URI index
            [root + "/rls", "kvdel", "rls_uri", "sip:alice-friends@example.com"]]:
        p = subprocess.run([poke] + argv, capture_output=True, timeout=30)
        expect(p.returncode == 0, "store_poke %s: %r" % (argv, p.stderr))
    rc, out, err = ctx.xdmctl(dep, "check")
    expect(rc == 1 and err == "", "check of a damaged store exited %d: %r" % (rc, err))
    lines = out.splitlines()
    expect(len(lines) == 8, "check: %r" % lines)
    want = [
        "shared-list: resource-lists/users/sip:alice@example.com/bad: schema-validation-error: "
        "the document element must be <resource-lists> in namespace "
        "urn:ietf:params:xml:ns:resource-lists",
        "shared-list: quota of sip:alice@example.com: 7 bytes counted, its documents hold %d"
        % (len(doc_body(1, 1)) + 13),
        "shared-list: 2 documents, 1 change records, 3 problems",
        "presence: 0 documents, 0 change records, 0 problems",
        "rls: rls-services/users/sip:alice@example.com/index: service URI "
        "sip:alice-friends@example.com is not indexed to it in rls_uri",
        "rls: 2 documents, 2 change records, 1 problems",
        "ut: 0 documents, 0 change records, 0 problems",
    ]
    expect(lines[:2] == want[:2] and lines[3:] == want[2:], "check: %r" % lines)
    expect(re.match(r'^shared-list: resource-lists/users/sip:alice@example\.com/index: ETag '
                    r'(\S+), but its newest change record \(1\) says (\S+)$', lines[2])
           and lines[2].split()[3] != lines[2].split()[-1], "check: %r" % lines[2])


MIGRATE = os.path.join(HERE, "files", "migrate")


def kamailio_schema(db):
    """Kamailio's schema of the xcap table for db (db_sqlite, postgres): the Debian package's own
    files (kamailio-sqlite-modules, kamailio-postgres-modules) when installed, else their
    documented excerpt under tests/e2e/files/migrate/."""
    pkg = "/usr/share/kamailio/%s" % db
    if os.path.exists(os.path.join(pkg, "presence-create.sql")):
        with open(os.path.join(pkg, "standard-create.sql")) as f:
            text = f.read()
        with open(os.path.join(pkg, "presence-create.sql")) as f:
            return text + f.read()
    name = {"db_sqlite": "kamailio-xcap-sqlite.sql", "postgres": "kamailio-xcap-postgres.sql"}[db]
    with open(os.path.join(MIGRATE, name)) as f:
        return f.read()


# A document whose bytes need every escape of the dump formats: quotes, a backslash, a new line,
# a carriage return and UTF-8.
TRICKY = ('<?xml version="1.0" encoding="UTF-8"?>\r\n'
          '<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">\n'
          '<list name="O\'Brien \\ caf\u00e9"><entry uri="sip:u1@example.com"/></list>'
          '</resource-lists>\n').encode()


def kamailio_rows(rules):
    return [  # username, domain, doc, doc_type, doc_uri
        ("alice", "example.com", TRICKY, 4,
         "/xcap-root/resource-lists/users/sip:alice@example.com/index"),
        ("alice", "example.com", rules, 2,
         "/xcap-root/pres-rules/users/sip:alice@example.com/index"),
        ("bob", "example.com", b"<resource-lists/>", 4,
         "/xcap-root/resource-lists/users/sip:bob@example.com/index"),
        ("bob", "example.com", b"<x/>", 64, "/xcap-root/xcap-caps/global/index"),
        ("carol", "example.com", doc_body(5, 2), 4, "/xcap-root/resource-lists/global/index"),
    ]


KAMAILIO_OUT = "kamailio: 5 rows, 2 refused before import\nimported 2 documents, refused 1\n"
KAMAILIO_ERR = [
    "xdmctl: refused kamailio row 4: doc_type 64 is no application usage served here",
    "xdmctl: refused kamailio row 5: doc_uri \"/xcap-root/resource-lists/global/index\" "
    "names no document of a user",
    "xdmctl: refused resource-lists/users/sip:bob@example.com/index: 409 "
    "schema-validation-error: the document element must be <resource-lists> in namespace "
    "urn:ietf:params:xml:ns:resource-lists",
]


def openxcap_rows(rules):
    return [  # username, domain, doc, doc_type, doc_uri
        ("alice", "example.com", TRICKY, 4, "index"),
        ("alice", "example.com", rules, 2, "index.xml"),   # OpenXCAP keeps pres-rules there
        ("alice", "example.com", b"<dialog-rules/>", 128, "index"),
        ("bob", "example.com", b"<resource-lists/>", 4, "index"),
        ("carol", "example.com", doc_body(5, 2), 4, ""),
    ]


OPENXCAP_OUT = "openxcap: 5 rows, 2 refused before import\nimported 2 documents, refused 1\n"
OPENXCAP_ERR = [
    "xdmctl: refused openxcap row 3: doc_type 128 is no application usage served here",
    "xdmctl: refused openxcap row 5: doc_uri \"\" names no document of a user",
    "xdmctl: refused resource-lists/users/sip:bob@example.com/index: 409 "
    "schema-validation-error: the document element must be <resource-lists> in namespace "
    "urn:ietf:params:xml:ns:resource-lists",
]


def mysql_quote(v, blob_form):
    """A value as mysqldump writes it (mysql_real_escape_string; blobs per blob_form)."""
    if isinstance(v, int):
        return b"%d" % v
    if isinstance(v, str):
        v, blob_form = v.encode(), "plain"
    if blob_form == "hex" and v:
        return b"0x" + binascii.hexlify(v).upper()
    esc = {0: b"\\0", 10: b"\\n", 13: b"\\r", 92: b"\\\\", 39: b"\\'", 34: b'\\"', 26: b"\\Z"}
    body = b"".join(esc.get(c, bytes([c])) for c in v)
    return (b"_binary " if blob_form == "binary" else b"") + b"'" + body + b"'"


def mysqldump(path, create, rows, blob_form, server):
    """The dump `mysqldump DB` writes of a version table and the xcap table (rows: id, then the
    columns of `create`), as MariaDB 10.11's mysqldump 10.19 lays it out (MySQL 8's _binary
    blobs with blob_form "binary"). Rows are full column tuples."""
    out = [b"-- %s dump 10.19  Distrib 10.11.6-MariaDB, for debian-linux-gnu (x86_64)" % server,
           b"--", b"-- Host: localhost    Database: xcapdb",
           b"-- ------------------------------------------------------",
           b"-- Server version\t10.11.6-MariaDB-0+deb12u1", b"",
           b"/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;",
           b"/*!40101 SET NAMES utf8mb4 */;",
           b"/*!40103 SET @OLD_TIME_ZONE=@@TIME_ZONE */;",
           b"/*!40103 SET TIME_ZONE='+00:00' */;",
           b"/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;",
           b"/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;",
           b"", b"--", b"-- Table structure for table `version`", b"--", b"",
           b"DROP TABLE IF EXISTS `version`;",
           b"CREATE TABLE `version` (",
           b"  `id` int(10) unsigned NOT NULL AUTO_INCREMENT,",
           b"  `table_name` varchar(32) NOT NULL,",
           b"  `table_version` int(10) unsigned NOT NULL DEFAULT 0,",
           b"  PRIMARY KEY (`id`),",
           b"  UNIQUE KEY `table_name_idx` (`table_name`)",
           b") ENGINE=MyISAM AUTO_INCREMENT=2 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;",
           b"LOCK TABLES `version` WRITE;",
           b"/*!40000 ALTER TABLE `version` DISABLE KEYS */;",
           b"INSERT INTO `version` VALUES (1,'xcap',4);",
           b"/*!40000 ALTER TABLE `version` ENABLE KEYS */;",
           b"UNLOCK TABLES;", b"", b"--", b"-- Table structure for table `xcap`", b"--", b"",
           b"DROP TABLE IF EXISTS `xcap`;",
           b"/*!40101 SET @saved_cs_client     = @@character_set_client */;",
           b"/*!40101 SET character_set_client = utf8 */;"]
    out += create
    out += [b"/*!40101 SET character_set_client = @saved_cs_client */;", b"", b"--",
            b"-- Dumping data for table `xcap`", b"--", b"",
            b"LOCK TABLES `xcap` WRITE;", b"/*!40000 ALTER TABLE `xcap` DISABLE KEYS */;",
            b"INSERT INTO `xcap` VALUES " + b",".join(
                b"(" + b",".join(mysql_quote(v, blob_form) for v in row) + b")" for row in rows)
            + b";",
            b"/*!40000 ALTER TABLE `xcap` ENABLE KEYS */;", b"UNLOCK TABLES;",
            b"/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;", b"", b"-- Dump completed on 2026-01-01"]
    with open(path, "wb") as f:
        f.write(b"\n".join(out) + b"\n")


# SHOW CREATE TABLE of the two schemas under tests/e2e/files/migrate/, as mysqldump prints it.
KAMAILIO_MYSQL_CREATE = [
    b"CREATE TABLE `xcap` (",
    b"  `id` int(10) unsigned NOT NULL AUTO_INCREMENT,",
    b"  `username` varchar(64) NOT NULL,",
    b"  `domain` varchar(64) NOT NULL,",
    b"  `doc` mediumblob NOT NULL,",
    b"  `doc_type` int(11) NOT NULL,",
    b"  `etag` varchar(128) NOT NULL,",
    b"  `source` int(11) NOT NULL,",
    b"  `doc_uri` varchar(255) NOT NULL,",
    b"  `port` int(11) NOT NULL,",
    b"  PRIMARY KEY (`id`),",
    b"  UNIQUE KEY `doc_uri_idx` (`doc_uri`),",
    b"  KEY `account_doc_type_idx` (`username`,`domain`,`doc_type`),",
    b"  KEY `account_doc_type_uri_idx` (`username`,`domain`,`doc_type`,`doc_uri`),",
    b"  KEY `account_doc_uri_idx` (`username`,`domain`,`doc_uri`)",
    b") ENGINE=InnoDB AUTO_INCREMENT=6 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;",
]
OPENXCAP_MYSQL_CREATE = [
    b"CREATE TABLE `xcap` (",
    b"  `id` int(11) NOT NULL AUTO_INCREMENT,",
    b"  `subscriber_id` int(11) DEFAULT NULL,",
    b"  `username` varchar(64) NOT NULL,",
    b"  `domain` varchar(64) NOT NULL,",
    b"  `doc` blob NOT NULL,",
    b"  `doc_type` int(11) NOT NULL,",
    b"  `etag` varchar(64) NOT NULL,",
    b"  `source` int(11) NOT NULL,",
    b"  `doc_uri` varchar(255) NOT NULL,",
    b"  `port` int(11) NOT NULL,",
    b"  PRIMARY KEY (`id`),",
    b"  UNIQUE KEY `account_doc_type_idx` (`username`,`domain`,`doc_type`,`doc_uri`),",
    b"  KEY `source_idx` (`source`),",
    b"  KEY `xcap_subscriber_id_exists` (`subscriber_id`),",
    b"  CONSTRAINT `xcap_ibfk_1` FOREIGN KEY (`subscriber_id`) REFERENCES `subscriber` (`id`) "
    b"ON DELETE CASCADE",
    b") ENGINE=InnoDB AUTO_INCREMENT=6 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;",
]


def pg_literal(v):
    if isinstance(v, int):
        return "%d" % v
    if isinstance(v, bytes):
        return "decode('%s', 'hex')" % binascii.hexlify(v).decode()
    return "'%s'" % v.replace("'", "''")


def pg_server(ctx):
    """The local PostgreSQL of this run, started on first use."""
    if not getattr(ctx, "pg", None):
        # A directory of its own: the server runs as the postgres user when we are root, and
        # the deployments' directories are private.
        ctx.pg_dir = tempfile.mkdtemp(prefix="xdm-e2e-pg-")
        try:
            ctx.pg = pglocal.PgCluster(ctx.pg_dir).start_primary()
        except RuntimeError as e:
            raise Fail("local PostgreSQL: %s" % e)
    return ctx.pg


def pg_dumps(ctx, dep, schema_sql, columns, rows, db):
    """Loads schema_sql and rows into database db of a local PostgreSQL; returns the paths of
    its pg_dump --inserts and --column-inserts."""
    pg = pg_server(ctx)
    pg.psql("primary", "CREATE DATABASE %s" % db, db="postgres")
    pg.psql("primary", schema_sql, db=db)
    for row in rows:
        pg.psql("primary", "INSERT INTO xcap (%s) VALUES (%s)"
                % (", ".join(columns), ", ".join(pg_literal(v) for v in row)), db=db)
    paths = []
    for form in ("--inserts", "--column-inserts"):
        path = os.path.join(dep.tmp, "%s%s.sql" % (db, form[1:]))
        subprocess.run([os.path.join(pg.bindir, "pg_dump"), "-h", "127.0.0.1", "-p",
                        str(pg.nodes["primary"]["port"]), "-U", "postgres", "-d", db, form,
                        "-f", path], check=True, timeout=60, capture_output=True)
        paths.append(path)
    return paths


def migrate_each(ctx, name, source, sources, want_out, want_err):
    """import --from source of every file in sources, each into a fresh data directory; the
    servers on the last one are returned for GETs."""
    dep = None
    for src in sources:
        dep = ctx.deploy("%s-%s" % (name, os.path.basename(src).replace(".", "-")),
                         start=False)
        rc, out, err = ctx.xdmctl(dep, "import", src, "--from", source)
        expect(rc == 1 and out == want_out and err.splitlines() == want_err,
               "import --from %s of %s: %d %r %r" % (source, os.path.basename(src), rc, out,
                                                     err))
    return dep


def serve_and_get(dep, docs):
    dep.start()
    addr = dep.procs["proxy"].http_addr
    alice = e2e.DigestUser("alice", ALICE, PASSWORD)
    for uri, body in docs:
        r = e2e.digest_request(addr, alice, "GET", "/xcap-root/" + uri, [], b"", 10)
        expect(r.status == 200 and r.body == body, "GET %s after migration: %s"
               % (uri, r.summary()))


def check_kamailio(ctx):
    with open(os.path.join(HERE, "files", "pres-rules1.xml"), "rb") as f:
        rules = f.read()
    rows = kamailio_rows(rules)
    dep = ctx.deploy("kamailio", start=False)
    db = os.path.join(dep.tmp, "kamailio.sqlite")
    con = sqlite3.connect(db)
    con.executescript(kamailio_schema("db_sqlite"))
    con.executemany("INSERT INTO xcap (username, domain, doc, doc_type, etag, source, doc_uri, "
                    "port) VALUES (?, ?, ?, ?, 'e', 1, ?, 80)", rows)
    con.commit()
    dump = os.path.join(dep.tmp, "kamailio.sql")
    with open(dump, "w") as f:
        f.write("\n".join(con.iterdump()) + "\n")
    con.close()

    rc, out, err = ctx.xdmctl(dep, "import", db, "--from", "kamailio")
    expect(rc == 1 and out == KAMAILIO_OUT and err.splitlines() == KAMAILIO_ERR,
           "import --from kamailio: %d %r %r" % (rc, out, err))

    # The same table as an SQL dump, into a second data directory.
    dep2 = ctx.deploy("kamailio-dump", start=False, users=False)
    rc, out, err = ctx.xdmctl(dep2, "import", dump, "--from", "kamailio")
    expect(rc == 1 and out == KAMAILIO_OUT and err.splitlines() == KAMAILIO_ERR,
           "import --from kamailio of a dump: %d %r %r" % (rc, out, err))
    serve_and_get(dep, [("resource-lists/users/%s/index" % ALICE, TRICKY),
                        ("pres-rules/users/%s/index" % ALICE, rules)])


def full_rows(rows):
    """(id, username, domain, doc, doc_type, 'e', 1, doc_uri, 80) per row."""
    return [(i + 1, u, d, doc, t, "e", 1, uri, 80) for i, (u, d, doc, t, uri) in enumerate(rows)]


def check_kamailio_dumps(ctx):
    with open(os.path.join(HERE, "files", "pres-rules1.xml"), "rb") as f:
        rules = f.read()
    rows = kamailio_rows(rules)
    dep = ctx.deploy("kamailio-dumps", start=False, users=False)
    sources = []
    for form in ("plain", "hex", "binary"):
        path = os.path.join(dep.tmp, "kamailio-mysqldump-%s.sql" % form)
        mysqldump(path, KAMAILIO_MYSQL_CREATE, full_rows(rows), form,
                  b"MySQL" if form == "binary" else b"MariaDB")
        sources.append(path)
    sources += pg_dumps(ctx, dep, kamailio_schema("postgres"), ["username", "domain", "doc", "doc_type", "etag",
                                           "source", "doc_uri", "port"],
                        [(u, d, doc, t, "e", 1, uri, 80) for u, d, doc, t, uri in rows],
                        "kamailio")
    last = migrate_each(ctx, "kamailio", "kamailio", sources, KAMAILIO_OUT, KAMAILIO_ERR)
    serve_and_get(last, [("resource-lists/users/%s/index" % ALICE, TRICKY),
                         ("pres-rules/users/%s/index" % ALICE, rules)])

    # A pg_dump without --inserts (COPY) is refused with what to do instead.
    pg = ctx.pg
    copy = os.path.join(dep.tmp, "kamailio-copy.sql")
    subprocess.run([os.path.join(pg.bindir, "pg_dump"), "-h", "127.0.0.1", "-p",
                    str(pg.nodes["primary"]["port"]), "-U", "postgres", "-d", "kamailio", "-f",
                    copy], check=True, timeout=60, capture_output=True)
    rc, out, err = ctx.xdmctl(dep, "import", copy, "--from", "kamailio")
    expect(rc == 1 and out == "" and re.fullmatch(
        r"xdmctl: %s is neither a SQLite database nor an SQL dump of an xcap table: line \d+: "
        r"the rows of xcap are in a COPY block; dump them with pg_dump --inserts \(or "
        r"--column-inserts\)\n" % re.escape(copy), err), "COPY dump: %d %r %r" % (rc, out, err))


def check_openxcap(ctx):
    with open(os.path.join(HERE, "files", "pres-rules1.xml"), "rb") as f:
        rules = f.read()
    rows = openxcap_rows(rules)
    dep = ctx.deploy("openxcap", start=False, users=False)
    # SQLite: OpenXCAP's columns (tests/e2e/files/migrate/openxcap-xcap-mysql.sql) with SQLite's
    # own key syntax.
    db = os.path.join(dep.tmp, "openxcap.sqlite")
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE subscriber (id INTEGER PRIMARY KEY, username VARCHAR(64),
            domain VARCHAR(64), password VARCHAR(255), ha1 VARCHAR(64));
        CREATE TABLE xcap (id INTEGER PRIMARY KEY, subscriber_id INTEGER
            REFERENCES subscriber (id) ON DELETE CASCADE, username VARCHAR(64) NOT NULL,
            domain VARCHAR(64) NOT NULL, doc BLOB NOT NULL, doc_type INTEGER NOT NULL,
            etag VARCHAR(64) NOT NULL, source INTEGER NOT NULL, doc_uri VARCHAR(255) NOT NULL,
            port INTEGER NOT NULL,
            CONSTRAINT account_doc_type_idx UNIQUE (username, domain, doc_type, doc_uri));
    """)
    con.executemany("INSERT INTO xcap (subscriber_id, username, domain, doc, doc_type, etag, "
                    "source, doc_uri, port) VALUES (NULL, ?, ?, ?, ?, 'e', 0, ?, 0)", rows)
    con.commit()
    con.close()
    sources = [db]
    for form in ("plain", "hex"):
        path = os.path.join(dep.tmp, "openxcap-mysqldump-%s.sql" % form)
        mysqldump(path, OPENXCAP_MYSQL_CREATE, [(i + 1, 0, u, d, doc, t, "e", 0, uri, 0)
                   for i, (u, d, doc, t, uri) in enumerate(rows)], form, b"MariaDB")
        sources.append(path)
    schema = ("CREATE TABLE subscriber (id SERIAL PRIMARY KEY, username VARCHAR(64), "
              "domain VARCHAR(64), password VARCHAR(255), ha1 VARCHAR(64));"
              "CREATE TABLE xcap (id SERIAL PRIMARY KEY, subscriber_id INTEGER REFERENCES "
              "subscriber (id) ON DELETE CASCADE, username VARCHAR(64) NOT NULL, "
              "domain VARCHAR(64) NOT NULL, doc BYTEA NOT NULL, doc_type INTEGER NOT NULL, "
              "etag VARCHAR(64) NOT NULL, source INTEGER NOT NULL, "
              "doc_uri VARCHAR(255) NOT NULL, port INTEGER NOT NULL, "
              "CONSTRAINT account_doc_type_idx UNIQUE (username, domain, doc_type, doc_uri));")
    sources += pg_dumps(ctx, dep, schema, ["username", "domain", "doc", "doc_type", "etag",
                                           "source", "doc_uri", "port"],
                        [(u, d, doc, t, "e", 0, uri, 0) for u, d, doc, t, uri in rows],
                        "openxcap")
    last = migrate_each(ctx, "openxcap", "openxcap", sources, OPENXCAP_OUT, OPENXCAP_ERR)
    serve_and_get(last, [("resource-lists/users/%s/index" % ALICE, TRICKY),
                         ("pres-rules/users/%s/index.xml" % ALICE, rules)])

    rc, out, err = ctx.xdmctl(last, "import", db, "--from", "opensips")
    expect(rc == 2 and out == "" and err == "xdmctl: --from knows kamailio and openxcap, not "
           "\"opensips\"\n", "--from opensips: %d %r %r" % (rc, out, err))


# --- the same on PostgreSQL ---------------------------------------------------------------------

def pg_conf(ctx, name):
    """A fresh database per XDMS role on the local PostgreSQL; returns the text of a servers'
    configuration that puts each role on its database, and {role: conninfo}."""
    pg = pg_server(ctx)
    ctx.pg_dbs = getattr(ctx, "pg_dbs", 0) + 1
    text, conninfo = "# the store of each XDMS role (xdmctl reads it)\n", {}
    for role in XDMS_ROLES:
        db = "x%d_%s_%s" % (ctx.pg_dbs, name, role.replace("-", "_"))
        pg.psql("primary", "CREATE DATABASE %s OWNER %s" % (db, pglocal.USER), db="postgres")
        conninfo[role] = pg.conninfo().replace("dbname=" + pglocal.DB, "dbname=" + db)
        text += "[%s]\nstore = postgresql\npg_conninfo = %s\n" % (role, conninfo[role])
    return text, conninfo


def deploy_pg(ctx, name, start=True, users=True, conf_in_root=True):
    """A deployment whose XDMSs keep their documents in databases of their own. With
    conf_in_root the store settings are also in ROOT/xdm.conf (as `tools/xdm run` writes it), so
    xdmctl finds them without --config; else in dep.pg_conf, for --config."""
    text, conninfo = pg_conf(ctx, name)
    dep = ctx.deploy(name, start=False, users=users)
    for role in XDMS_ROLES:
        dep.procs[role].options += ["store=postgresql", "pg_conninfo=" + conninfo[role]]
    dep.pg_conninfo_of = conninfo
    dep.pg_conf = os.path.join(os.path.join(dep.tmp, "data", "xdm.conf") if conf_in_root
                               else os.path.join(dep.tmp, "pg.conf"))
    with open(dep.pg_conf, "w") as f:
        f.write(text)
    if start:
        dep.start()
    return dep


def stop_all(dep):
    for proc in e2e.ALL_PROCS:
        msg = dep.procs[proc].stop()
        expect(msg is None, msg or "")


def check_pg_backup_under_load(ctx):
    src = deploy_pg(ctx, "pgsrc")
    backup = os.path.join(src.tmp, "backup")
    before, late = backup_under_load(ctx, src, backup)  # ROOT/xdm.conf names the databases
    with open(os.path.join(backup, "MANIFEST")) as f:
        manifest = f.read().splitlines()
    expect(manifest[0] == "xdm-backup 1", "manifest starts %r" % manifest[:1])
    expect([l.split()[:2] for l in manifest[4:]] ==
           [["pgdump", "shared-list"], ["pgdump", "presence"], ["pgdump", "rls"],
            ["pgdump", "ut"], ["store", "aggproxy"]], "manifest: %r" % manifest)
    expect(sorted(os.listdir(backup)) == ["MANIFEST", "aggproxy", "presence.pgdump",
                                          "rls.pgdump", "shared-list.pgdump", "ut.pgdump"],
           "backup holds %r" % sorted(os.listdir(backup)))
    for l in manifest[4:8]:
        path = os.path.join(backup, l.split()[1] + ".pgdump")
        expect(int(l.split()[2]) == os.path.getsize(path), "manifest size of %s: %r" % (path, l))

    # A new deployment: its servers have run once (the schema exists, no documents), then the
    # backup goes into its databases, named by --config.
    dst = deploy_pg(ctx, "pgdst", start=False, users=False, conf_in_root=False)
    dst.start(XDMS_ROLES)
    stop_all(dst)
    rc, out, err = ctx.xdmctl(dst, "--config", dst.pg_conf, "restore", backup)
    expect(rc == 0 and err == "", "restore exited %d: %r" % (rc, err))
    expect(lines_of(out) == list(ENVS), "restore listed %r" % out)
    dst.start()
    expect_restored(dst, before, late)

    # Refusals: a database with documents (unless --force), a role on the other backend.
    stop_all(dst)
    rc, out, err = ctx.xdmctl(dst, "--config", dst.pg_conf, "restore", backup)
    expect(rc == 1 and out == "" and err == "xdmctl: the PostgreSQL database of shared-list "
           "already holds documents: restore into a new database, or add --force to replace "
           "them\n", "restore over documents: %d %r %r" % (rc, out, err))
    rc, out, err = ctx.xdmctl(dst, "--config", dst.pg_conf, "restore", backup, "--force")
    expect(rc == 0 and err == "" and lines_of(out) == list(ENVS),
           "restore --force: %d %r %r" % (rc, out, err))
    dst.start()
    expect_restored(dst, before, late)
    lmdb = ctx.deploy("pg-to-lmdb", start=False, users=False)
    rc, out, err = ctx.xdmctl(lmdb, "restore", backup)
    expect(rc == 1 and out == "" and err == "xdmctl: the backup holds shared-list as a "
           "PostgreSQL dump, but its configuration puts it on LMDB: restore into a deployment "
           "on PostgreSQL, or move the documents with export and import\n",
           "PostgreSQL backup into LMDB: %d %r %r" % (rc, out, err))
    expect(os.listdir(os.path.join(lmdb.tmp, "data")) == [], "a refused restore wrote to ROOT")

    # A configuration that names PostgreSQL without a database is refused, naming the file.
    bad = os.path.join(dst.tmp, "bad.conf")
    with open(bad, "w") as f:
        f.write("[xdms]\nstore = postgresql\n")
    rc, out, err = ctx.xdmctl(dst, "--config", bad, "check")
    expect(rc == 2 and out == "" and err == "xdmctl: %s: [shared-list] uses store = postgresql "
           "without pg_conninfo\n" % bad, "store without pg_conninfo: %d %r %r" % (rc, out, err))


def export_docs():
    """(user label, XUI, URI below the root, media type, body, exported file) of check_export."""
    with open(os.path.join(HERE, "files", "pres-rules1.xml"), "rb") as f:
        rules = f.read()
    bob = "sip:bob@example.com"
    return [
        ("alice", ALICE, "resource-lists/users/sip:alice@example.com/index", CT[0][1],
         doc_body(1, 1), "resource-lists/users/sip:alice@example.com/index"),
        ("alice", ALICE, "resource-lists/users/sip:alice@example.com/my%20friends%3F%25",
         CT[0][1], doc_body(1, 2), "resource-lists/users/sip:alice@example.com/my%20friends%3F%25"),
        ("alice", ALICE, "resource-lists/users/sip:alice@example.com/.hidden", CT[0][1],
         doc_body(1, 3), "resource-lists/users/sip:alice@example.com/%2Ehidden"),
        ("alice", ALICE, "pres-rules/users/sip:alice@example.com/index",
         "application/auth-policy+xml", rules, "pres-rules/users/sip:alice@example.com/index"),
        ("bob", bob, "resource-lists/users/sip:bob@example.com/index", CT[0][1], doc_body(2, 1),
         "resource-lists/users/sip:bob@example.com/index"),
    ]


def check_pg_export(ctx):
    dep = deploy_pg(ctx, "pgexport")
    dep.add_user("bob", "sip:bob@example.com", PASSWORD)
    addr = dep.procs["proxy"].http_addr
    docs = export_docs()
    for label, xui, uri, mt, body, _ in docs:
        r = e2e.digest_request(addr, e2e.DigestUser(label, xui, PASSWORD), "PUT",
                               "/xcap-root/" + uri, [("Content-Type", mt)], body, 10)
        expect(r.status == 201, "PUT %s: %s" % (uri, r.summary()))
    dest = os.path.join(dep.tmp, "export-all")
    rc, out, err = ctx.xdmctl(dep, "export", dest)  # the servers run
    expect(rc == 0 and err == "", "export exited %d: %r" % (rc, err))
    expect(out == "shared-list\t4 documents\npresence\t1 documents\nrls\t0 documents\nut\t0 documents\n",
           "export listed %r" % out)
    got = tree_files(dest)
    expect(got == {d[5]: d[4] for d in docs}, "exported %r" % sorted(got))
    if getattr(ctx, "exported", None):
        # The LMDB deployment of check_export holds the same documents: the same tree.
        expect(got == tree_files(ctx.exported[1]), "the trees of LMDB and PostgreSQL differ")
    dest = os.path.join(dep.tmp, "export-bob")
    rc, out, err = ctx.xdmctl(dep, "export", dest, "--user", "sip:bob@example.com")
    expect(rc == 0 and err == "" and out == "shared-list\t1 documents\npresence\t0 documents\n"
           "rls\t0 documents\nut\t0 documents\n", "export --user: %d %r %r" % (rc, out, err))
    expect(tree_files(dest) == {docs[4][5]: docs[4][4]}, "exported for bob")
    ctx.pg_exported = (dep, os.path.join(dep.tmp, "export-all"), docs)


def check_pg_import(ctx):
    if not getattr(ctx, "pg_exported", None):
        raise Fail("needs pg_export first")
    src_dep, tree, docs = ctx.pg_exported
    bad = os.path.join(src_dep.tmp, "import-src")
    shutil.copytree(tree, bad)
    for rel, body in {
            "resource-lists/users/sip:carol@example.com/index": b"<not-a-list/>",
            "resource-lists/users/sip:carol@example.com/broken": b"<resource-lists",
            "nope/users/sip:carol@example.com/index": doc_body(3, 3)}.items():
        os.makedirs(os.path.dirname(os.path.join(bad, rel)), exist_ok=True)
        with open(os.path.join(bad, rel), "wb") as f:
            f.write(body)
    # Fresh databases without a schema: import creates it, as a starting server would.
    dst = deploy_pg(ctx, "pgimport", start=False)
    rc, out, err = ctx.xdmctl(dst, "import", bad)
    expect(rc == 1 and out == "imported 5 documents, refused 3\n", "import: %d %r" % (rc, out))
    refused = sorted(err.splitlines())
    expect(len(refused) == 3 and
           "xdmctl: refused nope/users/sip:carol@example.com/index: no XDMS serves the "
           "application usage \"nope\"" in refused and
           "xdmctl: refused resource-lists/users/sip:carol@example.com/index: 409 "
           "schema-validation-error: the document element must be <resource-lists> in namespace "
           "urn:ietf:params:xml:ns:resource-lists" in refused and
           any(l.startswith("xdmctl: refused resource-lists/users/sip:carol@example.com/broken: "
                            "409 not-well-formed: ") for l in refused), "import reported %r" % err)
    expect(sorted(os.listdir(os.path.join(dst.tmp, "data"))) == ["aggproxy", "xdm.conf"],
           "import on PostgreSQL made LMDB stores: %r" % os.listdir(os.path.join(dst.tmp, "data")))
    dst.add_user("bob", "sip:bob@example.com", PASSWORD)
    dst.start()
    addr = dst.procs["proxy"].http_addr
    for label, xui, uri, _, body, _ in docs:
        r = e2e.digest_request(addr, e2e.DigestUser(label, xui, PASSWORD), "GET",
                               "/xcap-root/" + uri, [], b"", 10)
        expect(r.status == 200 and r.body == body, "GET %s after import: %s" % (uri, r.summary()))


def check_pg_check(ctx):
    dep = deploy_pg(ctx, "pgcheck")
    addr = dep.procs["proxy"].http_addr
    alice = e2e.DigestUser("alice", ALICE, PASSWORD)
    with open(os.path.join(HERE, "files", "rls1.xml"), "rb") as f:
        rls = f.read()
    for uri, mt, body in [
            ("resource-lists/users/%s/index" % ALICE, CT[0][1], doc_body(1, 1)),
            ("rls-services/users/%s/index" % ALICE, "application/rls-services+xml", rls)]:
        r = e2e.digest_request(addr, alice, "PUT", "/xcap-root/" + uri, [("Content-Type", mt)],
                               body, 10)
        expect(r.status == 201, "PUT %s: %s" % (uri, r.summary()))
    rc, out, err = ctx.xdmctl(dep, "check")  # beside the running servers
    expect(rc == 0 and err == "", "check of a sound store: %d %r %r" % (rc, out, err))
    expect(out == "shared-list: 1 documents, 1 change records, 0 problems\n"
           "presence: 0 documents, 0 change records, 0 problems\n"
           "rls: 2 documents, 2 change records, 0 problems\n"
           "ut: 0 documents, 0 change records, 0 problems\n", "check printed %r" % out)

    # Damage planted through the store API, past the engine (the servers stopped).
    stop_all(dep)
    poke = os.path.join(ctx.runner.build, "tests", "store_poke")
    bad = os.path.join(dep.tmp, "bad.xml")
    with open(bad, "wb") as f:
        f.write(b"<not-a-list/>")
    same = os.path.join(dep.tmp, "same.xml")
    with open(same, "wb") as f:
        f.write(doc_body(1, 1))
    sl, rl = "pg:" + dep.pg_conninfo_of["shared-list"], "pg:" + dep.pg_conninfo_of["rls"]
    for argv in [[sl, "put", "resource-lists", "users", ALICE, "bad", bad],
                 [sl, "put", "resource-lists", "users", ALICE, "index", same],
                 [rl, "kvdel", "rls_uri", "sip:alice-friends@example.com"]]:
        p = subprocess.run([poke] + argv, capture_output=True, timeout=30)
        expect(p.returncode == 0, "store_poke %s: %r" % (argv, p.stderr))
    rc, out, err = ctx.xdmctl(dep, "check")
    expect(rc == 1 and err == "", "check of a damaged store exited %d: %r" % (rc, err))
    lines = out.splitlines()
    expect(len(lines) == 7, "check: %r" % lines)
    want = [
        "shared-list: resource-lists/users/sip:alice@example.com/bad: schema-validation-error: "
        "the document element must be <resource-lists> in namespace "
        "urn:ietf:params:xml:ns:resource-lists",
        "shared-list: 2 documents, 1 change records, 2 problems",
        "presence: 0 documents, 0 change records, 0 problems",
        "rls: rls-services/users/sip:alice@example.com/index: service URI "
        "sip:alice-friends@example.com is not indexed to it in rls_uri",
        "rls: 2 documents, 2 change records, 1 problems",
        "ut: 0 documents, 0 change records, 0 problems",
    ]
    expect(lines[:1] == want[:1] and lines[2:] == want[1:], "check: %r" % lines)
    m = re.match(r'^shared-list: resource-lists/users/sip:alice@example\.com/index: ETag '
                 r'(\S+), but its newest change record \(\d+\) says (\S+)$', lines[1])
    expect(m and m.group(1) != m.group(2), "check: %r" % lines[1])


def check_pg_cluster(ctx):
    """xdmctl --data DIR of a cluster as `tools/xdm run --cluster --data DIR` starts it, without
    --config: it finds the role databases in DIR/cluster.conf."""
    top = tempfile.mkdtemp(prefix="xdm-e2e-xdmctl-cluster-")
    os.chmod(top, 0o711)  # as root, PostgreSQL runs as the postgres user, who must pass through
    data = os.path.join(top, "data")
    c = xdmcluster.Cluster(ctx.runner.build, data, instances=1, standby=False)
    try:
        try:
            c.start()
        except RuntimeError as e:
            raise Fail("the cluster did not start: %s" % e)
        c.add_user(ALICE, PASSWORD)
        alice = e2e.DigestUser("alice", ALICE, PASSWORD)
        uri = "resource-lists/users/%s/index" % ALICE
        r = e2e.digest_request(c.proxy_addr, alice, "PUT", "/xcap-root/" + uri, CT,
                               doc_body(1, 1), 10)
        expect(r.status == 201, "PUT %s: %s" % (uri, r.summary()))
        xdmctl = os.path.join(ctx.runner.build, BIN_XDMCTL)
        dest = os.path.join(top, "export")
        p = subprocess.run([xdmctl, "--data", data, "export", dest], capture_output=True,
                           timeout=60, env=ctx.runner.env)
        expect(p.returncode == 0 and p.stderr == b"" and p.stdout ==
               b"shared-list\t1 documents\npresence\t0 documents\nrls\t0 documents\n",
               "export of the cluster: %d %r %r" % (p.returncode, p.stdout, p.stderr))
        expect(tree_files(dest) == {uri: doc_body(1, 1)}, "exported %r" % tree_files(dest))
        p = subprocess.run([xdmctl, "--data", data, "backup", os.path.join(top, "backup")],
                           capture_output=True, timeout=60, env=ctx.runner.env)
        # The cluster runs no ut XDMS: its backup has no ut store.
        expect(p.returncode == 0 and p.stderr == b"" and lines_of(p.stdout.decode()) ==
               [e for e in ENVS if e != "ut"], "backup of the cluster: %d %r %r" % (p.returncode, p.stdout,
                                                                p.stderr))
    finally:
        rcs = c.stop()
    expect(all(rc in (0, -15) for rc in rcs.values()), "cluster exits: %r" % rcs)
    shutil.rmtree(top, ignore_errors=True)


CHECKS = [check_backup_under_load, check_refusals, check_export, check_import, check_check,
          check_kamailio, check_kamailio_dumps, check_openxcap, check_pg_backup_under_load,
          check_pg_export, check_pg_import, check_pg_check, check_pg_cluster]


def main():
    args = script_args(__doc__)
    tally = Tally()
    ctx = Context(args)

    def alive():
        for d in ctx.deps:
            d.check_alive()

    try:
        for c in selected(CHECKS, args.filter):
            tally.check(c.__name__[6:], c, ctx, after=alive,
                        errors=(Fail, OSError, subprocess.TimeoutExpired))
    finally:
        if getattr(ctx, "pg", None):
            ctx.pg.stop()
        if getattr(ctx, "pg_dir", None) and not tally.failed:
            shutil.rmtree(ctx.pg_dir, ignore_errors=True)
        for d in ctx.deps:
            for msg in d.finish(args.keep or tally.failed):
                tally.fail(msg)
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The right subscribers, and only they, hear of a change while many other subscriptions exist
(RFC 5875 §4.3-§4.5 over RFC 6665).

One `xdms --role shared-list` with notify_max_subscriptions above the former fixed bound of
10 000 holds more subscriptions than that bound: most of them ("noise") watch other users'
documents, other users' whole trees, global documents and elements of other documents. A few
("targets") watch alice's index in each form a subscription can take — the document, an element
of it, alice's whole tree, every user's documents (a sip_server), the document watched by a
server — and a few more watch close neighbours that must not match: another directory of
alice, another document of hers, the global tree, a document of bob. This test plays the SIP
proxy (P-Asserted-Identity from 127.0.0.1) and every subscriber, over TCP, in one process, and
checks, each step bounded in time:

1. every subscription is accepted (200, then its initial NOTIFY);
2. a PUT of alice's index is reported to exactly the targets, each once, and to no other
   dialog (NOTIFYs are told apart by Call-ID; the test waits a settle time after the last
   expected one);
3. after two targets unsubscribe (Expires: 0) and one more watcher of the document expires
   (Expires: 2), the next PUT reaches exactly the targets left;
4. after a restart of the XDMS (its subscriptions saved in the store and restored), the next
   PUT again reaches exactly those.

    python3 tests/e2e/notify_index.py --build build [-v] [--noise 10100]

Prints one PASS/FAIL line per check and `counts: P passed, F failed`; exits non-zero when a check
failed or a sanitizer report appears in the server's output. Standard library only.
"""

import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import has_sanitizer_report  # noqa: E402
from sip_peer import ALICE, Peer, Sub, check, results  # noqa: E402

PER_IDENTITY = 100
SETTLE = 1.0


class IndexSub(Sub):
    def __init__(self, i, identity, entry, expires=3600):
        super().__init__("ix", i, identity, entry, expires)
        self.terminated = False


class Test(Peer):
    DOC = ('<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists '
           'xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="v%d"><entry '
           'uri="sip:bob@example.com"/></list></resource-lists>\n')

    def __init__(self, args):
        super().__init__(args, "xdm-notify-index-", "ix")
        self.events = []  # (call_id, Subscription-State, body) of NOTIFYs after the initial

    def config(self):
        n_servers = (self.args.noise + PER_IDENTITY - 1) // PER_IDENTITY + 2
        return ("notify_max_subscriptions = %d\n" % (self.args.noise + 100)
                + "".join("sip_server = sip:srv%d@example.com\n" % k for k in range(n_servers)))

    def notified(self, s, state, body, now, initial):
        if not initial:
            self.events.append((s.call_id, state, body))
        if state.startswith(b"terminated"):
            s.terminated = True

    def subscribe_all(self, subs):
        sent, window = 0, 300
        end = time.monotonic() + self.args.time_limit
        # The 200 (on our connection to the XDMS) and the initial NOTIFY (on its connection to
        # us) may arrive in either order: wait for both.
        while not all(s.initial and s.answered for s in subs):
            while sent < len(subs) and sent - sum(1 for s in subs[:sent] if s.initial) < window:
                self.subscribe(subs[sent])
                sent += 1
            self.pump(0.05)
            refused = [s for s in subs[:sent] if s.refused]
            if refused:
                raise RuntimeError("SUBSCRIBE %s refused: %s" % (refused[0].entry,
                                                                 refused[0].refused))
            if time.monotonic() > end:
                raise RuntimeError("time limit while subscribing (%d of %d)"
                                   % (sum(1 for s in subs if s.initial), len(subs)))

    def notified_by(self, k, expected):
        """PUTs version k; returns the Call-IDs of the dialogs notified (with repeats) once every
        expected one was and SETTLE seconds passed without another."""
        self.events = []
        status = self.put(k)
        if status != 200:
            raise RuntimeError("PUT answered %d" % status)
        end = time.monotonic() + 20
        last = time.monotonic()
        while time.monotonic() < end:
            n = len(self.events)
            self.pump(0.05)
            if len(self.events) != n:
                last = time.monotonic()
            got = {cid for cid, _, _ in self.events}
            if expected <= got and time.monotonic() - last > SETTLE:
                break
        return [cid for cid, _, _ in self.events]

    def run(self):
        self.listen()
        self.start()
        status = self.put(0)
        if status not in (200, 201):
            raise RuntimeError("initial PUT answered %d" % status)
        i = 0
        targets, near, noise = [], [], []

        def add(lst, identity, entry, expires=3600):
            nonlocal i
            s = IndexSub(i, identity, entry, expires)
            i += 1
            self.subs[s.call_id] = s
            lst.append(s)
            return s

        user = "resource-lists/users/%s/" % ALICE
        add(targets, ALICE, user + "index")
        add(targets, ALICE, user + "index/~~/resource-lists/list")
        add(targets, ALICE, user)
        add(targets, "sip:srv0@example.com", "resource-lists/users/")
        add(targets, "sip:srv1@example.com", user + "index")
        add(targets, ALICE, user + "index")               # unsubscribes in step 3
        add(targets, "sip:srv1@example.com", user)        # unsubscribes in step 3
        add(near, ALICE, user + "d/")
        add(near, ALICE, user + "index2")
        add(near, ALICE, "resource-lists/global/")
        add(near, ALICE, "resource-lists/global/index")
        add(near, "sip:srv1@example.com", "resource-lists/users/sip:bob@example.com/index")
        add(near, "sip:srv1@example.com", "resource-lists/users/sip:bob@example.com/")
        for k in range(self.args.noise):
            o = "resource-lists/users/sip:o%d@example.com/" % k
            form = k % 4
            entry = (o + "index" if form == 0 else o if form == 1 else
                     "resource-lists/global/x%d" % k if form == 2 else
                     o + "index/~~/resource-lists/list")
            add(noise, "sip:srv%d@example.com" % (k // PER_IDENTITY + 2), entry)
        everyone = targets + near + noise
        t0 = time.monotonic()
        self.subscribe_all(everyone)
        check(all(s.answered and s.initial for s in everyone),
              "%d subscriptions accepted, each with its initial NOTIFY (%.1f s), more than "
              "the former fixed bound of 10 000" % (len(everyone), time.monotonic() - t0)
              if len(everyone) > 10000 else
              "%d subscriptions accepted, each with its initial NOTIFY" % len(everyone))

        want = {s.call_id for s in targets}
        got = self.notified_by(1, want)
        check(sorted(got) == sorted(want),
              "a PUT of alice's index reaches exactly the %d targets, once each (%d NOTIFYs; "
              "strays: %d, missing: %d)" % (len(want), len(got), len(set(got) - want),
                                            len(want - set(got))))

        # Step 3: two unsubscribe, one expires (subscribed only now, for 2 s).
        short = add([], ALICE, user + "index", 2)
        self.subscribe_all([short])
        gone = targets[5:7]
        for s in gone:
            self.subscribe(s, expires=0, in_dialog=True)
        end = time.monotonic() + 10
        while time.monotonic() < end and not all(s.terminated for s in gone + [short]):
            self.pump(0.05)
        check(all(s.terminated for s in gone + [short]),
              "two unsubscribed and one expired (terminated NOTIFYs)")
        left = {s.call_id for s in targets[:5]}
        got = self.notified_by(2, left)
        strays = [c for c in got if c not in left]
        check(sorted(got) == sorted(left),
              "then a PUT reaches exactly the %d targets left (%d NOTIFYs, strays %s)"
              % (len(left), len(got), strays[:3]))

        # Step 4: restart; saved subscriptions come back.
        rc = self.stop()
        check(rc == 0, "the XDMS stops with SIGTERM (status %s)" % rc)
        self.start()
        got = self.notified_by(3, left)
        got = [c for c in got]
        check(sorted(set(got)) == sorted(left) and all(c in left for c in got),
              "after a restart a PUT reaches exactly the %d targets left (%d NOTIFYs)"
              % (len(left), len(got)))

    def close(self):
        try:
            self.stop()
        except (RuntimeError, OSError):
            pass
        out = self.output()
        check(not has_sanitizer_report(out), "no sanitizer report in the XDMS's output")
        if self.args.verbose or not all(results):
            sys.stdout.write(out.decode(errors="replace")[-4000:])
        shutil.rmtree(self.tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--noise", type=int, default=10100)
    ap.add_argument("--time-limit", type=float, default=240.0)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    t = Test(args)
    try:
        t.run()
    except (RuntimeError, OSError) as e:
        check(False, "scenario: %s" % e)
    finally:
        t.close()
    print("counts: %d passed, %d failed" % (sum(results), len(results) - sum(results)))
    return 0 if results and all(results) else 1


if __name__ == "__main__":
    sys.exit(main())

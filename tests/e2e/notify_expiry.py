#!/usr/bin/env python3
"""A subscription ends when its granted duration runs out, neither before nor long after
(RFC 6665 §4.1.2.2 and §4.2.2: "terminated;reason=timeout"), whatever the other subscriptions.

One `xdms --role shared-list` (min_expires = 1) holds a few hundred long subscriptions (an hour);
then eight short ones (Expires: 2) are sent 125 ms apart, so their ends fall at eight different
points of a second. This test plays the SIP proxy (P-Asserted-Identity from 127.0.0.1) and every
subscriber, over TCP, in one process, and checks, each step bounded in time:

1. every subscription is accepted (200, then its initial NOTIFY);
2. each short subscription gets its final NOTIFY with "terminated;reason=timeout" no sooner than
   2 s after its SUBSCRIBE was sent and at most 2 s + SLACK after its 200 arrived (a notifier that
   looks at expiries only once a second ends some of them early or late by up to a second: eight
   ends spread over a second cannot all fall in a window of SLACK < 0.8 s that way); a round
   with a late end and no early one is repeated once (a busy machine may hold a process back;
   nothing makes an end early);
3. a refresh moves the end: a subscription of 2 s refreshed after 1 s for 3 s more ends 3 s after
   the refresh (not at its first end), and the NOTIFY that answers the refresh says
   "active;expires=N" with N the whole seconds left (2 or 3);
4. no long subscription was ended meanwhile;
5. the XDMS stops cleanly (exit 0, no sanitizer report).

    python3 tests/e2e/notify_expiry.py --build build [-v] [--others 300]

Prints one PASS/FAIL line per check and `counts: P passed, F failed`; exits non-zero when a check
failed. Standard library only.
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
SHORT = 2          # seconds granted to the short subscriptions
SHORTS = 8         # short subscriptions, sent SPACING apart
SPACING = 0.125
SLACK = 0.6        # how long after its end a final NOTIFY may arrive


class ExpirySub(Sub):
    def __init__(self, i, identity, entry, expires):
        super().__init__("exp", i, identity, entry, expires)
        self.states = []        # (time, Subscription-State) of the NOTIFYs after the initial
        self.ended = None       # time of the terminated NOTIFY
        self.reason = b""


class Test(Peer):
    def __init__(self, args):
        super().__init__(args, "xdm-notify-expiry-", "exp")
        self.count = 0

    def notified(self, s, state, body, now, initial):
        if not initial:
            s.states.append((now, state))
        if state.startswith(b"terminated") and s.ended is None:
            s.ended = now
            s.reason = state

    def add(self, identity, entry, expires):
        s = ExpirySub(self.count, identity, entry, expires)
        self.count += 1
        self.subs[s.call_id] = s
        return s

    def wait(self, what, cond, limit):
        end = time.monotonic() + limit
        while not cond():
            if time.monotonic() > end:
                raise RuntimeError("time limit waiting for %s" % what)
            refused = [s for s in self.subs.values() if s.refused]
            if refused:
                raise RuntimeError("SUBSCRIBE refused: %s" % refused[0].refused)
            self.pump(0.01)

    def run(self):
        self.listen()
        self.start()
        if self.put(0) not in (200, 201):
            raise RuntimeError("initial PUT failed")
        longs = []
        for k in range(self.args.others):
            who = "sip:u%d@example.com" % (k // PER_IDENTITY)
            longs.append(self.add(who, "resource-lists/users/%s/d%d" % (who, k), 3600))
        sent = 0
        end = time.monotonic() + 60
        while not all(s.initial and s.answered for s in longs):
            while sent < len(longs) and sent - sum(1 for s in longs[:sent] if s.initial) < 200:
                self.subscribe(longs[sent])
                sent += 1
            self.pump(0.05)
            if time.monotonic() > end:
                raise RuntimeError("time limit while subscribing")
        # A round of short subscriptions; a second round only when the first saw an end late
        # and none early: a busy machine may hold a process back, but no delay makes an end
        # come early.
        for attempt in (1, 2):
            result = self.round(longs)
            if result["ok"] or result["early"] or attempt == 2:
                break
            print("NOTE round 1 saw a late end (a busy machine?): %s; once more"
                  % result["spread"])
        check(result["accepted"], "%d subscriptions accepted, each with its initial NOTIFY"
              % (len(longs) + SHORTS + 1))
        check(result["shorts_ok"],
              "each of %d subscriptions of %d s ends with reason=timeout after %d s to %d.%d s "
              "(seconds from each SUBSCRIBE to its final NOTIFY: %s)"
              % (SHORTS, SHORT, SHORT, SHORT, int(SLACK * 10), result["spread"]))
        check(result["refresh_ok"], result["refresh"])
        check(result["state_ok"], result["state"])
        check(not any(s.ended for s in longs),
              "none of the %d subscriptions of an hour ended" % len(longs))

    def round(self, longs):
        user = "resource-lists/users/%s/" % ALICE
        shorts = [self.add(ALICE, user + "index", SHORT) for _ in range(SHORTS)]
        refreshed = self.add(ALICE, user + "index", SHORT)
        self.subscribe(refreshed)
        for s in shorts:
            self.subscribe(s)
            t = time.monotonic() + SPACING
            while time.monotonic() < t:
                self.pump(max(0.0, t - time.monotonic()))
        self.wait("the short subscriptions' 200s and initial NOTIFYs",
                  lambda: all(s.answered and s.initial for s in shorts + [refreshed]), 10)
        r = {"accepted": all(s.initial for s in longs + shorts + [refreshed])}
        # The refresh, one second into the first grant of SHORT seconds.
        t = refreshed.sent + 1.0
        while time.monotonic() < t:
            self.pump(max(0.0, t - time.monotonic()))
        first_sent = refreshed.sent
        self.subscribe(refreshed, expires=SHORT + 1, in_dialog=True)
        self.wait("the final NOTIFYs of the short subscriptions",
                  lambda: all(s.ended for s in shorts + [refreshed]), SHORT + 10)
        early = [s for s in shorts if s.ended - s.sent < SHORT - 1e-4]
        late = [s for s in shorts if s.ended - s.answered > SHORT + SLACK]
        r["spread"] = " ".join("%.3f" % (s.ended - s.sent) for s in shorts)
        r["shorts_ok"] = (all(s.reason.startswith(b"terminated;reason=timeout") for s in shorts)
                          and not early and not late)
        after = refreshed.ended - refreshed.sent
        r["early"] = bool(early) or refreshed.ended - first_sent < SHORT + 1 or after < SHORT + 1
        r["refresh_ok"] = (refreshed.reason.startswith(b"terminated;reason=timeout")
                           and not r["early"]
                           and after <= SHORT + 1 + SLACK + (refreshed.answered - refreshed.sent))
        r["refresh"] = ("a refresh after 1 s for %d s more moves the end: final NOTIFY %.2f s after "
                        "the refresh, %.2f s after the first SUBSCRIBE"
                        % (SHORT + 1, after, refreshed.ended - first_sent))
        states = [st for at, st in refreshed.states if at >= refreshed.sent]
        r["state_ok"] = len(states) >= 2 and states[0] in (b"active;expires=%d" % (SHORT + 1),
                                                             b"active;expires=%d" % SHORT)
        r["state"] = ("the NOTIFY answering the refresh says the whole seconds left: %s"
                      % (states[0].decode() if states else "none"))
        r["ok"] = r["accepted"] and r["shorts_ok"] and r["refresh_ok"] and r["state_ok"]
        return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--others", type=int, default=300)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("-v", action="store_true")
    ap.add_argument("--filter", action="append")
    args = ap.parse_args()
    t = Test(args)
    try:
        t.run()
    except (RuntimeError, OSError) as e:
        check(False, "scenario: %s" % e)
    finally:
        rc = t.stop()
        out = t.output()
        check(rc == 0, "the XDMS stops cleanly (exit %s)" % rc)
        check(not has_sanitizer_report(out), "no sanitizer report in the XDMS's output")
        if args.v or not all(results):
            sys.stdout.write(out.decode(errors="replace")[-3000:])
        if args.keep:
            print("kept %s" % t.tmp)
        else:
            shutil.rmtree(t.tmp, ignore_errors=True)
    passed = sum(results)
    print("counts: %d passed, %d failed" % (passed, len(results) - passed))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())

/* NOTIFY sending (RFC 6665 §4.2.2, RFC 5875): one NOTIFY in flight per dialog, later changes
 * queued behind it in commit order, the minimum interval between NOTIFYs held back by a timer;
 * and the SIP thread's re-entrancy depth, which reaps ended subscriptions when it drops to zero. */
#include "notify_internal.h" /* before sofia-sip: it sets the magic types of its callbacks */

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <sofia-sip/msg_addr.h>
#include <sofia-sip/nta.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_tagarg.h>
#include <sofia-sip/su_wait.h>
#include <sofia-sip/tport_tag.h>
#include <sofia-sip/url.h>

#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "store.h"
#include "xcap_uri.h"

static bool notify_send_idle(const struct notifier *n)
{
    if (!n->persist)
        return n->n_subs == 0;
    for (const struct notify_sub *s = n->subs; s; s = s->next)
        if (s->orq)
            return false;
    return true;
}

void notifier_enter(struct notifier *n)
{
    n->depth++;
}

void notifier_leave(struct notifier *n)
{
    if (--n->depth > 0)
        return;
    notify_subs_reap(n);
    if (n->stopping && notify_send_idle(n) && !n->broken) {
        n->broken = true;
        su_root_break(n->root);
    }
}

/* ---- NOTIFY ---- */

static int notify_send_on_response(struct notify_sub *s, nta_outgoing_t *orq, const sip_t *sip);

static bool notify_send_has_work(const struct notify_sub *s)
{
    if (s->dead || s->final_sent || s->orq)
        return false;
    /* A persisted subscription outlives a stop: nothing more is sent then. */
    if (s->n->stopping && s->n->persist && !s->term_reason)
        return false;
    return s->full_pending || s->n_pending > 0 || s->nodes_due || s->term_reason || s->force_notify;
}

static void notify_send_on_hold(struct notifier *n, su_timer_t *t, struct notifier *arg);

/* Asks for a poll at due (monotonic ms), for NOTIFYs held back by the minimum interval. */
static void notify_send_hold(struct notifier *n, int64_t due)
{
    if (n->hold_armed && n->hold_due <= due)
        return;
    int64_t wait = due - notify_now_ms();
    if (su_timer_set_interval(n->hold, notify_send_on_hold, n,
                              (su_duration_t)(wait > 1 ? wait : 1)) < 0)
        return;
    n->hold_armed = true;
    n->hold_due = due;
}

/* Puts s on n->held (once): the hold timer flushes it. */
static void notify_send_held(struct notifier *n, struct notify_sub *s)
{
    if (s->held)
        return;
    if (n->n_held == n->cap_held) {
        size_t cap = n->cap_held ? 2 * n->cap_held : 64;
        struct notify_sub **nh = realloc(n->held, cap * sizeof *nh);
        if (!nh) {
            n->sweep = true; /* the hold timer's poll visits everyone instead */
            return;
        }
        n->held = nh;
        n->cap_held = cap;
    }
    n->held[n->n_held++] = s;
    s->held = true;
}

/* The body of the next NOTIFY of s into b: the full state, or the queued changes and node
 * reports; counts what it reports in *items. Returns 0 or -1 (too big, store error). */
static int notify_send_body(struct notify_sub *s, struct store_txn *t, bool full, struct buf *b,
                            size_t *items)
{
    int rc = notify_diff_open(b, s->n->cfg.xcap_root);
    if (rc == 0 && full) {
        rc = notify_diff_full(s, t, b);
        *items = 1;
    } else if (rc == 0) {
        rc = notify_diff_pending(s, b, items);
        if (rc == 0 && s->nodes_due)
            rc = notify_diff_nodes(s, t, b, false, items);
    }
    if (rc == 0)
        rc = notify_diff_close(b);
    return rc;
}

/* Sends the next NOTIFY of s when one is due and none is in flight (RFC 6665 §4.2.2: NOTIFYs of
 * a dialog are not sent in parallel, so they arrive in commit order). t may be NULL when the
 * store could not be read; a NOTIFY that needs it then waits for the next poll. */
static void notify_send_flush(struct notify_sub *s, struct store_txn *t)
{
    struct notifier *n = s->n;
    if (!notify_send_has_work(s) || ((s->full_pending || s->nodes_due) && !t))
        return;
    bool full = s->full_pending;
    /* RFC 5875 §4.7: change reports keep a minimum distance; the initial, refresh and final NOTIFYs
     * are answers to the subscriber and go at once. */
    if (!full && !s->term_reason && !s->force_notify && n->cfg.min_interval_ms > 0) {
        int64_t due = s->last_sent_ms + n->cfg.min_interval_ms;
        if (notify_now_ms() < due) {
            notify_send_hold(n, due);
            notify_send_held(n, s);
            return;
        }
    }
    struct buf body;
    buf_init(&body, NOTIFY_MAX_NOTIFY_BODY);
    size_t items = 0;
    /* A change reported alone has the same body for every subscription of one mode: a fan-out
     * builds it once (the first of them) and the others send that copy. */
    struct notify_change *alone =
        !full && !s->nodes_due && s->n_pending == 1 ? s->pending[0] : NULL;
    const char *payload = NULL;
    size_t payload_len = 0;
    int rc = 0;
    notify_change_ref(alone);
    if (alone && alone->body[s->mode]) {
        payload = alone->body[s->mode];
        payload_len = alone->body_len[s->mode];
        items = 1;
    } else {
        rc = notify_send_body(s, t, full, &body, &items);
        if (rc == 0 && alone && items > 0) {
            char *copy = malloc(body.len + 1);
            if (copy) {
                memcpy(copy, body.data, body.len);
                copy[body.len] = '\0';
                alone->body[s->mode] = copy;
                alone->body_len[s->mode] = body.len;
            }
        }
        payload = body.data;
        payload_len = body.len;
    }
    bool changes = !full && items > 0;
    s->nodes_due = false;
    if (rc == 0 && items == 0 && !s->term_reason && !s->force_notify) {
        /* Nothing the subscriber can see changed (e.g. a document created and deleted again,
         * another element of a watched document). */
        notify_change_pending_clear(s);
        notify_change_unref(alone);
        notify_subs_mark(s);
        buf_release(&body);
        return;
    }
    if (rc < 0) {
        /* Too many documents for one NOTIFY (or out of memory): the state cannot be reported,
         * so the subscription ends (RFC 6665 §4.2.2, "deactivated": the subscriber may retry
         * with a smaller set). */
        log_warn("notifier: NOTIFY body for %s over %d bytes; ending the subscription", s->identity,
                 NOTIFY_MAX_NOTIFY_BODY);
        buf_reset(&body);
        s->term_reason = "deactivated";
        if (notify_diff_open(&body, n->cfg.xcap_root) < 0 || notify_diff_close(&body) < 0) {
            notify_change_unref(alone);
            buf_release(&body);
            notify_subs_kill(s);
            return;
        }
        payload = body.data;
        payload_len = body.len;
    }
    /* Saving advances lazily (a crash then repeats a few changes, which a client recognises by
     * their ETags), except the end of a full state: restored with "full" still set, the
     * subscriber would get the full state again instead of the next change. */
    s->urgent |= full;
    s->full_pending = false;
    s->force_notify = false;
    s->sent_seq = s->n_pending > 0     ? s->pending[0]->seq - 1
                  : n->cursor > s->seq ? n->cursor
                                       : s->seq;
    notify_change_pending_clear(s);
    notify_subs_mark(s);
    if (changes)
        s->last_sent_ms = notify_now_ms();

    /* Subscription-State (RFC 6665 §8.2.3) and the payload are given as header structures,
     * Event and Content-Type as the notifier's parsed copies: nta copies them into the message
     * without parsing a string per NOTIFY. */
    char param[64];
    msg_param_t params[2] = {param, NULL};
    sip_subscription_state_t ss;
    sip_subscription_state_init(&ss);
    ss.ss_params = params;
    if (s->term_reason) {
        ss.ss_substate = "terminated";
        snprintf(param, sizeof param, "reason=%s", s->term_reason);
        ss.ss_reason = param + strlen("reason=");
    } else {
        /* Whole seconds left, rounded down: the subscription lasts at least as long as said. */
        int64_t left = (s->expires_ms - notify_now_ms()) / 1000;
        ss.ss_substate = "active";
        snprintf(param, sizeof param, "expires=%lld", (long long)(left > 0 ? left : 0));
        ss.ss_expires = param + strlen("expires=");
    }
    sip_payload_t pl;
    sip_payload_init(&pl);
    pl.pl_data = (char *)payload;
    pl.pl_len = (usize_t)payload_len;
    bool plain_event = strcmp(s->event, "xcap-diff") == 0;
    /* A transport error may be reported from inside nta_outgoing_tcreate(); the callback then
     * only records it (sending) and it is handled here, once orq is known. */
    s->sending = true;
    s->sync_status = 0;
    nta_outgoing_t *orq = nta_outgoing_tcreate(
        s->leg, notify_send_on_response, s, NULL, SIP_METHOD_NOTIFY, NULL,
        SIPTAG_CONTACT(n->contact_hdr), TAG_IF(plain_event, SIPTAG_EVENT(n->event_hdr)),
        TAG_IF(!plain_event, SIPTAG_EVENT_STR(s->event)), SIPTAG_SUBSCRIPTION_STATE(&ss),
        SIPTAG_CONTENT_TYPE(n->ct_hdr), SIPTAG_PAYLOAD(&pl), TAG_END());
    s->sending = false;
    s->notify_len = payload_len;
    notify_change_unref(alone);
    buf_release(&body);
    if (orq && s->sync_status >= 200) {
        nta_outgoing_destroy(orq);
        orq = NULL;
    }
    if (!orq) {
        metrics_count(METRICS_NOTIFY_FAILED, 1);
        if (!s->term_reason)
            log_warn("notifier: cannot send NOTIFY to %s (%d); subscription removed", s->identity,
                     s->sync_status);
        notify_subs_kill(s);
        return;
    }
    s->orq = orq;
    metrics_count(METRICS_NOTIFY_SENT, 1);
    if (s->term_reason)
        s->final_sent = true;
}

/* Sends what queued up for s while its previous NOTIFY was in flight. Only s is visited: with
 * thousands of subscriptions answering a fan-out, a full poll per answer would cost n². Changes
 * committed meanwhile come with their own wake-up. */
static void notify_send_continue(struct notify_sub *s)
{
    struct notifier *n = s->n;
    if (n->in_poll) {
        notify_change_due(n, s);
        n->poll_again = true;
        return;
    }
    struct store_txn *t = NULL;
    if ((s->full_pending || s->nodes_due) && store_txn_begin(n->store, false, &t) != STORE_OK)
        t = NULL;
    n->in_poll = true;
    notify_send_flush(s, t);
    n->in_poll = false;
    if (t)
        store_txn_abort(t);
    if (s->urgent && !s->dead)
        notify_subs_save(n, false);
}

static int notify_send_on_response(struct notify_sub *s, nta_outgoing_t *orq, const sip_t *sip)
{
    (void)sip;
    struct notifier *n = s->n;
    int status = nta_outgoing_status(orq);
    if (status < 200)
        return 0;
    if (s->sending) {
        s->sync_status = status;
        return 0;
    }
    notifier_enter(n);
    nta_outgoing_destroy(orq);
    s->orq = NULL;
    if (status >= 300) {
        metrics_count(METRICS_NOTIFY_FAILED, 1);
        /* RFC 6665 §4.2.2: 481 (and any other failure, including the 408 nta reports on timeout)
         * ends the subscription without a further NOTIFY. */
        if (!s->final_sent)
            log_info("notifier: NOTIFY to %s answered %d; subscription removed", s->identity,
                     status);
        notify_subs_kill(s);
    } else if (s->final_sent) {
        notify_subs_charge(s, CHARGING_NOTIFY_SENT, (unsigned)status, 0, s->notify_len);
        notify_subs_kill(s);
    } else {
        notify_subs_charge(s, CHARGING_NOTIFY_SENT, (unsigned)status, 0, s->notify_len);
        /* The subscriber has these changes: the record's position may move past them (saved
         * at the next tick; at once, next poll_ms, with other instances on the store). */
        notify_subs_mark(s);
        if (notify_send_has_work(s))
            notify_send_continue(s);
    }
    notifier_leave(n);
    return 0;
}

/* Flushes the subscriptions the change log found (n->due), or every one when n->sweep asks for
 * it. Returns whether one of them must be saved now. */
static bool notify_send_flush_due(struct notifier *n, struct store_txn *t)
{
    bool urgent = false;
    if (n->sweep) {
        n->sweep = false;
        for (struct notify_sub *s = n->subs; s; s = s->next) {
            notify_send_flush(s, t);
            urgent |= s->urgent && !s->dead;
        }
    } else {
        /* Flushing may put a subscription on the list again (and move the array). */
        for (size_t i = 0; i < n->n_due; i++) {
            struct notify_sub *s = n->due[i];
            s->due = false;
            notify_send_flush(s, t);
            urgent |= s->urgent && !s->dead;
        }
    }
    for (size_t i = 0; i < n->n_due; i++)
        n->due[i]->due = false;
    n->n_due = 0;
    /* Without a read snapshot a full state or node report waited: the next poll (the tick's at
     * the latest) visits everyone again. */
    if (!t)
        n->sweep = true;
    return urgent;
}

/* Reads the change log after the cursor and sends every due NOTIFY, all from one read snapshot,
 * so a full state and the cursor agree. A change reaches the subscriptions that watch its
 * document through the index (notify_index.c); only those are visited, unless n->sweep asks
 * for every one. Re-entrant calls (a response callback fired while sending) only ask for another
 * round. */
static void notify_send_poll(struct notifier *n)
{
    if (n->in_poll) {
        n->poll_again = true;
        return;
    }
    n->in_poll = true;
    bool more = false, urgent = false;
    do {
        n->poll_again = false;
        struct store_txn *t = NULL;
        enum store_rc rc = store_txn_begin(n->store, false, &t);
        if (rc != STORE_OK) {
            log_warn("notifier: cannot read the store: %s", store_strerror(rc));
            t = NULL;
        } else {
            rc = notify_change_read(n, t, &more);
            if (rc != STORE_OK)
                log_warn("notifier: cannot read the change log: %s", store_strerror(rc));
        }
        urgent |= notify_send_flush_due(n, t);
        if (t)
            store_txn_abort(t);
    } while (n->poll_again);
    n->in_poll = false;
    if (urgent)
        notify_subs_save(n, false);
    if (more)
        notifier_wake(n);
}

void notifier_poll(struct notifier *n)
{
    n->sweep = true;
    notify_send_poll(n);
}

void notifier_poll_changes(struct notifier *n)
{
    notify_send_poll(n);
}

static void notify_send_on_hold(struct notifier *n, su_timer_t *t, struct notifier *arg)
{
    (void)t;
    (void)arg;
    n->hold_armed = false;
    notifier_enter(n);
    /* The held subscriptions go to the due list; those whose time has not come yet are held
     * again, with the timer set for the earliest of them. */
    for (size_t i = 0; i < n->n_held; i++) {
        n->held[i]->held = false;
        notify_change_due(n, n->held[i]);
    }
    n->n_held = 0;
    if (!n->stopping)
        notifier_poll_changes(n);
    notifier_leave(n);
}

/* Declared in notify.h; here because NOTIFY sending wakes the loop with it too. */
void notifier_wake(struct notifier *n)
{
    if (!n)
        return;
    /* write(2) on an eventfd is async-signal-safe; EAGAIN means a wake-up is already pending. */
    uint64_t one = 1;
    ssize_t w = write(n->efd, &one, sizeof one);
    (void)w;
}

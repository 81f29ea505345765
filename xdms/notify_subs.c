/* Subscription records: their lifetime (a subscription ends by being marked dead and is freed
 * at the next reap, outside its own callbacks) and their persistence. Subscriptions are saved in
 * the store (NOTIFY_TABLE, key = our dialog tag) when it has that table: at creation and refresh
 * at once, their progress once a second (a crash then repeats a few changes, which the client
 * recognises by their ETags), and all of them at shutdown, which then sends no final NOTIFY. A
 * restart re-creates the dialogs and resumes after the last change reported. The record format
 * is pure (notify_internal.h); the rest runs in the SIP thread. */
#include "notify_internal.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sofia-sip/nta.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_wait.h>

#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

#define NOTIFY_MAX_RECORD (NOTIFY_MAX_BODY + 64 * 1024)

static const char *const notify_tables[] = {NOTIFY_TABLE, NOTIFY_LEASE_TABLE, NULL};

const char *const *notify_store_tables(void)
{
    return notify_tables;
}

/* ---- persisted record: "key value" lines, a blank line, then the resource-list body ---- */

void notify_subs_record_release(struct notify_record *r)
{
    free(r->call_id);
    free(r->local);
    free(r->remote);
    free(r->target);
    free(r->route);
    free(r->identity);
    free(r->event);
    free(r->hashes);
    free(r->body);
    free(r->owner);
    memset(r, 0, sizeof *r);
}

static bool notify_line_ok(const char *s)
{
    return s && !strpbrk(s, "\r\n");
}

/* "key value\n" with a string value. Returns 0 or -1. */
static int notify_subs_put_str(struct buf *out, const char *key, const char *value)
{
    return buf_puts(out, key) | buf_append(out, " ", 1) | buf_puts(out, value) |
           buf_append(out, "\n", 1);
}

/* Writes v in decimal so that it ends just before end; returns where it starts. */
static char *notify_subs_digits(char *end, uint64_t v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

/* "key value\n" with a decimal value (negative when neg). Returns 0 or -1. */
static int notify_subs_put_num(struct buf *out, const char *key, uint64_t v, bool neg)
{
    char digits[24];
    char *end = digits + sizeof digits;
    *--end = '\n';
    char *p = notify_subs_digits(end, v);
    if (neg)
        *--p = '-';
    return buf_puts(out, key) | buf_append(out, " ", 1) |
           buf_append(out, p, (size_t)(digits + sizeof digits - p));
}

/* The record is written once a second for every subscription whose position moved, so after a
 * fan-out for thousands of them: it is put together from pieces rather than with printf (which
 * formats twice in buf_printf(), to measure and to write). The bytes are those of the format
 * "v 1\ncall-id %s\n...full %d\n[owner %s\n](hash %zu %016x\n)*\n<body>". */
int notify_subs_record_encode(const struct notify_record *r, struct buf *out)
{
    if (!notify_line_ok(r->call_id) || !notify_line_ok(r->local) || !notify_line_ok(r->remote) ||
        !notify_line_ok(r->target) || !notify_line_ok(r->route) || !notify_line_ok(r->identity) ||
        !notify_line_ok(r->event) || (r->owner && !notify_line_ok(r->owner)))
        return -1;
    int rc = buf_puts(out, "v 1\n");
    rc |= notify_subs_put_str(out, "call-id", r->call_id);
    rc |= notify_subs_put_str(out, "local", r->local);
    rc |= notify_subs_put_str(out, "remote", r->remote);
    rc |= notify_subs_put_str(out, "target", r->target);
    rc |= notify_subs_put_str(out, "route", r->route);
    rc |= notify_subs_put_str(out, "identity", r->identity);
    rc |= notify_subs_put_str(out, "event", r->event);
    rc |= notify_subs_put_str(out, "mode", notify_mode_name(r->mode));
    rc |= notify_subs_put_num(
        out, "expires", r->expires < 0 ? (uint64_t)0 - (uint64_t)r->expires : (uint64_t)r->expires,
        r->expires < 0);
    rc |= notify_subs_put_num(out, "cseq", r->cseq, false);
    rc |= notify_subs_put_num(out, "rseq", r->rseq, false);
    rc |= notify_subs_put_num(out, "seq", r->seq, false);
    rc |= buf_puts(out, r->full ? "full 1\n" : "full 0\n");
    if (r->owner && r->owner[0])
        rc |= notify_subs_put_str(out, "owner", r->owner);
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < r->n_hashes; i++) {
        char line[64]; /* "hash IDX HEX16\n" */
        char *end = line + sizeof line;
        *--end = '\n';
        for (int k = 0; k < 16; k++)
            *--end = hex[(r->hashes[i] >> (4 * k)) & 0xf];
        *--end = ' ';
        char *p = notify_subs_digits(end, i);
        rc |= buf_append(out, "hash ", 5) | buf_append(out, p, (size_t)(line + sizeof line - p));
    }
    rc |= buf_puts(out, "\n");
    rc |= buf_append(out, r->body, r->body_len);
    return rc ? -1 : 0;
}

static char *notify_record_str(const char *v, size_t len)
{
    return strndup(v, len);
}

/* The string fields of a record, by key. */
static const struct {
    const char *key;
    size_t off;
} notify_subs_record_strs[] = {
    {"call-id", offsetof(struct notify_record, call_id)},
    {"local", offsetof(struct notify_record, local)},
    {"remote", offsetof(struct notify_record, remote)},
    {"target", offsetof(struct notify_record, target)},
    {"route", offsetof(struct notify_record, route)},
    {"identity", offsetof(struct notify_record, identity)},
    {"owner", offsetof(struct notify_record, owner)},
    {"event", offsetof(struct notify_record, event)},
};

/* "hash IDX HEX": the hash of entry IDX. 0, or -1 for a bad index or no memory. */
static int notify_subs_record_hash(struct notify_record *out, const char *num)
{
    char *end;
    unsigned long idx = strtoul(num, &end, 10);
    if (*end != ' ' || idx > NOTIFY_MAX_ENTRIES)
        return -1;
    uint64_t h = strtoull(end + 1, NULL, 16);
    if (idx >= out->n_hashes) {
        uint64_t *nh = realloc(out->hashes, (idx + 1) * sizeof *nh);
        if (!nh)
            return -1;
        for (size_t k = out->n_hashes; k <= idx; k++)
            nh[k] = 0;
        out->hashes = nh;
        out->n_hashes = idx + 1;
    }
    out->hashes[idx] = h;
    return 0;
}

/* One "key value" line (key: line[0..kl), value: v[0..vl)) into out; *version is set by "v".
 * Unknown keys are skipped: a newer version may add some. 0, or -1 for a bad line. */
static int notify_subs_record_line(struct notify_record *out, const char *line, size_t kl,
                                   const char *v, size_t vl, bool *version)
{
    char num[32];
    snprintf(num, sizeof num, "%.*s", (int)(vl < sizeof num ? vl : sizeof num - 1), v);
#define KEY(s) (kl == strlen(s) && memcmp(line, s, kl) == 0)
    for (size_t f = 0; f < sizeof notify_subs_record_strs / sizeof notify_subs_record_strs[0];
         f++) {
        if (KEY(notify_subs_record_strs[f].key)) {
            char **field = (char **)((char *)out + notify_subs_record_strs[f].off);
            free(*field);
            *field = notify_record_str(v, vl);
            return 0;
        }
    }
    if (KEY("v")) {
        *version = vl == 1 && v[0] == '1';
    } else if (KEY("mode")) {
        const char *params[] = {NULL, NULL};
        char mode[64];
        snprintf(mode, sizeof mode, "diff-processing=%s", num);
        params[0] = mode;
        out->mode = notify_mode_parse(params);
    } else if (KEY("expires")) {
        out->expires = strtoll(num, NULL, 10);
    } else if (KEY("cseq")) {
        out->cseq = (uint32_t)strtoul(num, NULL, 10);
    } else if (KEY("rseq")) {
        out->rseq = (uint32_t)strtoul(num, NULL, 10);
    } else if (KEY("seq")) {
        out->seq = strtoull(num, NULL, 10);
    } else if (KEY("full")) {
        out->full = num[0] == '1';
    } else if (KEY("hash")) {
        return notify_subs_record_hash(out, num);
    }
#undef KEY
    return 0;
}

int notify_subs_record_decode(const char *data, size_t len, struct notify_record *out)
{
    memset(out, 0, sizeof *out);
    size_t i = 0;
    bool version = false, body = false;
    while (i < len) {
        const char *nl = memchr(data + i, '\n', len - i);
        if (!nl)
            break;
        const char *line = data + i;
        size_t ll = (size_t)(nl - line);
        i += ll + 1;
        if (ll == 0) {
            body = true;
            break;
        }
        const char *sp = memchr(line, ' ', ll);
        if (!sp)
            goto bad;
        size_t kl = (size_t)(sp - line);
        if (notify_subs_record_line(out, line, kl, sp + 1, ll - kl - 1, &version) < 0)
            goto bad;
    }
    if (!version || !body || !out->call_id || !out->local || !out->remote || !out->target ||
        !out->route || !out->identity || !out->event)
        goto bad;
    if (!out->owner && !(out->owner = strdup("")))
        goto bad;
    out->body_len = len - i;
    if (!(out->body = malloc(out->body_len + 1)))
        goto bad;
    memcpy(out->body, data + i, out->body_len);
    out->body[out->body_len] = '\0';
    return 0;
bad:
    notify_subs_record_release(out);
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Subscriptions (SIP thread)                                                                  */

void notify_subs_free(struct notify_sub *s)
{
    struct notifier *n = s->n;
    notify_index_remove(&n->index, s);
    notify_expiry_remove(&n->expiry, s);
    if (s->due) {
        for (size_t i = 0; i < n->n_due; i++)
            if (n->due[i] == s)
                n->due[i] = n->due[--n->n_due];
        s->due = false;
    }
    if (s->marked) {
        for (size_t i = 0; i < n->n_marked; i++)
            if (n->marked[i] == s)
                n->marked[i] = n->marked[--n->n_marked];
        s->marked = false;
    }
    if (s->held) {
        for (size_t i = 0; i < n->n_held; i++)
            if (n->held[i] == s)
                n->held[i] = n->held[--n->n_held];
        s->held = false;
    }
    if (s->orq)
        nta_outgoing_destroy(s->orq);
    if (s->leg)
        nta_leg_destroy(s->leg);
    notify_change_pending_clear(s);
    free(s->pending);
    notify_watch_list_release(&s->watches);
    free(s->key);
    free(s->identity);
    free(s->event);
    free(s->body);
    free(s->call_id);
    free(s->local);
    free(s->remote);
    free(s->target);
    free(s->route);
    free(s);
}

void notify_subs_link(struct notifier *n, struct notify_sub *s)
{
    s->next = n->subs;
    if (s->next)
        s->next->pprev = &s->next;
    s->pprev = &n->subs;
    n->subs = s;
    n->n_subs++;
    metrics_gauge_set(METRICS_SUBSCRIPTIONS, (int64_t)n->n_subs);
    notify_subs_index(n, s);
    notify_subs_expiry_moved(s); /* into the expiry heap now that it is linked */
}

static void notify_subs_on_expire(struct notifier *n, su_timer_t *t, struct notifier *arg)
{
    (void)t;
    (void)arg;
    n->expire_armed = false;
    int64_t now = notify_now_ms();
    bool any = false;
    struct notify_sub *s;
    while ((s = notify_expiry_first(&n->expiry)) && s->expires_ms <= now) {
        notify_expiry_remove(&n->expiry, s);
        if (s->dead || s->term_reason)
            continue;
        s->term_reason = "timeout";
        log_info("notifier: subscription of %s expired", s->identity);
        notify_change_due(n, s);
        any = true;
    }
    notify_subs_expiry_arm(n);
    if (any) {
        /* The poll that sends the final NOTIFYs runs from the wake-up descriptor, as after a
         * commit (notifier_wake() is above this file). */
        uint64_t one = 1;
        ssize_t w = write(n->efd, &one, sizeof one);
        (void)w;
    }
}

void notify_subs_expiry_arm(struct notifier *n)
{
    struct notify_sub *first = notify_expiry_first(&n->expiry);
    if (!first || !n->expire || (n->expire_armed && n->expire_due <= first->expires_ms))
        return;
    int64_t wait = first->expires_ms - notify_now_ms();
    if (su_timer_set_interval(n->expire, notify_subs_on_expire, n,
                              (su_duration_t)(wait > 1 ? wait : 1)) < 0)
        return;
    n->expire_armed = true;
    n->expire_due = first->expires_ms;
}

void notify_subs_expiry_moved(struct notify_sub *s)
{
    struct notifier *n = s->n;
    if (!s->pprev || s->dead)
        return;
    if (notify_expiry_add(&n->expiry, s) < 0) {
        log_warn("notifier: out of memory keeping the expiry of %s; ending it", s->identity);
        notify_subs_kill(s);
        return;
    }
    notify_subs_expiry_arm(n);
}

void notify_subs_index(struct notifier *n, struct notify_sub *s)
{
    if (notify_index_add(&n->index, s) == 0)
        return;
    /* Without its postings no change would reach it: better ended (RFC 6665 §4.2.2: the
     * subscriber may subscribe again) than silently deaf. */
    log_warn("notifier: out of memory indexing the subscription of %s; ending it", s->identity);
    notify_subs_kill(s);
}

/* Appends s to the array *list of *len entries (*cap allocated, doubled from 64 when full); false
 * when out of memory (nothing changed). The lists of subscriptions to save and to reap. */
static bool notify_subs_push(struct notify_sub ***list, size_t *len, size_t *cap,
                             struct notify_sub *s)
{
    if (*len == *cap) {
        size_t c = *cap ? 2 * *cap : 64;
        struct notify_sub **nl = realloc(*list, c * sizeof *nl);
        if (!nl)
            return false;
        *list = nl;
        *cap = c;
    }
    (*list)[(*len)++] = s;
    return true;
}

/* Marks a subscription as ended; the memory (and its persisted record) goes at the next reap,
 * never inside one of its own callbacks. */
void notify_subs_mark(struct notify_sub *s)
{
    struct notifier *n = s->n;
    s->dirty = true;
    if (s->marked)
        return;
    if (!notify_subs_push(&n->marked, &n->n_marked, &n->cap_marked, s)) {
        n->save_scan = true; /* the next save looks at everyone instead */
        return;
    }
    s->marked = true;
}

void notify_subs_kill(struct notify_sub *s)
{
    s->dead = true;
    notify_subs_mark(s); /* for the deletion of its record */
    s->forget = true;
    notify_subs_bury(s);
}

void notify_subs_bury(struct notify_sub *s)
{
    struct notifier *n = s->n;
    n->reap_due = true;
    if (s->buried)
        return;
    if (!notify_subs_push(&n->dead, &n->n_dead, &n->cap_dead, s)) {
        n->reap_scan = true; /* the reap looks at everyone instead */
        return;
    }
    s->buried = true;
}

void notify_subs_lost(struct notifier *n)
{
    size_t dropped = 0;
    for (struct notify_sub *s = n->subs; s; s = s->next) {
        if (!s->dead)
            dropped++;
        s->dead = true;
        s->forget = false; /* the records are another instance's now */
    }
    n->reap_due = true;
    n->reap_scan = true;
    n->have_lease = false;
    log_warn("notifier: the lease of instance %s was taken over; %zu subscription(s) dropped "
             "here (another instance sends their NOTIFYs)",
             n->instance, dropped);
}

/* ---- persistence (table NOTIFY_TABLE, key = our dialog tag) ---- */

/* The last change-log record s has handled: changes still queued are not, nor those of a NOTIFY
 * still in flight (a subscriber that never got it gets them again from whoever restores the
 * record: a repeat it recognises by the ETags, where a loss could not be seen). The cursor may be
 * behind s->seq while a taken-over subscription catches up. */
static uint64_t notify_subs_done_seq(const struct notify_sub *s)
{
    if (s->orq)
        return s->sent_seq;
    if (s->n_pending > 0)
        return s->pending[0]->seq - 1;
    return s->n->cursor > s->seq ? s->n->cursor : s->seq;
}

static int notify_subs_encode(const struct notify_sub *s, struct buf *out)
{
    uint64_t few[16];
    uint64_t *hashes = s->watches.n > 16 ? calloc(s->watches.n, sizeof *hashes) : few;
    if (!hashes)
        return -1;
    for (size_t i = 0; i < s->watches.n; i++)
        hashes[i] = s->watches.items[i].last_hash;
    struct notify_record r = {
        .call_id = s->call_id,
        .local = s->local,
        .remote = s->remote,
        .target = s->target,
        .route = s->route,
        .identity = s->identity,
        .event = s->event,
        .mode = s->mode,
        .expires = s->expires_wall,
        .cseq = s->leg ? nta_leg_get_seq(s->leg) : 0,
        .rseq = s->leg ? nta_leg_get_rseq(s->leg) : 0,
        .seq = notify_subs_done_seq(s),
        .full = s->full_pending,
        .hashes = hashes,
        .n_hashes = s->watches.n,
        .body = s->body,
        .body_len = s->body_len,
        .owner = s->n->instance,
    };
    int rc = notify_subs_record_encode(&r, out);
    if (hashes != few)
        free(hashes);
    return rc;
}

/* The subscriptions a save looks at: every one (scan), or those on n->marked. */
static struct notify_sub *notify_subs_first(struct notifier *n, bool scan, size_t *i)
{
    *i = 0;
    return scan ? n->subs : n->n_marked > 0 ? n->marked[0] : NULL;
}

static struct notify_sub *notify_subs_next(struct notifier *n, bool scan, struct notify_sub *s,
                                           size_t *i)
{
    if (scan)
        return s->next;
    return ++*i < n->n_marked ? n->marked[*i] : NULL;
}

/* After a save: what it looked at is clean, and n->marked empty. */
static void notify_subs_saved(struct notifier *n, bool scan)
{
    size_t i;
    for (struct notify_sub *s = notify_subs_first(n, scan, &i); s;
         s = notify_subs_next(n, scan, s, &i)) {
        s->dirty = false;
        s->urgent = false;
        s->forget = false;
    }
    for (i = 0; i < n->n_marked; i++)
        n->marked[i]->marked = false;
    n->n_marked = 0;
    if (scan)
        n->save_scan = false;
}

/* Writes the records of subs that need it (all, or only dirty ones) and deletes those of ended
 * subscriptions, in one durable transaction. Must not run inside a store transaction. */
void notify_subs_save(struct notifier *n, bool all)
{
    if (!n->persist)
        return;
    bool scan = all || n->save_scan;
    bool any = false;
    size_t i;
    for (struct notify_sub *s = notify_subs_first(n, scan, &i); s && !any;
         s = notify_subs_next(n, scan, s, &i))
        any = s->forget || (!s->dead && (all || s->dirty));
    if (!any) {
        notify_subs_saved(n, scan);
        return;
    }
    if (!any)
        return;
    struct store_txn *t;
    enum store_rc rc = store_txn_begin(n->store, true, &t);
    if (rc == STORE_OK && n->cfg.cluster && n->have_lease) {
        /* Records are written only while our lease stands: once another instance took our
         * subscriptions over (and removed the lease), they are its records. */
        void *v = NULL;
        size_t vl = 0;
        enum store_rc lrc =
            store_kv_get(t, NOTIFY_LEASE_TABLE, n->instance, strlen(n->instance), &v, &vl);
        free(v);
        if (lrc == STORE_NOTFOUND) {
            store_txn_abort(t);
            notify_subs_lost(n);
            return;
        }
        rc = lrc;
    }
    struct buf rec;
    buf_init(&rec, NOTIFY_MAX_RECORD);
    for (struct notify_sub *s = notify_subs_first(n, scan, &i); rc == STORE_OK && s;
         s = notify_subs_next(n, scan, s, &i)) {
        if (s->forget) {
            rc = store_kv_del(t, NOTIFY_TABLE, s->key, strlen(s->key));
            if (rc == STORE_NOTFOUND)
                rc = STORE_OK;
        } else if (!s->dead && (all || s->dirty)) {
            buf_reset(&rec);
            if (notify_subs_encode(s, &rec) < 0) {
                log_warn("notifier: cannot save the subscription of %s", s->identity);
                continue;
            }
            rc = store_kv_put(t, NOTIFY_TABLE, s->key, strlen(s->key), rec.data, rec.len);
        }
    }
    buf_release(&rec);
    if (rc == STORE_OK)
        rc = store_txn_commit(t);
    else if (t)
        store_txn_abort(t);
    if (rc != STORE_OK) {
        log_warn("notifier: cannot save subscriptions: %s", store_strerror(rc));
        return;
    }
    notify_subs_saved(n, scan);
}

void notify_subs_charge(struct notify_sub *s, enum charging_event ev, unsigned result,
                        size_t bytes_in, size_t bytes_out)
{
    struct charging *c = s->n->cfg.charging;
    if (!c || !s->key)
        return;
    /* The session of the subscription: our dialog tag (unique, kept across restarts with the
     * persisted record), so START, INTERIM and STOP share one Session-Id (RFC 6733 §8.8). */
    int64_t now = charging_now_ms();
    struct charging_record r = {
        .event = ev,
        .user = s->identity,
        .auid = "",
        .document = "",
        .operation = ev == CHARGING_NOTIFY_SENT ? "NOTIFY" : "SUBSCRIBE",
        .correlation = s->call_id,
        .session = s->key,
        .result = result,
        .bytes_in = bytes_in,
        .bytes_out = bytes_out,
        .start_ms = now,
        .time_ms = now,
    };
    if (ev == CHARGING_NOTIFY_SENT) {
        if (charging_defer(c, &s->n->charge_pending, &r) >= CHARGING_BATCH)
            charging_flush(c, &s->n->charge_pending);
        return;
    }
    if (ev == CHARGING_SUB_STARTED)
        s->charged = true;
    charging_flush(c, &s->n->charge_pending); /* the NOTIFYs before it come first */
    charging_emit(c, &r);
}

static void notify_subs_unlink_free(struct notifier *n, struct notify_sub *s)
{
    if (s->pprev) {
        *s->pprev = s->next;
        if (s->next)
            s->next->pprev = s->pprev;
        n->n_subs--;
        metrics_gauge_set(METRICS_SUBSCRIPTIONS, (int64_t)n->n_subs);
    }
    notify_subs_free(s);
}

/* The subscriptions a reap looks at: every one (scan), or those on n->dead. */
static struct notify_sub *notify_subs_reap_first(struct notifier *n, bool scan, size_t *i)
{
    *i = 0;
    return scan ? n->subs : n->n_dead > 0 ? n->dead[0] : NULL;
}

static struct notify_sub *notify_subs_reap_next(struct notifier *n, bool scan, struct notify_sub *s,
                                                size_t *i)
{
    if (scan)
        return s->next;
    return ++*i < n->n_dead ? n->dead[*i] : NULL;
}

void notify_subs_reap(struct notifier *n)
{
    /* Every callback ends here: walking all subscriptions each time would make a fan-out of
     * n NOTIFYs cost n² when their answers come back, and a walk of 100 000 stalls the loop.
     * The ended ones are on n->dead (a walk only after an allocation failed, a lost lease or
     * at teardown). */
    if (!n->reap_due)
        return;
    n->reap_due = false;
    bool scan = n->reap_scan;
    n->reap_scan = false;
    bool forget = false;
    size_t i;
    for (struct notify_sub *s = notify_subs_reap_first(n, scan, &i); s;
         s = notify_subs_reap_next(n, scan, s, &i)) {
        forget |= s->dead && s->forget;
        /* An ended subscription (not one left to another instance) closes its session; before
         * the save below, which clears forget. */
        if (s->dead && s->forget && s->charged) {
            notify_subs_charge(s, CHARGING_SUB_ENDED, 200, 0, 0);
            s->charged = false;
        }
    }
    if (forget && !n->in_poll)
        notify_subs_save(n, false);
    if (scan) {
        for (struct notify_sub *s = n->subs, *next; s; s = next) {
            next = s->next;
            if (s->dead)
                notify_subs_unlink_free(n, s);
        }
    } else {
        /* Freeing never adds to n->dead. */
        for (i = 0; i < n->n_dead; i++)
            notify_subs_unlink_free(n, n->dead[i]);
    }
    n->n_dead = 0;
}

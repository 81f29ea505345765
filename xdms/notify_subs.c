/* Subscription records: their lifetime (a subscription ends by being marked dead and is freed
 * at the next reap, outside its own callbacks) and their persistence. Subscriptions are saved in
 * the store (NOTIFY_TABLE, key = our dialog tag) when it has that table: at creation and refresh
 * at once, their progress once a second (a crash then repeats a few changes, which the client
 * recognises by their ETags), and all of them at shutdown, which then sends no final NOTIFY. A
 * restart re-creates the dialogs and resumes after the last change reported. The record format
 * is pure (notify_internal.h); the rest runs in the SIP thread. */
#include "notify_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sofia-sip/nta.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/su.h>

#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

#define NOTIFY_MAX_RECORD (NOTIFY_MAX_BODY + 64 * 1024)
#define NOTIFY_CSEQ_MARGIN 100000 /* added to a restored CSeq: saves are lazy (once a second) */

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

int notify_subs_record_encode(const struct notify_record *r, struct buf *out)
{
    if (!notify_line_ok(r->call_id) || !notify_line_ok(r->local) || !notify_line_ok(r->remote) ||
        !notify_line_ok(r->target) || !notify_line_ok(r->route) || !notify_line_ok(r->identity) ||
        !notify_line_ok(r->event) || (r->owner && !notify_line_ok(r->owner)))
        return -1;
    int rc = buf_printf(out,
                        "v 1\ncall-id %s\nlocal %s\nremote %s\ntarget %s\nroute %s\n"
                        "identity %s\nevent %s\nmode %s\nexpires %" PRId64 "\ncseq %" PRIu32
                        "\nrseq %" PRIu32 "\nseq %" PRIu64 "\nfull %d\n",
                        r->call_id, r->local, r->remote, r->target, r->route, r->identity, r->event,
                        notify_mode_name(r->mode), r->expires, r->cseq, r->rseq, r->seq,
                        r->full ? 1 : 0);
    if (r->owner && r->owner[0])
        rc |= buf_printf(out, "owner %s\n", r->owner);
    for (size_t i = 0; i < r->n_hashes; i++)
        rc |= buf_printf(out, "hash %zu %016" PRIx64 "\n", i, r->hashes[i]);
    rc |= buf_puts(out, "\n");
    rc |= buf_append(out, r->body, r->body_len);
    return rc ? -1 : 0;
}

static char *notify_record_str(const char *v, size_t len)
{
    return strndup(v, len);
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
        const char *v = sp + 1;
        size_t vl = ll - kl - 1;
        char num[32];
        snprintf(num, sizeof num, "%.*s", (int)(vl < sizeof num ? vl : sizeof num - 1), v);
#define KEY(s) (kl == sizeof(s) - 1 && memcmp(line, s, kl) == 0)
        if (KEY("v")) {
            version = vl == 1 && v[0] == '1';
        } else if (KEY("call-id")) {
            free(out->call_id);
            out->call_id = notify_record_str(v, vl);
        } else if (KEY("local")) {
            free(out->local);
            out->local = notify_record_str(v, vl);
        } else if (KEY("remote")) {
            free(out->remote);
            out->remote = notify_record_str(v, vl);
        } else if (KEY("target")) {
            free(out->target);
            out->target = notify_record_str(v, vl);
        } else if (KEY("route")) {
            free(out->route);
            out->route = notify_record_str(v, vl);
        } else if (KEY("identity")) {
            free(out->identity);
            out->identity = notify_record_str(v, vl);
        } else if (KEY("owner")) {
            free(out->owner);
            out->owner = notify_record_str(v, vl);
        } else if (KEY("event")) {
            free(out->event);
            out->event = notify_record_str(v, vl);
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
            char *end;
            unsigned long idx = strtoul(num, &end, 10);
            if (*end != ' ' || idx > NOTIFY_MAX_ENTRIES)
                goto bad;
            uint64_t h = strtoull(end + 1, NULL, 16);
            if (idx >= out->n_hashes) {
                uint64_t *nh = realloc(out->hashes, (idx + 1) * sizeof *nh);
                if (!nh)
                    goto bad;
                for (size_t k = out->n_hashes; k <= idx; k++)
                    nh[k] = 0;
                out->hashes = nh;
                out->n_hashes = idx + 1;
            }
            out->hashes[idx] = h;
        }
        /* Unknown keys are skipped: a newer version may add some. */
#undef KEY
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
    if (s->orq)
        nta_outgoing_destroy(s->orq);
    if (s->leg)
        nta_leg_destroy(s->leg);
    notify_change_pending_clear(s);
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

/* Marks a subscription as ended; the memory (and its persisted record) goes at the next reap,
 * never inside one of its own callbacks. */
void notify_subs_kill(struct notify_sub *s)
{
    s->dead = true;
    s->forget = true;
    s->n->reap_due = true;
}

/* ---- persistence (table NOTIFY_TABLE, key = our dialog tag) ---- */

/* The last change-log record s has handled: changes still queued are not, nor those of a NOTIFY
 * still in flight (a subscriber that never got it gets them again from whoever restores the
 * record: a repeat it recognises by the ETags, where a loss could not be seen). The cursor may be
 * behind s->seq while a taken-over subscription catches up. */
static uint64_t sub_done_seq(const struct notify_sub *s)
{
    if (s->orq)
        return s->sent_seq;
    if (s->n_pending > 0)
        return s->pending[0]->seq - 1;
    return s->n->cursor > s->seq ? s->n->cursor : s->seq;
}

static int sub_encode(const struct notify_sub *s, struct buf *out)
{
    uint64_t *hashes = s->watches.n ? calloc(s->watches.n, sizeof *hashes) : NULL;
    if (s->watches.n && !hashes)
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
        .seq = sub_done_seq(s),
        .full = s->full_pending,
        .hashes = hashes,
        .n_hashes = s->watches.n,
        .body = s->body,
        .body_len = s->body_len,
        .owner = s->n->instance,
    };
    int rc = notify_subs_record_encode(&r, out);
    free(hashes);
    return rc;
}

/* Writes the records of subs that need it (all, or only dirty ones) and deletes those of ended
 * subscriptions, in one durable transaction. Must not run inside a store transaction. */
void notify_subs_save(struct notifier *n, bool all)
{
    if (!n->persist)
        return;
    bool any = false;
    for (struct notify_sub *s = n->subs; s && !any; s = s->next)
        any = s->forget || (!s->dead && (all || s->dirty));
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
            notify_cluster_lost(n);
            return;
        }
        rc = lrc;
    }
    struct buf rec;
    buf_init(&rec, NOTIFY_MAX_RECORD);
    for (struct notify_sub *s = n->subs; rc == STORE_OK && s; s = s->next) {
        if (s->forget) {
            rc = store_kv_del(t, NOTIFY_TABLE, s->key, strlen(s->key));
            if (rc == STORE_NOTFOUND)
                rc = STORE_OK;
        } else if (!s->dead && (all || s->dirty)) {
            buf_reset(&rec);
            if (sub_encode(s, &rec) < 0) {
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
    for (struct notify_sub *s = n->subs; s; s = s->next) {
        s->dirty = false;
        s->urgent = false;
        s->forget = false;
    }
}

void notify_subs_reap(struct notifier *n)
{
    /* Every callback ends here: walking all subscriptions each time would make a fan-out of
     * n NOTIFYs cost n² when their answers come back. */
    if (!n->reap_due)
        return;
    n->reap_due = false;
    bool forget = false;
    for (struct notify_sub *s = n->subs; s; s = s->next)
        forget |= s->dead && s->forget;
    if (forget && !n->in_poll)
        notify_subs_save(n, false);
    for (struct notify_sub **pp = &n->subs; *pp;) {
        struct notify_sub *s = *pp;
        if (s->dead) {
            *pp = s->next;
            n->n_subs--;
            metrics_gauge_set(METRICS_SUBSCRIPTIONS, (int64_t)n->n_subs);
            notify_subs_free(s);
        } else {
            pp = &s->next;
        }
    }
}

/* ---- restart: subscriptions saved by an earlier run ---- */

struct notify_saved {
    char *key;
    struct notify_record rec;
    bool ok;
};

struct notify_scan_ctx {
    struct notify_saved *v;
    size_t n;
    size_t cap;
    bool failed;
};

static int notify_scan_one(void *cls, const void *key, size_t klen, const void *val, size_t vlen)
{
    struct notify_scan_ctx *c = cls;
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 16;
        struct notify_saved *v = realloc(c->v, nc * sizeof *v);
        if (!v) {
            c->failed = true;
            return 1;
        }
        c->v = v;
        c->cap = nc;
    }
    struct notify_saved *e = &c->v[c->n];
    memset(e, 0, sizeof *e);
    if (!(e->key = strndup(key, klen))) {
        c->failed = true;
        return 1;
    }
    e->ok = notify_subs_record_decode(val, vlen, &e->rec) == 0;
    c->n++;
    return 0;
}

/* Re-creates a saved subscription: its dialog (nta leg with the same Call-ID, tags, route set,
 * target and a CSeq safely above the last one used), its watched set (authorized again under
 * the current configuration) and how far it was notified. Returns NULL when it cannot or need
 * not live on (expired, unreadable). */
struct notify_sub *notify_subs_restore_one(struct notifier *n, char **key, bool ok,
                                           struct notify_record *r)
{
    int64_t left = r->expires - notify_wall();
    if (!ok || left <= 0)
        return NULL;
    struct notify_sub *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->n = n;
    size_t skipped = 0;
    if (notify_watch_parse(r->body, r->body_len, n->cfg.xcap_root, n->cfg.role, &s->watches,
                           &skipped) != 0) {
        free(s);
        return NULL;
    }
    notify_watch_list_authorize(
        &s->watches, r->identity,
        notify_identity_is_server(r->identity, (const char *const *)n->servers));
    su_home_t *home = su_home_new(sizeof *home);
    sip_route_t *route = home && r->route[0] ? sip_route_make(home, r->route) : NULL;
    char *contact_str = NULL;
    if (asprintf(&contact_str, "<%s>", r->target) < 0)
        contact_str = NULL;
    sip_contact_t *contact = home && contact_str ? sip_contact_make(home, contact_str) : NULL;
    free(contact_str);
    uint32_t cseq = r->cseq + NOTIFY_CSEQ_MARGIN;
    sip_cseq_t *cs = home ? sip_cseq_create(home, cseq, sip_method_notify, "NOTIFY") : NULL;
    if (contact && cs && (!r->route[0] || route))
        s->leg = nta_leg_tcreate(
            n->agent, notify_on_dialog_request, s, SIPTAG_CALL_ID_STR(r->call_id),
            SIPTAG_FROM_STR(r->local), SIPTAG_TO_STR(r->remote), TAG_IF(route, SIPTAG_ROUTE(route)),
            NTATAG_TARGET(contact), SIPTAG_CSEQ(cs), NTATAG_REMOTE_CSEQ(r->rseq), TAG_END());
    su_home_unref(home);
    /* The record's strings move into the subscription. */
    s->key = *key;
    *key = NULL;
    s->call_id = r->call_id;
    s->local = r->local;
    s->remote = r->remote;
    s->target = r->target;
    s->route = r->route;
    s->identity = r->identity;
    s->event = r->event;
    s->body = r->body;
    s->body_len = r->body_len;
    r->call_id = r->local = r->remote = r->target = r->route = r->identity = r->event = NULL;
    r->body = NULL;
    if (!s->leg) {
        log_warn("notifier: cannot restore the dialog of %s", s->identity);
        s->forget = true;
        return s; /* the caller forgets the record and frees s */
    }
    s->mode = r->mode;
    s->seq = r->seq;
    s->full_pending = r->full;
    s->expires_at = notify_now() + left;
    s->expires_wall = r->expires;
    for (size_t i = 0; i < s->watches.n && i < r->n_hashes; i++)
        s->watches.items[i].last_hash = r->hashes[i];
    if (s->watches.n == 0)
        s->term_reason = "deactivated"; /* nothing readable any more */
    return s;
}

void notify_subs_restore(struct notifier *n)
{
    struct store_txn *t;
    struct notify_scan_ctx c = {0};
    enum store_rc rc = store_txn_begin(n->store, false, &t);
    if (rc == STORE_OK) {
        rc = store_kv_scan(t, NOTIFY_TABLE, NULL, 0, notify_scan_one, &c);
        store_txn_abort(t);
    }
    if (rc == STORE_INVALID) {
        log_info("notifier: the store has no %s table; subscriptions will not survive a "
                 "restart",
                 NOTIFY_TABLE);
        return;
    }
    n->persist = rc == STORE_OK;
    if (rc != STORE_OK)
        log_warn("notifier: cannot read saved subscriptions: %s", store_strerror(rc));
    size_t restored = 0, dropped = 0;
    bool any = false;
    uint64_t low = 0;
    for (size_t i = 0; i < c.n; i++) {
        /* With other instances on the store, only our own records are ours to restore; the
         * others' go to whoever takes them over when their owner's lease expires. */
        if (n->cfg.cluster && c.v[i].ok && strcmp(c.v[i].rec.owner, n->instance) != 0) {
            free(c.v[i].key);
            notify_subs_record_release(&c.v[i].rec);
            continue;
        }
        struct notify_sub *s =
            n->persist ? notify_subs_restore_one(n, &c.v[i].key, c.v[i].ok, &c.v[i].rec) : NULL;
        if (!s && n->persist && c.v[i].key) {
            /* expired or unreadable: its record goes */
            s = calloc(1, sizeof *s);
            if (s) {
                s->n = n;
                s->key = c.v[i].key;
                c.v[i].key = NULL;
                s->forget = true;
            }
        }
        if (s && s->forget) {
            s->dead = true;
            n->reap_due = true;
            dropped++;
        } else if (s) {
            restored++;
            if (!any || s->seq < low)
                low = s->seq;
            any = true;
        }
        if (s) {
            s->next = n->subs;
            n->subs = s;
            n->n_subs++;
            metrics_gauge_set(METRICS_SUBSCRIPTIONS, (int64_t)n->n_subs);
        }
        free(c.v[i].key);
        notify_subs_record_release(&c.v[i].rec);
    }
    free(c.v);
    if (any)
        n->cursor = low;
    notify_subs_reap(n); /* deletes the records of the dropped ones */
    if (restored || dropped)
        log_info("notifier: %zu subscription(s) restored, %zu expired or unreadable dropped",
                 restored, dropped);
}

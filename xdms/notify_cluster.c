/* Several instances of one role over one store (docs/sip.md, "Several instances of a role").
 *
 * The change log is the source of truth: every instance follows it, so a change committed
 * through one instance reaches the subscriptions held by all of them. An instance's own commits
 * wake it at once (notifier_wake()); the others' through the store's wake-up descriptor when it
 * has one (PostgreSQL LISTEN/NOTIFY), else by checking the log's last sequence every poll_ms
 * (LMDB, or a listener that cannot connect right now); with a descriptor that check still runs
 * once a second, for wake-ups lost while the listener reconnected.
 *
 * Every saved subscription names its owner, the one instance that sends its NOTIFYs. Each
 * instance renews a lease (NOTIFY_LEASE_TABLE, key = its name, value = the wall-clock time of
 * its last heartbeat) once a second; when a lease is older than lease_s, any surviving instance
 * rewrites that owner's records as its own in one write transaction (so exactly one takes each
 * over), re-creates the dialogs from them and goes on from each record's position in the change
 * log, with a CSeq above the last one saved (RFC 3261 §12.2.1.1: it never goes backwards).
 * Records are saved within poll_ms of each answered NOTIFY, so the subscriber misses nothing and
 * gets at most the NOTIFY that was in flight again. An instance that finds its own lease gone was
 * declared dead: it drops what it holds, without touching the records, which are no longer its.
 *
 * The pure parts (names, leases) come first; the rest runs in the SIP thread. */
#include "notify_internal.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sofia-sip/nta.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_wait.h>

#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

#define NOTIFY_LEASE_TEXT_MAX 24
#define NOTIFY_MAX_LEASES 1024   /* instances of one role considered (more are ignored) */
#define NOTIFY_HEARTBEAT_MS 1000 /* lease renewal and expiry check */
#define NOTIFY_RECORD_MAX (NOTIFY_MAX_BODY + 64 * 1024)
/* The first key a takeover writes: concurrent takeovers wait for each other on it, so the second
 * one reads the owners the first one wrote. No instance name can be spelt so. */
#define NOTIFY_TAKEOVER_KEY "~takeover"

/* ---- pure parts ---- */

bool notifier_instance_name_ok(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > NOTIFY_INSTANCE_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!isalnum(c) && !strchr("._:-[]", c))
            return false;
    }
    return true;
}

bool notifier_contact_ok(const char *uri)
{
    if (!uri)
        return false;
    const char *host = strncmp(uri, "sip:", 4) == 0    ? uri + 4
                       : strncmp(uri, "sips:", 5) == 0 ? uri + 5
                                                       : NULL;
    if (!host || !*host || *host == ':' || *host == ';' || strlen(uri) > 255)
        return false;
    for (const char *p = uri; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '<' || *p == '>' || *p == '"' || *p == 0x7f)
            return false;
    return true;
}

int notify_lease_encode(int64_t ms, char *out, size_t max)
{
    int w = snprintf(out, max, "%" PRId64, ms < 0 ? 0 : ms);
    return w < 0 || (size_t)w >= max ? -1 : w;
}

bool notify_lease_decode(const void *val, size_t len, int64_t *ms)
{
    const char *v = val;
    if (len == 0 || len > 18)
        return false;
    int64_t x = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        x = x * 10 + (v[i] - '0');
    }
    *ms = x;
    return true;
}

bool notify_lease_expired(int64_t heartbeat_ms, int64_t now_ms, unsigned lease_s)
{
    return now_ms - heartbeat_ms > (int64_t)lease_s * 1000;
}

int notify_instance_default(const char *host, uint16_t port, char *out, size_t max)
{
    bool v6 = strchr(host, ':') != NULL;
    int w = snprintf(out, max, "%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "", (unsigned)port);
    return w < 0 || (size_t)w >= max ? -1 : 0;
}

/* ---- leases (SIP thread) ---- */

/* Leases compare wall clocks of different processes (and hosts: keep them in step, e.g. NTP). */
static int64_t notify_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct notify_lease {
    char name[NOTIFY_INSTANCE_MAX + 1];
    int64_t ms;
    bool keep; /* some of its records were left (takeover) */
};

struct notify_leases {
    struct notify_lease v[NOTIFY_MAX_LEASES];
    size_t n;
};

static int notify_lease_scan_one(void *cls, const void *key, size_t klen, const void *val,
                                 size_t vlen)
{
    struct notify_leases *l = cls;
    if (l->n == NOTIFY_MAX_LEASES)
        return 1;
    struct notify_lease *e = &l->v[l->n];
    if (klen == 0 || klen > NOTIFY_INSTANCE_MAX || !notify_lease_decode(val, vlen, &e->ms))
        return 0; /* something this version does not write */
    memcpy(e->name, key, klen);
    e->name[klen] = '\0';
    if (!notifier_instance_name_ok(e->name))
        return 0; /* the takeover key */
    e->keep = false;
    l->n++;
    return 0;
}

static enum store_rc notify_leases_read(struct store_txn *t, struct notify_leases *l)
{
    l->n = 0;
    return store_kv_scan(t, NOTIFY_LEASE_TABLE, NULL, 0, notify_lease_scan_one, l);
}

static struct notify_lease *notify_lease_find(struct notify_leases *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].name, name) == 0)
            return &l->v[i];
    return NULL;
}

/* Whether owner holds a lease that has not expired. */
static bool notify_owner_alive(struct notify_leases *l, const char *owner, int64_t now_ms,
                               unsigned lease_s)
{
    const struct notify_lease *e = owner[0] ? notify_lease_find(l, owner) : NULL;
    return e && !notify_lease_expired(e->ms, now_ms, lease_s);
}

static enum store_rc notify_lease_put(struct store_txn *t, const char *name, int64_t ms)
{
    char v[NOTIFY_LEASE_TEXT_MAX];
    int len = notify_lease_encode(ms, v, sizeof v);
    if (len < 0)
        return STORE_INVALID;
    return store_kv_put(t, NOTIFY_LEASE_TABLE, name, strlen(name), v, (size_t)len);
}

/* Renews our lease; finds out when another instance removed it. */
static int notify_cluster_heartbeat(struct notifier *n)
{
    n->last_heartbeat_ms = notify_now_ms();
    struct store_txn *t;
    enum store_rc rc = store_txn_begin(n->store, true, &t);
    if (rc == STORE_OK && n->have_lease) {
        void *v = NULL;
        size_t vl = 0;
        rc = store_kv_get(t, NOTIFY_LEASE_TABLE, n->instance, strlen(n->instance), &v, &vl);
        free(v);
        if (rc == STORE_NOTFOUND) {
            notify_subs_lost(n);
            rc = STORE_OK;
        }
    }
    if (rc == STORE_OK)
        rc = notify_lease_put(t, n->instance, notify_wall_ms());
    if (rc == STORE_OK)
        rc = store_txn_commit(t);
    else if (t)
        store_txn_abort(t);
    if (rc != STORE_OK) {
        /* Once per outage, not once a second. */
        if (!n->heartbeat_failed)
            log_warn("notifier: cannot renew the lease of instance %s: %s (retried every "
                     "second)",
                     n->instance, store_strerror(rc));
        n->heartbeat_failed = true;
        n->renewed_since_ms = 0;
        return -1;
    }
    if (n->heartbeat_failed)
        log_info("notifier: the lease of instance %s is renewed again", n->instance);
    n->heartbeat_failed = false;
    n->have_lease = true;
    if (!n->renewed_since_ms)
        n->renewed_since_ms = n->last_heartbeat_ms;
    return 0;
}

int notify_cluster_start(struct notifier *n)
{
    if (notify_cluster_heartbeat(n) < 0) {
        log_error("notifier: cannot write the lease of instance %s", n->instance);
        return -1;
    }
    log_info("notifier: instance %s, lease %us, change log checked every %ums", n->instance,
             n->cfg.lease_s, n->cfg.poll_ms);
    return 0;
}

void notify_cluster_stop(struct notifier *n)
{
    if (!n->have_lease)
        return;
    /* An expired lease: the others take our subscriptions over at their next heartbeat rather
     * than lease_s later; a restart before that finds them still ours. */
    struct store_txn *t;
    enum store_rc rc = store_txn_begin(n->store, true, &t);
    if (rc == STORE_OK)
        rc = notify_lease_put(t, n->instance, 0);
    if (rc == STORE_OK)
        rc = store_txn_commit(t);
    else if (t)
        store_txn_abort(t);
    if (rc != STORE_OK)
        log_warn("notifier: cannot hand the lease of %s over: %s", n->instance, store_strerror(rc));
}

/* ---- takeover ---- */

struct notify_taken {
    char *key;
    struct notify_record rec;
    char *from; /* the former owner */
};

struct notify_takeover_ctx {
    struct notifier *n;
    struct notify_leases *leases;
    int64_t now_ms;
    struct notify_taken *v;
    size_t count, cap, room;
    bool failed;
};

static int notify_takeover_one(void *cls, const void *key, size_t klen, const void *val,
                               size_t vlen)
{
    struct notify_takeover_ctx *c = cls;
    struct notify_record rec;
    if (notify_subs_record_decode(val, vlen, &rec) < 0)
        return 0; /* unreadable: left to its owner's restore, which drops it */
    if (strcmp(rec.owner, c->n->instance) == 0 ||
        notify_owner_alive(c->leases, rec.owner, c->now_ms, c->n->cfg.lease_s)) {
        notify_subs_record_release(&rec);
        return 0;
    }
    if (c->count == c->room) {
        /* No room here: the rest stays with its dead owner for another instance. */
        struct notify_lease *l = notify_lease_find(c->leases, rec.owner);
        if (l)
            l->keep = true;
        notify_subs_record_release(&rec);
        return 0;
    }
    if (c->count == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 16;
        struct notify_taken *v = realloc(c->v, nc * sizeof *v);
        if (!v) {
            notify_subs_record_release(&rec);
            c->failed = true;
            return 1;
        }
        c->v = v;
        c->cap = nc;
    }
    struct notify_taken *e = &c->v[c->count];
    e->key = strndup(key, klen);
    e->from = rec.owner;
    rec.owner = NULL;
    e->rec = rec;
    if (!e->key || !(e->rec.owner = strdup(c->n->instance))) {
        free(e->key);
        free(e->from);
        notify_subs_record_release(&e->rec);
        c->failed = true;
        return 1;
    }
    c->count++;
    return 0;
}

static void notify_taken_release(struct notify_taken *v, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(v[i].key);
        free(v[i].from);
        notify_subs_record_release(&v[i].rec);
    }
    free(v);
}

/* Whether some other instance's lease has expired. */
static bool notify_cluster_any_expired(struct notifier *n, int64_t now_ms)
{
    struct notify_leases *l = malloc(sizeof *l);
    struct store_txn *t;
    bool any = false;
    if (l && store_txn_begin(n->store, false, &t) == STORE_OK) {
        if (notify_leases_read(t, l) == STORE_OK)
            for (size_t i = 0; i < l->n && !any; i++)
                any = strcmp(l->v[i].name, n->instance) != 0 &&
                      notify_lease_expired(l->v[i].ms, now_ms, n->cfg.lease_s);
        store_txn_abort(t);
    }
    free(l);
    return any;
}

/* Writes the taken records as ours and removes the expired leases left with no records, in t. */
static enum store_rc notify_takeover_write(struct notifier *n, struct store_txn *t,
                                           struct notify_takeover_ctx *c)
{
    struct buf b;
    buf_init(&b, NOTIFY_RECORD_MAX);
    enum store_rc rc = STORE_OK;
    for (size_t i = 0; rc == STORE_OK && i < c->count; i++) {
        buf_reset(&b);
        if (notify_subs_record_encode(&c->v[i].rec, &b) < 0)
            rc = STORE_INVALID;
        else
            rc = store_kv_put(t, NOTIFY_TABLE, c->v[i].key, strlen(c->v[i].key), b.data, b.len);
    }
    buf_release(&b);
    for (size_t i = 0; rc == STORE_OK && i < c->leases->n; i++) {
        const struct notify_lease *l = &c->leases->v[i];
        if (l->keep || strcmp(l->name, n->instance) == 0 ||
            !notify_lease_expired(l->ms, c->now_ms, n->cfg.lease_s))
            continue;
        rc = store_kv_del(t, NOTIFY_LEASE_TABLE, l->name, strlen(l->name));
        if (rc == STORE_NOTFOUND)
            rc = STORE_OK;
    }
    return rc;
}

void notify_cluster_takeover(struct notifier *n, bool force)
{
    if (!n->persist || !n->have_lease)
        return;
    int64_t now_ms = notify_wall_ms();
    if (!force && !notify_cluster_any_expired(n, now_ms))
        return;
    struct notify_leases *leases = malloc(sizeof *leases);
    if (!leases)
        return;
    struct notify_takeover_ctx c = {
        .n = n,
        .leases = leases,
        .now_ms = now_ms,
        .room = n->n_subs < n->cfg.max_subscriptions ? n->cfg.max_subscriptions - n->n_subs : 0,
    };
    struct store_txn *t;
    enum store_rc rc = store_txn_begin(n->store, true, &t);
    if (rc == STORE_OK)
        rc = store_kv_put(t, NOTIFY_LEASE_TABLE, NOTIFY_TAKEOVER_KEY, strlen(NOTIFY_TAKEOVER_KEY),
                          n->instance, strlen(n->instance));
    if (rc == STORE_OK)
        rc = notify_leases_read(t, leases);
    void *mine = NULL;
    size_t mine_len = 0;
    enum store_rc own = rc == STORE_OK ? store_kv_get(t, NOTIFY_LEASE_TABLE, n->instance,
                                                      strlen(n->instance), &mine, &mine_len)
                                       : rc;
    free(mine);
    if (own == STORE_NOTFOUND) {
        /* We were declared dead ourselves: nothing to take, ours are gone too. */
        store_txn_abort(t);
        free(leases);
        notify_subs_lost(n);
        return;
    }
    if (rc == STORE_OK)
        rc = own;
    if (rc == STORE_OK)
        rc = store_kv_scan(t, NOTIFY_TABLE, NULL, 0, notify_takeover_one, &c);
    if (rc == STORE_OK && c.failed)
        rc = STORE_ERROR;
    if (rc == STORE_OK)
        rc = notify_takeover_write(n, t, &c);
    if (rc == STORE_OK)
        rc = store_txn_commit(t);
    else if (t)
        store_txn_abort(t);
    free(leases);
    if (rc != STORE_OK) {
        log_warn("notifier: cannot take subscriptions over: %s", store_strerror(rc));
        notify_taken_release(c.v, c.count);
        return;
    }
    if (c.count == 0) {
        notify_taken_release(c.v, c.count);
        return;
    }
    /* The subscriptions held already have handled everything up to the cursor; the cursor then
     * goes back to the oldest position taken over, and the change log is read again from there
     * (notify_on_change() skips what a subscription has handled). */
    for (struct notify_sub *s = n->subs; s; s = s->next)
        if (s->seq < n->cursor)
            s->seq = n->cursor;
    /* One line per former owner (a takeover may move thousands of subscriptions). */
    for (size_t i = 0; i < c.count; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(c.v[j].from, c.v[i].from) == 0;
        size_t k = 0;
        for (size_t j = i; j < c.count && !seen; j++)
            k += strcmp(c.v[j].from, c.v[i].from) == 0;
        if (!seen)
            log_info("notifier: %zu subscription(s) taken over from instance %s", k,
                     c.v[i].from[0] ? c.v[i].from : "(none recorded)");
    }
    uint64_t low = n->cursor;
    size_t restored = 0, dropped = 0;
    for (size_t i = 0; i < c.count; i++) {
        struct notify_taken *e = &c.v[i];
        log_debug("notifier: subscription %s of %s taken over from instance %s", e->key,
                  e->rec.identity, e->from[0] ? e->from : "(none recorded)");
        struct notify_sub *s = notify_dialog_restore_one(n, &e->key, true, &e->rec);
        if (!s && e->key) {
            /* expired: its record goes */
            s = calloc(1, sizeof *s);
            if (!s)
                continue;
            s->n = n;
            s->key = e->key;
            e->key = NULL;
            s->forget = true;
        }
        if (!s)
            continue;
        bool drop = s->forget;
        if (drop) {
            s->dead = true; /* not in the expiry heap */
            dropped++;
        } else {
            restored++;
            if (s->seq < low)
                low = s->seq;
            notify_subs_mark(s); /* the record now names us with our CSeq margin */
        }
        notify_subs_link(n, s);
        if (drop)
            notify_subs_bury(s);
    }
    notify_taken_release(c.v, c.count);
    metrics_count(METRICS_SUBS_TAKEN, restored);
    n->cursor = low;
    log_info("notifier: %zu subscription(s) restored here, %zu expired dropped; reporting "
             "changes after %llu",
             restored, dropped, (unsigned long long)low);
    notifier_poll(n);
    notify_subs_save(n, false);
}

/* ---- SIP thread: wake-ups and the periodic work ---- */

static int notify_on_store_wake(struct notifier *n, su_wait_t *w, struct notifier *arg);

/* Registers the store's wake-up descriptor in the loop when it has one (again when it changed).
 */
static void notify_wake_register(struct notifier *n)
{
    int fd = store_wake_fd(n->store);
    if (fd == n->store_wake_fd && (fd < 0 || n->store_wake_index >= 0))
        return;
    if (n->store_wake_index >= 0)
        su_root_deregister(n->root, n->store_wake_index);
    n->store_wake_index = -1;
    n->store_wake_fd = fd;
    su_wait_t w;
    if (fd >= 0 && su_wait_create(&w, fd, SU_WAIT_IN) == 0 &&
        (n->store_wake_index = su_root_register(n->root, &w, notify_on_store_wake, n, 0)) < 0)
        n->store_wake_index = -1;
}

static int notify_on_store_wake(struct notifier *n, su_wait_t *w, struct notifier *arg)
{
    (void)w;
    (void)arg;
    store_wake_drain(n->store);
    notify_wake_register(n);
    if (!n->stopping)
        notifier_poll_changes(n); /* another instance's commit: the records say whom it concerns */
    return 0;
}

void notify_cluster_wake_start(struct notifier *n)
{
    n->store_wake_fd = -1;
    n->store_wake_index = -1;
    notify_wake_register(n);
}

void notify_cluster_wake_stop(struct notifier *n)
{
    if (n->store_wake_index >= 0)
        su_root_deregister(n->root, n->store_wake_index);
    n->store_wake_index = -1;
}

void notify_cluster_tick(struct notifier *n)
{
    bool second = notify_now_ms() - n->last_heartbeat_ms >= NOTIFY_HEARTBEAT_MS;
    /* Commits of the other instances (ours wake the loop themselves): every poll_ms without a
     * wake-up descriptor, once a second with one. */
    if (n->store_wake_index < 0 || second) {
        struct store_txn *t;
        uint64_t last = 0;
        bool read = false;
        if (store_txn_begin(n->store, false, &t) == STORE_OK) {
            read = store_change_last(t, &last) == STORE_OK;
            store_txn_abort(t);
        }
        if (read && last != n->cursor)
            notifier_poll_changes(n);
    }
    /* The progress of answered NOTIFYs, so that a takeover resumes exactly there; while the
     * store does not answer, the heartbeat alone tries once a second (and logs it once). */
    if (!n->heartbeat_failed)
        notify_subs_save(n, false);
    if (second) {
        notify_wake_register(n); /* a listener that could not connect may now */
        /* After a time without the store, the others get a lease period to renew theirs
         * before their leases count as expired here: the store was away for them too. */
        if (notify_cluster_heartbeat(n) == 0 &&
            n->last_heartbeat_ms - n->renewed_since_ms >= (int64_t)n->cfg.lease_s * 1000)
            notify_cluster_takeover(n, false);
    }
}

int notify_cluster_claim(struct notifier *n, const char *tag, struct notify_sub **out)
{
    *out = NULL;
    if (!n->persist || !tag)
        return 481;
    struct store_txn *t = NULL;
    void *val = NULL;
    size_t vlen = 0;
    enum store_rc rc = store_txn_begin(n->store, false, &t);
    if (rc != STORE_OK)
        t = NULL;
    struct notify_leases *leases = malloc(sizeof *leases);
    bool alive = false, found = false;
    if (rc == STORE_OK && leases) {
        rc = store_kv_get(t, NOTIFY_TABLE, tag, strlen(tag), &val, &vlen);
        struct notify_record rec;
        if (rc == STORE_OK && notify_subs_record_decode(val, vlen, &rec) == 0) {
            found = true;
            if (notify_leases_read(t, leases) == STORE_OK)
                alive = strcmp(rec.owner, n->instance) != 0 &&
                        notify_owner_alive(leases, rec.owner, notify_wall_ms(), n->cfg.lease_s);
            notify_subs_record_release(&rec);
        }
    }
    if (t)
        store_txn_abort(t);
    free(val);
    free(leases);
    if (!found)
        return 481;
    if (alive)
        return 503;
    notify_cluster_takeover(n, true);
    for (struct notify_sub *s = n->subs; s; s = s->next) {
        if (!s->dead && s->key && strcmp(s->key, tag) == 0) {
            *out = s;
            return 0;
        }
    }
    return 481;
}

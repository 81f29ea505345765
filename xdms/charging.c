/* Charging records, their queue in the store and the delivery thread (charging.h). */
#include "charging.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "charging_internal.h"
#include "log.h"
#include "metrics.h"

/* Queue bytes: version, event, then result, record number (4 bytes each), bytes in and out,
 * start and time (8 bytes each), then the seven strings, each a 2-byte length and its bytes.
 * Integers big-endian. */
#define CHARGING_VERSION 1
#define CHARGING_STRINGS 7
#define CHARGING_HDR (2 + 4 + 4 + 8 * 4)

static void charging_put(unsigned char *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)(v & 0xff);
}

static uint64_t charging_get(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static const char *charging_str(const char *s)
{
    return s ? s : "";
}

int charging_record_encode(const struct charging_record *r, struct buf *out)
{
    unsigned char h[CHARGING_HDR];
    h[0] = CHARGING_VERSION;
    h[1] = (unsigned char)r->event;
    charging_put(h + 2, r->result, 4);
    charging_put(h + 6, r->record_number, 4);
    charging_put(h + 10, r->bytes_in, 8);
    charging_put(h + 18, r->bytes_out, 8);
    charging_put(h + 26, (uint64_t)r->start_ms, 8);
    charging_put(h + 34, (uint64_t)r->time_ms, 8);
    if (buf_append(out, h, sizeof h) < 0)
        return -1;
    const char *s[CHARGING_STRINGS] = {r->user, r->auid,        r->document, r->operation,
                                       r->node, r->correlation, r->session};
    for (int i = 0; i < CHARGING_STRINGS; i++) {
        const char *v = charging_str(s[i]);
        size_t n = strlen(v);
        if (n > CHARGING_FIELD_MAX)
            n = CHARGING_FIELD_MAX;
        unsigned char l[2];
        charging_put(l, n, 2);
        if (buf_append(out, l, 2) < 0 || buf_append(out, v, n) < 0)
            return -1;
    }
    return 0;
}

int charging_record_decode(const void *p, size_t len, struct buf *scratch,
                           struct charging_record *r)
{
    const unsigned char *b = p;
    memset(r, 0, sizeof *r);
    if (len < CHARGING_HDR || b[0] != CHARGING_VERSION || b[1] >= CHARGING_EVENT_COUNT)
        return -1;
    r->event = (enum charging_event)b[1];
    r->result = (unsigned)charging_get(b + 2, 4);
    r->record_number = (uint32_t)charging_get(b + 6, 4);
    r->bytes_in = charging_get(b + 10, 8);
    r->bytes_out = charging_get(b + 18, 8);
    r->start_ms = (int64_t)charging_get(b + 26, 8);
    r->time_ms = (int64_t)charging_get(b + 34, 8);
    /* The strings are copied NUL-terminated one after the other, then pointed to. */
    buf_reset(scratch);
    size_t off = CHARGING_HDR, starts[CHARGING_STRINGS];
    for (int i = 0; i < CHARGING_STRINGS; i++) {
        if (len - off < 2)
            return -1;
        size_t n = (size_t)charging_get(b + off, 2);
        off += 2;
        if (len - off < n || n > CHARGING_FIELD_MAX)
            return -1;
        starts[i] = scratch->len;
        if (buf_append(scratch, b + off, n) < 0 || buf_append(scratch, "", 1) < 0)
            return -1;
        off += n;
    }
    if (off != len)
        return -1;
    const char **s[CHARGING_STRINGS] = {&r->user, &r->auid,        &r->document, &r->operation,
                                        &r->node, &r->correlation, &r->session};
    for (int i = 0; i < CHARGING_STRINGS; i++)
        *s[i] = scratch->data + starts[i];
    return 0;
}

void charging_time_text(int64_t ms, char out[32])
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char day[24];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%s.%03dZ", day, (int)(ms % 1000));
}

int64_t charging_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A JSON string (RFC 8259 §7): quote, backslash and control characters escaped; the bytes are
 * UTF-8 already (XUIs and paths were checked when parsed). */
static int charging_json_str(struct buf *out, const char *name, const char *v)
{
    int rc = buf_printf(out, ",\"%s\":\"", name);
    for (const unsigned char *p = (const unsigned char *)charging_str(v); *p && rc == 0; p++) {
        if (*p == '"' || *p == '\\')
            rc = buf_printf(out, "\\%c", *p);
        else if (*p < 0x20)
            rc = buf_printf(out, "\\u%04x", *p);
        else
            rc = buf_append(out, p, 1);
    }
    return rc < 0 ? -1 : buf_puts(out, "\"");
}

int charging_record_json(const struct charging_record *r, uint64_t seq, struct buf *out)
{
    char time[32], start[32];
    charging_time_text(r->time_ms, time);
    charging_time_text(r->start_ms, start);
    static const char *const types[] = {"", "EVENT_RECORD", "START_RECORD", "INTERIM_RECORD",
                                        "STOP_RECORD"};
    int rc = buf_printf(out, "{\"seq\":%" PRIu64, seq);
    rc |= charging_json_str(out, "event", charging_event_name(r->event));
    rc |= charging_json_str(out, "user", r->user);
    rc |= charging_json_str(out, "auid", r->auid);
    rc |= charging_json_str(out, "document", r->document);
    rc |= charging_json_str(out, "operation", r->operation);
    rc |= buf_printf(out, ",\"result\":%u,\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64,
                     r->result, r->bytes_in, r->bytes_out);
    rc |= charging_json_str(out, "time", time);
    rc |= charging_json_str(out, "start", start);
    rc |= charging_json_str(out, "node", r->node);
    rc |= charging_json_str(out, "correlation_id", r->correlation);
    rc |= charging_json_str(out, "record_type", types[charging_record_type(r->event)]);
    rc |= buf_printf(out, ",\"record_number\":%" PRIu32, r->record_number);
    if (r->session && r->session[0])
        rc |= charging_json_str(out, "session", r->session);
    rc |= buf_puts(out, "}\n");
    return rc ? -1 : 0;
}

/* The delivery thread ------------------------------------------------------------------------ */

struct charging {
    struct store *store;
    char node[STORE_CHARGE_QUEUE_MAX + 1];
    uint64_t queue_max;
    unsigned retry_min_ms, retry_max_ms;
    struct charging_cdr *cdr;
    struct charging_rf *rf;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    bool wake;
    atomic_uint_fast64_t dropped;
};

const char *charging_store_table(void)
{
    return STORE_CHARGE_TABLE;
}

const char *charging_node(const struct charging *c)
{
    return c ? c->node : NULL;
}

/* One record read from the queue, copied out of the read transaction. */
struct charging_item {
    uint64_t seq;
    void *bytes;
    size_t len;
};

struct charging_batch {
    struct charging_item items[CHARGING_BATCH];
    size_t n;
};

static int charging_collect(void *cls, uint64_t seq, const void *rec, size_t len)
{
    struct charging_batch *b = cls;
    void *copy = malloc(len ? len : 1);
    if (!copy)
        return 1;
    memcpy(copy, rec, len);
    b->items[b->n++] = (struct charging_item){seq, copy, len};
    return b->n == CHARGING_BATCH;
}

static void charging_batch_release(struct charging_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->items[i].bytes);
    b->n = 0;
}

static void charging_backlog_update(struct charging *c)
{
    struct store_txn *t;
    uint64_t n = 0;
    if (store_txn_begin(c->store, false, &t) != STORE_OK)
        return;
    if (store_charge_count(t, c->node, &n) == STORE_OK)
        metrics_gauge_set(METRICS_CHARGING_BACKLOG, (int64_t)n);
    store_txn_abort(t);
}

/* Removes the delivered records [0, n) of the batch from the queue, in one write transaction. */
static int charging_remove(struct charging *c, const struct charging_batch *b, size_t n)
{
    if (n == 0)
        return 0;
    struct store_txn *t = NULL;
    enum store_rc rc = store_txn_begin(c->store, true, &t);
    for (size_t i = 0; rc == STORE_OK && i < n; i++) {
        rc = store_charge_del(t, c->node, b->items[i].seq);
        if (rc == STORE_NOTFOUND)
            rc = STORE_OK;
    }
    if (rc == STORE_OK)
        rc = store_txn_commit(t);
    else if (t)
        store_txn_abort(t);
    if (rc != STORE_OK) {
        log_warn("charging: delivered records stay queued (store: %s); they will be delivered "
                 "again with the same numbers",
                 store_strerror(rc));
        return -1;
    }
    metrics_count(METRICS_CHARGING_SENT, n);
    return 0;
}

/* Delivers the records of one batch in order: each to Rf (when configured), then its CDR line
 * (when configured); stops at the first failure. The CDR file is fsync'ed before the records
 * leave the queue. Returns how many were delivered. */
static size_t charging_deliver(struct charging *c, struct charging_batch *b, bool *failed)
{
    struct buf scratch, line;
    buf_init(&scratch, SIZE_MAX);
    buf_init(&line, SIZE_MAX);
    size_t done = 0;
    *failed = false;
    for (; done < b->n; done++) {
        struct charging_record r;
        const struct charging_item *it = &b->items[done];
        if (charging_record_decode(it->bytes, it->len, &scratch, &r) < 0) {
            /* Not a record of this version: kept as it is, and reported, rather than lost. */
            log_error("charging: queued record %" PRIu64 " does not decode; it stays queued",
                      it->seq);
            *failed = true;
            break;
        }
        if (c->rf) {
            char why[256] = "";
            if (charging_rf_send(c->rf, &r, it->seq, why, sizeof why) < 0) {
                log_warn("charging: record %" PRIu64 " not accepted by the charging function: "
                         "%s; it stays queued",
                         it->seq, why);
                *failed = true;
                break;
            }
        }
        if (c->cdr) {
            buf_reset(&line);
            if (charging_record_json(&r, it->seq, &line) < 0 ||
                charging_cdr_write(c->cdr, line.data, line.len, it->seq) < 0) {
                *failed = true;
                break;
            }
        }
    }
    if (c->cdr && done > 0 && charging_cdr_sync(c->cdr) < 0) {
        *failed = true;
        done = 0;
    }
    buf_release(&scratch);
    buf_release(&line);
    return done;
}

/* Waits ms milliseconds, or less when woken (a new record) unless only_stop. */
static void charging_wait(struct charging *c, unsigned ms, bool only_stop)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->mu);
    while (!c->stop && (only_stop || !c->wake))
        if (pthread_cond_timedwait(&c->cv, &c->mu, &until) == ETIMEDOUT)
            break;
    c->wake = false;
    pthread_mutex_unlock(&c->mu);
}

static bool charging_stopping(struct charging *c)
{
    pthread_mutex_lock(&c->mu);
    bool stop = c->stop;
    pthread_mutex_unlock(&c->mu);
    return stop;
}

static void *charging_thread(void *arg)
{
    struct charging *c = arg;
    unsigned backoff = 0;
    while (!charging_stopping(c)) {
        struct charging_batch b = {.n = 0};
        struct store_txn *t;
        enum store_rc rc = store_txn_begin(c->store, false, &t);
        if (rc == STORE_OK) {
            rc = store_charge_read(t, c->node, CHARGING_BATCH, charging_collect, &b);
            store_txn_abort(t);
        }
        charging_backlog_update(c);
        if (rc != STORE_OK || b.n == 0) {
            charging_batch_release(&b);
            if (c->cdr)
                charging_cdr_tick(c->cdr);
            charging_wait(c, rc != STORE_OK ? c->retry_min_ms : 1000, false);
            continue;
        }
        bool failed;
        size_t done = charging_deliver(c, &b, &failed);
        if (charging_remove(c, &b, done) < 0)
            failed = true;
        charging_batch_release(&b);
        if (!failed) {
            backoff = 0;
            continue;
        }
        metrics_count(METRICS_CHARGING_FAILED, 1);
        /* The charging function is down or refuses: the records wait, and the waits grow so
         * that a long outage costs little (the first retry comes soon). */
        backoff = backoff == 0                     ? c->retry_min_ms
                  : backoff >= c->retry_max_ms / 2 ? c->retry_max_ms
                                                   : backoff * 2;
        if (backoff > c->retry_max_ms)
            backoff = c->retry_max_ms;
        /* In slices of a second, so that the backlog a scrape reads stays current while the
         * records wait (new events keep arriving). */
        for (unsigned left = backoff; left > 0 && !charging_stopping(c);) {
            unsigned slice = left > 1000 ? 1000 : left;
            charging_wait(c, slice, true);
            left -= slice;
            charging_backlog_update(c);
        }
    }
    return NULL;
}

static void charging_free(struct charging *c)
{
    if (!c)
        return;
    if (c->rf)
        charging_rf_close(c->rf);
    if (c->cdr)
        charging_cdr_close(c->cdr);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

int charging_check_keys(const struct config *cfg)
{
    const char *realm = config_str(cfg, "rf_destination_realm");
    char where[CONFIG_WHERE_MAX];
    if (config_str(cfg, "rf_config") && (!realm || !realm[0])) {
        log_error("%s: rf_config needs rf_destination_realm (the realm of the charging function)",
                  config_where_key(cfg, "rf_config", where, sizeof where));
        return -1;
    }
    uint64_t rmin = config_u64(cfg, "charging_retry_min_ms"),
             rmax = config_u64(cfg, "charging_retry_max_ms");
    if (rmin > rmax) {
        log_error("%s: charging_retry_min_ms (%" PRIu64
                  ") must not exceed charging_retry_max_ms (%" PRIu64 ")",
                  config_where_key(cfg, "charging_retry_min_ms", where, sizeof where), rmin, rmax);
        return -1;
    }
    return 0;
}

int charging_start(const struct config *cfg, struct store *store, const char *node,
                   struct charging **out)
{
    *out = NULL;
    const char *cdr_dir = config_str(cfg, "cdr_dir"), *rf_conf = config_str(cfg, "rf_config");
    if ((!cdr_dir || !cdr_dir[0]) && !rf_conf)
        return 0;
    if (charging_check_keys(cfg) < 0)
        return -1;
    const char *realm = config_str(cfg, "rf_destination_realm");
    if (!node || !node[0] || strlen(node) > STORE_CHARGE_QUEUE_MAX) {
        log_error("charging: serving node name \"%s\" must have 1 to %d bytes", node ? node : "",
                  STORE_CHARGE_QUEUE_MAX);
        return -1;
    }
    uint64_t rmin = config_u64(cfg, "charging_retry_min_ms"),
             rmax = config_u64(cfg, "charging_retry_max_ms");
    struct charging *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    c->store = store;
    snprintf(c->node, sizeof c->node, "%s", node);
    c->queue_max = config_u64(cfg, "charging_queue_max");
    c->retry_min_ms = (unsigned)rmin;
    c->retry_max_ms = (unsigned)rmax;
    if (cdr_dir && cdr_dir[0] &&
        charging_cdr_open(cdr_dir, c->node, config_u64(cfg, "cdr_rotate_bytes"),
                          config_u64(cfg, "cdr_rotate_age"), &c->cdr) < 0) {
        charging_free(c);
        return -1;
    }
    if (rf_conf) {
        struct charging_rf_config rcfg = {
            .conf_file = rf_conf,
            .dest_realm = realm,
            .dest_host = config_str(cfg, "rf_destination_host"),
            .service_ctx = config_str(cfg, "rf_service_context"),
            .answer_timeout_ms = (unsigned)config_u64(cfg, "rf_answer_timeout_ms"),
        };
        if (charging_rf_open(&rcfg, &c->rf) < 0) {
            c->rf = NULL;
            charging_free(c);
            return -1;
        }
    }
    if (pthread_create(&c->thread, NULL, charging_thread, c) != 0) {
        log_error("charging: cannot start the delivery thread");
        charging_free(c);
        return -1;
    }
    c->thread_started = true;
    log_info("charging: node %s, CDR files %s, Diameter Rf %s", c->node, c->cdr ? cdr_dir : "off",
             c->rf ? realm : "off");
    *out = c;
    return 0;
}

void charging_stop(struct charging *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (c->thread_started)
        pthread_join(c->thread, NULL);
    charging_free(c);
}

static void charging_wake(struct charging *c)
{
    pthread_mutex_lock(&c->mu);
    c->wake = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void charging_attach(struct charging *c, const struct charging_record *r, struct buf *scratch,
                     struct store_change *ch)
{
    if (!c)
        return;
    buf_reset(scratch);
    if (charging_record_encode(r, scratch) < 0) {
        /* Only out of memory: the change still commits; the loss is logged and counted. */
        log_error("charging: out of memory: %s of %s not charged", charging_event_name(r->event),
                  charging_str(r->document));
        metrics_count(METRICS_CHARGING_DROPPED, 1);
        return;
    }
    ch->charge_queue = c->node;
    ch->charge = scratch->data;
    ch->charge_len = scratch->len;
    ch->charge_max = c->queue_max;
}

static void charging_note_full(struct charging *c, const char *what, const char *doc)
{
    uint64_t n = atomic_fetch_add(&c->dropped, 1) + 1;
    metrics_count(METRICS_CHARGING_DROPPED, 1);
    /* One line per event would flood the log during a long outage: the first, then one in a
     * thousand, each with the running total. */
    if (n == 1 || n % 1000 == 0)
        log_error("charging: queue full (%" PRIu64 " records, charging_queue_max): %s of %s not "
                  "charged (%" PRIu64 " event(s) not charged since start); the charging "
                  "function or the CDR directory is not taking records",
                  c->queue_max, what, doc, n);
}

void charging_committed(struct charging *c, const struct store_change *ch)
{
    if (!c || !ch->charge_queue)
        return;
    if (ch->charge_full)
        charging_note_full(c, "a document change", ch->key.path);
    charging_wake(c);
}

/* The per-session counter of Accounting-Record-Number: key 'S' session in the charging table. */
static enum store_rc charging_session_number(struct store_txn *t, struct charging_record *r)
{
    char key[1 + CHARGING_FIELD_MAX];
    size_t n = strlen(r->session);
    if (n > 200)
        n = 200; /* the store's key bound; sessions are short ids */
    key[0] = 'S';
    memcpy(key + 1, r->session, n);
    void *v = NULL;
    size_t vlen = 0;
    uint32_t next = 0;
    enum store_rc rc = store_kv_get(t, STORE_CHARGE_TABLE, key, n + 1, &v, &vlen);
    if (rc == STORE_OK && vlen == 4)
        next = (uint32_t)charging_get(v, 4);
    free(v);
    if (rc != STORE_OK && rc != STORE_NOTFOUND)
        return rc;
    /* RFC 6733 §9.8.3: START 0, each INTERIM the next number, STOP one more than the last. */
    r->record_number = r->event == CHARGING_SUB_STARTED ? 0 : next;
    if (r->event == CHARGING_SUB_ENDED) {
        rc = store_kv_del(t, STORE_CHARGE_TABLE, key, n + 1);
        return rc == STORE_NOTFOUND ? STORE_OK : rc;
    }
    unsigned char b[4];
    charging_put(b, r->record_number + 1u, 4);
    return store_kv_put(t, STORE_CHARGE_TABLE, key, n + 1, b, 4);
}

void charging_emit(struct charging *c, struct charging_record *r)
{
    if (!c)
        return;
    r->node = c->node;
    struct buf bytes;
    buf_init(&bytes, SIZE_MAX);
    struct store_txn *t = NULL;
    enum store_rc rc = store_txn_begin(c->store, true, &t);
    if (rc == STORE_OK && r->session && r->session[0] && charging_record_type(r->event) != 1)
        rc = charging_session_number(t, r);
    if (rc == STORE_OK && charging_record_encode(r, &bytes) < 0)
        rc = STORE_ERROR;
    if (rc == STORE_OK)
        rc = store_charge_append(t, c->node, bytes.data, bytes.len, c->queue_max, NULL);
    bool full = rc == STORE_FULL;
    if (rc == STORE_OK || full) {
        if (full) {
            store_txn_abort(t);
            rc = STORE_OK;
        } else
            rc = store_txn_commit(t);
    } else if (t)
        store_txn_abort(t);
    buf_release(&bytes);
    if (full)
        charging_note_full(c, charging_event_name(r->event), charging_str(r->document));
    else if (rc != STORE_OK) {
        metrics_count(METRICS_CHARGING_DROPPED, 1);
        log_error("charging: %s of %s not charged: the store failed (%s)",
                  charging_event_name(r->event), charging_str(r->document), store_strerror(rc));
    } else
        charging_wake(c);
}

/* pending: records, each a 4-byte length and its bytes. */
size_t charging_defer(struct charging *c, struct buf *pending, const struct charging_record *r)
{
    if (!c)
        return 0;
    struct charging_record copy = *r;
    copy.node = c->node;
    size_t at = pending->len;
    unsigned char len[4] = {0};
    if (buf_append(pending, len, 4) < 0 || charging_record_encode(&copy, pending) < 0) {
        pending->len = at; /* drop the partial record; out of memory */
        if (pending->data)
            pending->data[at] = '\0';
        metrics_count(METRICS_CHARGING_DROPPED, 1);
        log_error("charging: out of memory: %s of %s not charged", charging_event_name(r->event),
                  charging_str(r->user));
    } else {
        charging_put((unsigned char *)pending->data + at, pending->len - at - 4, 4);
    }
    size_t n = 0;
    for (size_t off = 0; off + 4 <= pending->len; n++)
        off += 4 + (size_t)charging_get((const unsigned char *)pending->data + off, 4);
    return n;
}

void charging_flush(struct charging *c, struct buf *pending)
{
    if (!c || pending->len == 0)
        return;
    size_t n = 0, full = 0;
    struct store_txn *t = NULL;
    enum store_rc rc = store_txn_begin(c->store, true, &t);
    for (size_t off = 0; rc == STORE_OK && off + 4 <= pending->len; n++) {
        size_t len = (size_t)charging_get((const unsigned char *)pending->data + off, 4);
        rc = store_charge_append(t, c->node, pending->data + off + 4, len, c->queue_max, NULL);
        if (rc == STORE_FULL) {
            full++;
            rc = STORE_OK;
        }
        off += 4 + len;
    }
    if (rc == STORE_OK)
        rc = store_txn_commit(t);
    else if (t)
        store_txn_abort(t);
    if (rc != STORE_OK) {
        metrics_count(METRICS_CHARGING_DROPPED, n);
        log_error("charging: %zu NOTIFY record(s) not charged: the store failed (%s)", n,
                  store_strerror(rc));
    } else {
        for (size_t i = 0; i < full; i++)
            charging_note_full(c, "a NOTIFY", "");
        charging_wake(c);
    }
    buf_reset(pending);
}

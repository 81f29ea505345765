/* The xcap-diff notifier (RFC 5875 event package, RFC 5874 format, RFC 6665 subscriptions).
 * One thread with its own sofia-sip event loop; HTTP threads only append to the change
 * log (in their commit) and call notifier_wake(). Everything below the "SIP thread" line runs in
 * that thread only, so the subscription list needs no lock.
 *
 * nta (transactions and dialogs) is used rather than nua: the notifier answers SUBSCRIBE itself,
 * owns the NOTIFY sequencing (one NOTIFY in flight per dialog, later changes queued behind it in
 * commit order) and decides termination, which is simpler to get right without nua's event
 * server in between; it also lets a dialog be re-created from its saved state after a restart.
 *
 * The notifier's files: this one (the thread and its event loop, the SIP stack, SUBSCRIBE
 * handling and RFC 6665 dialogs, NOTIFY sending with its hold-off), notify_watch.c (the watched
 * set), notify_change.c (the change log queued on subscriptions), notify_diff.c (NOTIFY bodies)
 * and notify_subs.c (subscription lifetime and persistence); notify_internal.h holds what they
 * share. */
#include "notify.h"
#include "notify_internal.h" /* before sofia-sip: it sets the magic types of its callbacks */

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
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

#define NOTIFY_STOP_WAIT_MS 900
/* What sofia's transport reads at once from a connection. Over TCP it takes all the bytes
 * waiting (several pipelined messages: a server answering thousands of NOTIFYs, or sending
 * thousands of SUBSCRIBEs) and refuses the lot, closing the connection, when they exceed this,
 * so it covers a full Linux TCP receive buffer (tcp_rmem's default maximum is 6 MiB). A single
 * message is still bounded by NOTIFY_MAX_BODY (413). */
#define NOTIFY_SIP_MAXSIZE (8 * 1024 * 1024)

/* ------------------------------------------------------------------------------------------ */
/* Small SIP decisions (notify_internal.h)                                                    */

char *notify_identity_parse(const char *value)
{
    if (!value)
        return NULL;
    const char *p = value;
    while (*p == ' ' || *p == '\t')
        p++;
    /* First list item: find '<' outside a quoted display name, before any ','. */
    const char *lt = NULL;
    bool quoted = false;
    for (const char *q = p; *q; q++) {
        if (quoted) {
            if (*q == '\\' && q[1])
                q++;
            else if (*q == '"')
                quoted = false;
            continue;
        }
        if (*q == '"')
            quoted = true;
        else if (*q == '<') {
            lt = q;
            break;
        } else if (*q == ',')
            break;
    }
    if (quoted)
        return NULL;
    const char *uri = lt ? lt + 1 : p;
    const char *end = uri;
    /* In a name-addr the URI ends at '>'; in an addr-spec, ';' starts header parameters. */
    while (*end && *end != '>' && *end != ',' && *end != ' ' && *end != '\t' && (lt || *end != ';'))
        end++;
    if (lt && *end != '>')
        return NULL;
    const char *colon = memchr(uri, ':', (size_t)(end - uri));
    if (!colon || colon == uri)
        return NULL;
    size_t slen = (size_t)(colon - uri);
    char scheme[5];
    if (slen >= sizeof scheme)
        return NULL;
    for (size_t i = 0; i < slen; i++)
        scheme[i] = (char)tolower((unsigned char)uri[i]);
    scheme[slen] = '\0';
    if (strcmp(scheme, "sip") != 0 && strcmp(scheme, "sips") != 0 && strcmp(scheme, "tel") != 0)
        return NULL;
    /* URI parameters and headers are not part of the identity. */
    const char *rest = colon + 1, *rend = rest;
    while (rend < end && *rend != ';' && *rend != '?')
        rend++;
    if (rend == rest)
        return NULL;
    for (const char *q = rest; q < rend; q++)
        if ((unsigned char)*q <= ' ' || *q == '<' || *q == '"' || *q == 0x7f)
            return NULL;
    size_t rlen = (size_t)(rend - rest);
    char *out = malloc(slen + 1 + rlen + 1);
    if (!out)
        return NULL;
    memcpy(out, scheme, slen);
    out[slen] = ':';
    memcpy(out + slen + 1, rest, rlen);
    out[slen + 1 + rlen] = '\0';
    /* The XUI's canonical spelling, as storage keys and watches use it. */
    char *canon = xcap_uri_xui_canonical(out);
    free(out);
    return canon;
}

int notify_expires_decide(const struct notifier_config *cfg, bool present, unsigned long requested,
                          unsigned *out)
{
    unsigned long max = cfg->max_expires ? cfg->max_expires : NOTIFY_DEFAULT_MAX_EXPIRES;
    unsigned long want =
        present ? requested
                : (cfg->default_expires ? cfg->default_expires : NOTIFY_DEFAULT_EXPIRES);
    if (want == 0) {
        *out = 0;
        return 0;
    }
    if (present && cfg->min_expires && want < cfg->min_expires)
        return 423;
    *out = (unsigned)(want > max ? max : want);
    return 0;
}

/* Normalises an address to 16 bytes (IPv4 as IPv4-mapped IPv6). */
static bool notify_addr16(const struct sockaddr *sa, unsigned char out[16])
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (sa->sa_family == AF_INET) {
        memcpy(out, mapped, 12);
        memcpy(out + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

bool notify_peer_trusted(const struct sockaddr *sa, const char *const *trusted)
{
    unsigned char a[16];
    if (!sa || !notify_addr16(sa, a))
        return false;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    for (size_t i = 0; trusted && trusted[i]; i++) {
        unsigned char t[16];
        struct in_addr a4;
        if (inet_pton(AF_INET, trusted[i], &a4) == 1) {
            memcpy(t, mapped, 12);
            memcpy(t + 12, &a4, 4);
        } else if (inet_pton(AF_INET6, trusted[i], t) != 1) {
            continue;
        }
        if (memcmp(a, t, 16) == 0)
            return true;
    }
    return false;
}

bool notify_identity_is_server(const char *identity, const char *const *servers)
{
    for (size_t i = 0; servers && servers[i]; i++)
        if (xcap_uri_xui_equal(servers[i], identity))
            return true;
    return false;
}

bool notify_accept_allows(const char *const *types, size_t n)
{
    if (n == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        const char *t = types[i];
        if (t && (strcasecmp(t, NOTIFY_MIME_DIFF) == 0 || strcasecmp(t, "application/*") == 0 ||
                  strcmp(t, "*/*") == 0))
            return true;
    }
    return false;
}

enum notify_mode notify_mode_parse(const char *const *params)
{
    for (const char *const *p = params; p && *p; p++) {
        if (strncasecmp(*p, "diff-processing=", 16) != 0)
            continue;
        const char *v = *p + 16;
        size_t len = strlen(v);
        if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
            v++;
            len -= 2;
        }
        if (len == 13 && strncasecmp(v, "xcap-patching", 13) == 0)
            return NOTIFY_XCAP_PATCHING;
        if (len == 9 && strncasecmp(v, "aggregate", 9) == 0)
            return NOTIFY_AGGREGATE;
        return NOTIFY_NO_PATCHING;
    }
    return NOTIFY_NO_PATCHING;
}

const char *notify_mode_name(enum notify_mode m)
{
    switch (m) {
    case NOTIFY_NO_PATCHING:
        return "no-patching";
    case NOTIFY_XCAP_PATCHING:
        return "xcap-patching";
    case NOTIFY_AGGREGATE:
        return "aggregate";
    }
    return "no-patching";
}

/* ------------------------------------------------------------------------------------------ */
/* SIP thread                                                                                  */

int64_t notify_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec;
}

int64_t notify_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t notify_wall(void)
{
    return (int64_t)time(NULL);
}

static char **notify_strv_dup(const char *const *v)
{
    if (!v)
        return NULL;
    size_t n = 0;
    while (v[n])
        n++;
    char **out = calloc(n + 1, sizeof *out);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!(out[i] = strdup(v[i]))) {
            for (size_t j = 0; j < i; j++)
                free(out[j]);
            free(out);
            return NULL;
        }
    }
    return out;
}

static void notify_strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static bool notifier_idle(const struct notifier *n)
{
    if (!n->persist)
        return n->n_subs == 0;
    for (const struct notify_sub *s = n->subs; s; s = s->next)
        if (s->orq)
            return false;
    return true;
}

static void notifier_enter(struct notifier *n)
{
    n->depth++;
}

static void notifier_leave(struct notifier *n)
{
    if (--n->depth > 0)
        return;
    notify_subs_reap(n);
    if (n->stopping && notifier_idle(n) && !n->broken) {
        n->broken = true;
        su_root_break(n->root);
    }
}

/* ---- NOTIFY ---- */

static int sub_on_notify_response(struct notify_sub *s, nta_outgoing_t *orq, const sip_t *sip);

static bool sub_has_work(const struct notify_sub *s)
{
    if (s->dead || s->final_sent || s->orq)
        return false;
    /* A persisted subscription outlives a stop: nothing more is sent then. */
    if (s->n->stopping && s->n->persist && !s->term_reason)
        return false;
    return s->full_pending || s->n_pending > 0 || s->nodes_due || s->term_reason || s->force_notify;
}

static void notify_on_hold(struct notifier *n, su_timer_t *t, struct notifier *arg);

/* Asks for a poll at due (monotonic ms), for NOTIFYs held back by the minimum interval. */
static void notifier_hold(struct notifier *n, int64_t due)
{
    if (n->hold_armed && n->hold_due <= due)
        return;
    int64_t wait = due - notify_now_ms();
    if (su_timer_set_interval(n->hold, notify_on_hold, n, (su_duration_t)(wait > 1 ? wait : 1)) < 0)
        return;
    n->hold_armed = true;
    n->hold_due = due;
}

/* Sends the next NOTIFY of s when one is due and none is in flight (RFC 6665 §4.2.2: NOTIFYs of
 * a dialog are not sent in parallel, so they arrive in commit order). t may be NULL when the
 * store could not be read; a NOTIFY that needs it then waits for the next poll. */
static void sub_flush(struct notify_sub *s, struct store_txn *t)
{
    struct notifier *n = s->n;
    if (!sub_has_work(s) || ((s->full_pending || s->nodes_due) && !t))
        return;
    bool full = s->full_pending;
    /* RFC 5875 §4.7: change reports keep a minimum distance; the initial, refresh and final NOTIFYs
     * are answers to the subscriber and go at once. */
    if (!full && !s->term_reason && !s->force_notify && n->cfg.min_interval_ms > 0) {
        int64_t due = s->last_sent_ms + n->cfg.min_interval_ms;
        if (notify_now_ms() < due) {
            notifier_hold(n, due);
            return;
        }
    }
    struct buf body;
    buf_init(&body, NOTIFY_MAX_NOTIFY_BODY);
    size_t items = 0;
    int rc = notify_diff_open(&body, n->cfg.xcap_root);
    if (rc == 0 && full) {
        rc = notify_diff_full(s, t, &body);
        items = 1;
    } else if (rc == 0) {
        rc = notify_diff_pending(s, &body, &items);
        if (rc == 0 && s->nodes_due)
            rc = notify_diff_nodes(s, t, &body, false, &items);
    }
    if (rc == 0)
        rc = notify_diff_close(&body);
    bool changes = !full && items > 0;
    s->nodes_due = false;
    if (rc == 0 && items == 0 && !s->term_reason && !s->force_notify) {
        /* Nothing the subscriber can see changed (e.g. a document created and deleted again,
         * another element of a watched document). */
        notify_change_pending_clear(s);
        s->dirty = true;
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
            buf_release(&body);
            notify_subs_kill(s);
            return;
        }
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
    s->dirty = true;
    if (changes)
        s->last_sent_ms = notify_now_ms();

    char state[64];
    if (s->term_reason) {
        snprintf(state, sizeof state, "terminated;reason=%s", s->term_reason);
    } else {
        int64_t left = s->expires_at - notify_now();
        snprintf(state, sizeof state, "active;expires=%lld", (long long)(left > 0 ? left : 0));
    }
    /* A transport error may be reported from inside nta_outgoing_tcreate(); the callback then
     * only records it (sending) and it is handled here, once orq is known. */
    s->sending = true;
    s->sync_status = 0;
    nta_outgoing_t *orq = nta_outgoing_tcreate(
        s->leg, sub_on_notify_response, s, NULL, SIP_METHOD_NOTIFY, NULL,
        SIPTAG_CONTACT(n->contact_hdr), SIPTAG_EVENT_STR(s->event),
        SIPTAG_SUBSCRIPTION_STATE_STR(state), SIPTAG_CONTENT_TYPE_STR(NOTIFY_MIME_DIFF),
        SIPTAG_PAYLOAD_STR(body.data), TAG_END());
    s->sending = false;
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
static void sub_continue(struct notify_sub *s)
{
    struct notifier *n = s->n;
    if (n->in_poll) {
        n->poll_again = true;
        return;
    }
    struct store_txn *t = NULL;
    if ((s->full_pending || s->nodes_due) && store_txn_begin(n->store, false, &t) != STORE_OK)
        t = NULL;
    n->in_poll = true;
    sub_flush(s, t);
    n->in_poll = false;
    if (t)
        store_txn_abort(t);
    if (s->urgent && !s->dead)
        notify_subs_save(n, false);
}

static int sub_on_notify_response(struct notify_sub *s, nta_outgoing_t *orq, const sip_t *sip)
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
        notify_subs_kill(s);
    } else {
        /* The subscriber has these changes: the record's position may move past them (saved
         * at the next tick; at once, next poll_ms, with other instances on the store). */
        s->dirty = true;
        if (sub_has_work(s))
            sub_continue(s);
    }
    notifier_leave(n);
    return 0;
}

/* Reads the change log after the cursor and sends every due NOTIFY, all from one read snapshot,
 * so a full state and the cursor agree. Re-entrant calls (a response callback fired while
 * sending) only ask for another round. */
void notifier_poll(struct notifier *n)
{
    if (n->in_poll) {
        n->poll_again = true;
        return;
    }
    n->in_poll = true;
    bool more = false;
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
        for (struct notify_sub *s = n->subs; s; s = s->next)
            sub_flush(s, t);
        if (t)
            store_txn_abort(t);
    } while (n->poll_again);
    n->in_poll = false;
    bool urgent = false;
    for (struct notify_sub *s = n->subs; s && !urgent; s = s->next)
        urgent = s->urgent && !s->dead;
    if (urgent)
        notify_subs_save(n, false);
    if (more)
        notifier_wake(n);
}

/* ---- SUBSCRIBE handling ---- */

static int notify_reply(nta_incoming_t *irq, int status, const char *phrase, tag_type_t tag,
                        tag_value_t value, ...)
{
    ta_list ta;
    ta_start(ta, tag, value);
    nta_incoming_treply(irq, status, phrase, ta_tags(ta));
    (void)(ta_end(ta));
    nta_incoming_destroy(irq);
    return 0;
}

/* Every refused SUBSCRIBE is answered here: the status picks its companion header, 406 and 415
 * Accept (RFC 3261 §21.4.7, §21.4.13), 423 Min-Expires (RFC 6665 §4.2.1.1), 489 Allow-Events
 * (RFC 6665 §8.3.2), 503 Retry-After (RFC 3261 §21.5.4). Returns 0. */
static int notify_refuse(struct notifier *n, nta_incoming_t *irq, int status, const char *phrase)
{
    char min[24];
    snprintf(min, sizeof min, "%u", n->cfg.min_expires);
    switch (status) {
    case 406:
        return notify_reply(irq, status, phrase, SIPTAG_ACCEPT_STR(NOTIFY_MIME_DIFF), TAG_END());
    case 415:
        return notify_reply(irq, status, phrase, SIPTAG_ACCEPT_STR(NOTIFY_MIME_LIST), TAG_END());
    case 423:
        return notify_reply(irq, status, phrase, SIPTAG_MIN_EXPIRES_STR(min), TAG_END());
    case 489:
        return notify_reply(irq, status, phrase, SIPTAG_ALLOW_EVENTS_STR("xcap-diff"), TAG_END());
    case 503:
        return notify_reply(irq, status, phrase, SIPTAG_RETRY_AFTER_STR("60"), TAG_END());
    }
    return notify_reply(irq, status, phrase, TAG_END());
}

static bool notify_request_trusted(struct notifier *n, nta_incoming_t *irq)
{
    msg_t *msg = nta_incoming_getrequest(irq);
    su_addrinfo_t *ai = msg ? msg_addrinfo(msg) : NULL;
    pthread_mutex_lock(&n->trusted_lock);
    bool ok = ai && notify_peer_trusted(ai->ai_addr, (const char *const *)n->trusted);
    pthread_mutex_unlock(&n->trusted_lock);
    if (!ok) {
        char addr[INET6_ADDRSTRLEN] = "?";
        if (ai && ai->ai_addr->sa_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)ai->ai_addr)->sin_addr, addr,
                      sizeof addr);
        else if (ai && ai->ai_addr->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)ai->ai_addr)->sin6_addr, addr,
                      sizeof addr);
        log_warn("notifier: SUBSCRIBE from untrusted peer %s refused", addr);
    }
    if (msg)
        msg_destroy(msg);
    return ok;
}

/* RFC 5875 §4.1. */
static bool notify_event_ok(const sip_t *sip)
{
    return sip->sip_event && sip->sip_event->o_type &&
           strcasecmp(sip->sip_event->o_type, "xcap-diff") == 0;
}

static bool notify_accept_ok(const sip_t *sip)
{
    const char *types[32];
    size_t n = 0;
    bool present = false;
    for (const sip_accept_t *a = sip->sip_accept; a; a = a->ac_next) {
        present = true;
        if (n < sizeof types / sizeof types[0])
            types[n++] = a->ac_type;
    }
    if (!present)
        return true;
    return n > 0 && notify_accept_allows(types, n);
}

/* The subscriber: the P-Asserted-Identity of a trusted peer (RFC 3325 §5: the SIP proxy or
 * S-CSCF in front authenticated the user and asserts who it is), or NULL. From is chosen by the
 * sending user agent and proves nothing (RFC 3261 §8.1.1.3), so it is never an identity. */
static char *notify_subscriber(const sip_t *sip)
{
    for (const sip_unknown_t *u = sip->sip_unknown; u; u = u->un_next)
        if (u->un_name && strcasecmp(u->un_name, "P-Asserted-Identity") == 0)
            return notify_identity_parse(u->un_value);
    return NULL;
}

static char *notify_event_value(const sip_t *sip)
{
    const char *id = NULL;
    for (const char *const *p = sip->sip_event->o_params; p && *p; p++)
        if (strncasecmp(*p, "id=", 3) == 0)
            id = *p + 3;
    size_t len = strlen("xcap-diff;id=") + (id ? strlen(id) : 0) + 1;
    char *v = malloc(len);
    if (v)
        snprintf(v, len, "xcap-diff%s%s", id ? ";id=" : "", id ? id : "");
    return v;
}

/* Checks body headers and parses the watched set of a SUBSCRIBE. Returns 0 with *wl filled (and
 * *has_body), or a SIP status with *phrase. */
static int notify_read_body(struct notifier *n, const sip_t *sip, const char *identity,
                            struct notify_watchlist *wl, bool *has_body, const char **phrase)
{
    *has_body = sip->sip_payload && sip->sip_payload->pl_len > 0;
    memset(wl, 0, sizeof *wl);
    if (!*has_body)
        return 0;
    if (sip->sip_payload->pl_len > NOTIFY_MAX_BODY) {
        *phrase = "Resource list too large";
        return 413;
    }
    if (!sip->sip_content_type || !sip->sip_content_type->c_type) {
        *phrase = "Missing Content-Type";
        return 400;
    }
    if (strcasecmp(sip->sip_content_type->c_type, NOTIFY_MIME_LIST) != 0) {
        *phrase = "Unsupported Media Type";
        return 415;
    }
    size_t skipped = 0;
    int st = notify_watch_parse(sip->sip_payload->pl_data, sip->sip_payload->pl_len,
                                n->cfg.xcap_root, n->cfg.role, wl, &skipped);
    if (st == 400)
        *phrase = "Malformed resource list";
    else if (st == 413)
        *phrase = "Too many entries";
    else if (st != 0)
        *phrase = "Internal Server Error";
    if (st != 0)
        return st;
    bool server = notify_identity_is_server(identity, (const char *const *)n->servers);
    size_t denied = notify_watch_list_authorize(wl, identity, server);
    if (wl->n == 0) {
        log_warn("notifier: SUBSCRIBE from %s watches nothing readable (%zu left out, %zu "
                 "denied)",
                 identity, skipped, denied);
        *phrase = "Nothing to watch";
        notify_watch_list_release(wl);
        return 403;
    }
    return 0;
}

static int notify_take_body(const sip_t *sip, char **body, size_t *len)
{
    *len = sip->sip_payload->pl_len;
    if (!(*body = malloc(*len + 1)))
        return -1;
    memcpy(*body, sip->sip_payload->pl_data, *len);
    (*body)[*len] = '\0';
    return 0;
}

static size_t notify_count_user(const struct notifier *n, const char *identity)
{
    size_t count = 0;
    for (const struct notify_sub *s = n->subs; s; s = s->next)
        if (!s->dead && xcap_uri_xui_equal(s->identity, identity))
            count++;
    return count;
}

/* Remote target and route set of the dialog as strings, for the persisted record. */
static int sub_capture_route(struct notify_sub *s)
{
    const sip_route_t *route = NULL;
    const sip_contact_t *target = NULL;
    if (nta_leg_get_route(s->leg, &route, &target) < 0 || !target)
        return -1;
    su_home_t *home = su_home_new(sizeof *home);
    if (!home)
        return -1;
    char *t = url_as_string(home, target->m_url);
    struct buf b;
    buf_init(&b, NOTIFY_MAX_BODY);
    int rc = t ? 0 : -1;
    for (const sip_route_t *r = route; rc == 0 && r; r = r->r_next) {
        char *one = sip_header_as_string(home, (const sip_header_t *)(const void *)r);
        rc = one ? buf_printf(&b, "%s%s", r == route ? "" : ", ", one) : -1;
    }
    if (rc == 0 && buf_puts(&b, "") == 0) {
        free(s->target);
        free(s->route);
        s->target = strdup(t);
        s->route = buf_detach(&b, NULL);
        rc = s->target && s->route ? 0 : -1;
    }
    buf_release(&b);
    su_home_unref(home);
    return rc;
}

/* Call-ID and both ends of the dialog (our tag included), for the persisted record. */
static int sub_capture_dialog(struct notify_sub *s, const sip_t *sip)
{
    su_home_t *home = su_home_new(sizeof *home);
    if (!home)
        return -1;
    char *to = url_as_string(home, sip->sip_to->a_url);
    char *from = url_as_string(home, sip->sip_from->a_url);
    const char *ltag = nta_leg_get_tag(s->leg), *rtag = sip->sip_from->a_tag;
    int rc = to && from && ltag ? 0 : -1;
    if (rc == 0) {
        if (asprintf(&s->local, "<%s>;tag=%s", to, ltag) < 0)
            s->local = NULL;
        if (asprintf(&s->remote, rtag ? "<%s>;tag=%s" : "<%s>%s", from, rtag ? rtag : "") < 0)
            s->remote = NULL;
        s->call_id = strdup(sip->sip_call_id->i_id);
        s->key = strdup(ltag);
        rc = s->local && s->remote && s->call_id && s->key ? 0 : -1;
    }
    su_home_unref(home);
    return rc == 0 ? sub_capture_route(s) : -1;
}

static void sub_set_expiry(struct notify_sub *s, unsigned expires)
{
    s->expires_at = notify_now() + expires;
    s->expires_wall = notify_wall() + expires;
}

/* Common checks of initial and refresh SUBSCRIBEs, in RFC 6665 order: event package, Accept,
 * duration. Returns 0 or the status already answered (irq destroyed). */
static int notify_check_subscribe(struct notifier *n, nta_incoming_t *irq, const sip_t *sip,
                                  unsigned *expires)
{
    if (!notify_event_ok(sip)) {
        notify_refuse(n, irq, SIP_489_BAD_EVENT);
        return 489;
    }
    if (!notify_accept_ok(sip)) {
        notify_refuse(n, irq, SIP_406_NOT_ACCEPTABLE);
        return 406;
    }
    bool present = sip->sip_expires != NULL;
    if (notify_expires_decide(&n->cfg, present, present ? sip->sip_expires->ex_delta : 0,
                              expires) != 0) {
        notify_refuse(n, irq, SIP_423_INTERVAL_TOO_BRIEF);
        return 423;
    }
    return 0;
}

static void notify_subscribe_new(struct notifier *n, nta_incoming_t *irq, const sip_t *sip)
{
    if (!notify_request_trusted(n, irq)) {
        notify_refuse(n, irq, 403, "Untrusted peer");
        return;
    }
    unsigned expires;
    if (notify_check_subscribe(n, irq, sip, &expires) != 0)
        return;
    if (!sip->sip_contact) {
        notify_refuse(n, irq, 400, "Missing Contact");
        return;
    }
    char *identity = notify_subscriber(sip);
    if (!identity) {
        log_warn("notifier: SUBSCRIBE without a usable P-Asserted-Identity refused");
        notify_refuse(n, irq, 403, "No P-Asserted-Identity");
        return;
    }
    struct notify_watchlist wl;
    bool has_body;
    const char *phrase = NULL;
    int st = notify_read_body(n, sip, identity, &wl, &has_body, &phrase);
    if (st == 0 && !has_body) {
        st = 400;
        phrase = "Missing resource list";
    }
    if (st == 0 && (n->stopping || n->n_subs >= NOTIFY_MAX_SUBS)) {
        st = 503;
        phrase = n->stopping ? "Shutting down" : "Too many subscriptions";
        if (!n->stopping)
            log_warn("notifier: %d subscriptions reached; SUBSCRIBE from %s refused",
                     NOTIFY_MAX_SUBS, identity);
    } else if (st == 0 && notify_count_user(n, identity) >= NOTIFY_MAX_SUBS_PER_USER) {
        st = 403;
        phrase = "Too many subscriptions for this user";
        log_warn("notifier: %s has %d subscriptions; SUBSCRIBE refused", identity,
                 NOTIFY_MAX_SUBS_PER_USER);
    }
    if (st != 0) {
        if (st == 413 || st == 415 || st == 400)
            log_info("notifier: SUBSCRIBE from %s: %d %s", identity, st, phrase);
        notify_watch_list_release(&wl);
        free(identity);
        notify_refuse(n, irq, st, phrase);
        return;
    }

    struct notify_sub *s = calloc(1, sizeof *s);
    if (!s || !(s->event = notify_event_value(sip)) ||
        notify_take_body(sip, &s->body, &s->body_len) < 0) {
        if (s)
            free(s->event);
        free(s);
        notify_watch_list_release(&wl);
        free(identity);
        log_error("notifier: out of memory");
        notify_refuse(n, irq, SIP_500_INTERNAL_SERVER_ERROR);
        return;
    }
    s->n = n;
    s->identity = identity;
    s->watches = wl;
    s->mode = notify_mode_parse(sip->sip_event->o_params);
    s->seq = n->cursor;
    sub_set_expiry(s, expires);
    /* The dialog (RFC 6665 §4.1.2.2): local = To, remote = From, target from Contact. */
    /* Our CSeq starts at a known value (nta would pick one only when the first NOTIFY goes),
     * so the saved record can always restore a higher one. */
    s->leg =
        nta_leg_tcreate(n->agent, notify_on_dialog_request, s, SIPTAG_CALL_ID(sip->sip_call_id),
                        SIPTAG_FROM(sip->sip_to), SIPTAG_TO(sip->sip_from), SIPTAG_CSEQ_STR("1"),
                        NTATAG_REMOTE_CSEQ(sip->sip_cseq->cs_seq), TAG_END());
    if (!s->leg || !nta_leg_tag(s->leg, NULL) ||
        nta_leg_server_route(s->leg, sip->sip_record_route, sip->sip_contact) < 0 ||
        sub_capture_dialog(s, sip) < 0) {
        notify_subs_free(s);
        log_error("notifier: cannot create a dialog");
        notify_refuse(n, irq, SIP_500_INTERNAL_SERVER_ERROR);
        return;
    }
    s->next = n->subs;
    n->subs = s;
    n->n_subs++;
    metrics_gauge_set(METRICS_SUBSCRIPTIONS, (int64_t)n->n_subs);

    char exp[24];
    snprintf(exp, sizeof exp, "%u", expires);
    nta_incoming_tag(irq, nta_leg_get_tag(s->leg));
    notify_reply(irq, SIP_200_OK, SIPTAG_CONTACT(n->contact_hdr), SIPTAG_EXPIRES_STR(exp),
                 SIPTAG_ALLOW_EVENTS_STR("xcap-diff"), TAG_END());
    log_info("notifier: %s subscribed to %zu resource(s) for %us (%s)", s->identity, s->watches.n,
             expires, notify_mode_name(s->mode));
    /* Saved before the initial NOTIFY leaves, as already sent: after a crash in between, the
     * subscriber gets the changes that follow rather than a second full state in place of the
     * next change (it re-subscribes if it never saw the first). */
    if (expires > 0) {
        s->dirty = true;
        notify_subs_save(n, false);
    }
    /* RFC 5875 §4.6: the initial NOTIFY carries the full state; Expires: 0 is a fetch (RFC 6665
     * §4.4.3), answered by one terminated NOTIFY and never saved. */
    s->full_pending = true;
    if (expires == 0)
        s->term_reason = "timeout";
    notifier_poll(n);
}

/* Refresh, re-targeting or ending an existing subscription (RFC 6665 §4.1.1, §4.1.2.2;
 * RFC 5875 §4.8). */
static int sub_refresh(struct notify_sub *s, nta_incoming_t *irq, const sip_t *sip)
{
    struct notifier *n = s->n;
    if (s->dead || s->term_reason)
        return notify_refuse(n, irq, 481, "Subscription does not exist");
    if (!notify_request_trusted(n, irq))
        return notify_refuse(n, irq, 403, "Untrusted peer");
    /* In a dialog the subscriber is known; a refresh asserting someone else is not theirs. */
    char *asserted = notify_subscriber(sip);
    bool other = asserted && !xcap_uri_xui_equal(asserted, s->identity);
    free(asserted);
    if (other)
        return notify_refuse(n, irq, 403, "P-Asserted-Identity of another user");
    unsigned expires;
    if (notify_check_subscribe(n, irq, sip, &expires) != 0)
        return 0;
    struct notify_watchlist wl;
    bool has_body;
    const char *phrase = NULL;
    int st = notify_read_body(n, sip, s->identity, &wl, &has_body, &phrase);
    char *body = NULL;
    size_t body_len = 0;
    if (st == 0 && has_body && notify_take_body(sip, &body, &body_len) < 0) {
        notify_watch_list_release(&wl);
        st = 500;
        phrase = "Internal Server Error";
    }
    if (st != 0)
        return notify_refuse(n, irq, st, phrase);
    if (sip->sip_contact && nta_leg_server_route(s->leg, NULL, sip->sip_contact) == 0)
        sub_capture_route(s);
    char exp[24];
    snprintf(exp, sizeof exp, "%u", expires);
    notify_reply(irq, SIP_200_OK, SIPTAG_CONTACT(n->contact_hdr), SIPTAG_EXPIRES_STR(exp),
                 TAG_END());
    sub_set_expiry(s, expires);
    bool full = false;
    if (has_body) {
        /* RFC 5875 §4.8: a new watched set replaces the old one; its full state follows. */
        notify_watch_list_release(&s->watches);
        s->watches = wl;
        free(s->body);
        s->body = body;
        s->body_len = body_len;
        notify_change_pending_clear(s);
        full = true;
    } else if (s->n_pending > 0 || s->full_pending) {
        s->force_notify = true; /* what is queued goes now, keeping the ETag chain */
    } else {
        full = true;
    }
    if (expires == 0) {
        s->term_reason = "timeout";
        log_info("notifier: %s unsubscribed", s->identity);
    }
    s->dirty = true;
    notify_subs_save(n, false); /* as for a new subscription, before its NOTIFY */
    s->full_pending |= full;
    notifier_poll(n);
    return 0;
}

int notify_on_dialog_request(void *magic, nta_leg_t *leg, nta_incoming_t *irq, const sip_t *sip)
{
    (void)leg;
    struct notify_sub *s = magic;
    struct notifier *n = s->n;
    notifier_enter(n);
    int rc;
    switch (sip->sip_request->rq_method) {
    case sip_method_subscribe:
        rc = sub_refresh(s, irq, sip);
        break;
    case sip_method_ack:
        nta_incoming_destroy(irq);
        rc = 0;
        break;
    default:
        rc =
            notify_reply(irq, SIP_405_METHOD_NOT_ALLOWED, SIPTAG_ALLOW_STR("SUBSCRIBE"), TAG_END());
        break;
    }
    notifier_leave(n);
    return rc;
}

/* Requests outside any dialog. */
static int notifier_on_request(void *magic, nta_leg_t *leg, nta_incoming_t *irq, const sip_t *sip)
{
    (void)leg;
    struct notifier *n = magic;
    notifier_enter(n);
    int rc = 0;
    sip_method_t m = sip->sip_request->rq_method;
    if (m == sip_method_ack) {
        nta_incoming_destroy(irq);
    } else if (sip->sip_to && sip->sip_to->a_tag) {
        /* In-dialog request for a dialog we do not hold: expired or ended, or, with other
         * instances on the store, held by another one (the load balancer picked us). */
        struct notify_sub *s = NULL;
        int st = n->cfg.cluster && m == sip_method_subscribe
                     ? notify_cluster_claim(n, sip->sip_to->a_tag, &s)
                     : 481;
        if (st == 0 && s) {
            rc = notify_on_dialog_request(s, s->leg, irq, sip);
        } else if (st == 503) {
            char ra[16];
            snprintf(ra, sizeof ra, "%u", n->cfg.lease_s);
            notify_reply(irq, 503, "Subscription held by another instance",
                         SIPTAG_RETRY_AFTER_STR(ra), TAG_END());
        } else {
            notify_reply(irq, 481, "Subscription does not exist", TAG_END());
        }
    } else if (m == sip_method_subscribe) {
        notify_subscribe_new(n, irq, sip);
    } else if (m == sip_method_options) {
        notify_reply(irq, SIP_200_OK, SIPTAG_ALLOW_STR("SUBSCRIBE, OPTIONS"),
                     SIPTAG_ALLOW_EVENTS_STR("xcap-diff"), TAG_END());
    } else {
        notify_reply(irq, SIP_405_METHOD_NOT_ALLOWED, SIPTAG_ALLOW_STR("SUBSCRIBE, OPTIONS"),
                     TAG_END());
    }
    notifier_leave(n);
    return rc;
}

/* ---- loop events ---- */

static void notifier_on_deadline(struct notifier *n, su_timer_t *t, struct notifier *arg)
{
    (void)t;
    (void)arg;
    if (!n->broken) {
        n->broken = true;
        su_root_break(n->root);
    }
}

/* Shutdown (RFC 6665 §4.1.1; RFC 5875 §4.8). Saved subscriptions stay: their state is written at
 * teardown and they resume after the restart. Others get a final NOTIFY with reason=deactivated
 * (RFC 6665 §4.2.2: the subscriber should re-subscribe, which suits a restart better than
 * "noresource", which says the resource is gone). Answers to NOTIFYs in flight are awaited at most
 * NOTIFY_STOP_WAIT_MS. */
static void notifier_begin_stop(struct notifier *n)
{
    n->stopping = true;
    if (!n->persist)
        for (struct notify_sub *s = n->subs; s; s = s->next)
            if (!s->dead && !s->final_sent && !s->term_reason)
                s->term_reason = "deactivated";
    notifier_poll(n);
    n->deadline = su_timer_create(su_root_task(n->root), NOTIFY_STOP_WAIT_MS);
    if (!n->deadline || su_timer_set(n->deadline, notifier_on_deadline, n) < 0)
        notifier_on_deadline(n, NULL, n);
}

static int notifier_on_wake(struct notifier *n, su_wait_t *w, struct notifier *arg)
{
    (void)w;
    (void)arg;
    uint64_t value;
    while (read(n->efd, &value, sizeof value) > 0)
        continue;
    notifier_enter(n);
    if (atomic_load(&n->stop_requested) && !n->stopping)
        notifier_begin_stop(n);
    else if (!n->stopping)
        notifier_poll(n);
    notifier_leave(n);
    return 0;
}

static void notify_on_hold(struct notifier *n, su_timer_t *t, struct notifier *arg)
{
    (void)t;
    (void)arg;
    n->hold_armed = false;
    notifier_enter(n);
    if (!n->stopping)
        notifier_poll(n);
    notifier_leave(n);
}

/* Once a second: expiry (RFC 6665 §4.2.2, reason=timeout), a poll of the change log, which also
 * covers commits made by other processes on the same store (xdmctl) that cannot wake us, and the
 * lazy save of subscription states. */
static void notifier_on_tick(struct notifier *n, su_timer_t *t, struct notifier *arg)
{
    (void)t;
    (void)arg;
    notifier_enter(n);
    /* The notifier's only client transactions are NOTIFYs, so the agent's retransmitted
     * requests are retransmitted NOTIFYs. */
    usize_t retried = 0;
    nta_agent_get_stats(n->agent, NTATAG_S_RETRY_REQUEST_REF(retried), TAG_END());
    metrics_count_set(METRICS_NOTIFY_RETRIED, (uint64_t)retried);
    int64_t now = notify_now();
    for (struct notify_sub *s = n->subs; s; s = s->next) {
        if (!s->dead && !s->term_reason && now >= s->expires_at) {
            s->term_reason = "timeout";
            log_info("notifier: subscription of %s expired", s->identity);
        }
    }
    if (!n->stopping) {
        notifier_poll(n);
        notify_subs_save(n, false);
    }
    notifier_leave(n);
}

/* Every poll_ms with other instances on the store (notify_cluster.c). */
static void notifier_on_fast(struct notifier *n, su_timer_t *t, struct notifier *arg)
{
    (void)t;
    (void)arg;
    notifier_enter(n);
    if (!n->stopping)
        notify_cluster_tick(n);
    notifier_leave(n);
}

static void notifier_started(struct notifier *n, int rc)
{
    pthread_mutex_lock(&n->lock);
    n->start_rc = rc;
    pthread_cond_signal(&n->cond);
    pthread_mutex_unlock(&n->lock);
}

static int notifier_setup(struct notifier *n)
{
    struct store_txn *t;
    enum store_rc rc = store_txn_begin(n->store, false, &t);
    if (rc == STORE_OK) {
        rc = store_change_last(t, &n->cursor);
        store_txn_abort(t);
    }
    if (rc != STORE_OK) {
        log_error("notifier: cannot read the change log: %s", store_strerror(rc));
        return -1;
    }
    if (!(n->root = su_root_create(n))) {
        log_error("notifier: cannot create the SIP event loop");
        return -1;
    }
    char url[300];
    bool v6 = strchr(n->cfg.host, ':') != NULL;
    snprintf(url, sizeof url, "sip:%s%s%s:%u", v6 ? "[" : "", n->cfg.host, v6 ? "]" : "",
             (unsigned)n->cfg.port);
    const char *contact = url;
    /* A server (PS, RLS) keeps all its subscriptions on one TCP connection, and a change of a
     * widely watched document sends one NOTIFY per subscription at once: the transport queue
     * must hold them all (sofia's default of 64 fails the rest with ENOBUFS). */
    n->agent = nta_agent_create(n->root, URL_STRING_MAKE(contact), NULL, NULL, NTATAG_UA(1),
                                NTATAG_MAXSIZE(NOTIFY_SIP_MAXSIZE),
                                TPTAG_QUEUESIZE(NOTIFY_MAX_SUBS + 64), TAG_END());
    if (!n->agent) {
        log_error("notifier: cannot listen on %s (UDP and TCP; port in use?)", url);
        return -1;
    }
    const sip_contact_t *m = nta_agent_contact(n->agent);
    n->port = (uint16_t)(m && m->m_url->url_port ? atoi(m->m_url->url_port) : 0);
    if (!n->instance[0] &&
        notify_instance_default(n->cfg.host, n->port, n->instance, sizeof n->instance) < 0)
        snprintf(n->instance, sizeof n->instance, "sip:%u", (unsigned)n->port);
    /* The Contact of 200s and NOTIFYs: where in-dialog requests go (RFC 6665 §4.1.2.2 and
     * RFC 3261 §12.1.1). With several instances it is the address they share. */
    if (!(n->home = su_home_new(sizeof *n->home))) {
        log_error("notifier: out of memory");
        return -1;
    }
    if (n->contact) {
        char *c = su_sprintf(n->home, "<%s>", n->contact);
        n->contact_hdr = c ? sip_contact_make(n->home, c) : NULL;
    } else {
        n->contact_hdr = sip_contact_dup(n->home, m);
    }
    if (!n->contact_hdr) {
        log_error("notifier: cannot use %s as Contact", n->contact ? n->contact : url);
        return -1;
    }
    n->default_leg =
        nta_leg_tcreate(n->agent, notifier_on_request, n, NTATAG_NO_DIALOG(1), TAG_END());
    if (!n->default_leg) {
        log_error("notifier: cannot create the default SIP leg");
        return -1;
    }
    su_wait_t w;
    if (su_wait_create(&w, n->efd, SU_WAIT_IN) < 0 ||
        (n->wait_index = su_root_register(n->root, &w, notifier_on_wake, n, 0)) < 0) {
        log_error("notifier: cannot register the wake-up descriptor");
        n->wait_index = -1;
        return -1;
    }
    n->tick = su_timer_create(su_root_task(n->root), 1000);
    n->hold = su_timer_create(su_root_task(n->root), 0);
    if (!n->tick || !n->hold || su_timer_set_for_ever(n->tick, notifier_on_tick, n) < 0) {
        log_error("notifier: cannot start the timers");
        return -1;
    }
    if (n->cfg.cluster) {
        n->fast = su_timer_create(su_root_task(n->root), n->cfg.poll_ms);
        if (!n->fast || su_timer_set_for_ever(n->fast, notifier_on_fast, n) < 0) {
            log_error("notifier: cannot start the timers");
            return -1;
        }
        if (notify_cluster_start(n) < 0)
            return -1;
        notify_cluster_wake_start(n);
    }
    notify_subs_restore(n);
    if (n->cfg.cluster)
        notify_cluster_takeover(n, true);
    /* Changes committed while we were down are reported on the first turn of the loop. */
    notifier_wake(n);
    return 0;
}

static void notifier_teardown(struct notifier *n)
{
    if (n->agent)
        notify_subs_save(n, true);
    if (n->agent && n->cfg.cluster)
        notify_cluster_stop(n);
    for (struct notify_sub *s = n->subs; s; s = s->next) {
        s->dead = true;
        s->forget = false;
    }
    n->reap_due = true;
    notify_subs_reap(n);
    notify_change_known_clear(n);
    if (n->tick)
        su_timer_destroy(n->tick);
    if (n->hold)
        su_timer_destroy(n->hold);
    if (n->deadline)
        su_timer_destroy(n->deadline);
    if (n->fast)
        su_timer_destroy(n->fast);
    if (n->root && n->cfg.cluster)
        notify_cluster_wake_stop(n);
    if (n->wait_index > 0)
        su_root_deregister(n->root, n->wait_index);
    if (n->default_leg)
        nta_leg_destroy(n->default_leg);
    if (n->agent)
        nta_agent_destroy(n->agent);
    if (n->root)
        su_root_destroy(n->root);
    if (n->home)
        su_home_unref(n->home);
}

static void *notifier_main(void *arg)
{
    struct notifier *n = arg;
    if (su_init() != 0) {
        log_error("notifier: cannot initialise sofia-sip");
        notifier_started(n, -1);
        return NULL;
    }
    n->wait_index = -1;
    n->store_wake_fd = -1;
    n->store_wake_index = -1;
    if (notifier_setup(n) < 0) {
        notifier_teardown(n);
        su_deinit();
        notifier_started(n, -1);
        return NULL;
    }
    log_info("notifier: xcap-diff SIP on %s port %u (UDP, TCP)", n->cfg.host, (unsigned)n->port);
    notifier_started(n, 1);
    su_root_run(n->root);
    notifier_teardown(n);
    su_deinit();
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Public API (any thread)                                                                     */

static void notifier_free(struct notifier *n)
{
    if (n->efd >= 0)
        close(n->efd);
    pthread_mutex_destroy(&n->lock);
    pthread_mutex_destroy(&n->trusted_lock);
    pthread_cond_destroy(&n->cond);
    free(n->host);
    free(n->xcap_root);
    free(n->contact);
    notify_strv_free(n->trusted);
    notify_strv_free(n->servers);
    free(n);
}

int notifier_start(const struct notifier_config *cfg, struct store *store, struct notifier **out)
{
    *out = NULL;
    struct notifier *n = calloc(1, sizeof *n);
    if (!n) {
        log_error("notifier: out of memory");
        return -1;
    }
    n->efd = -1;
    pthread_mutex_init(&n->lock, NULL);
    pthread_mutex_init(&n->trusted_lock, NULL);
    pthread_cond_init(&n->cond, NULL);
    atomic_init(&n->stop_requested, false);
    n->cfg = *cfg;
    n->store = store;
    n->host = strdup(cfg->host ? cfg->host : "127.0.0.1");
    n->xcap_root = strdup(cfg->xcap_root ? cfg->xcap_root : "");
    n->trusted = notify_strv_dup(cfg->trusted_peers);
    n->servers = notify_strv_dup(cfg->server_identities);
    n->contact = cfg->contact ? strdup(cfg->contact) : NULL;
    if (!n->cfg.lease_s)
        n->cfg.lease_s = NOTIFY_DEFAULT_LEASE_S;
    if (!n->cfg.poll_ms)
        n->cfg.poll_ms = NOTIFY_DEFAULT_POLL_MS;
    if (!n->host || !n->xcap_root || (cfg->trusted_peers && !n->trusted) ||
        (cfg->contact && !n->contact) || (cfg->server_identities && !n->servers)) {
        log_error("notifier: out of memory");
        notifier_free(n);
        return -1;
    }
    n->cfg.host = n->host;
    n->cfg.xcap_root = n->xcap_root;
    n->cfg.trusted_peers = NULL; /* n->trusted, which a reload replaces */
    n->cfg.server_identities = (const char *const *)n->servers;
    n->cfg.instance = NULL; /* n->instance, set in the SIP thread */
    if (cfg->instance)
        snprintf(n->instance, sizeof n->instance, "%s", cfg->instance);
    n->cfg.contact = NULL; /* n->contact */
    n->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (n->efd < 0) {
        log_error("notifier: eventfd: %s", strerror(errno));
        notifier_free(n);
        return -1;
    }
    int err = pthread_create(&n->thread, NULL, notifier_main, n);
    if (err != 0) {
        log_error("notifier: cannot start the SIP thread: %s", strerror(err));
        notifier_free(n);
        return -1;
    }
    pthread_mutex_lock(&n->lock);
    while (n->start_rc == 0)
        pthread_cond_wait(&n->cond, &n->lock);
    int rc = n->start_rc;
    pthread_mutex_unlock(&n->lock);
    if (rc < 0) {
        pthread_join(n->thread, NULL);
        notifier_free(n);
        return -1;
    }
    *out = n;
    return 0;
}

uint16_t notifier_port(const struct notifier *n)
{
    return n->port;
}

const char *notifier_instance(const struct notifier *n)
{
    return n->instance;
}

void notifier_wake(struct notifier *n)
{
    if (!n)
        return;
    /* write(2) on an eventfd is async-signal-safe; EAGAIN means a wake-up is already pending. */
    uint64_t one = 1;
    ssize_t w = write(n->efd, &one, sizeof one);
    (void)w;
}

void notifier_stop(struct notifier *n)
{
    if (!n)
        return;
    atomic_store(&n->stop_requested, true);
    notifier_wake(n);
    pthread_join(n->thread, NULL);
    notifier_free(n);
}

int notifier_set_trusted_peers(struct notifier *n, const char *const *peers)
{
    char **v = notify_strv_dup(peers);
    if (peers && !v) {
        log_error("notifier: out of memory");
        return -1;
    }
    pthread_mutex_lock(&n->trusted_lock);
    char **old = n->trusted;
    n->trusted = v;
    pthread_mutex_unlock(&n->trusted_lock);
    notify_strv_free(old);
    return 0;
}

/* SUBSCRIBE checks shared by initial and in-dialog requests, RFC 6665 dialogs: refresh,
 * re-targeting and ending of an existing subscription, and the re-creation of the dialogs saved
 * by an earlier run. */
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

#define NOTIFY_CSEQ_MARGIN 100000 /* added to a restored CSeq: saves are lazy (once a second) */

/* ---- SUBSCRIBE handling ---- */

int notify_reply(nta_incoming_t *irq, int status, const char *phrase, tag_type_t tag,
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
int notify_refuse(struct notifier *n, nta_incoming_t *irq, int status, const char *phrase)
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

bool notify_request_trusted(struct notifier *n, nta_incoming_t *irq)
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
static bool notify_dialog_event_ok(const sip_t *sip)
{
    return sip->sip_event && sip->sip_event->o_type &&
           strcasecmp(sip->sip_event->o_type, "xcap-diff") == 0;
}

static bool notify_dialog_accept_ok(const sip_t *sip)
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
char *notify_subscriber(const sip_t *sip)
{
    for (const sip_unknown_t *u = sip->sip_unknown; u; u = u->un_next)
        if (u->un_name && strcasecmp(u->un_name, "P-Asserted-Identity") == 0)
            return notify_identity_parse(u->un_value);
    return NULL;
}

char *notify_event_value(const sip_t *sip)
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
int notify_read_body(struct notifier *n, const sip_t *sip, const char *identity,
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

int notify_take_body(const sip_t *sip, char **body, size_t *len)
{
    *len = sip->sip_payload->pl_len;
    if (!(*body = malloc(*len + 1)))
        return -1;
    memcpy(*body, sip->sip_payload->pl_data, *len);
    (*body)[*len] = '\0';
    return 0;
}

size_t notify_count_user(const struct notifier *n, const char *identity)
{
    /* Linked subscriptions are in the index under their identity (notify_index.c). */
    return notify_index_count_identity(&n->index, identity);
}

/* Remote target and route set of the dialog as strings, for the persisted record. */
static int notify_dialog_capture_route(struct notify_sub *s)
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
int notify_dialog_capture(struct notify_sub *s, const sip_t *sip)
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
    return rc == 0 ? notify_dialog_capture_route(s) : -1;
}

void notify_dialog_set_expiry(struct notify_sub *s, unsigned expires)
{
    /* + 1: the clock is read in whole milliseconds, so the end is never before the duration
     * granted (RFC 6665 §4.2.1.1), counted from now. */
    s->expires_ms = notify_now_ms() + 1 + (int64_t)expires * 1000;
    s->expires_wall = notify_wall() + expires;
    notify_subs_expiry_moved(s);
}

/* Common checks of initial and refresh SUBSCRIBEs, in RFC 6665 order: event package, Accept,
 * duration. Returns 0 or the status already answered (irq destroyed). */
int notify_check_subscribe(struct notifier *n, nta_incoming_t *irq, const sip_t *sip,
                           unsigned *expires)
{
    if (!notify_dialog_event_ok(sip)) {
        notify_refuse(n, irq, SIP_489_BAD_EVENT);
        return 489;
    }
    if (!notify_dialog_accept_ok(sip)) {
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

/* Refresh, re-targeting or ending an existing subscription (RFC 6665 §4.1.1, §4.1.2.2;
 * RFC 5875 §4.8). */
static int notify_dialog_refresh(struct notify_sub *s, nta_incoming_t *irq, const sip_t *sip)
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
        notify_dialog_capture_route(s);
    char exp[24];
    snprintf(exp, sizeof exp, "%u", expires);
    notify_reply(irq, SIP_200_OK, SIPTAG_CONTACT(n->contact_hdr), SIPTAG_EXPIRES_STR(exp),
                 TAG_END());
    notify_dialog_set_expiry(s, expires);
    bool full = false;
    if (has_body) {
        /* RFC 5875 §4.8: a new watched set replaces the old one; its full state follows. */
        notify_index_remove(&n->index, s);
        notify_watch_list_release(&s->watches);
        s->watches = wl;
        notify_subs_index(n, s);
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
    } else {
        notify_subs_charge(s, CHARGING_SUB_REFRESHED, 200, has_body ? s->body_len : 0, 0);
    }
    notify_subs_mark(s);
    notify_subs_save(n, false); /* as for a new subscription, before its NOTIFY */
    s->full_pending |= full;
    notify_change_due(n, s);
    notifier_poll_changes(n);
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
        rc = notify_dialog_refresh(s, irq, sip);
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

static int notify_dialog_scan_one(void *cls, const void *key, size_t klen, const void *val,
                                  size_t vlen)
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
struct notify_sub *notify_dialog_restore_one(struct notifier *n, char **key, bool ok,
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
    s->charged = true; /* persisted: it was started (and charged, with charging on) */
    s->full_pending = r->full;
    s->expires_ms = notify_now_ms() + left * 1000;
    s->expires_wall = r->expires;
    for (size_t i = 0; i < s->watches.n && i < r->n_hashes; i++)
        s->watches.items[i].last_hash = r->hashes[i];
    if (s->watches.n == 0)
        s->term_reason = "deactivated"; /* nothing readable any more */
    return s;
}

void notify_dialog_restore(struct notifier *n)
{
    struct store_txn *t;
    struct notify_scan_ctx c = {0};
    enum store_rc rc = store_txn_begin(n->store, false, &t);
    if (rc == STORE_OK) {
        rc = store_kv_scan(t, NOTIFY_TABLE, NULL, 0, notify_dialog_scan_one, &c);
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
            n->persist ? notify_dialog_restore_one(n, &c.v[i].key, c.v[i].ok, &c.v[i].rec) : NULL;
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
        bool drop = s && s->forget;
        if (drop) {
            s->dead = true; /* not in the expiry heap */
            dropped++;
        } else if (s) {
            restored++;
            if (!any || s->seq < low)
                low = s->seq;
            any = true;
        }
        if (s) {
            notify_subs_link(n, s);
            if (drop)
                notify_subs_bury(s);
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

/* SUBSCRIBE admission: requests outside any dialog, and the initial SUBSCRIBE that creates a
 * subscription (RFC 6665 §4.2.1, RFC 5875 §4). */
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
    if (st == 0 && (n->stopping || n->n_subs >= n->cfg.max_subscriptions)) {
        st = 503;
        phrase = n->stopping ? "Shutting down" : "Too many subscriptions";
        if (!n->stopping)
            log_warn("notifier: %u subscriptions reached; SUBSCRIBE from %s refused",
                     n->cfg.max_subscriptions, identity);
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
    notify_dialog_set_expiry(s, expires);
    /* The dialog (RFC 6665 §4.1.2.2): local = To, remote = From, target from Contact. */
    /* Our CSeq starts at a known value (nta would pick one only when the first NOTIFY goes),
     * so the saved record can always restore a higher one. */
    s->leg =
        nta_leg_tcreate(n->agent, notify_on_dialog_request, s, SIPTAG_CALL_ID(sip->sip_call_id),
                        SIPTAG_FROM(sip->sip_to), SIPTAG_TO(sip->sip_from), SIPTAG_CSEQ_STR("1"),
                        NTATAG_REMOTE_CSEQ(sip->sip_cseq->cs_seq), TAG_END());
    if (!s->leg || !nta_leg_tag(s->leg, NULL) ||
        nta_leg_server_route(s->leg, sip->sip_record_route, sip->sip_contact) < 0 ||
        notify_dialog_capture(s, sip) < 0) {
        notify_subs_free(s);
        log_error("notifier: cannot create a dialog");
        notify_refuse(n, irq, SIP_500_INTERNAL_SERVER_ERROR);
        return;
    }
    notify_subs_link(n, s);

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
        notify_subs_mark(s);
        notify_subs_save(n, false);
        notify_subs_charge(s, CHARGING_SUB_STARTED, 200, s->body_len, 0);
    }
    /* RFC 5875 §4.6: the initial NOTIFY carries the full state; Expires: 0 is a fetch (RFC 6665
     * §4.4.3), answered by one terminated NOTIFY and never saved. */
    s->full_pending = true;
    if (expires == 0)
        s->term_reason = "timeout";
    notify_change_due(n, s); /* only s has new work: no visit of every subscription */
    notifier_poll_changes(n);
}

/* Requests outside any dialog. */
int notifier_on_request(void *magic, nta_leg_t *leg, nta_incoming_t *irq, const sip_t *sip)
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

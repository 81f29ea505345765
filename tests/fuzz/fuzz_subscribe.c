/* Fuzz target for SIP SUBSCRIBE handling at an XDMS's notifier (xdms/notify_dialog.c,
 * notify_sip.c, notify_watch.c; RFC 6665, RFC 5875): a whole SIP message, parsed by sofia-sip as
 * the notifier's stack does, then every header the notifier reads, in the order of its admission
 * checks: Event (xcap-diff, its id and diff-processing parameters), Accept, Expires, Contact,
 * P-Asserted-Identity, Content-Type, and the application/resource-lists+xml body
 * (notify_read_body(): parse, then authorisation of the watched set for the asserted identity,
 * as a user and as a trusted server). Input: the request's bytes as they arrive in one datagram;
 * the first byte of the Call-ID picks the role (shared-list, presence, rls). */
#include "notify_internal.h" /* before sofia-sip: it sets the magic types of its callbacks */

#include <string.h>
#include <strings.h>

#include <sofia-sip/msg.h>
#include <sofia-sip/sip_header.h>

#include "buf.h"
#include "fuzz.h"
#include "log.h"
#include "xdoc.h"

#define FUZZ_ROOT "http://127.0.0.1:8080/xcap-root/"

static void fuzz_watchlist_check(const struct notify_watchlist *wl, enum xdms_role role)
{
    for (size_t i = 0; i < wl->n; i++) {
        const struct notify_watch *w = &wl->items[i];
        FUZZ_CHECK(w->au && w->auid && w->path);
        FUZZ_CHECK(w->is_dir == (w->kind == NOTIFY_WATCH_DIRECTORY));
        FUZZ_CHECK(w->global ? w->xui == NULL : (w->xui != NULL || w->all_users));
        if (w->kind == NOTIFY_WATCH_ELEMENT || w->kind == NOTIFY_WATCH_ATTRIBUTE)
            FUZZ_CHECK(w->sel && w->sel_text && w->decls);
        (void)role;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int inited;
    if (!inited) {
        log_init("fuzz", LOG_LEVEL_ERROR);
        xdoc_global_init();
        inited = 1;
    }
    msg_t *msg = msg_make(sip_default_mclass(), 0, data, (ssize_t)size);
    if (!msg)
        return 0;
    sip_t *sip = sip_object(msg);
    if (!sip || !sip->sip_request || !sip->sip_call_id || !sip->sip_from || !sip->sip_to ||
        !sip->sip_cseq)
        goto out;
    enum xdms_role role = (enum xdms_role)((unsigned char)sip->sip_call_id->i_id[0] % 3);

    /* RFC 5875 §4.1: the event package. */
    if (!sip->sip_event || !sip->sip_event->o_type ||
        strcasecmp(sip->sip_event->o_type, "xcap-diff") != 0)
        goto out;
    char *ev = notify_event_value(sip);
    FUZZ_CHECK(ev && strncmp(ev, "xcap-diff", 9) == 0);
    free(ev);
    enum notify_mode mode = notify_mode_parse(sip->sip_event->o_params);
    FUZZ_CHECK(notify_mode_name(mode) != NULL);

    const char *types[32];
    size_t nt = 0;
    for (const sip_accept_t *a = sip->sip_accept; a && nt < 32; a = a->ac_next)
        types[nt++] = a->ac_type;
    if (sip->sip_accept && nt > 0)
        (void)notify_accept_allows(types, nt);
    FUZZ_CHECK(notify_accept_allows(types, 0));

    struct notifier_config cfg = {.min_expires = 60, .max_expires = 7200};
    unsigned expires = 0;
    bool present = sip->sip_expires != NULL;
    int er =
        notify_expires_decide(&cfg, present, present ? sip->sip_expires->ex_delta : 0, &expires);
    FUZZ_CHECK(er == 0 || er == 423);
    if (er == 0)
        FUZZ_CHECK(expires <= 7200);

    char *identity = notify_subscriber(sip);
    if (!identity)
        identity = strdup("sip:alice@example.com");
    if (!identity)
        goto out;
    struct notifier n;
    memset(&n, 0, sizeof n);
    n.cfg.xcap_root = FUZZ_ROOT;
    n.cfg.role = role;
    char rls[] = "sip:rls@example.com";
    char *servers[] = {rls, NULL};
    for (int server = 0; server < 2; server++) {
        n.servers = server ? servers : NULL;
        struct notify_watchlist wl;
        bool has_body = false;
        const char *phrase = NULL;
        int st = notify_read_body(&n, sip, server ? "sip:rls@example.com" : identity, &wl,
                                  &has_body, &phrase);
        FUZZ_CHECK(st == 0 || st == 400 || st == 403 || st == 413 || st == 415 || st == 500);
        if (st == 0) {
            fuzz_watchlist_check(&wl, role);
            if (has_body) {
                FUZZ_CHECK(wl.n > 0);
                char *body;
                size_t len;
                FUZZ_CHECK(notify_take_body(sip, &body, &len) == 0 && body[len] == '\0');
                free(body);
            }
        } else {
            FUZZ_CHECK(phrase != NULL);
        }
        notify_watch_list_release(&wl);
    }
    free(identity);
out:
    msg_destroy(msg);
    return 0;
}

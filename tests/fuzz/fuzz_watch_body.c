/* Fuzz target for the body of a SUBSCRIBE (RFC 5875 §4.3): notify_watch_parse()
 * (xdms/notify_watch.c) on an application/resource-lists+xml document, for each role, then what
 * the notifier does with the watched set: notify_watch_list_authorize() for a user and for a
 * trusted server, notify_watch_matches() against documents of that user, of another and of the
 * global tree, and the selectors of the xcap-diff report (notify_watch_sel_append()). Input: the
 * body's bytes. */
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "log.h"
#include "notify_internal.h"
#include "store.h"
#include "xdoc.h"

#define FUZZ_ROOT "http://127.0.0.1:8080/xcap-root/"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int inited;
    if (!inited) {
        log_init("fuzz", LOG_LEVEL_ERROR);
        xdoc_global_init();
        inited = 1;
    }
    char *body = malloc(size ? size : 1);
    if (!body)
        return 0;
    memcpy(body, data, size);
    static const char *const auids[] = {"resource-lists", "pres-rules", "rls-services"};
    for (int role = ROLE_SHARED_LIST; role <= ROLE_RLS; role++) {
        for (int server = 0; server < 2; server++) {
            struct notify_watchlist wl;
            size_t skipped = 0;
            int st = notify_watch_parse(body, size, FUZZ_ROOT, (enum xdms_role)role, &wl, &skipped);
            FUZZ_CHECK(st == 0 || st == 400 || st == 413 || st == 500);
            if (st != 0) {
                FUZZ_CHECK(wl.n == 0 && wl.items == NULL);
                continue;
            }
            for (size_t i = 0; i < wl.n; i++) {
                const struct notify_watch *w = &wl.items[i];
                FUZZ_CHECK(w->au && w->auid && w->path);
                FUZZ_CHECK(w->is_dir == (w->kind == NOTIFY_WATCH_DIRECTORY));
                if (w->kind == NOTIFY_WATCH_ELEMENT || w->kind == NOTIFY_WATCH_ATTRIBUTE)
                    FUZZ_CHECK(w->sel && w->sel_text && w->decls);
            }
            size_t before = wl.n;
            size_t denied = notify_watch_list_authorize(&wl, "sip:alice@example.com", server);
            FUZZ_CHECK(denied + wl.n == before);
            const struct doc_key keys[] = {
                {auids[role], "users", "sip:alice@example.com", "index"},
                {auids[role], "users", "sip:bob@example.com", "index"},
                {auids[role], "global", "", "index"},
                {auids[role], "users", "sip:alice@example.com", "sub/dir/doc"},
            };
            struct buf b;
            buf_init(&b, 1 << 20);
            for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
                bool any = false;
                for (size_t i = 0; i < wl.n; i++)
                    any |= notify_watch_matches(&wl.items[i], &keys[k]);
                /* A user's watches never reach another user's documents. */
                if (k == 1 && !server)
                    FUZZ_CHECK(!any);
                FUZZ_CHECK(notify_watch_sel_append(&b, &keys[k]) == 0);
            }
            buf_release(&b);
            notify_watch_list_release(&wl);
        }
    }
    free(body);
    return 0;
}

/* Unit tests of the xcap-diff notifier (xdms/notify.c): the pure parts through notify_internal.h,
 * and a loopback exchange where this test plays the subscriber with hand-written SIP over UDP. */
#include "unit.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "buf.h"
#include "engine.h"
#include "log.h"
#include "notify.h"
#include "notify_internal.h"
#include "store.h"
#include "usage.h"
#include "xdoc.h"

#define ROOT "http://127.0.0.1:8080/xcap-root/"
#define ALICE "sip:alice@example.com"
#define LISTS_OPEN "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list>"
#define LISTS_CLOSE "</list></resource-lists>"

/* ---------------------------------------------------------------------------------------- */
/* Pure parts                                                                                */

static int parse_body(const char *body, struct notify_watchlist *wl, size_t *skipped)
{
    return notify_watch_parse(body, strlen(body), ROOT, ROLE_SHARED_LIST, wl, skipped);
}

static void test_entries_parse(void)
{
    const char *body = LISTS_OPEN
        "<entry uri=\"resource-lists/users/sip:alice@example.com/index\"/>"
        "<entry uri=\"" ROOT "resource-lists/users/sip:alice@example.com/\"/>"
        "<entry uri=\"/xcap-root/resource-lists/global/index\"/>"
        "<entry uri=\"resource-lists/users/sip:alice@example.com/sub/\"/>"
        "<entry uri=\"resource-lists/users/sip:al%69ce@example.com/my%20doc\"/>"
        "<entry uri=\"resource-lists/users/sip:alice@example.com/a%2Fb\"/>"
        /* left out: another role's AUID, a namespace selector, another server, duplicate, bad,
         * a query without a node selector, a malformed node selector */
        "<entry uri=\"rls-services/users/sip:alice@example.com/index\"/>"
        "<entry uri=\"resource-lists/users/sip:alice@example.com/index/~~/resource-lists/"
        "namespace::*\"/>"
        "<entry uri=\"http://other.example.com/xcap-root/resource-lists/global/index\"/>"
        "<entry uri=\"resource-lists/users/sip:alice@example.com/index\"/>"
        "<entry uri=\"resource-lists/elsewhere/x\"/>"
        "<entry uri=\"resource-lists/users/sip:alice@example.com/index?xmlns(a=b)\"/>"
        "<entry uri=\"resource-lists/users/sip:alice@example.com/index/~~/a//b\"/>"
        "<list><entry uri=\"resource-lists/users/sip:bob@example.com/index\"/></list>"
        "<external anchor=\"resource-lists/users/sip:carol@example.com/index\"/>"
        /* element and attribute watches (RFC 5875 §4.3), and every user's documents */
        "<entry uri=\"resource-lists/users/sip:alice@example.com/index/~~/resource-lists/"
        "list%5B@name=%22f%20r%22%5D\"/>"
        "<entry uri=\"resource-lists/users/sip:alice@example.com/index/~~/resource-lists/"
        "list/@x:k?xmlns(x=urn:example:x)\"/>"
        "<entry uri=\"resource-lists/users/\"/>" LISTS_CLOSE;
    struct notify_watchlist wl;
    size_t skipped = 99;
    CU_ASSERT_EQUAL_FATAL(parse_body(body, &wl, &skipped), 0);
    CU_ASSERT_EQUAL(skipped, 8);
    CU_ASSERT_EQUAL_FATAL(wl.n, 9);
    CU_ASSERT_STRING_EQUAL(wl.items[0].auid, "resource-lists");
    CU_ASSERT_FALSE(wl.items[0].global);
    CU_ASSERT_STRING_EQUAL(wl.items[0].xui, ALICE);
    CU_ASSERT_STRING_EQUAL(wl.items[0].path, "index");
    CU_ASSERT_FALSE(wl.items[0].is_dir);
    CU_ASSERT_EQUAL(wl.items[0].kind, NOTIFY_WATCH_DOCUMENT);
    CU_ASSERT_TRUE(wl.items[1].is_dir);
    CU_ASSERT_EQUAL(wl.items[1].kind, NOTIFY_WATCH_DIRECTORY);
    CU_ASSERT_STRING_EQUAL(wl.items[1].path, "");
    CU_ASSERT_TRUE(wl.items[2].global);
    CU_ASSERT_PTR_NULL(wl.items[2].xui);
    CU_ASSERT_STRING_EQUAL(wl.items[2].path, "index");
    CU_ASSERT_TRUE(wl.items[3].is_dir);
    CU_ASSERT_STRING_EQUAL(wl.items[3].path, "sub/");
    /* Percent-decoded per segment (a %2F inside the document path is refused by the URI
     * grammar and left out); entries of nested lists count too. */
    CU_ASSERT_STRING_EQUAL(wl.items[4].xui, ALICE);
    CU_ASSERT_STRING_EQUAL(wl.items[4].path, "my doc");
    CU_ASSERT_STRING_EQUAL(wl.items[5].xui, "sip:bob@example.com");
    const struct notify_watch *el = &wl.items[6], *at = &wl.items[7], *all = &wl.items[8];
    CU_ASSERT_EQUAL(el->kind, NOTIFY_WATCH_ELEMENT);
    CU_ASSERT_STRING_EQUAL(el->path, "index");
    CU_ASSERT_STRING_EQUAL(el->node_sel, "resource-lists/list[@name=\"f r\"]");
    CU_ASSERT_STRING_EQUAL(el->sel_text, "resource-lists/users/sip:alice@example.com/index/~~/"
                                         "resource-lists/list%5B@name=%22f%20r%22%5D");
    CU_ASSERT_STRING_EQUAL(el->decls, "");
    CU_ASSERT_PTR_NOT_NULL(el->sel);
    CU_ASSERT_EQUAL(at->kind, NOTIFY_WATCH_ATTRIBUTE);
    CU_ASSERT_STRING_EQUAL(at->sel_text, "resource-lists/users/sip:alice@example.com/index/~~/"
                                         "resource-lists/list/@x:k");
    CU_ASSERT_STRING_EQUAL(at->decls, " xmlns:x=\"urn:example:x\"");
    CU_ASSERT_TRUE(all->all_users);
    CU_ASSERT_TRUE(all->is_dir);
    CU_ASSERT_PTR_NULL(all->xui);
    struct doc_key anyone = {"resource-lists", "users", "sip:zed@example.com", "x/y"};
    struct doc_key global = {"resource-lists", "global", "", "index"};
    CU_ASSERT_TRUE(notify_watch_matches(all, &anyone));
    CU_ASSERT_FALSE(notify_watch_matches(all, &global));
    struct doc_key index = {"resource-lists", "users", ALICE, "index"};
    CU_ASSERT_TRUE(notify_watch_matches(el, &index));
    CU_ASSERT_FALSE(notify_watch_matches(el, &anyone));
    /* Only trusted servers keep a whole users tree. */
    CU_ASSERT_EQUAL(notify_watch_list_authorize(&wl, ALICE, false), 2);
    CU_ASSERT_EQUAL(wl.n, 7);
    for (size_t i = 0; i < wl.n; i++)
        CU_ASSERT_FALSE(wl.items[i].all_users);
    notify_watch_list_release(&wl);
    CU_ASSERT_EQUAL_FATAL(parse_body(body, &wl, &skipped), 0);
    CU_ASSERT_EQUAL(notify_watch_list_authorize(&wl, "sip:ps@example.com", true), 0);
    CU_ASSERT_EQUAL(wl.n, 9);
    notify_watch_list_release(&wl);
}

static void test_mode(void)
{
    const char *none[] = {"id=3", NULL};
    const char *patch[] = {"id=3", "diff-processing=xcap-patching", NULL};
    const char *agg[] = {"DIFF-PROCESSING=\"Aggregate\"", NULL};
    const char *no[] = {"diff-processing=no-patching", NULL};
    const char *odd[] = {"diff-processing=rewrite", NULL};
    CU_ASSERT_EQUAL(notify_mode_parse(NULL), NOTIFY_NO_PATCHING);
    CU_ASSERT_EQUAL(notify_mode_parse(none), NOTIFY_NO_PATCHING);
    CU_ASSERT_EQUAL(notify_mode_parse(patch), NOTIFY_XCAP_PATCHING);
    CU_ASSERT_EQUAL(notify_mode_parse(agg), NOTIFY_AGGREGATE);
    CU_ASSERT_EQUAL(notify_mode_parse(no), NOTIFY_NO_PATCHING);
    CU_ASSERT_EQUAL(notify_mode_parse(odd), NOTIFY_NO_PATCHING);
    CU_ASSERT_STRING_EQUAL(notify_mode_name(NOTIFY_AGGREGATE), "aggregate");
}

/* The record encoder writes exactly the bytes of its printf format (which older releases used
 * and restores read), for extreme values too. */
static void test_record_bytes(void)
{
    uint64_t hashes[] = {0, 0x0123456789abcdefULL, UINT64_MAX};
    char call_id[] = "c@h", local[] = "<sip:a@b>;tag=1", remote[] = "<sip:c@d>;tag=2",
         target[] = "sip:c@127.0.0.1:5060;transport=tcp", route[] = "", identity[] = "sip:c@d",
         event[] = "xcap-diff;id=7", body[] = "<resource-lists/>", owner[] = "127.0.0.1:5081",
         no_owner[] = "";
    int64_t expires[] = {0, 1764790000, -5, INT64_MIN + 1, INT64_MAX};
    for (size_t e = 0; e < sizeof expires / sizeof expires[0]; e++) {
        for (size_t nh = 0; nh <= 3; nh++) {
            struct notify_record r = {
                .call_id = call_id,
                .local = local,
                .remote = remote,
                .target = target,
                .route = route,
                .identity = identity,
                .event = event,
                .mode = (enum notify_mode)(e % 3),
                .expires = expires[e],
                .cseq = e ? UINT32_MAX : 0,
                .rseq = 42,
                .seq = e ? UINT64_MAX : 0,
                .full = nh % 2,
                .hashes = nh ? hashes : NULL,
                .n_hashes = nh,
                .body = body,
                .body_len = 17,
                .owner = e % 2 ? owner : no_owner,
            };
            char want[2048];
            int len = snprintf(want, sizeof want,
                               "v 1\ncall-id %s\nlocal %s\nremote %s\ntarget %s\nroute %s\n"
                               "identity %s\nevent %s\nmode %s\nexpires %" PRId64 "\ncseq %" PRIu32
                               "\nrseq %" PRIu32 "\nseq %" PRIu64 "\nfull %d\n",
                               r.call_id, r.local, r.remote, r.target, r.route, r.identity, r.event,
                               notify_mode_name(r.mode), r.expires, r.cseq, r.rseq, r.seq,
                               r.full ? 1 : 0);
            if (r.owner[0])
                len += snprintf(want + len, sizeof want - (size_t)len, "owner %s\n", r.owner);
            for (size_t i = 0; i < nh; i++)
                len += snprintf(want + len, sizeof want - (size_t)len, "hash %zu %016" PRIx64 "\n",
                                i, hashes[i]);
            len += snprintf(want + len, sizeof want - (size_t)len, "\n%s", r.body);
            struct buf b;
            buf_init(&b, 4096);
            CU_ASSERT_EQUAL_FATAL(notify_subs_record_encode(&r, &b), 0);
            CU_ASSERT_EQUAL(b.len, (size_t)len);
            CU_ASSERT_NSTRING_EQUAL(b.data, want, (size_t)len);
            struct notify_record back;
            CU_ASSERT_EQUAL_FATAL(notify_subs_record_decode(b.data, b.len, &back), 0);
            CU_ASSERT_EQUAL(back.expires, r.expires);
            CU_ASSERT_EQUAL(back.seq, r.seq);
            CU_ASSERT_EQUAL(back.n_hashes, nh);
            notify_subs_record_release(&back);
            buf_release(&b);
        }
    }
}

static void test_record(void)
{
    uint64_t hashes[] = {0, 0xfedcba9876543210ull, 7};
    char body[] = "<resource-lists>\n\nblank lines and \xc3\xa9</resource-lists>";
    char call_id[] = "abc@127.0.0.1", local[] = "<sip:alice@example.com>;tag=lt1",
         remote[] = "<sip:alice@example.com>;tag=rt1",
         target[] = "sip:w@127.0.0.1:5090;transport=tcp",
         route[] = "<sip:p1@127.0.0.1;lr>, <sip:p2@127.0.0.1;lr>", identity[] = ALICE,
         event[] = "xcap-diff;id=7", empty[] = "", bad_target[] = "sip:a\r\nInjected: 1";
    struct notify_record r = {
        .call_id = call_id,
        .local = local,
        .remote = remote,
        .target = target,
        .route = route,
        .identity = identity,
        .event = event,
        .mode = NOTIFY_AGGREGATE,
        .expires = 1900000000,
        .cseq = 4000000000u,
        .rseq = 12,
        .seq = 1ull << 40,
        .full = true,
        .hashes = hashes,
        .n_hashes = 3,
        .body = body,
        .body_len = sizeof body - 1,
    };
    struct buf b;
    buf_init(&b, 1 << 20);
    CU_ASSERT_EQUAL_FATAL(notify_subs_record_encode(&r, &b), 0);
    struct notify_record d;
    CU_ASSERT_EQUAL_FATAL(notify_subs_record_decode(b.data, b.len, &d), 0);
    CU_ASSERT_STRING_EQUAL(d.call_id, r.call_id);
    CU_ASSERT_STRING_EQUAL(d.local, r.local);
    CU_ASSERT_STRING_EQUAL(d.remote, r.remote);
    CU_ASSERT_STRING_EQUAL(d.target, r.target);
    CU_ASSERT_STRING_EQUAL(d.route, r.route);
    CU_ASSERT_STRING_EQUAL(d.identity, r.identity);
    CU_ASSERT_STRING_EQUAL(d.event, r.event);
    CU_ASSERT_EQUAL(d.mode, NOTIFY_AGGREGATE);
    CU_ASSERT_EQUAL(d.expires, r.expires);
    CU_ASSERT_EQUAL(d.cseq, r.cseq);
    CU_ASSERT_EQUAL(d.rseq, r.rseq);
    CU_ASSERT_EQUAL(d.seq, r.seq);
    CU_ASSERT_TRUE(d.full);
    CU_ASSERT_EQUAL_FATAL(d.n_hashes, 3);
    CU_ASSERT_EQUAL(d.hashes[1], hashes[1]);
    CU_ASSERT_EQUAL(d.hashes[2], 7);
    CU_ASSERT_EQUAL_FATAL(d.body_len, r.body_len);
    CU_ASSERT_EQUAL(memcmp(d.body, body, d.body_len), 0);
    notify_subs_record_release(&d);
    /* An empty route set; every truncation is refused rather than half-read. */
    r.route = empty;
    r.n_hashes = 0;
    buf_reset(&b);
    CU_ASSERT_EQUAL_FATAL(notify_subs_record_encode(&r, &b), 0);
    CU_ASSERT_EQUAL_FATAL(notify_subs_record_decode(b.data, b.len, &d), 0);
    CU_ASSERT_STRING_EQUAL(d.route, "");
    CU_ASSERT_STRING_EQUAL(d.owner, ""); /* a record without an owner line */
    notify_subs_record_release(&d);
    /* The owner (the instance sending the NOTIFYs) survives the round trip. */
    char owner[] = "xdms-2.example.net";
    r.owner = owner;
    buf_reset(&b);
    CU_ASSERT_EQUAL_FATAL(notify_subs_record_encode(&r, &b), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(b.data, "\nowner xdms-2.example.net\n"));
    CU_ASSERT_EQUAL_FATAL(notify_subs_record_decode(b.data, b.len, &d), 0);
    CU_ASSERT_STRING_EQUAL(d.owner, owner);
    notify_subs_record_release(&d);
    r.owner = NULL;
    size_t header = (size_t)(strstr(b.data, "\n\n") - b.data);
    for (size_t cut = 0; cut <= header; cut++)
        CU_ASSERT_EQUAL(notify_subs_record_decode(b.data, cut, &d), -1);
    CU_ASSERT_EQUAL(notify_subs_record_decode("v 2\ncall-id x\n\n", 16, &d), -1);
    /* Header values with line ends cannot be written. */
    r.target = bad_target;
    buf_reset(&b);
    CU_ASSERT_EQUAL(notify_subs_record_encode(&r, &b), -1);
    buf_release(&b);
}

/* Names, leases and the shared Contact of several instances (notify_cluster.c). */
static void test_cluster_pure(void)
{
    CU_ASSERT_TRUE(notifier_instance_name_ok("a"));
    CU_ASSERT_TRUE(notifier_instance_name_ok("xdms-1.example.net:5081"));
    CU_ASSERT_TRUE(notifier_instance_name_ok("[::1]:5081"));
    CU_ASSERT_FALSE(notifier_instance_name_ok(""));
    CU_ASSERT_FALSE(notifier_instance_name_ok(NULL));
    CU_ASSERT_FALSE(notifier_instance_name_ok("~takeover"));
    CU_ASSERT_FALSE(notifier_instance_name_ok("a b"));
    char longname[NOTIFY_INSTANCE_MAX + 2];
    memset(longname, 'x', sizeof longname - 1);
    longname[NOTIFY_INSTANCE_MAX] = '\0';
    CU_ASSERT_TRUE(notifier_instance_name_ok(longname));
    longname[NOTIFY_INSTANCE_MAX] = 'x';
    longname[NOTIFY_INSTANCE_MAX + 1] = '\0';
    CU_ASSERT_FALSE(notifier_instance_name_ok(longname));

    CU_ASSERT_TRUE(notifier_contact_ok("sip:xdm.example.com:5081"));
    CU_ASSERT_TRUE(notifier_contact_ok("sips:xdm.example.com;transport=tcp"));
    CU_ASSERT_TRUE(notifier_contact_ok("sip:[2001:db8::1]:5081"));
    CU_ASSERT_FALSE(notifier_contact_ok("http://xdm.example.com"));
    CU_ASSERT_FALSE(notifier_contact_ok("sip:"));
    CU_ASSERT_FALSE(notifier_contact_ok("sip::5060"));
    CU_ASSERT_FALSE(notifier_contact_ok("<sip:a.example.com>"));
    CU_ASSERT_FALSE(notifier_contact_ok("sip:a.example.com x"));
    CU_ASSERT_FALSE(notifier_contact_ok(NULL));

    char v[24];
    int64_t ms = 0;
    CU_ASSERT_EQUAL(notify_lease_encode(1764770000123, v, sizeof v), 13);
    CU_ASSERT_STRING_EQUAL(v, "1764770000123");
    CU_ASSERT_TRUE(notify_lease_decode(v, strlen(v), &ms));
    CU_ASSERT_EQUAL(ms, 1764770000123);
    CU_ASSERT_EQUAL(notify_lease_encode(-5, v, sizeof v), 1); /* never negative */
    CU_ASSERT_STRING_EQUAL(v, "0");
    CU_ASSERT_EQUAL(notify_lease_encode(1764770000123, v, 5), -1);
    CU_ASSERT_FALSE(notify_lease_decode("", 0, &ms));
    CU_ASSERT_FALSE(notify_lease_decode("12a", 3, &ms));
    CU_ASSERT_FALSE(notify_lease_decode("-1", 2, &ms));
    CU_ASSERT_FALSE(notify_lease_decode("1234567890123456789", 19, &ms));
    /* Expired strictly after lease_s seconds; a heartbeat from a clock ahead is alive. */
    CU_ASSERT_FALSE(notify_lease_expired(10000, 15000, 5));
    CU_ASSERT_TRUE(notify_lease_expired(10000, 15001, 5));
    CU_ASSERT_FALSE(notify_lease_expired(20000, 15000, 5));
    CU_ASSERT_TRUE(notify_lease_expired(0, 15000, 5));

    char name[NOTIFY_INSTANCE_MAX + 1];
    CU_ASSERT_EQUAL(notify_instance_default("127.0.0.1", 5081, name, sizeof name), 0);
    CU_ASSERT_STRING_EQUAL(name, "127.0.0.1:5081");
    CU_ASSERT_TRUE(notifier_instance_name_ok(name));
    CU_ASSERT_EQUAL(notify_instance_default("::1", 5082, name, sizeof name), 0);
    CU_ASSERT_STRING_EQUAL(name, "[::1]:5082");
    CU_ASSERT_EQUAL(notify_instance_default("127.0.0.1", 5081, name, 8), -1);
}

static void test_entries_parse_errors(void)
{
    struct notify_watchlist wl;
    size_t skipped;
    CU_ASSERT_EQUAL(parse_body("<resource-lists", &wl, &skipped), 400);
    CU_ASSERT_EQUAL(
        parse_body("<x xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/>", &wl, &skipped), 400);
    CU_ASSERT_EQUAL(parse_body("<resource-lists/>", &wl, &skipped), 400);
    CU_ASSERT_EQUAL(
        parse_body("<!DOCTYPE r [<!ENTITY e \"resource-lists/users/x/index\">]>" LISTS_OPEN
                   "<entry uri=\"&e;\"/>" LISTS_CLOSE,
                   &wl, &skipped),
        400);
    /* An empty list parses; it simply watches nothing. */
    CU_ASSERT_EQUAL(parse_body(LISTS_OPEN LISTS_CLOSE, &wl, &skipped), 0);
    CU_ASSERT_EQUAL(wl.n, 0);
    notify_watch_list_release(&wl);

    struct buf b;
    buf_init(&b, 1 << 20);
    CU_ASSERT_EQUAL_FATAL(buf_puts(&b, LISTS_OPEN), 0);
    for (int i = 0; i <= NOTIFY_MAX_ENTRIES; i++)
        CU_ASSERT_EQUAL_FATAL(
            buf_printf(&b, "<entry uri=\"resource-lists/users/sip:alice@example.com/d%d\"/>", i),
            0);
    CU_ASSERT_EQUAL_FATAL(buf_puts(&b, LISTS_CLOSE), 0);
    CU_ASSERT_EQUAL(parse_body(b.data, &wl, &skipped), 413);
    CU_ASSERT_EQUAL(wl.n, 0);
    /* an entry with more attributes than the pre-scan allows is refused before parsing */
    buf_reset(&b);
    CU_ASSERT_EQUAL_FATAL(buf_puts(&b, LISTS_OPEN "<entry uri=\"resource-lists/users/"
                                                  "sip:alice@example.com/index\""),
                          0);
    for (int i = 0; i < 300; i++)
        CU_ASSERT_EQUAL_FATAL(buf_printf(&b, " a%d=\"\"", i), 0);
    CU_ASSERT_EQUAL_FATAL(buf_puts(&b, "/>" LISTS_CLOSE), 0);
    CU_ASSERT_EQUAL(parse_body(b.data, &wl, &skipped), 413);
    CU_ASSERT_EQUAL(wl.n, 0);
    buf_release(&b);
}

static struct notify_watchlist three_watches(void)
{
    struct notify_watchlist wl;
    size_t skipped;
    const char *body =
        LISTS_OPEN "<entry uri=\"resource-lists/users/sip:alice@example.com/index\"/>"
                   "<entry uri=\"resource-lists/users/sip:bob@example.com/\"/>"
                   "<entry uri=\"resource-lists/global/index\"/>" LISTS_CLOSE;
    CU_ASSERT_EQUAL(parse_body(body, &wl, &skipped), 0);
    return wl;
}

static void test_authorize(void)
{
    struct notify_watchlist wl = three_watches();
    CU_ASSERT_EQUAL_FATAL(wl.n, 3);
    /* Host compared without case (RFC 3261 §19.1.4). */
    CU_ASSERT_EQUAL(notify_watch_list_authorize(&wl, "sip:alice@EXAMPLE.com", false), 1);
    CU_ASSERT_EQUAL_FATAL(wl.n, 2);
    CU_ASSERT_STRING_EQUAL(wl.items[0].xui, ALICE);
    CU_ASSERT_TRUE(wl.items[1].global);
    notify_watch_list_release(&wl);

    wl = three_watches();
    CU_ASSERT_EQUAL(notify_watch_list_authorize(&wl, "sip:mallory@example.com", false), 2);
    CU_ASSERT_EQUAL(wl.n, 1);
    notify_watch_list_release(&wl);

    wl = three_watches();
    CU_ASSERT_EQUAL(notify_watch_list_authorize(&wl, "sip:rls@example.com", true), 0);
    CU_ASSERT_EQUAL(wl.n, 3);
    notify_watch_list_release(&wl);

    const char *servers[] = {"sip:rls@example.com", "sip:ps@example.com", NULL};
    CU_ASSERT_TRUE(notify_identity_is_server("sip:ps@EXAMPLE.COM", servers));
    CU_ASSERT_FALSE(notify_identity_is_server(ALICE, servers));
    CU_ASSERT_FALSE(notify_identity_is_server(ALICE, NULL));
}

/* Server-maintained global documents (rls-services/global/index, RFC 4826 §4.4.8) follow
 * usage_server_owned(): hidden from clients, visible to servers. */
static void test_server_owned(void)
{
    const char *body = LISTS_OPEN "<entry uri=\"rls-services/global/index\"/>"
                                  "<entry uri=\"rls-services/global/\"/>" LISTS_CLOSE;
    const struct appusage *au = appusage_find(ROLE_RLS, "rls-services");
    CU_ASSERT_PTR_NOT_NULL_FATAL(au);
    struct doc_key index = {"rls-services", "global", "", "index"};
    bool owned = usage_server_owned(au, &index);
    struct notify_watchlist wl;
    size_t skipped;
    CU_ASSERT_EQUAL_FATAL(notify_watch_parse(body, strlen(body), ROOT, ROLE_RLS, &wl, &skipped), 0);
    CU_ASSERT_EQUAL_FATAL(wl.n, 2);
    CU_ASSERT_PTR_EQUAL(wl.items[0].au, au);
    CU_ASSERT_EQUAL(notify_watch_list_authorize(&wl, ALICE, false), owned ? 1 : 0);
    CU_ASSERT_EQUAL_FATAL(wl.n, owned ? 1 : 2);
    const struct notify_watch *dir = &wl.items[wl.n - 1];
    CU_ASSERT_TRUE(dir->is_dir);
    CU_ASSERT_EQUAL(notify_watch_matches(dir, &index), !owned);
    notify_watch_list_release(&wl);

    CU_ASSERT_EQUAL_FATAL(notify_watch_parse(body, strlen(body), ROOT, ROLE_RLS, &wl, &skipped), 0);
    CU_ASSERT_EQUAL(notify_watch_list_authorize(&wl, "sip:rls@example.com", true), 0);
    CU_ASSERT_EQUAL_FATAL(wl.n, 2);
    CU_ASSERT_TRUE(notify_watch_matches(&wl.items[0], &index));
    CU_ASSERT_TRUE(notify_watch_matches(&wl.items[1], &index));
    notify_watch_list_release(&wl);
}

static void test_watch_matches(void)
{
    struct notify_watchlist wl;
    size_t skipped;
    const char *body =
        LISTS_OPEN "<entry uri=\"resource-lists/users/sip:alice@example.com/index\"/>"
                   "<entry uri=\"resource-lists/users/sip:alice@example.com/d/\"/>"
                   "<entry uri=\"resource-lists/global/\"/>" LISTS_CLOSE;
    CU_ASSERT_EQUAL_FATAL(parse_body(body, &wl, &skipped), 0);
    CU_ASSERT_EQUAL_FATAL(wl.n, 3);
    struct doc_key index = {"resource-lists", "users", ALICE, "index"};
    struct doc_key index2 = {"resource-lists", "users", ALICE, "index2"};
    struct doc_key in_d = {"resource-lists", "users", ALICE, "d/x/y"};
    struct doc_key d_file = {"resource-lists", "users", ALICE, "d"};
    struct doc_key bob = {"resource-lists", "users", "sip:bob@example.com", "index"};
    struct doc_key global = {"resource-lists", "global", "", "anything"};
    struct doc_key other = {"rls-services", "users", ALICE, "index"};
    CU_ASSERT_TRUE(notify_watch_matches(&wl.items[0], &index));
    CU_ASSERT_FALSE(notify_watch_matches(&wl.items[0], &index2));
    CU_ASSERT_FALSE(notify_watch_matches(&wl.items[0], &bob));
    CU_ASSERT_FALSE(notify_watch_matches(&wl.items[0], &other));
    CU_ASSERT_FALSE(notify_watch_matches(&wl.items[0], &global));
    CU_ASSERT_TRUE(notify_watch_matches(&wl.items[1], &in_d));
    CU_ASSERT_FALSE(notify_watch_matches(&wl.items[1], &d_file));
    CU_ASSERT_FALSE(notify_watch_matches(&wl.items[1], &index));
    CU_ASSERT_TRUE(notify_watch_matches(&wl.items[2], &global));
    CU_ASSERT_FALSE(notify_watch_matches(&wl.items[2], &index));
    notify_watch_list_release(&wl);
}

/* The subscription index (notify_index.c) against the scan it replaces: many subscriptions of
 * every watch form (document, directory, a user's whole tree, the global tree, all users, an
 * element), some removed (unsubscribe, expiry, reaping all end in notify_index_remove()), one
 * re-posted with a new watched set (a refresh with a body); every lookup must give exactly the
 * subscriptions a scan with notify_watch_matches() finds, each once. */
#define INDEX_USERS 12
#define INDEX_SUBS 3000

static struct notify_sub *index_sub(const char *identity, const char *body)
{
    struct notify_sub *s = calloc(1, sizeof *s);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    s->identity = strdup(identity);
    size_t skipped;
    CU_ASSERT_EQUAL_FATAL(parse_body(body, &s->watches, &skipped), 0);
    notify_watch_list_authorize(&s->watches, identity, true);
    return s;
}

static void index_sub_free(struct notify_index *ix, struct notify_sub *s)
{
    notify_index_remove(ix, s);
    notify_watch_list_release(&s->watches);
    free(s->identity);
    free(s);
}

static void index_entry(char *out, size_t max, unsigned form, unsigned user)
{
    switch (form % 8) {
    case 0:
        snprintf(out, max, "resource-lists/users/sip:u%u@example.com/index", user);
        break;
    case 1:
        snprintf(out, max, "resource-lists/users/sip:u%u@example.com/d/", user);
        break;
    case 2:
        snprintf(out, max, "resource-lists/users/sip:u%u@example.com/", user);
        break;
    case 3:
        snprintf(out, max, "resource-lists/global/");
        break;
    case 4:
        snprintf(out, max, "resource-lists/global/g%u", user);
        break;
    case 5:
        snprintf(out, max, "resource-lists/users/");
        break;
    case 6:
        snprintf(out, max, "resource-lists/users/sip:u%u@example.com/index/~~/resource-lists/list",
                 user);
        break;
    default:
        snprintf(out, max, "resource-lists/users/sip:u%u@example.com/d/x", user);
        break;
    }
}

static void index_check(struct notify_index *ix, struct notify_sub **subs, size_t n,
                        const struct doc_key *k)
{
    CU_ASSERT_EQUAL_FATAL(notify_index_lookup(ix, k), 0);
    size_t expected = 0, found = 0;
    for (size_t i = 0; i < n; i++) {
        if (!subs[i])
            continue;
        bool doc = false, node = false;
        for (size_t w = 0; w < subs[i]->watches.n; w++) {
            const struct notify_watch *wt = &subs[i]->watches.items[w];
            if (!notify_watch_matches(wt, k))
                continue;
            if (wt->kind == NOTIFY_WATCH_ELEMENT || wt->kind == NOTIFY_WATCH_ATTRIBUTE)
                node = true;
            else
                doc = true;
        }
        if (!doc && !node)
            continue;
        expected++;
        size_t times = 0;
        for (size_t h = 0; h < ix->n_hits; h++) {
            if (ix->hits[h].sub != subs[i])
                continue;
            times++;
            CU_ASSERT_EQUAL(ix->hits[h].doc, doc);
            CU_ASSERT_EQUAL(ix->hits[h].node, node);
        }
        CU_ASSERT_EQUAL(times, 1);
        found += times;
    }
    CU_ASSERT_EQUAL(ix->n_hits, expected);
    CU_ASSERT_EQUAL(found, expected);
}

static void index_check_all(struct notify_index *ix, struct notify_sub **subs, size_t n)
{
    char xui[64];
    static const char *const paths[] = {"index", "d/x", "d/y/z", "d", "other"};
    for (unsigned u = 0; u <= INDEX_USERS; u++) {
        snprintf(xui, sizeof xui, "sip:u%u@example.com", u);
        for (size_t p = 0; p < sizeof paths / sizeof *paths; p++) {
            struct doc_key k = {"resource-lists", "users", xui, paths[p]};
            index_check(ix, subs, n, &k);
        }
        char g[16];
        snprintf(g, sizeof g, "g%u", u);
        struct doc_key gk = {"resource-lists", "global", "", g};
        index_check(ix, subs, n, &gk);
    }
    struct doc_key other_auid = {"rls-services", "users", "sip:u1@example.com", "index"};
    index_check(ix, subs, n, &other_auid);
}

/* The expiry heap: the root is always the earliest; adding, re-keying (a refresh) and removing
 * (an end) keep every place right, checked against a plain scan after each step. */
static void expiry_check(const struct notify_expiry *h, struct notify_sub *subs, size_t n)
{
    struct notify_sub *min = NULL;
    size_t in = 0;
    for (size_t i = 0; i < n; i++) {
        if (subs[i].expiry_pos == 0)
            continue;
        in++;
        CU_ASSERT_TRUE_FATAL(subs[i].expiry_pos <= h->n);
        CU_ASSERT_PTR_EQUAL_FATAL(h->v[subs[i].expiry_pos - 1], &subs[i]);
        if (!min || subs[i].expires_ms < min->expires_ms)
            min = &subs[i];
    }
    CU_ASSERT_EQUAL_FATAL(in, h->n);
    for (size_t i = 1; i < h->n; i++)
        CU_ASSERT_TRUE_FATAL(h->v[(i - 1) / 2]->expires_ms <= h->v[i]->expires_ms);
    if (!min) {
        CU_ASSERT_PTR_NULL(notify_expiry_first(h));
    } else {
        CU_ASSERT_EQUAL(notify_expiry_first(h)->expires_ms, min->expires_ms);
    }
}

static void test_expiry_heap(void)
{
    enum { N = 2000 };
    static struct notify_sub subs[N];
    memset(subs, 0, sizeof subs);
    struct notify_expiry h = {0};
    CU_ASSERT_PTR_NULL(notify_expiry_first(&h));
    unsigned seed = 777;
    for (size_t i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        subs[i].expires_ms = (seed >> 8) % 5000; /* many ties */
        CU_ASSERT_EQUAL_FATAL(notify_expiry_add(&h, &subs[i]), 0);
    }
    expiry_check(&h, subs, N);
    /* Refreshes move some later and some earlier; adding one already there re-keys it. */
    for (size_t i = 0; i < N; i += 7) {
        seed = seed * 1103515245u + 12345u;
        subs[i].expires_ms = (seed >> 8) % 9000;
        if (i % 2)
            notify_expiry_update(&h, &subs[i]);
        else
            CU_ASSERT_EQUAL(notify_expiry_add(&h, &subs[i]), 0);
    }
    expiry_check(&h, subs, N);
    CU_ASSERT_EQUAL(h.n, N);
    /* Ends anywhere in the heap, the last slot too; removing one not there is a no-op. */
    for (size_t i = 0; i < N; i += 3)
        notify_expiry_remove(&h, &subs[i]);
    notify_expiry_remove(&h, &subs[0]);
    notify_expiry_remove(&h, h.v[h.n - 1]);
    expiry_check(&h, subs, N);
    /* Taking the root until empty yields the expiries in order. */
    int64_t last = -1;
    size_t taken = 0;
    struct notify_sub *s;
    while ((s = notify_expiry_first(&h))) {
        CU_ASSERT_TRUE_FATAL(s->expires_ms >= last);
        last = s->expires_ms;
        notify_expiry_remove(&h, s);
        CU_ASSERT_EQUAL(s->expiry_pos, 0);
        taken++;
    }
    CU_ASSERT_TRUE(taken > N / 2);
    CU_ASSERT_EQUAL(notify_expiry_add(&h, &subs[1]), 0);
    notify_expiry_release(&h);
    CU_ASSERT_EQUAL(subs[1].expiry_pos, 0);
    CU_ASSERT_EQUAL(h.n, 0);
}

static void test_index(void)
{
    struct notify_index ix;
    memset(&ix, 0, sizeof ix);
    struct doc_key k0 = {"resource-lists", "users", "sip:u0@example.com", "index"};
    CU_ASSERT_EQUAL(notify_index_lookup(&ix, &k0), 0);
    CU_ASSERT_EQUAL(ix.n_hits, 0);

    static struct notify_sub *subs[INDEX_SUBS];
    unsigned seed = 12345;
    for (size_t i = 0; i < INDEX_SUBS; i++) {
        char body[1024], entry[256];
        size_t len = (size_t)snprintf(body, sizeof body, LISTS_OPEN);
        unsigned entries = 1 + (seed = seed * 1103515245u + 12345u) % 3;
        for (unsigned e = 0; e < entries; e++) {
            seed = seed * 1103515245u + 12345u;
            index_entry(entry, sizeof entry, (seed >> 8) % 8, (seed >> 16) % INDEX_USERS);
            len += (size_t)snprintf(body + len, sizeof body - len, "<entry uri=\"%s\"/>", entry);
        }
        snprintf(body + len, sizeof body - len, LISTS_CLOSE);
        char identity[64];
        snprintf(identity, sizeof identity, "sip:s%zu@example.com", i % 7);
        subs[i] = index_sub(identity, body);
        CU_ASSERT_EQUAL_FATAL(notify_index_add(&ix, subs[i]), 0);
    }
    index_check_all(&ix, subs, INDEX_SUBS);
    /* The per-subscriber count, as the admission bound asks it. */
    CU_ASSERT_EQUAL(notify_index_count_identity(&ix, "sip:s0@example.com"), (INDEX_SUBS + 6) / 7);
    CU_ASSERT_EQUAL(notify_index_count_identity(&ix, "sip:s0@EXAMPLE.com"), (INDEX_SUBS + 6) / 7);
    CU_ASSERT_EQUAL(notify_index_count_identity(&ix, "sip:nobody@example.com"), 0);
    subs[0]->dead = true; /* ended, not yet reaped: not counted */
    CU_ASSERT_EQUAL(notify_index_count_identity(&ix, "sip:s0@example.com"),
                    (INDEX_SUBS + 6) / 7 - 1);
    subs[0]->dead = false;

    /* Ends of every kind take the postings out; the others stay findable. */
    for (size_t i = 0; i < INDEX_SUBS; i += 3) {
        index_sub_free(&ix, subs[i]);
        subs[i] = NULL;
    }
    index_check_all(&ix, subs, INDEX_SUBS);
    /* A new watched set replaces the old one (RFC 5875 §4.8). */
    struct notify_sub *s = subs[1];
    notify_index_remove(&ix, s);
    notify_watch_list_release(&s->watches);
    size_t skipped;
    CU_ASSERT_EQUAL_FATAL(
        parse_body(LISTS_OPEN
                   "<entry uri=\"resource-lists/users/sip:u99@example.com/only\"/>" LISTS_CLOSE,
                   &s->watches, &skipped),
        0);
    CU_ASSERT_EQUAL_FATAL(notify_index_add(&ix, s), 0);
    struct doc_key only = {"resource-lists", "users", "sip:u99@example.com", "only"};
    index_check(&ix, subs, INDEX_SUBS, &only); /* s, and the all-users watches */
    bool s_found = false;
    for (size_t h = 0; h < ix.n_hits; h++)
        s_found |= ix.hits[h].sub == s;
    CU_ASSERT_TRUE(s_found);
    struct doc_key old_doc = {"resource-lists", "users", "sip:u1@example.com", "index"};
    CU_ASSERT_EQUAL(notify_index_lookup(&ix, &old_doc), 0);
    for (size_t h = 0; h < ix.n_hits; h++)
        CU_ASSERT_PTR_NOT_EQUAL(ix.hits[h].sub, s);
    index_check_all(&ix, subs, INDEX_SUBS);

    for (size_t i = 0; i < INDEX_SUBS; i++)
        if (subs[i])
            index_sub_free(&ix, subs[i]);
    CU_ASSERT_EQUAL(ix.n_posts, 0);
    CU_ASSERT_EQUAL(notify_index_lookup(&ix, &k0), 0);
    CU_ASSERT_EQUAL(ix.n_hits, 0);
    notify_index_release(&ix);
}

static void check_sel(const struct doc_key *k, const char *expected)
{
    struct buf b;
    buf_init(&b, 4096);
    CU_ASSERT_EQUAL(notify_watch_sel_append(&b, k), 0);
    CU_ASSERT_STRING_EQUAL(b.data ? b.data : "", expected);
    buf_release(&b);
}

static void test_sel_append(void)
{
    struct doc_key k1 = {"resource-lists", "users", ALICE, "index"};
    check_sel(&k1, "resource-lists/users/sip:alice@example.com/index");
    struct doc_key k2 = {"resource-lists", "users", "sip:a/b?c#d%e f\"@example.com", "dir/my doc"};
    check_sel(&k2, "resource-lists/users/sip:a%2Fb%3Fc%23d%25e%20f%22@example.com/dir/my%20doc");
    struct doc_key k3 = {"rls-services", "global", "", "index"};
    check_sel(&k3, "rls-services/global/index");
    struct doc_key k4 = {"resource-lists", "users", "tel:+1-555;x=y", "\xc3\xa9t\xc3\xa9<>"};
    check_sel(&k4, "resource-lists/users/tel:+1-555;x=y/%C3%A9t%C3%A9%3C%3E");
    /* A full buffer fails instead of truncating. */
    struct buf b;
    buf_init(&b, 10);
    CU_ASSERT_EQUAL(notify_watch_sel_append(&b, &k1), -1);
    buf_release(&b);
}

static void test_diff_render(void)
{
    struct buf b;
    buf_init(&b, 4096);
    CU_ASSERT_EQUAL(notify_diff_open(&b, "http://h/x?a=1&b=\"2\"/"), 0);
    CU_ASSERT_EQUAL(notify_diff_document(&b, "a/users/x/new", NULL, "n1"), 0);
    CU_ASSERT_EQUAL(notify_diff_document(&b, "a/users/x/gone", "p1", ""), 0);
    CU_ASSERT_EQUAL(notify_diff_document(&b, "a/users/x/<&>", "p2", "n2"), 0);
    CU_ASSERT_EQUAL(notify_diff_close(&b), 0);
    CU_ASSERT_STRING_EQUAL(
        b.data,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<xcap-diff xmlns=\"urn:ietf:params:xml:ns:xcap-diff\" "
        "xcap-root=\"http://h/x?a=1&amp;b=&quot;2&quot;/\">\n"
        "  <document sel=\"a/users/x/new\" new-etag=\"n1\"/>\n"
        "  <document sel=\"a/users/x/gone\" previous-etag=\"p1\"/>\n"
        "  <document sel=\"a/users/x/&lt;&amp;&gt;\" previous-etag=\"p2\" new-etag=\"n2\"/>\n"
        "</xcap-diff>\n");
    /* The rendered body is well-formed XML. */
    xmlDocPtr doc = NULL;
    struct xcap_err err = {0};
    CU_ASSERT_EQUAL(xdoc_parse(b.data, b.len, &doc, &err), XCAP_OK);
    xmlFreeDoc(doc);
    xcap_err_release(&err);
    buf_release(&b);
}

static void check_identity(const char *in, const char *expected)
{
    char *got = notify_identity_parse(in);
    if (expected) {
        CU_ASSERT_PTR_NOT_NULL(got);
        if (got) {
            CU_ASSERT_STRING_EQUAL(got, expected);
        }
    } else {
        CU_ASSERT_PTR_NULL(got);
    }
    free(got);
}

static void test_identity_parse(void)
{
    check_identity("<sip:alice@example.com>", ALICE);
    check_identity("\"Alice, <the> first\" <sip:alice@example.com;user=phone?x=y>", ALICE);
    check_identity("  SIP:alice@example.com;tag=x", ALICE);
    check_identity("<sip:alice@example.com:5070>, <tel:+15551234>", "sip:alice@example.com:5070");
    check_identity("<tel:+15551234>", "tel:+15551234");
    check_identity("sips:bob@example.com", "sips:bob@example.com");
    check_identity("<http://example.com/>", NULL);
    check_identity("<sip:alice@example.com", NULL);
    check_identity("\"unterminated <sip:alice@example.com>", NULL);
    check_identity("<sip:>", NULL);
    check_identity("", NULL);
    check_identity(NULL, NULL);
}

static void test_expires(void)
{
    struct notifier_config cfg = {.min_expires = 60, .max_expires = 7200};
    unsigned out = 1;
    CU_ASSERT_EQUAL(notify_expires_decide(&cfg, false, 0, &out), 0);
    CU_ASSERT_EQUAL(out, 3600);
    CU_ASSERT_EQUAL(notify_expires_decide(&cfg, true, 100000, &out), 0);
    CU_ASSERT_EQUAL(out, 7200);
    CU_ASSERT_EQUAL(notify_expires_decide(&cfg, true, 30, &out), 423);
    CU_ASSERT_EQUAL(notify_expires_decide(&cfg, true, 0, &out), 0);
    CU_ASSERT_EQUAL(out, 0);
    CU_ASSERT_EQUAL(notify_expires_decide(&cfg, true, 60, &out), 0);
    CU_ASSERT_EQUAL(out, 60);
    cfg.default_expires = 10000;
    CU_ASSERT_EQUAL(notify_expires_decide(&cfg, false, 0, &out), 0);
    CU_ASSERT_EQUAL(out, 7200);
    struct notifier_config zero = {0};
    CU_ASSERT_EQUAL(notify_expires_decide(&zero, true, 1, &out), 0);
    CU_ASSERT_EQUAL(out, 1);
    CU_ASSERT_EQUAL(notify_expires_decide(&zero, true, 1000000, &out), 0);
    CU_ASSERT_EQUAL(out, NOTIFY_DEFAULT_MAX_EXPIRES);
}

static int sa_of(const char *addr, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        return 0;
    }
    return -1;
}

static bool trusted(const char *addr, const char *const *list)
{
    struct sockaddr_storage ss;
    CU_ASSERT_EQUAL_FATAL(sa_of(addr, &ss), 0);
    return notify_peer_trusted((struct sockaddr *)&ss, list);
}

static void test_peer_trusted(void)
{
    /* no sip_trusted_peer: nobody, not even loopback */
    CU_ASSERT_FALSE(trusted("127.0.0.1", NULL));
    CU_ASSERT_FALSE(trusted("::1", NULL));
    CU_ASSERT_FALSE(trusted("::ffff:127.0.0.1", NULL));
    CU_ASSERT_FALSE(trusted("10.0.0.1", NULL));
    const char *none[] = {NULL};
    CU_ASSERT_FALSE(trusted("127.0.0.1", none));
    const char *list[] = {"10.0.0.1", "fe80::1", "not-an-address", NULL};
    CU_ASSERT_TRUE(trusted("10.0.0.1", list));
    CU_ASSERT_TRUE(trusted("::ffff:10.0.0.1", list));
    CU_ASSERT_TRUE(trusted("fe80::1", list));
    CU_ASSERT_FALSE(trusted("127.0.0.1", list));
    CU_ASSERT_FALSE(notify_peer_trusted(NULL, NULL));
}

static void test_accept(void)
{
    const char *ok[] = {"text/plain", "APPLICATION/XCAP-DIFF+XML"};
    const char *wild[] = {"application/*"};
    const char *any[] = {"*/*"};
    const char *no[] = {"application/pidf+xml", NULL};
    CU_ASSERT_TRUE(notify_accept_allows(NULL, 0));
    CU_ASSERT_TRUE(notify_accept_allows(ok, 2));
    CU_ASSERT_TRUE(notify_accept_allows(wild, 1));
    CU_ASSERT_TRUE(notify_accept_allows(any, 1));
    CU_ASSERT_FALSE(notify_accept_allows(no, 2));
}

/* ---------------------------------------------------------------------------------------- */
/* Loopback exchange                                                                         */

struct peer {
    int fd;
    uint16_t port;     /* ours */
    uint16_t notifier; /* theirs */
    unsigned cseq;
    char call_id[64];
    char to_tag[128]; /* the notifier's dialog tag */
    bool no_pai;      /* peer_subscribe() sends no P-Asserted-Identity of its own */
};

/* The SIP proxy in front, as the notifiers of these tests trust it. */
static const char *const sip_proxy_peers[] = {"127.0.0.1", NULL};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Copies the value of the first header called name (case-insensitive) into out. */
static bool header(const char *msg, const char *name, char *out, size_t max)
{
    size_t nl = strlen(name);
    const char *end = strstr(msg, "\r\n\r\n");
    for (const char *p = strstr(msg, "\r\n"); p && (!end || p < end); p = strstr(p + 2, "\r\n")) {
        const char *h = p + 2;
        if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
            h += nl + 1;
            while (*h == ' ')
                h++;
            const char *e = strstr(h, "\r\n");
            size_t len = e ? (size_t)(e - h) : strlen(h);
            if (len >= max)
                len = max - 1;
            memcpy(out, h, len);
            out[len] = '\0';
            return true;
        }
    }
    return false;
}

static const char *body_of(const char *msg)
{
    const char *b = strstr(msg, "\r\n\r\n");
    return b ? b + 4 : "";
}

static void peer_send(struct peer *p, const char *msg)
{
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(p->notifier)};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    ssize_t n = sendto(p->fd, msg, strlen(msg), 0, (struct sockaddr *)&to, sizeof to);
    CU_ASSERT_EQUAL(n, (ssize_t)strlen(msg));
}

/* Receives one datagram within ms; returns false on timeout. */
static bool peer_recv(struct peer *p, char *buf, size_t max, int ms)
{
    struct pollfd pfd = {.fd = p->fd, .events = POLLIN};
    if (poll(&pfd, 1, ms) <= 0)
        return false;
    ssize_t n = recv(p->fd, buf, max - 1, 0);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    return true;
}

/* Answers a request with status, copying the transaction headers. */
static void peer_answer(struct peer *p, const char *req, int status)
{
    char via[512], from[512], to[512], callid[256], cseq[64];
    CU_ASSERT_TRUE_FATAL(header(req, "Via", via, sizeof via));
    CU_ASSERT_TRUE_FATAL(header(req, "From", from, sizeof from));
    CU_ASSERT_TRUE_FATAL(header(req, "To", to, sizeof to));
    CU_ASSERT_TRUE_FATAL(header(req, "Call-ID", callid, sizeof callid));
    CU_ASSERT_TRUE_FATAL(header(req, "CSeq", cseq, sizeof cseq));
    char msg[4096];
    snprintf(msg, sizeof msg,
             "SIP/2.0 %d %s\r\nVia: %s\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s\r\n"
             "Content-Length: 0\r\n\r\n",
             status, status == 200 ? "OK" : "Failed", via, from, to, callid, cseq);
    peer_send(p, msg);
}

static void peer_ok(struct peer *p, const char *req)
{
    peer_answer(p, req, 200);
}

/* Sends a SUBSCRIBE (in the dialog when p->to_tag is set) with extra headers and body. Like the
 * SIP proxy in front, it asserts From as P-Asserted-Identity unless p->no_pai is set or extra
 * has its own. */
static void peer_subscribe(struct peer *p, const char *from, const char *extra, const char *body)
{
    char msg[8192], with_pai[2048];
    if (!p->no_pai && !strstr(extra, "P-Asserted-Identity")) {
        snprintf(with_pai, sizeof with_pai, "%sP-Asserted-Identity: <%s>\r\n", extra, from);
        extra = with_pai;
    }
    p->cseq++;
    snprintf(msg, sizeof msg,
             "SUBSCRIBE sip:alice@example.com SIP/2.0\r\n"
             "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bK-t%u-%ld;rport\r\n"
             "Max-Forwards: 70\r\n"
             "From: <%s>;tag=subtag1\r\n"
             "To: <sip:alice@example.com>%s%s\r\n"
             "Call-ID: %s\r\n"
             "CSeq: %u SUBSCRIBE\r\n"
             "Contact: <sip:watcher@127.0.0.1:%u>\r\n"
             "%s"
             "%s"
             "Content-Length: %zu\r\n\r\n%s",
             p->port, p->cseq, (long)now_ms(), from, p->to_tag[0] ? ";tag=" : "", p->to_tag,
             p->call_id, p->cseq, p->port, extra,
             body ? "Content-Type: application/resource-lists+xml\r\n" : "",
             body ? strlen(body) : 0, body ? body : "");
    peer_send(p, msg);
}

/* Waits (at most 3 s) for the final response to our latest SUBSCRIBE; answers NOTIFYs that
 * arrive meanwhile and keeps the first one in notify (when not NULL). Returns the status. */
static int peer_wait_response(struct peer *p, char *notify, size_t max)
{
    char buf[65536];
    int64_t end = now_ms() + 3000;
    int status = 0;
    bool want_notify = notify != NULL;
    while ((status == 0 || want_notify) && now_ms() < end) {
        if (!peer_recv(p, buf, sizeof buf, (int)(end - now_ms())))
            break;
        if (strncmp(buf, "SIP/2.0 ", 8) == 0) {
            char cseq[64];
            if (!header(buf, "CSeq", cseq, sizeof cseq) || (unsigned)atoi(cseq) != p->cseq)
                continue;
            int st = atoi(buf + 8);
            if (st < 200)
                continue;
            status = st;
            if (st >= 300)
                want_notify = false;
            char to[512];
            if (st < 300 && header(buf, "To", to, sizeof to) && !p->to_tag[0]) {
                const char *tag = strstr(to, "tag=");
                if (tag)
                    snprintf(p->to_tag, sizeof p->to_tag, "%.*s", (int)strcspn(tag + 4, ";"),
                             tag + 4);
            }
        } else if (strncmp(buf, "NOTIFY ", 7) == 0) {
            peer_ok(p, buf);
            if (want_notify) {
                snprintf(notify, max, "%s", buf);
                want_notify = false;
            }
        }
    }
    return status;
}

/* Waits (at most ms) for the next NOTIFY, answers it with status and copies it. */
static bool peer_wait_notify_as(struct peer *p, char *notify, size_t max, int ms, int status)
{
    char buf[65536];
    int64_t end = now_ms() + ms;
    while (now_ms() < end) {
        if (!peer_recv(p, buf, sizeof buf, (int)(end - now_ms())))
            return false;
        if (strncmp(buf, "NOTIFY ", 7) == 0) {
            peer_answer(p, buf, status);
            snprintf(notify, max, "%s", buf);
            return true;
        }
    }
    return false;
}

static bool peer_wait_notify(struct peer *p, char *notify, size_t max)
{
    return peer_wait_notify_as(p, notify, max, 3000, 200);
}

static void peer_open(struct peer *p, uint16_t notifier_port, const char *call_id)
{
    memset(p, 0, sizeof *p);
    p->fd = socket(AF_INET, SOCK_DGRAM, 0);
    CU_ASSERT_FATAL(p->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    CU_ASSERT_EQUAL_FATAL(bind(p->fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(p->fd, (struct sockaddr *)&a, &len);
    p->port = ntohs(a.sin_port);
    p->notifier = notifier_port;
    snprintf(p->call_id, sizeof p->call_id, "%s-%ld@127.0.0.1", call_id, (long)now_ms());
}

/* Puts (data != NULL) or deletes a document and logs the change, like the engine does. */
static void commit_change(struct store *s, const struct doc_key *k, const char *data,
                          const char *prev, char etag[STORE_ETAG_MAX])
{
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, true, &t), STORE_OK);
    etag[0] = '\0';
    enum store_rc rc = data ? store_doc_put(t, k, data, strlen(data), etag) : store_doc_del(t, k);
    CU_ASSERT_EQUAL_FATAL(rc, STORE_OK);
    struct store_change c = {
        .kind = data ? STORE_CHANGE_PUT : STORE_CHANGE_DELETE,
        .key = *k,
        .prev_etag = prev,
        .new_etag = etag,
    };
    CU_ASSERT_EQUAL_FATAL(store_change_append(t, &c), STORE_OK);
    CU_ASSERT_EQUAL_FATAL(store_txn_commit(t), STORE_OK);
}

static void assert_contains(const char *hay, const char *needle)
{
    bool found = strstr(hay, needle) != NULL;
    CU_ASSERT_TRUE(found);
    if (!found)
        fprintf(stderr, "\n--- expected to find\n%s\n--- in\n%s\n", needle, hay);
}

#define LIST_ALICE                                                                                 \
    LISTS_OPEN "<entry uri=\"resource-lists/users/sip:alice@example.com/index\"/>"                 \
               "<entry uri=\"resource-lists/users/sip:alice@example.com/later/\"/>" LISTS_CLOSE

static void test_loopback(void)
{
    char dir[] = "/tmp/xdm-notify-XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    struct store *st = NULL;
    CU_ASSERT_EQUAL_FATAL(store_open(dir, NULL, &st), STORE_OK);

    /* One document exists before the subscription. */
    struct doc_key index = {"resource-lists", "users", ALICE, "index"};
    char e1[STORE_ETAG_MAX], e2[STORE_ETAG_MAX], e3[STORE_ETAG_MAX], gone[STORE_ETAG_MAX];
    commit_change(st, &index, "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/>",
                  "", e1);

    struct notifier_config cfg = {
        .host = "127.0.0.1",
        .port = 0,
        .xcap_root = ROOT,
        .role = ROLE_SHARED_LIST,
        .min_expires = 30,
        .trusted_peers = sip_proxy_peers,
    };
    struct notifier *n = NULL;
    CU_ASSERT_EQUAL_FATAL(notifier_start(&cfg, st, &n), 0);
    CU_ASSERT_NOT_EQUAL(notifier_port(n), 0);

    struct peer p;
    char notify[65536], value[256], expect[512];

    /* Refusals, each before any dialog exists. */
    peer_open(&p, notifier_port(n), "refused");
    peer_subscribe(&p, ALICE, "Event: presence\r\n", LIST_ALICE);
    CU_ASSERT_EQUAL(peer_wait_response(&p, NULL, 0), 489);
    peer_subscribe(&p, ALICE, "Event: xcap-diff\r\nAccept: application/pidf+xml\r\n", LIST_ALICE);
    CU_ASSERT_EQUAL(peer_wait_response(&p, NULL, 0), 406);
    peer_subscribe(&p, ALICE, "Event: xcap-diff\r\nExpires: 5\r\n", LIST_ALICE);
    CU_ASSERT_EQUAL(peer_wait_response(&p, NULL, 0), 423);
    peer_subscribe(&p, ALICE, "Event: xcap-diff\r\n", NULL);
    CU_ASSERT_EQUAL(peer_wait_response(&p, NULL, 0), 400);
    peer_subscribe(&p, ALICE, "Event: xcap-diff\r\n", "<resource-lists");
    CU_ASSERT_EQUAL(peer_wait_response(&p, NULL, 0), 400);
    /* Bob may not watch Alice's documents (RFC 5875 §4.5). */
    peer_subscribe(&p, "sip:bob@example.com", "Event: xcap-diff\r\n", LIST_ALICE);
    CU_ASSERT_EQUAL(peer_wait_response(&p, NULL, 0), 403);
    /* An in-dialog request for an unknown dialog. */
    snprintf(p.to_tag, sizeof p.to_tag, "unknown");
    peer_subscribe(&p, ALICE, "Event: xcap-diff\r\n", LIST_ALICE);
    CU_ASSERT_EQUAL(peer_wait_response(&p, NULL, 0), 481);
    close(p.fd);

    /* Accepted: 200, then the initial NOTIFY with the full state (RFC 5875 §4.6; RFC 6665 §8.2.1).
     * The asserted identity (trusted loopback peer) is used, not From. */
    peer_open(&p, notifier_port(n), "accepted");
    peer_subscribe(&p, "sip:anonymous@anonymous.invalid",
                   "Event: xcap-diff\r\nAccept: application/xcap-diff+xml\r\nExpires: 600\r\n"
                   "P-Asserted-Identity: \"Alice\" <sip:alice@example.com>\r\n",
                   LIST_ALICE);
    CU_ASSERT_EQUAL_FATAL(peer_wait_response(&p, notify, sizeof notify), 200);
    CU_ASSERT_NOT_EQUAL(p.to_tag[0], '\0');
    CU_ASSERT_TRUE(header(notify, "Event", value, sizeof value));
    CU_ASSERT_STRING_EQUAL(value, "xcap-diff");
    CU_ASSERT_TRUE(header(notify, "Subscription-State", value, sizeof value));
    CU_ASSERT_TRUE(strncmp(value, "active;expires=", 15) == 0);
    CU_ASSERT_TRUE(atoi(value + 15) >= 598 && atoi(value + 15) <= 600);
    CU_ASSERT_TRUE(header(notify, "Content-Type", value, sizeof value));
    CU_ASSERT_STRING_EQUAL(value, "application/xcap-diff+xml");
    assert_contains(body_of(notify), "xcap-root=\"" ROOT "\"");
    snprintf(expect, sizeof expect,
             "<document sel=\"resource-lists/users/sip:alice@example.com/index\" "
             "new-etag=\"%s\"/>",
             e1);
    assert_contains(body_of(notify), expect);
    CU_ASSERT_PTR_NULL(strstr(body_of(notify), "previous-etag"));

    /* A committed change is reported with both ETags once the notifier is woken. */
    commit_change(st, &index,
                  "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">"
                  "<list/></resource-lists>",
                  e1, e2);
    notifier_wake(n);
    CU_ASSERT_TRUE_FATAL(peer_wait_notify(&p, notify, sizeof notify));
    snprintf(expect, sizeof expect,
             "<document sel=\"resource-lists/users/sip:alice@example.com/index\" "
             "previous-etag=\"%s\" new-etag=\"%s\"/>",
             e1, e2);
    assert_contains(body_of(notify), expect);

    /* Unwatched documents are not reported; one created later in a watched directory is
     * (new-etag only), and a delete carries previous-etag only. Commit order is kept. */
    struct doc_key other = {"resource-lists", "users", ALICE, "elsewhere"};
    struct doc_key later = {"resource-lists", "users", ALICE, "later/doc"};
    commit_change(st, &other, "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/>",
                  "", e3);
    commit_change(st, &later, "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/>",
                  "", e3);
    commit_change(st, &index, NULL, e2, gone);
    notifier_wake(n);
    char all[65536 * 2] = "";
    int64_t end = now_ms() + 3000;
    while (!strstr(all, "previous-etag=\"") && now_ms() < end) {
        if (!peer_wait_notify(&p, notify, sizeof notify))
            break;
        strncat(all, body_of(notify), sizeof all - strlen(all) - 1);
    }
    CU_ASSERT_PTR_NULL(strstr(all, "elsewhere"));
    snprintf(expect, sizeof expect,
             "<document sel=\"resource-lists/users/sip:alice@example.com/later/doc\" "
             "new-etag=\"%s\"/>",
             e3);
    assert_contains(all, expect);
    snprintf(expect, sizeof expect,
             "<document sel=\"resource-lists/users/sip:alice@example.com/index\" "
             "previous-etag=\"%s\"/>",
             e2);
    assert_contains(all, expect);
    const char *created = strstr(all, "later/doc"), *deleted = strstr(all, "previous-etag");
    CU_ASSERT_TRUE(created && deleted && created < deleted);

    /* Unsubscribe: 200 and a final NOTIFY terminated;reason=timeout (RFC 6665 §4.1.1; RFC 5875
     * §4.8). */
    peer_subscribe(&p, ALICE, "Event: xcap-diff\r\nExpires: 0\r\n", NULL);
    CU_ASSERT_EQUAL(peer_wait_response(&p, notify, sizeof notify), 200);
    CU_ASSERT_TRUE(header(notify, "Subscription-State", value, sizeof value));
    CU_ASSERT_STRING_EQUAL(value, "terminated;reason=timeout");
    /* The dialog is gone afterwards. */
    struct timespec pause = {0, 200 * 1000 * 1000};
    nanosleep(&pause, NULL);
    peer_subscribe(&p, ALICE, "Event: xcap-diff\r\nExpires: 60\r\n", NULL);
    CU_ASSERT_EQUAL(peer_wait_response(&p, NULL, 0), 481);
    close(p.fd);

    /* Shutdown ends live subscriptions with reason=deactivated, within about a second. */
    peer_open(&p, notifier_port(n), "stopped");
    peer_subscribe(&p, ALICE, "Event: xcap-diff\r\n", LIST_ALICE);
    CU_ASSERT_EQUAL(peer_wait_response(&p, notify, sizeof notify), 200);
    CU_ASSERT_TRUE(header(notify, "Subscription-State", value, sizeof value));
    CU_ASSERT_TRUE(strncmp(value, "active;expires=3600", 19) == 0 ||
                   strncmp(value, "active;expires=3599", 19) == 0);
    int64_t t0 = now_ms();
    notifier_stop(n);
    CU_ASSERT_TRUE(now_ms() - t0 < 1500);
    CU_ASSERT_TRUE(peer_wait_notify(&p, notify, sizeof notify));
    CU_ASSERT_TRUE(header(notify, "Subscription-State", value, sizeof value));
    CU_ASSERT_STRING_EQUAL(value, "terminated;reason=deactivated");
    close(p.fd);

    store_close(st);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A notifier over an empty temporary store; dir receives the store path. */
static struct notifier *start_empty(char dir[32], struct store **st, unsigned min_expires)
{
    snprintf(dir, 32, "/tmp/xdm-notify-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    CU_ASSERT_EQUAL_FATAL(store_open(dir, NULL, st), STORE_OK);
    struct notifier_config cfg = {
        .host = "127.0.0.1",
        .xcap_root = ROOT,
        .role = ROLE_SHARED_LIST,
        .min_expires = min_expires,
        .trusted_peers = sip_proxy_peers,
    };
    struct notifier *n = NULL;
    CU_ASSERT_EQUAL_FATAL(notifier_start(&cfg, *st, &n), 0);
    return n;
}

static void stop_empty(struct notifier *n, char dir[32], struct store *st)
{
    notifier_stop(n);
    store_close(st);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Who may subscribe (RFC 3325 §5): only a configured SIP peer, and only with
 * P-Asserted-Identity; From never names the subscriber. Without sip_trusted_peer nobody. */
static void test_subscribe_trust(void)
{
    char dir[32];
    snprintf(dir, sizeof dir, "/tmp/xdm-notify-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    struct store *st;
    CU_ASSERT_EQUAL_FATAL(store_open(dir, NULL, &st), STORE_OK);
    struct notifier_config cfg = {.host = "127.0.0.1", .xcap_root = ROOT, .role = ROLE_SHARED_LIST};
    struct notifier *n = NULL;
    CU_ASSERT_EQUAL_FATAL(notifier_start(&cfg, st, &n), 0);
    struct peer p;
    char notify[65536];
    peer_open(&p, notifier_port(n), "nobody-trusted");
    peer_subscribe(&p, ALICE, "Event: xcap-diff\r\n", LIST_ALICE);
    CU_ASSERT_EQUAL(peer_wait_response(&p, NULL, 0), 403);
    close(p.fd);
    notifier_stop(n);

    static const char *const elsewhere[] = {"127.0.0.2", NULL};
    cfg.trusted_peers = elsewhere;
    CU_ASSERT_EQUAL_FATAL(notifier_start(&cfg, st, &n), 0);
    peer_open(&p, notifier_port(n), "untrusted");
    peer_subscribe(&p, ALICE, "Event: xcap-diff\r\n", LIST_ALICE);
    CU_ASSERT_EQUAL(peer_wait_response(&p, NULL, 0), 403);
    close(p.fd);
    notifier_stop(n);

    cfg.trusted_peers = sip_proxy_peers;
    CU_ASSERT_EQUAL_FATAL(notifier_start(&cfg, st, &n), 0);
    peer_open(&p, notifier_port(n), "no-pai");
    p.no_pai = true;
    peer_subscribe(&p, ALICE, "Event: xcap-diff\r\n", LIST_ALICE);
    CU_ASSERT_EQUAL(peer_wait_response(&p, NULL, 0), 403);
    close(p.fd);
    /* From names Bob, the proxy asserts Alice: Alice's documents are hers to watch. */
    peer_open(&p, notifier_port(n), "from-ignored");
    peer_subscribe(&p, "sip:bob@example.com",
                   "Event: xcap-diff\r\nP-Asserted-Identity: <" ALICE ">\r\n", LIST_ALICE);
    CU_ASSERT_EQUAL(peer_wait_response(&p, notify, sizeof notify), 200);
    /* in the dialog: a refresh asserting another user is refused, one asserting nobody is not */
    peer_subscribe(&p, "sip:bob@example.com",
                   "Event: xcap-diff\r\nP-Asserted-Identity: <sip:bob@example.com>\r\n", NULL);
    CU_ASSERT_EQUAL(peer_wait_response(&p, NULL, 0), 403);
    p.no_pai = true;
    peer_subscribe(&p, "sip:bob@example.com", "Event: xcap-diff\r\n", NULL);
    CU_ASSERT_EQUAL(peer_wait_response(&p, notify, sizeof notify), 200);
    close(p.fd);
    /* Bob asserted, watching Alice's documents: 403 as ever (RFC 5875 §4.5). */
    peer_open(&p, notifier_port(n), "bob");
    peer_subscribe(&p, ALICE, "Event: xcap-diff\r\nP-Asserted-Identity: <sip:bob@example.com>\r\n",
                   LIST_ALICE);
    CU_ASSERT_EQUAL(peer_wait_response(&p, NULL, 0), 403);
    close(p.fd);
    stop_empty(n, dir, st);
}

/* Expiry by timer ends the subscription with reason=timeout; a NOTIFY answered 481 removes it
 * (RFC 6665 §4.1.1, §4.2.2, §8.2.1; RFC 5875 §4.8). */
static void test_expiry_and_481(void)
{
    char dir[32];
    struct store *st;
    struct notifier *n = start_empty(dir, &st, 0);
    struct peer p;
    char notify[65536], value[256];

    peer_open(&p, notifier_port(n), "expiry");
    peer_subscribe(&p, ALICE, "Event: xcap-diff\r\nExpires: 1\r\n", LIST_ALICE);
    CU_ASSERT_EQUAL(peer_wait_response(&p, notify, sizeof notify), 200);
    CU_ASSERT_TRUE(header(notify, "Subscription-State", value, sizeof value));
    CU_ASSERT_TRUE(strncmp(value, "active;expires=", 15) == 0);
    /* An empty store: the initial state lists no document. */
    CU_ASSERT_PTR_NULL(strstr(body_of(notify), "<document"));
    CU_ASSERT_TRUE(peer_wait_notify_as(&p, notify, sizeof notify, 4000, 200));
    CU_ASSERT_TRUE(header(notify, "Subscription-State", value, sizeof value));
    CU_ASSERT_STRING_EQUAL(value, "terminated;reason=timeout");
    close(p.fd);

    peer_open(&p, notifier_port(n), "rejected");
    peer_subscribe(&p, ALICE, "Event: xcap-diff\r\nExpires: 60\r\n", LIST_ALICE);
    CU_ASSERT_EQUAL(peer_wait_response(&p, NULL, 0), 200);
    CU_ASSERT_TRUE(peer_wait_notify_as(&p, notify, sizeof notify, 3000, 481));
    struct timespec pause = {0, 200 * 1000 * 1000};
    nanosleep(&pause, NULL);
    peer_subscribe(&p, ALICE, "Event: xcap-diff\r\nExpires: 60\r\n", NULL);
    CU_ASSERT_EQUAL(peer_wait_response(&p, NULL, 0), 481);
    close(p.fd);
    stop_empty(n, dir, st);
}

/* Bounds: subscriptions per user (403), body size (413, over TCP), body type (415). */
static void test_bounds(void)
{
    char dir[32];
    struct store *st;
    struct notifier *n = start_empty(dir, &st, 0);
    struct peer p;
    peer_open(&p, notifier_port(n), "bounds");
    int ok = 0, refused = 0;
    char call_id[40];
    snprintf(call_id, sizeof call_id, "%.39s", p.call_id);
    for (int i = 0; i <= NOTIFY_MAX_SUBS_PER_USER; i++) {
        snprintf(p.call_id, sizeof p.call_id, "%s-%d", call_id, i);
        p.to_tag[0] = '\0';
        peer_subscribe(&p, ALICE, "Event: xcap-diff\r\n", LIST_ALICE);
        int status = peer_wait_response(&p, NULL, 0);
        ok += status == 200;
        refused += status == 403;
    }
    CU_ASSERT_EQUAL(ok, NOTIFY_MAX_SUBS_PER_USER);
    CU_ASSERT_EQUAL(refused, 1);
    /* Another user is not affected. */
    p.to_tag[0] = '\0';
    snprintf(p.call_id, sizeof p.call_id, "%s-bob", call_id);
    peer_subscribe(&p, "sip:bob@example.com", "Event: xcap-diff\r\n",
                   LISTS_OPEN
                   "<entry uri=\"resource-lists/users/sip:bob@example.com/\"/>" LISTS_CLOSE);
    CU_ASSERT_EQUAL(peer_wait_response(&p, NULL, 0), 200);
    p.to_tag[0] = '\0';
    snprintf(p.call_id, sizeof p.call_id, "%s-type", call_id);
    char msg[1024];
    p.cseq++;
    snprintf(msg, sizeof msg,
             "SUBSCRIBE sip:bob@example.com SIP/2.0\r\n"
             "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bK-type;rport\r\n"
             "From: <sip:bob@example.com>;tag=x\r\nTo: <sip:bob@example.com>\r\n"
             "P-Asserted-Identity: <sip:bob@example.com>\r\n"
             "Call-ID: %s\r\nCSeq: %u SUBSCRIBE\r\nContact: <sip:w@127.0.0.1:%u>\r\n"
             "Event: xcap-diff\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
             p.port, p.call_id, p.cseq, p.port);
    peer_send(&p, msg);
    CU_ASSERT_EQUAL(peer_wait_response(&p, NULL, 0), 415);

    /* A body over NOTIFY_MAX_BODY cannot travel over UDP; send it over TCP. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CU_ASSERT_FATAL(fd >= 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(notifier_port(n))};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    CU_ASSERT_EQUAL_FATAL(connect(fd, (struct sockaddr *)&to, sizeof to), 0);
    size_t blen = NOTIFY_MAX_BODY + 100;
    char *big = malloc(blen + 2048);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    int hl = snprintf(big, 2048,
                      "SUBSCRIBE sip:bob@example.com SIP/2.0\r\n"
                      "Via: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK-big\r\n"
                      "From: <sip:bob@example.com>;tag=x\r\nTo: <sip:bob@example.com>\r\n"
                      "P-Asserted-Identity: <sip:bob@example.com>\r\n"
                      "Call-ID: big-%ld\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:w@127.0.0.1:1>\r\n"
                      "Event: xcap-diff\r\nContent-Type: application/resource-lists+xml\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      (long)now_ms(), blen);
    memset(big + hl, ' ', blen);
    size_t total = (size_t)hl + blen, sent = 0;
    while (sent < total) {
        ssize_t w = send(fd, big + sent, total - sent, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        sent += (size_t)w;
    }
    free(big);
    char resp[4096] = "";
    size_t got = 0;
    int64_t end = now_ms() + 3000;
    while (!strstr(resp, "\r\n\r\n") && got < sizeof resp - 1 && now_ms() < end) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)(end - now_ms())) <= 0)
            break;
        ssize_t r = recv(fd, resp + got, sizeof resp - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
        resp[got] = '\0';
    }
    CU_ASSERT_TRUE(strncmp(resp, "SIP/2.0 413 ", 12) == 0);
    close(fd);
    /* The peer stays open during the stop so the final NOTIFYs have somewhere to go. */
    stop_empty(n, dir, st);
    close(p.fd);
}

/* ---------------------------------------------------------------------------------------- */
/* Modes, element watches, hold-off, restarts: the real engine writes the change log            */

#define IDX "/resource-lists/users/sip:alice@example.com/index"
#define IDX_SEL "resource-lists/users/sip:alice@example.com/index"
#define DOC_A                                                                                      \
    "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list name=\"f\">"            \
    "<entry uri=\"sip:b@x\"/></list><list name=\"g\"><entry uri=\"sip:d@x\"/></list>"              \
    "</resource-lists>"

struct efx {
    char dir[32];
    struct store *st;
    struct engine *e;
    struct notifier *n;
    struct notifier_config cfg;
};

static void efx_start(struct efx *f)
{
    CU_ASSERT_EQUAL_FATAL(notifier_start(&f->cfg, f->st, &f->n), 0);
    f->cfg.port = notifier_port(f->n); /* a restart comes back on the same port */
}

static void efx_stop(struct efx *f)
{
    notifier_stop(f->n);
    f->n = NULL;
}

static void efx_open(struct efx *f, unsigned min_interval_ms)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/xdm-notify-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(f->dir));
    struct store_options so = {.tables = notify_store_tables()};
    CU_ASSERT_EQUAL_FATAL(store_open(f->dir, &so, &f->st), STORE_OK);
    struct engine_config ec = {.role = ROLE_SHARED_LIST, .xcap_root = ROOT};
    f->e = engine_new(f->st, &ec);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f->e);
    static const char *const servers[] = {"sip:ps@example.com", NULL};
    f->cfg = (struct notifier_config){
        .host = "127.0.0.1",
        .xcap_root = ROOT,
        .role = ROLE_SHARED_LIST,
        .server_identities = servers,
        .min_interval_ms = min_interval_ms,
        .trusted_peers = sip_proxy_peers,
    };
    efx_start(f);
}

static void efx_close(struct efx *f)
{
    efx_stop(f);
    engine_free(f->e);
    store_close(f->st);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* One request through the engine, as the HTTP server would run it, then the wake-up. path is
 * below the root and already percent-encoded. Returns the status; etag gets the new ETag. */
static enum xcap_status efx_req(struct efx *f, enum engine_method m, const char *path,
                                const char *query, const char *ctype, const char *body,
                                char etag[STORE_ETAG_MAX])
{
    struct xcap_uri u;
    struct xcap_err err = {0};
    enum xcap_status st = xcap_uri_parse("", path, query, &u, &err);
    CU_ASSERT_EQUAL_FATAL(st, XCAP_OK);
    struct engine_request req = {
        .method = m,
        .uri = &u,
        .au = appusage_find(ROLE_SHARED_LIST, u.auid),
        .content_type = ctype,
        .body = body,
        .body_len = body ? strlen(body) : 0,
    };
    struct engine_reply rep;
    buf_init(&rep.body, 1 << 20);
    st = engine_execute(f->e, &req, &rep, &err);
    if (etag)
        snprintf(etag, STORE_ETAG_MAX, "%s", rep.etag);
    buf_release(&rep.body);
    xcap_err_release(&err);
    xcap_uri_release(&u);
    notifier_wake(f->n);
    return st;
}

static void efx_put_doc(struct efx *f, const char *body, char etag[STORE_ETAG_MAX])
{
    enum xcap_status st =
        efx_req(f, ENGINE_PUT, IDX, NULL, "application/resource-lists+xml", body, etag);
    CU_ASSERT(st == XCAP_OK || st == XCAP_CREATED);
}

static void efx_put_el(struct efx *f, const char *sel, const char *body, char etag[STORE_ETAG_MAX])
{
    char path[1024];
    snprintf(path, sizeof path, IDX "/~~/%s", sel);
    enum xcap_status st = efx_req(f, ENGINE_PUT, path, NULL, "application/xcap-el+xml", body, etag);
    CU_ASSERT(st == XCAP_OK || st == XCAP_CREATED);
}

static void efx_del_el(struct efx *f, const char *sel, char etag[STORE_ETAG_MAX])
{
    char path[1024];
    snprintf(path, sizeof path, IDX "/~~/%s", sel);
    CU_ASSERT_EQUAL(efx_req(f, ENGINE_DELETE, path, NULL, NULL, NULL, etag), XCAP_OK);
}

static void efx_put_att(struct efx *f, const char *sel, const char *value,
                        char etag[STORE_ETAG_MAX])
{
    char path[1024];
    snprintf(path, sizeof path, IDX "/~~/%s", sel);
    enum xcap_status st =
        efx_req(f, ENGINE_PUT, path, NULL, "application/xcap-att+xml", value, etag);
    if (st != XCAP_OK && st != XCAP_CREATED)
        fprintf(stderr, "\n  PUT %s: %s\n", path, status_name(st));
    CU_ASSERT(st == XCAP_OK || st == XCAP_CREATED);
}

static unsigned long notify_cseq(const char *notify)
{
    char v[64];
    return header(notify, "CSeq", v, sizeof v) ? strtoul(v, NULL, 10) : 0;
}

/* Subscribes p with an Event parameter (may be "") to one entry; returns the initial NOTIFY. */
static void efx_subscribe(struct efx *f, struct peer *p, const char *name, const char *who,
                          const char *param, const char *entry, char *notify, size_t max)
{
    peer_open(p, notifier_port(f->n), name);
    char extra[256], body[2048];
    snprintf(extra, sizeof extra, "Event: xcap-diff%s%s\r\nExpires: 600\r\n", param[0] ? ";" : "",
             param);
    snprintf(body, sizeof body, LISTS_OPEN "<entry uri=\"%s\"/>" LISTS_CLOSE, entry);
    peer_subscribe(p, who, extra, body);
    CU_ASSERT_EQUAL_FATAL(peer_wait_response(p, notify, max), 200);
}

/* No NOTIFY within ms. */
static void peer_quiet(struct peer *p, int ms)
{
    char notify[65536];
    bool got = peer_wait_notify_as(p, notify, sizeof notify, ms, 200);
    if (got)
        fprintf(stderr, "\n--- unexpected NOTIFY\n%s\n", notify);
    CU_ASSERT_FALSE(got);
}

/* The three diff-processing modes on the same edits (RFC 5875 §4.1, §4.6): ETags only; every change
 * with its operations, chained; merged operations, or <body-not-changed/>. */
static void test_modes(void)
{
    struct efx f;
    efx_open(&f, 0);
    char e1[STORE_ETAG_MAX], e2[STORE_ETAG_MAX], e3[STORE_ETAG_MAX], e4[STORE_ETAG_MAX];
    efx_put_doc(&f, DOC_A, e1);
    struct peer np, xp, ap;
    char notify[65536], expect[1024];
    efx_subscribe(&f, &np, "none", ALICE, "", IDX_SEL, notify, sizeof notify);
    efx_subscribe(&f, &xp, "patch", ALICE, "diff-processing=xcap-patching", IDX_SEL, notify,
                  sizeof notify);
    snprintf(expect, sizeof expect, "<document sel=\"" IDX_SEL "\" new-etag=\"%s\"/>", e1);
    assert_contains(body_of(notify), expect);
    efx_subscribe(&f, &ap, "aggr", ALICE, "diff-processing=aggregate", IDX_SEL, notify,
                  sizeof notify);

    /* An element insertion. */
    efx_put_el(&f, "resource-lists/list%5B@name=%22g%22%5D/entry%5B@uri=%22sip:c@x%22%5D",
               "<entry uri=\"sip:c@x\"/>", e2);
    CU_ASSERT_TRUE_FATAL(peer_wait_notify(&np, notify, sizeof notify));
    snprintf(expect, sizeof expect,
             "<document sel=\"" IDX_SEL "\" previous-etag=\"%s\" new-etag=\"%s\"/>", e1, e2);
    assert_contains(body_of(notify), expect);
    CU_ASSERT_TRUE_FATAL(peer_wait_notify(&xp, notify, sizeof notify));
    snprintf(expect, sizeof expect,
             "<document sel=\"" IDX_SEL "\" previous-etag=\"%s\" new-etag=\"%s\">\n"
             "    <add sel=\"/*/*[2]/*[1]\" pos=\"after\"><entry "
             "xmlns=\"urn:ietf:params:xml:ns:resource-lists\" uri=\"sip:c@x\"/></add>\n"
             "  </document>",
             e1, e2);
    assert_contains(body_of(notify), expect);
    CU_ASSERT_TRUE_FATAL(peer_wait_notify(&ap, notify, sizeof notify));
    assert_contains(body_of(notify), expect);

    /* An attribute change, then a whole-document write with the same prolog: a replace of the
     * document element (the notifier learned the prolog from the initial state). */
    efx_put_att(&f, "resource-lists/list%5B@name=%22f%22%5D/@k", "h &amp; i", e3);
    CU_ASSERT_TRUE_FATAL(peer_wait_notify(&xp, notify, sizeof notify));
    assert_contains(body_of(notify), "<add sel=\"/*/*[1]\" type=\"@k\">h &amp; i</add>");
    efx_put_doc(&f, "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/>", e4);
    CU_ASSERT_TRUE_FATAL(peer_wait_notify(&xp, notify, sizeof notify));
    snprintf(expect, sizeof expect,
             "previous-etag=\"%s\" new-etag=\"%s\">\n    <replace sel=\"/*\"><resource-lists "
             "xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/></replace>",
             e3, e4);
    assert_contains(body_of(notify), expect);
    for (int i = 0; i < 2; i++)
        CU_ASSERT_TRUE(peer_wait_notify(&np, notify, sizeof notify));
    CU_ASSERT_PTR_NULL(strstr(body_of(notify), "<replace"));
    for (int i = 0; i < 2; i++)
        CU_ASSERT_TRUE(peer_wait_notify(&ap, notify, sizeof notify));
    close(np.fd);
    close(xp.fd);
    close(ap.fd);
    efx_close(&f);
}

/* RFC 5875 §4.7: with a minimum interval, changes made during the hold-off travel together, the
 * xcap-patching ETag chain unbroken; aggregate merges them and reports an insertion undone
 * within the batch as <body-not-changed/>. */
static void test_hold_off(void)
{
    struct efx f;
    efx_open(&f, 400);
    char e[6][STORE_ETAG_MAX];
    efx_put_doc(&f, DOC_A, e[0]);
    struct peer xp, ap;
    char notify[65536], expect[1024];
    efx_subscribe(&f, &xp, "hold-x", ALICE, "diff-processing=xcap-patching", IDX_SEL, notify,
                  sizeof notify);
    efx_subscribe(&f, &ap, "hold-a", ALICE, "diff-processing=aggregate", IDX_SEL, notify,
                  sizeof notify);
    int64_t t0 = now_ms();
    efx_put_att(&f, "resource-lists/list%5B@name=%22f%22%5D/@k", "one", e[1]);
    CU_ASSERT_TRUE_FATAL(peer_wait_notify(&xp, notify, sizeof notify));
    unsigned long c1 = notify_cseq(notify);
    CU_ASSERT_TRUE_FATAL(peer_wait_notify(&ap, notify, sizeof notify));
    /* Within the hold-off: an insertion, its removal, an attribute. */
    efx_put_el(&f, "resource-lists/list%5B@name=%22g%22%5D/entry%5B@uri=%22sip:z@x%22%5D",
               "<entry uri=\"sip:z@x\"/>", e[2]);
    efx_del_el(&f, "resource-lists/list%5B@name=%22g%22%5D/entry%5B@uri=%22sip:z@x%22%5D", e[3]);
    efx_put_att(&f, "resource-lists/list%5B@name=%22f%22%5D/@k", "two", e[4]);
    CU_ASSERT_TRUE_FATAL(peer_wait_notify(&xp, notify, sizeof notify));
    CU_ASSERT_TRUE(now_ms() - t0 >= 390);
    CU_ASSERT_TRUE(notify_cseq(notify) > c1);
    for (int i = 1; i <= 3; i++) {
        snprintf(expect, sizeof expect, "previous-etag=\"%s\" new-etag=\"%s\">", e[i], e[i + 1]);
        assert_contains(body_of(notify), expect);
    }
    const char *a = strstr(body_of(notify), e[2]), *b = strstr(body_of(notify), e[4]);
    CU_ASSERT_TRUE(a && b && a < b); /* commit order */
    CU_ASSERT_TRUE_FATAL(peer_wait_notify(&ap, notify, sizeof notify));
    snprintf(expect, sizeof expect, "previous-etag=\"%s\" new-etag=\"%s\">", e[1], e[4]);
    assert_contains(body_of(notify), expect);
    assert_contains(body_of(notify), "<replace sel=\"/*/*[1]/@k\">two</replace>");
    CU_ASSERT_PTR_NULL(strstr(body_of(notify), "<add"));
    /* Add and remove only: nothing changed in the content. */
    efx_put_el(&f, "resource-lists/list%5B@name=%22g%22%5D/entry%5B@uri=%22sip:y@x%22%5D",
               "<entry uri=\"sip:y@x\"/>", e[2]);
    efx_del_el(&f, "resource-lists/list%5B@name=%22g%22%5D/entry%5B@uri=%22sip:y@x%22%5D", e[5]);
    CU_ASSERT_TRUE_FATAL(peer_wait_notify(&ap, notify, sizeof notify));
    snprintf(expect, sizeof expect,
             "previous-etag=\"%s\" new-etag=\"%s\">\n    <body-not-changed/>", e[4], e[5]);
    assert_contains(body_of(notify), expect);
    CU_ASSERT_TRUE(peer_wait_notify(&xp, notify, sizeof notify));
    close(xp.fd);
    close(ap.fd);
    efx_close(&f);
}

/* Element and attribute watches (RFC 5874 §4; RFC 5875 §4.6): full content, a report only when that
 * content changed, exists="0" when it is gone. */
static void test_node_watches(void)
{
    struct efx f;
    efx_open(&f, 0);
    char e1[STORE_ETAG_MAX];
    efx_put_doc(&f, DOC_A, e1);
    struct peer p;
    char notify[65536];
    const char *el = IDX_SEL "/~~/resource-lists/list%5B@name=%22f%22%5D";
    efx_subscribe(&f, &p, "element", ALICE, "diff-processing=xcap-patching", el, notify,
                  sizeof notify);
    assert_contains(body_of(notify),
                    "<element sel=\"" IDX_SEL "/~~/resource-lists/list%5B@name=%22f%22%5D\">"
                    "<list xmlns=\"urn:ietf:params:xml:ns:resource-lists\" name=\"f\">"
                    "<entry uri=\"sip:b@x\"/></list></element>");
    CU_ASSERT_PTR_NULL(strstr(body_of(notify), "<document"));
    /* Another part of the document: no NOTIFY. */
    efx_put_el(&f, "resource-lists/list%5B@name=%22g%22%5D/entry", "<entry uri=\"sip:q@x\"/>", e1);
    peer_quiet(&p, 500);
    efx_put_el(&f, "resource-lists/list%5B@name=%22f%22%5D/entry%5B@uri=%22sip:c@x%22%5D",
               "<entry uri=\"sip:c@x\"/>", e1);
    CU_ASSERT_TRUE_FATAL(peer_wait_notify(&p, notify, sizeof notify));
    assert_contains(body_of(notify), "<entry uri=\"sip:b@x\"/><entry uri=\"sip:c@x\"/></list>");
    efx_del_el(&f, "resource-lists/list%5B@name=%22f%22%5D", e1);
    CU_ASSERT_TRUE_FATAL(peer_wait_notify(&p, notify, sizeof notify));
    assert_contains(body_of(notify), "/~~/resource-lists/list%5B@name=%22f%22%5D\" exists=\"0\"/>");
    close(p.fd);

    /* An attribute, its prefix bound by the entry's query. */
    efx_subscribe(&f, &p, "attribute", ALICE, "",
                  IDX_SEL "/~~/r:resource-lists/r:list/@name?xmlns(r=urn:ietf:params:xml:ns:"
                          "resource-lists)",
                  notify, sizeof notify);
    assert_contains(body_of(notify),
                    "<attribute sel=\"" IDX_SEL "/~~/r:resource-lists/r:list/@name\" "
                    "xmlns:r=\"urn:ietf:params:xml:ns:resource-lists\">g"
                    "</attribute>");
    efx_put_att(&f, "resource-lists/list/@name", "a&lt;b", e1);
    CU_ASSERT_TRUE_FATAL(peer_wait_notify(&p, notify, sizeof notify));
    assert_contains(body_of(notify), ">a&lt;b</attribute>");
    close(p.fd);
    efx_close(&f);
}

/* RFC 6665 refreshes (RFC 6665 §4.1.1; RFC 5875 §4.8): without a body the same set and a NOTIFY
 * with its state; with a body the new set's full state. */
static void test_refresh(void)
{
    struct efx f;
    efx_open(&f, 0);
    char e1[STORE_ETAG_MAX];
    efx_put_doc(&f, DOC_A, e1);
    struct peer p;
    char notify[65536], expect[512];
    efx_subscribe(&f, &p, "refresh", ALICE, "", IDX_SEL, notify, sizeof notify);
    peer_subscribe(&p, ALICE, "Event: xcap-diff\r\nExpires: 900\r\n", NULL);
    CU_ASSERT_EQUAL(peer_wait_response(&p, notify, sizeof notify), 200);
    snprintf(expect, sizeof expect, "<document sel=\"" IDX_SEL "\" new-etag=\"%s\"/>", e1);
    assert_contains(body_of(notify), expect);
    char v[128];
    CU_ASSERT_TRUE(header(notify, "Subscription-State", v, sizeof v));
    /* The remaining time of the 900 s granted, a few seconds less on a loaded machine. */
    unsigned left = 0;
    CU_ASSERT_EQUAL(sscanf(v, "active;expires=%u", &left), 1);
    CU_ASSERT_TRUE(left > 860 && left <= 900);
    peer_subscribe(&p, ALICE, "Event: xcap-diff\r\nExpires: 900\r\n",
                   LISTS_OPEN "<entry uri=\"" IDX_SEL
                              "/~~/resource-lists/list[2]/@name\"/>" LISTS_CLOSE);
    CU_ASSERT_EQUAL(peer_wait_response(&p, notify, sizeof notify), 200);
    CU_ASSERT_PTR_NULL(strstr(body_of(notify), "<document"));
    assert_contains(body_of(notify), ">g</attribute>");
    /* A body this user may not watch is refused and the subscription keeps its set. */
    peer_subscribe(&p, ALICE, "Event: xcap-diff\r\n",
                   LISTS_OPEN
                   "<entry uri=\"resource-lists/users/sip:bob@example.com/index\"/>" LISTS_CLOSE);
    CU_ASSERT_EQUAL(peer_wait_response(&p, NULL, 0), 403);
    efx_put_att(&f, "resource-lists/list%5B2%5D/@name", "k", e1);
    CU_ASSERT_TRUE_FATAL(peer_wait_notify(&p, notify, sizeof notify));
    assert_contains(body_of(notify), ">k</attribute>");
    close(p.fd);
    efx_close(&f);
}

/* A trusted server watches every user's documents of an AUID ("resource-lists/users/"); a
 * user may not. */
static void test_all_users(void)
{
    struct efx f;
    efx_open(&f, 0);
    struct peer p;
    char notify[65536];
    peer_open(&p, notifier_port(f.n), "all-denied");
    peer_subscribe(&p, ALICE, "Event: xcap-diff\r\n",
                   LISTS_OPEN "<entry uri=\"resource-lists/users/\"/>" LISTS_CLOSE);
    CU_ASSERT_EQUAL(peer_wait_response(&p, NULL, 0), 403);
    close(p.fd);
    efx_subscribe(&f, &p, "all", "sip:ps@example.com", "", "resource-lists/users/", notify,
                  sizeof notify);
    char e1[STORE_ETAG_MAX];
    CU_ASSERT_EQUAL(efx_req(&f, ENGINE_PUT, "/resource-lists/users/sip:zed@example.com/zdoc", NULL,
                            "application/resource-lists+xml", DOC_A, e1),
                    XCAP_CREATED);
    CU_ASSERT_TRUE_FATAL(peer_wait_notify(&p, notify, sizeof notify));
    assert_contains(body_of(notify),
                    "<document sel=\"resource-lists/users/sip:zed@example.com/zdoc\" new-etag");
    close(p.fd);
    efx_close(&f);
}

/* Subscriptions survive a restart of the notifier (RFC 5875 §4.6): no final NOTIFY at the stop, the
 * change committed while it was down arrives afterwards in the same dialog with the right
 * previous ETag and a higher CSeq, in-dialog requests still find the dialog, and an ended
 * subscription is not restored. */
static void test_restart(void)
{
    struct efx f;
    efx_open(&f, 0);
    char e1[STORE_ETAG_MAX], e2[STORE_ETAG_MAX], e3[STORE_ETAG_MAX], e4[STORE_ETAG_MAX];
    efx_put_doc(&f, DOC_A, e1);
    struct peer p;
    char notify[65536], expect[1024], v[256];
    efx_subscribe(&f, &p, "restart", ALICE, "diff-processing=xcap-patching", IDX_SEL, notify,
                  sizeof notify);
    char call_id[256], from[512];
    CU_ASSERT_TRUE(header(notify, "Call-ID", call_id, sizeof call_id));
    CU_ASSERT_TRUE(header(notify, "From", from, sizeof from));
    efx_put_att(&f, "resource-lists/list%5B@name=%22f%22%5D/@k", "one", e2);
    CU_ASSERT_TRUE_FATAL(peer_wait_notify(&p, notify, sizeof notify));
    unsigned long c1 = notify_cseq(notify);

    efx_stop(&f);
    peer_quiet(&p, 300); /* the subscription is kept, not terminated */
    efx_put_att(&f, "resource-lists/list%5B@name=%22f%22%5D/@k", "two", e3);
    efx_start(&f);
    CU_ASSERT_TRUE_FATAL(peer_wait_notify(&p, notify, sizeof notify));
    snprintf(expect, sizeof expect,
             "previous-etag=\"%s\" new-etag=\"%s\">\n    <replace sel=\"/*/*[1]/@k\">two"
             "</replace>",
             e2, e3);
    assert_contains(body_of(notify), expect);
    CU_ASSERT_TRUE(notify_cseq(notify) > c1);
    CU_ASSERT_TRUE(header(notify, "Call-ID", v, sizeof v));
    CU_ASSERT_STRING_EQUAL(v, call_id);
    CU_ASSERT_TRUE(header(notify, "From", v, sizeof v));
    CU_ASSERT_STRING_EQUAL(v, from);
    CU_ASSERT_TRUE(header(notify, "Subscription-State", v, sizeof v));
    CU_ASSERT_TRUE(strncmp(v, "active;expires=", 15) == 0 && atoi(v + 15) > 500);
    /* The dialog is known: a refresh is answered 200, not 481. */
    peer_subscribe(&p, ALICE, "Event: xcap-diff\r\nExpires: 600\r\n", NULL);
    CU_ASSERT_EQUAL(peer_wait_response(&p, notify, sizeof notify), 200);
    /* Unsubscribe, restart: nothing is restored and nothing arrives. */
    peer_subscribe(&p, ALICE, "Event: xcap-diff\r\nExpires: 0\r\n", NULL);
    CU_ASSERT_EQUAL(peer_wait_response(&p, notify, sizeof notify), 200);
    CU_ASSERT_TRUE(header(notify, "Subscription-State", v, sizeof v));
    CU_ASSERT_STRING_EQUAL(v, "terminated;reason=timeout");
    struct timespec pause = {0, 200 * 1000 * 1000};
    nanosleep(&pause, NULL);
    efx_stop(&f);
    efx_start(&f);
    efx_put_att(&f, "resource-lists/list%5B@name=%22f%22%5D/@k", "three", e4);
    peer_quiet(&p, 500);
    close(p.fd);
    efx_close(&f);
}

/* The fixture of the two-instance tests: two notifiers of one role in cluster mode
 * (notify_cluster.c), instances a and b, over one store whose document ALICE/index starts as an
 * empty list (its ETag in e[0]), and a SIP peer subscribed at b. On LMDB both notifiers share one
 * handle (one environment per process); on PostgreSQL (pg set) b gets a handle of its own when
 * own_handles, as a second process would. */
struct pair {
    char dir[32];
    struct store *sa, *sb; /* sb: b's own handle, or NULL when it shares sa */
    struct notifier *na, *nb;
    struct doc_key index;
    char e[4][STORE_ETAG_MAX];
    struct peer p;
    char notify[65536];
};

/* cfg: the cluster settings of the test (lease, Contact); the rest is filled in here. */
static void pair_open(struct pair *f, const char *pg, bool own_handles, struct notifier_config cfg,
                      const char *a, const char *b)
{
    memset(f, 0, sizeof *f);
    f->p.fd = -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/xdm-notify-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(f->dir));
    struct store_options so = {.tables = notify_store_tables()};
    if (pg) {
        so.backend = STORE_BACKEND_POSTGRESQL;
        so.pg_conninfo = pg;
    }
    CU_ASSERT_EQUAL_FATAL(store_open(f->dir, &so, &f->sa), STORE_OK);
    if (pg && own_handles)
        CU_ASSERT_EQUAL_FATAL(store_open(f->dir, &so, &f->sb), STORE_OK);
    f->index = (struct doc_key){"resource-lists", "users", ALICE, "index"};
    commit_change(f->sa, &f->index,
                  "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/>", "", f->e[0]);
    cfg.host = "127.0.0.1";
    cfg.xcap_root = ROOT;
    cfg.role = ROLE_SHARED_LIST;
    cfg.trusted_peers = sip_proxy_peers;
    cfg.cluster = true;
    cfg.poll_ms = 20;
    cfg.instance = a;
    CU_ASSERT_EQUAL_FATAL(notifier_start(&cfg, f->sa, &f->na), 0);
    cfg.instance = b;
    CU_ASSERT_EQUAL_FATAL(notifier_start(&cfg, f->sb ? f->sb : f->sa, &f->nb), 0);
}

/* The peer subscribes to ALICE's list at b (extra: the Event header and more); returns the CSeq of
 * the first NOTIFY, whose 200 is in f->notify. */
static unsigned long pair_subscribe(struct pair *f, const char *call_id, const char *extra)
{
    peer_open(&f->p, notifier_port(f->nb), call_id);
    peer_subscribe(&f->p, ALICE, extra, LIST_ALICE);
    CU_ASSERT_EQUAL_FATAL(peer_wait_response(&f->p, f->notify, sizeof f->notify), 200);
    return notify_cseq(f->notify);
}

/* Stops b as a stopping process does (its lease marked expired); a stays. */
static void pair_stop_b(struct pair *f)
{
    notifier_stop(f->nb);
    f->nb = NULL;
}

static void pair_close(struct pair *f)
{
    if (f->p.fd >= 0)
        close(f->p.fd);
    if (f->nb)
        notifier_stop(f->nb);
    notifier_stop(f->na);
    store_close(f->sa);
    if (f->sb)
        store_close(f->sb);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A change committed by another writer (no notifier_wake()) reaches b's subscriber within a
 * poll period (LMDB) or through the store's wake-up descriptor (PostgreSQL), with the shared
 * Contact; when b stops, a takes the dialog over and goes on with a higher CSeq and the ETag
 * chain unbroken. With XDM_TEST_PG_CONNINFO set the test runs again on PostgreSQL, each notifier
 * on its own handle, in a schema of its own. */
static void cluster_run(const char *pg)
{
    struct pair f;
    pair_open(&f, pg, true,
              (struct notifier_config){.lease_s = 2, .contact = "sip:lb.example.com:5099"}, "a",
              "b");
    CU_ASSERT_STRING_EQUAL(notifier_instance(f.na), "a");
    char *notify = f.notify, v[512], expect[512];
    char(*e)[STORE_ETAG_MAX] = f.e;
    unsigned long c0 =
        pair_subscribe(&f, "cluster", "Event: xcap-diff;diff-processing=xcap-patching\r\n");
    CU_ASSERT_TRUE(header(notify, "Contact", v, sizeof v));
    CU_ASSERT_STRING_EQUAL(v, "<sip:lb.example.com:5099>");

    /* A commit that wakes nobody: b finds it in the change log. */
    int64_t t0 = now_ms();
    commit_change(f.sa, &f.index,
                  "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">"
                  "<list/></resource-lists>",
                  e[0], e[1]);
    CU_ASSERT_TRUE_FATAL(peer_wait_notify(&f.p, notify, sizeof f.notify));
    int64_t took = now_ms() - t0;
    CU_ASSERT_TRUE(took < 500);
    if (took >= 500 || getenv("XDM_TEST_VERBOSE"))
        fprintf(stderr, "\ncross-instance NOTIFY after %lld ms (%s)\n", (long long)took,
                pg ? "PostgreSQL" : "LMDB");
    snprintf(expect, sizeof expect, "previous-etag=\"%s\" new-etag=\"%s\"", e[0], e[1]);
    assert_contains(body_of(notify), expect);
    snprintf(expect, sizeof expect, "127.0.0.1:%u", (unsigned)notifier_port(f.nb));
    CU_ASSERT_TRUE(header(notify, "Via", v, sizeof v));
    assert_contains(v, expect);
    unsigned long c1 = notify_cseq(notify);
    CU_ASSERT_TRUE(c1 > c0);

    /* b stops (its lease marked expired): a takes the dialog over at its next heartbeat. */
    peer_quiet(&f.p, 100);
    pair_stop_b(&f);
    commit_change(f.sa, &f.index,
                  "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">"
                  "<list name=\"x\"/></resource-lists>",
                  e[1], e[2]);
    f.p.notifier = notifier_port(f.na); /* where our answers go: a sends from now on */
    CU_ASSERT_TRUE_FATAL(peer_wait_notify_as(&f.p, notify, sizeof f.notify, 4000, 200));
    snprintf(expect, sizeof expect, "previous-etag=\"%s\" new-etag=\"%s\"", e[1], e[2]);
    assert_contains(body_of(notify), expect);
    snprintf(expect, sizeof expect, "127.0.0.1:%u", (unsigned)notifier_port(f.na));
    CU_ASSERT_TRUE(header(notify, "Via", v, sizeof v));
    assert_contains(v, expect);
    CU_ASSERT_TRUE(notify_cseq(notify) > c1);
    CU_ASSERT_TRUE(header(notify, "Contact", v, sizeof v));
    CU_ASSERT_STRING_EQUAL(v, "<sip:lb.example.com:5099>");
    /* The dialog lives on at a: the un-SUBSCRIBE is answered there. */
    peer_subscribe(&f.p, ALICE, "Event: xcap-diff\r\nExpires: 0\r\n", NULL);
    CU_ASSERT_EQUAL(peer_wait_response(&f.p, notify, sizeof f.notify), 200);
    CU_ASSERT_TRUE(header(notify, "Subscription-State", v, sizeof v));
    CU_ASSERT_STRING_EQUAL(v, "terminated;reason=timeout");
    pair_close(&f);
}

/* An in-dialog SUBSCRIBE that the balancer sends to an instance not holding the dialog: 503 with
 * Retry-After while the owner's lease stands (RFC 6665 §4.1.2.2: the subscription stays valid),
 * and, once it expired, taken over there on the spot and answered 200, the dialog going on from
 * that instance. The lease is long, so that only the request can cause the takeover; both
 * notifiers share one handle. */
static void claim_run(const char *pg)
{
    struct pair f;
    pair_open(&f, pg, false, (struct notifier_config){.lease_s = 60}, "claim-a", "claim-b");
    char *notify = f.notify, expect[512], v[512];
    char(*e)[STORE_ETAG_MAX] = f.e;
    unsigned long c0 = pair_subscribe(&f, "claim", "Event: xcap-diff\r\n");
    /* Owner alive: 503, and nothing moves. */
    f.p.notifier = notifier_port(f.na);
    peer_subscribe(&f.p, ALICE, "Event: xcap-diff\r\nExpires: 600\r\n", NULL);
    CU_ASSERT_EQUAL(peer_wait_response(&f.p, NULL, 0), 503);
    f.p.notifier = notifier_port(f.nb);
    peer_quiet(&f.p, 100);
    pair_stop_b(&f); /* its lease marked expired; a waits a lease period before looking */
    commit_change(f.sa, &f.index,
                  "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">"
                  "<list/></resource-lists>",
                  e[0], e[1]);
    f.p.notifier = notifier_port(f.na);
    peer_quiet(&f.p, 300); /* nobody reports it yet */
    peer_subscribe(&f.p, ALICE, "Event: xcap-diff\r\nExpires: 600\r\n", NULL);
    CU_ASSERT_EQUAL(peer_wait_response(&f.p, notify, sizeof f.notify), 200);
    /* The refresh's NOTIFY carries what was queued: the change made while nobody served. */
    snprintf(expect, sizeof expect, "previous-etag=\"%s\" new-etag=\"%s\"", e[0], e[1]);
    assert_contains(body_of(notify), expect);
    CU_ASSERT_TRUE(notify_cseq(notify) > c0);
    snprintf(expect, sizeof expect, "127.0.0.1:%u", (unsigned)notifier_port(f.na));
    CU_ASSERT_TRUE(header(notify, "Via", v, sizeof v));
    assert_contains(v, expect);
    peer_subscribe(&f.p, ALICE, "Event: xcap-diff\r\nExpires: 0\r\n", NULL);
    CU_ASSERT_EQUAL(peer_wait_response(&f.p, notify, sizeof f.notify), 200);
    pair_close(&f);
}

/* Runs one SQL command on the database of XDM_TEST_PG_CONNINFO; returns 0 on success. */
static int pg_admin(const char *sql)
{
    PGconn *c = PQconnectdb(getenv("XDM_TEST_PG_CONNINFO"));
    int rc = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        PQclear(PQexec(c, "SET client_min_messages = warning"));
        PGresult *r = PQexec(c, sql);
        rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
        if (rc != 0)
            fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
        PQclear(r);
    }
    PQfinish(c);
    return rc;
}

static void test_cluster(void)
{
    cluster_run(NULL);
    claim_run(NULL);
    const char *pg = getenv("XDM_TEST_PG_CONNINFO");
    if (!pg || !pg[0])
        return;
    char sql[128], conninfo[1024];
    snprintf(sql, sizeof sql, "CREATE SCHEMA xdm_test_notify_%d", (int)getpid());
    CU_ASSERT_EQUAL_FATAL(pg_admin(sql), 0);
    snprintf(conninfo, sizeof conninfo, "%s options='-csearch_path=xdm_test_notify_%d'", pg,
             (int)getpid());
    cluster_run(conninfo);
    claim_run(conninfo);
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS xdm_test_notify_%d CASCADE", (int)getpid());
    pg_admin(sql);
}

static void test_start_port_in_use(void)
{
    char dir[] = "/tmp/xdm-notify-XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    struct store *st = NULL;
    CU_ASSERT_EQUAL_FATAL(store_open(dir, NULL, &st), STORE_OK);
    struct notifier_config cfg = {.host = "127.0.0.1", .xcap_root = ROOT, .role = ROLE_RLS};
    struct notifier *a = NULL, *b = NULL;
    CU_ASSERT_EQUAL_FATAL(notifier_start(&cfg, st, &a), 0);
    cfg.port = notifier_port(a);
    CU_ASSERT_EQUAL(notifier_start(&cfg, st, &b), -1);
    CU_ASSERT_PTR_NULL(b);
    notifier_stop(a);
    notifier_wake(NULL);
    notifier_stop(NULL);
    store_close(st);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int suite_init(void)
{
    log_init("test_notify", LOG_LEVEL_ERROR);
    xdoc_global_init();
    return 0;
}

static int suite_clean(void)
{
    xdoc_global_cleanup();
    return 0;
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"resource-list entries", test_entries_parse},
        {"resource-list errors", test_entries_parse_errors},
        {"diff-processing", test_mode},
        {"persisted record", test_record},
        {"persisted record bytes", test_record_bytes},
        {"instances, leases, Contact", test_cluster_pure},
        {"authorization", test_authorize},
        {"watch matching", test_watch_matches},
        {"subscription index", test_index},
        {"expiry heap", test_expiry_heap},
        {"server-owned documents", test_server_owned},
        {"document selectors", test_sel_append},
        {"xcap-diff rendering", test_diff_render},
        {"identity parsing", test_identity_parse},
        {"expires", test_expires},
        {"trusted peers", test_peer_trusted},
        {"accept", test_accept},
        {"loopback SUBSCRIBE/NOTIFY", test_loopback},
        {"who may subscribe", test_subscribe_trust},
        {"expiry and 481", test_expiry_and_481},
        {"bounds", test_bounds},
        {"diff-processing modes", test_modes},
        {"minimum interval and batching", test_hold_off},
        {"element and attribute watches", test_node_watches},
        {"refresh", test_refresh},
        {"all users of an AUID", test_all_users},
        {"restart keeps subscriptions", test_restart},
        {"two instances, takeover", test_cluster},
        {"port in use", test_start_port_in_use},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {
        {"notify", suite_init, suite_clean, NULL, NULL, tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}

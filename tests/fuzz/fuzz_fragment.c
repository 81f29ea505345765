/* Fuzz target for element and attribute PUT/DELETE below a document (xdms/engine_node.c):
 * the body checks, the insertion rules, the byte splice and the idempotency checks, without
 * storage. Input: first byte picks the operation, then "<selector>\n<body>". Every accepted
 * result must be a well-formed document again (the engine stores it). */
#include <string.h>

#include "engine_internal.h"
#include "fuzz.h"
#include "xdoc.h"

#define NS "urn:ietf:params:xml:ns:resource-lists"

static const char fuzz_doc[] = "<?xml version=\"1.0\"?>\n<resource-lists xmlns=\"" NS
                               "\" xmlns:x=\"urn:x\">\n <list name=\"a\">\n"
                               "  <entry uri=\"sip:1@x\"><display-name>One</display-name></entry>\n"
                               "  <x:e x:k='v'/>\n  <entry uri=\"sip:2@x\"/>\n </list>\n"
                               " <list name=\"b\"/>\n</resource-lists>\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int inited;
    if (!inited) {
        xdoc_global_init();
        inited = 1;
    }
    if (size < 1)
        return 0;
    char *in = malloc(size);
    if (!in)
        return 0;
    memcpy(in, data + 1, size - 1);
    in[size - 1] = '\0';
    char *body = strchr(in, '\n');
    if (body)
        *body++ = '\0';
    static const struct appusage au = {.auid = "resource-lists",
                                       .mime = "application/resource-lists+xml",
                                       .default_ns = NS,
                                       .role = ROLE_SHARED_LIST};
    char auid[] = "resource-lists", xui[] = "sip:alice@example.com", path[] = "index";
    char doc_sel[] = "resource-lists/users/sip:alice@example.com/index";
    struct xcap_uri uri = {.auid = auid,
                           .tree = XCAP_TREE_USERS,
                           .xui = xui,
                           .path = path,
                           .node_sel = in,
                           .doc_sel = doc_sel};
    int op = data[0] % 3;
    struct engine_request req = {
        .method = op == 2 ? ENGINE_DELETE : ENGINE_PUT,
        .uri = &uri,
        .au = &au,
        .content_type = op == 1 ? "application/xcap-att+xml" : "application/xcap-el+xml",
        .body = body ? body : "",
        .body_len = body ? strlen(body) : 0,
    };
    struct buf out;
    buf_init(&out, 1 << 22);
    struct xcap_err err = {0};
    bool created = false;
    enum xcap_status st = engine_node_transform("http://x/xcap-root/", &req, fuzz_doc,
                                                sizeof fuzz_doc - 1, &out, &created, &err);
    if (st == XCAP_OK) {
        xmlDocPtr d = NULL;
        struct xcap_err perr = {0};
        FUZZ_CHECK(xdoc_parse(out.data, out.len, &d, &perr) == XCAP_OK);
        xmlFreeDoc(d);
        xcap_err_release(&perr);
    } else {
        FUZZ_CHECK(err.status == st || status_condition(st) || status_http(st) != 200);
    }
    xcap_err_release(&err);
    buf_release(&out);
    free(in);
    return 0;
}

/* Fuzz target for the XCAP URI parser (common/xcap_uri.h), the first code that reads a request.
 * Input: "<raw path>\n<raw query>"; without a '\n' the request has no query. Bytes after a NUL
 * are cut off, as they would be by the HTTP layer's C strings. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "xcap_uri.h"

/* No segment of the decoded document path may be empty, "." or ".." (xcap_uri.h). */
static bool fuzz_path_clean(const char *path)
{
    if (path[0] == '\0')
        return true;
    const char *s = path;
    for (;;) {
        const char *slash = strchr(s, '/');
        size_t len = slash ? (size_t)(slash - s) : strlen(s);
        if (len == 0 || (len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
            return false;
        if (!slash)
            return true;
        s = slash + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = fuzz_cstr(data, size);
    if (!in)
        return 0;
    char *query = strchr(in, '\n');
    if (query)
        *query++ = '\0';

    struct xcap_uri u;
    struct xcap_err err = {0};
    enum xcap_status st = xcap_uri_parse("/xcap-root", in, query, &u, &err);
    if (st == XCAP_OK) {
        FUZZ_CHECK(u.auid && u.auid[0] != '\0' && !strchr(u.auid, '/'));
        FUZZ_CHECK(strcmp(u.auid, ".") != 0 && strcmp(u.auid, "..") != 0);
        FUZZ_CHECK(u.path && u.doc_sel && !strchr(u.doc_sel, '"')); /* a raw '"' is %22 */
        FUZZ_CHECK(u.tree == XCAP_TREE_USERS || u.tree == XCAP_TREE_GLOBAL);
        FUZZ_CHECK(u.tree != XCAP_TREE_GLOBAL || !u.xui);
        FUZZ_CHECK(!u.xui || (strcmp(u.xui, ".") != 0 && strcmp(u.xui, "..") != 0));
        FUZZ_CHECK(fuzz_path_clean(u.path));
        FUZZ_CHECK(!u.node_sel || u.node_sel[0] != '\0');
        FUZZ_CHECK(!(u.is_dir && u.node_sel));
        if (u.xui)
            FUZZ_CHECK(xcap_uri_xui_equal(u.xui, u.xui));
        xcap_uri_release(&u);
    } else {
        FUZZ_CHECK(err.status == st);
        FUZZ_CHECK(!u.auid && !u.xui && !u.path && !u.node_sel && !u.query && !u.doc_sel);
    }
    xcap_err_release(&err);

    /* The decoder and the XUI comparison on their own, on the same bytes. */
    char *dec = xcap_uri_decode(in, strlen(in));
    if (dec) {
        FUZZ_CHECK(strlen(dec) <= strlen(in));
        free(dec);
    }
    if (query)
        (void)xcap_uri_xui_equal(in, query);
    /* The canonical spelling is never longer, names the same user and is a fixed point. */
    char *canon = xcap_uri_xui_canonical(in);
    if (canon) {
        FUZZ_CHECK(strlen(canon) <= strlen(in));
        FUZZ_CHECK(xcap_uri_xui_equal(in, canon));
        char *again = xcap_uri_xui_canonical(canon);
        FUZZ_CHECK(!again || strcmp(again, canon) == 0);
        free(again);
        free(canon);
    }
    free(in);
    return 0;
}

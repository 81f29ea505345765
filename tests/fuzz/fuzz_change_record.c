/* Fuzz target for change-log records read back from the store: store_change_decode() (both record
 * versions, common/store_util.c), re-encoding what it decoded (store_change_size(),
 * store_change_encode()) and decoding that again to the same fields; then the notifier's reader of
 * the record's detail, xdiff_op_from_detail() (the element and attribute edits the engine
 * describes, xdms/xdiff.c), rendering the operation it builds (RFC 5261 §4) and simplifying a
 * sequence of it. Input: the record's bytes as the store holds them. */
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "log.h"
#include "store.h"
#include "store_backend.h"
#include "xdiff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int inited;
    if (!inited) {
        log_init("fuzz", LOG_LEVEL_ERROR);
        inited = 1;
    }
    /* The store hands the decoder a view of exactly the record's bytes. */
    unsigned char *rec = malloc(size ? size : 1);
    if (!rec)
        return 0;
    memcpy(rec, data, size);
    struct store_change c;
    memset(&c, 0, sizeof c);
    if (store_change_decode(rec, size, &c) == STORE_OK) {
        FUZZ_CHECK(c.kind == STORE_CHANGE_PUT || c.kind == STORE_CHANGE_DELETE);
        FUZZ_CHECK(c.key.auid && c.key.tree && c.key.xui && c.key.path && c.prev_etag &&
                   c.new_etag && c.detail);
        FUZZ_CHECK(c.detail[c.detail_len] == '\0');
        FUZZ_CHECK(c.time == store_change_time(rec, size));

        /* Re-encoded (as C strings, what the writers hand in), it decodes to the same. */
        struct store_change w = c;
        w.detail_len = strlen(c.detail);
        size_t n = store_change_size(&w);
        if (n > 0) {
            unsigned char *p = malloc(n);
            FUZZ_CHECK(p != NULL);
            store_change_encode(&w, 1234, p);
            struct store_change r;
            FUZZ_CHECK(store_change_decode(p, n, &r) == STORE_OK);
            FUZZ_CHECK(r.kind == w.kind && r.time == 1234 && r.detail_len == w.detail_len);
            fuzz_same(r.key.auid, w.key.auid);
            fuzz_same(r.key.tree, w.key.tree);
            fuzz_same(r.key.xui, w.key.xui);
            fuzz_same(r.key.path, w.key.path);
            fuzz_same(r.prev_etag, w.prev_etag);
            fuzz_same(r.new_etag, w.new_etag);
            FUZZ_CHECK(memcmp(r.detail, w.detail, w.detail_len) == 0);
            free(p);
        }

        /* The detail as the notifier reads it. */
        struct xdiff_op ops[3];
        int rc = xdiff_op_from_detail(c.detail, c.detail_len, &ops[0]);
        FUZZ_CHECK(rc == 0 || rc == 1 || rc == -1);
        if (rc == 0) {
            FUZZ_CHECK(ops[0].sel != NULL && ops[0].content != NULL && ops[0].decls != NULL);
            struct buf b;
            buf_init(&b, 1u << 24);
            FUZZ_CHECK(xdiff_op_render(&b, &ops[0]) == 0);
            buf_release(&b);
            size_t k = 1;
            for (; k < 3; k++)
                FUZZ_CHECK(xdiff_op_copy(&ops[0], &ops[k]) == 0);
            xdiff_ops_simplify(ops, &k);
            FUZZ_CHECK(k <= 3);
            for (size_t i = 0; i < k; i++)
                xdiff_op_release(&ops[i]);
        }
    }
    free(rec);
    return 0;
}

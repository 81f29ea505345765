/* Fuzz target for saved subscriptions read back from the store (xdms/notify_subs.c): the record
 * decoder notify_subs_record_decode() that re-creates the dialogs after a restart or a takeover,
 * and the lease decoder notify_lease_decode() of several instances of one role. A decoded record
 * must keep the invariants of notify_internal.h and encode to bytes that decode to the same
 * record. Input: the record's bytes as the store holds them. */
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "log.h"
#include "notify_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int inited;
    if (!inited) {
        log_init("fuzz", LOG_LEVEL_ERROR);
        inited = 1;
    }
    char *rec = malloc(size ? size : 1);
    if (!rec)
        return 0;
    memcpy(rec, data, size);

    struct notify_record r;
    if (notify_subs_record_decode(rec, size, &r) == 0) {
        FUZZ_CHECK(r.call_id && r.local && r.remote && r.target && r.route && r.identity &&
                   r.event && r.owner);
        FUZZ_CHECK(r.body || r.body_len == 0);
        FUZZ_CHECK(r.hashes || r.n_hashes == 0);
        FUZZ_CHECK(r.mode == NOTIFY_NO_PATCHING || r.mode == NOTIFY_XCAP_PATCHING ||
                   r.mode == NOTIFY_AGGREGATE);
        struct buf b;
        buf_init(&b, 4 * size + 4096);
        if (notify_subs_record_encode(&r, &b) == 0) {
            struct notify_record s;
            FUZZ_CHECK(notify_subs_record_decode(b.data, b.len, &s) == 0);
            fuzz_same(s.call_id, r.call_id);
            fuzz_same(s.local, r.local);
            fuzz_same(s.remote, r.remote);
            fuzz_same(s.target, r.target);
            fuzz_same(s.route, r.route);
            fuzz_same(s.identity, r.identity);
            fuzz_same(s.event, r.event);
            fuzz_same(s.owner, r.owner);
            FUZZ_CHECK(s.mode == r.mode && s.expires == r.expires && s.cseq == r.cseq &&
                       s.rseq == r.rseq && s.seq == r.seq && s.full == r.full);
            FUZZ_CHECK(s.n_hashes == r.n_hashes && s.body_len == r.body_len);
            FUZZ_CHECK(r.n_hashes == 0 ||
                       memcmp(s.hashes, r.hashes, r.n_hashes * sizeof *r.hashes) == 0);
            FUZZ_CHECK(r.body_len == 0 || memcmp(s.body, r.body, r.body_len) == 0);
            notify_subs_record_release(&s);
        }
        buf_release(&b);
        notify_subs_record_release(&r);
    }

    int64_t ms;
    if (notify_lease_decode(rec, size, &ms)) {
        char text[32];
        FUZZ_CHECK(notify_lease_encode(ms, text, sizeof text) >= 0);
        int64_t back;
        FUZZ_CHECK(notify_lease_decode(text, strlen(text), &back) && back == ms);
        (void)notify_lease_expired(ms, 1000, 5);
    }
    free(rec);
    return 0;
}

/* xdmctl charging list|drain (xdmctl_data.h): the charging queues of an XDMS role's store
 * (docs/charging.md). Each serving node (an instance of the role) delivers only its own queue;
 * the records of a node that never comes back are moved here to a node that runs. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xdmctl_data.h"
#include "xdmctl_internal.h"

/* Records moved in one write transaction. */
#define XDMCTL_CHARGING_BATCH 64

static int xdmctl_charging_print(void *cls, const char *queue, uint64_t count)
{
    (void)cls;
    printf("%s\t%" PRIu64 "\n", queue, count);
    return 0;
}

struct xdmctl_charging_item {
    uint64_t seq;
    void *rec;
    size_t len;
};

struct xdmctl_charging_batch {
    struct xdmctl_charging_item items[XDMCTL_CHARGING_BATCH];
    size_t n;
    bool oom;
};

static int xdmctl_charging_collect(void *cls, uint64_t seq, const void *rec, size_t len)
{
    struct xdmctl_charging_batch *b = cls;
    void *copy = malloc(len ? len : 1);
    if (!copy) {
        b->oom = true;
        return 1;
    }
    memcpy(copy, rec, len);
    b->items[b->n++] = (struct xdmctl_charging_item){seq, copy, len};
    return b->n == XDMCTL_CHARGING_BATCH;
}

static void xdmctl_charging_release(struct xdmctl_charging_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->items[i].rec);
    b->n = 0;
}

/* Moves every record of queue from to the end of queue to, XDMCTL_CHARGING_BATCH records a
 * transaction, in order. Each record gets a new number in its new queue; its fields (the serving
 * node that wrote it among them) stay as they are. */
static int xdmctl_charging_drain(struct store *s, const char *from, const char *to, uint64_t *moved)
{
    *moved = 0;
    for (;;) {
        struct xdmctl_charging_batch b = {.n = 0};
        struct store_txn *t = NULL;
        enum store_rc rc = store_txn_begin(s, true, &t);
        if (rc == STORE_OK)
            rc = store_charge_read(t, from, XDMCTL_CHARGING_BATCH, xdmctl_charging_collect, &b);
        if (rc == STORE_OK && b.oom)
            rc = STORE_ERROR;
        for (size_t i = 0; rc == STORE_OK && i < b.n; i++) {
            rc = store_charge_append(t, to, b.items[i].rec, b.items[i].len, 0, NULL);
            if (rc == STORE_OK)
                rc = store_charge_del(t, from, b.items[i].seq);
        }
        size_t n = b.n;
        xdmctl_charging_release(&b);
        if (rc == STORE_OK && n > 0)
            rc = store_txn_commit(t);
        else if (t)
            store_txn_abort(t);
        if (rc != STORE_OK)
            return xdmctl_data_fail("charging drain: %s (%" PRIu64 " records moved before)",
                                    store_strerror(rc), *moved);
        if (n == 0)
            return 0;
        *moved += n;
    }
}

int xdmctl_charging(const char *cmd, const char *root, const struct xdmctl_data_stores *stores,
                    const char *role, const char *node, const char *to)
{
    size_t i = 0;
    while (i < XDMCTL_DATA_N_XDMS && strcmp(xdmctl_data_envs[i], role) != 0)
        i++;
    if (i == XDMCTL_DATA_N_XDMS) {
        fprintf(stderr, "xdmctl: --role must be shared-list, presence, rls or ut\n");
        return 2;
    }
    bool list = strcmp(cmd, "list") == 0;
    if (list ? (node || to)
             : (!node || !to || !node[0] || !to[0] || strlen(node) > STORE_CHARGE_QUEUE_MAX ||
                strlen(to) > STORE_CHARGE_QUEUE_MAX || strcmp(node, to) == 0)) {
        fprintf(stderr,
                "xdmctl: charging list takes no --node/--to; charging drain needs --node "
                "N and --to M, two different serving nodes of 1 to %d bytes\n",
                STORE_CHARGE_QUEUE_MAX);
        return 2;
    }
    char dir[XDMCTL_DATA_PATH_MAX], where[XDMCTL_DATA_PATH_MAX];
    if (xdmctl_data_path(dir, root, role, NULL) < 0)
        return xdmctl_data_fail("path too long under %s", root);
    const char *const tables[] = {STORE_CHARGE_TABLE, NULL};
    struct store_options o = {.read_only = list, .tables = tables};
    struct store *s;
    enum store_rc rc = xdmctl_data_open(stores, i, dir, &o, &s);
    const char *w = xdmctl_data_where(stores, i, dir, where);
    if (rc == STORE_NOTFOUND && list)
        return 0; /* no store, or never a charging queue: nothing queued */
    if (rc != STORE_OK)
        return xdmctl_data_fail("%s: %s", w, store_strerror(rc));
    int status = 0;
    if (list) {
        struct store_txn *t;
        rc = store_txn_begin(s, false, &t);
        if (rc == STORE_OK) {
            rc = store_charge_queues(t, xdmctl_charging_print, NULL);
            store_txn_abort(t);
        }
        if (rc != STORE_OK)
            status = xdmctl_data_fail("%s: %s", w, store_strerror(rc));
    } else {
        uint64_t moved = 0;
        status = xdmctl_charging_drain(s, node, to, &moved);
        if (status == 0)
            printf("%s: %" PRIu64 " records moved from %s to %s\n", role, moved, node, to);
    }
    store_close(s);
    return status;
}

/* xdms/charging.c: the queue bytes of a record round-trip, bad bytes are refused, the CDR line
 * has the exact fields with JSON escaping, record types follow RFC 6733 §9.8.1, and the CDR
 * files rotate by size. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "charging.h"
#include "charging_config.h"
#include "charging_internal.h"
#include "unit.h"

static const struct charging_record sample = {
    .event = CHARGING_NODE_CHANGED,
    .user = "sip:alice@example.com",
    .auid = "resource-lists",
    .document = "resource-lists/users/sip:alice@example.com/index",
    .operation = "PUT element",
    .node = "shared-list@host",
    .correlation = "req-\"1\"\n",
    .session = "",
    .result = 201,
    .bytes_in = 34,
    .bytes_out = 0,
    .start_ms = 1764763200123,
    .time_ms = 1764763200125,
    .record_number = 0,
};

static void test_round_trip(void)
{
    struct buf b, scratch;
    buf_init(&b, SIZE_MAX);
    buf_init(&scratch, SIZE_MAX);
    CU_ASSERT_EQUAL_FATAL(charging_record_encode(&sample, &b), 0);
    struct charging_record r;
    CU_ASSERT_EQUAL_FATAL(charging_record_decode(b.data, b.len, &scratch, &r), 0);
    CU_ASSERT_EQUAL(r.event, CHARGING_NODE_CHANGED);
    CU_ASSERT_STRING_EQUAL(r.user, sample.user);
    CU_ASSERT_STRING_EQUAL(r.auid, sample.auid);
    CU_ASSERT_STRING_EQUAL(r.document, sample.document);
    CU_ASSERT_STRING_EQUAL(r.operation, sample.operation);
    CU_ASSERT_STRING_EQUAL(r.node, sample.node);
    CU_ASSERT_STRING_EQUAL(r.correlation, sample.correlation);
    CU_ASSERT_STRING_EQUAL(r.session, "");
    CU_ASSERT_EQUAL(r.result, 201);
    CU_ASSERT_EQUAL(r.bytes_in, 34);
    CU_ASSERT_EQUAL(r.start_ms, sample.start_ms);
    CU_ASSERT_EQUAL(r.time_ms, sample.time_ms);
    /* Every shorter prefix and a longer buffer are refused, as is another version. */
    for (size_t n = 0; n < b.len; n++)
        CU_ASSERT_EQUAL(charging_record_decode(b.data, n, &scratch, &r), -1);
    CU_ASSERT_EQUAL(buf_append(&b, "x", 1), 0);
    CU_ASSERT_EQUAL(charging_record_decode(b.data, b.len, &scratch, &r), -1);
    b.data[0] = 9;
    CU_ASSERT_EQUAL(charging_record_decode(b.data, b.len - 1, &scratch, &r), -1);
    buf_release(&b);
    buf_release(&scratch);
}

static void test_json_line(void)
{
    struct buf b;
    buf_init(&b, SIZE_MAX);
    CU_ASSERT_EQUAL_FATAL(charging_record_json(&sample, 7, &b), 0);
    CU_ASSERT_STRING_EQUAL(
        b.data,
        "{\"seq\":7,\"event\":\"node-changed\",\"user\":\"sip:alice@example.com\",\"auid\":"
        "\"resource-lists\",\"document\":\"resource-lists/users/sip:alice@example.com/index\","
        "\"operation\":\"PUT element\",\"result\":201,\"bytes_in\":34,\"bytes_out\":0,\"time\":"
        "\"2025-12-03T12:00:00.125Z\",\"start\":\"2025-12-03T12:00:00.123Z\",\"node\":"
        "\"shared-list@host\",\"correlation_id\":\"req-\\\"1\\\"\\u000a\",\"record_type\":"
        "\"EVENT_RECORD\",\"record_number\":0}\n");
    buf_release(&b);
}

static void test_record_types(void)
{
    CU_ASSERT_EQUAL(charging_record_type(CHARGING_DOC_CREATED), 1);
    CU_ASSERT_EQUAL(charging_record_type(CHARGING_NOTIFY_SENT), 1);
    CU_ASSERT_EQUAL(charging_record_type(CHARGING_SUB_STARTED), 2);
    CU_ASSERT_EQUAL(charging_record_type(CHARGING_SUB_REFRESHED), 3);
    CU_ASSERT_EQUAL(charging_record_type(CHARGING_SUB_ENDED), 4);
    CU_ASSERT_STRING_EQUAL(charging_event_name(CHARGING_DOC_DELETED), "document-deleted");
    CU_ASSERT_STRING_EQUAL(charging_event_name(CHARGING_EVENT_COUNT), "unknown");
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strstr(e->d_name, ".jsonl") != NULL;
    if (d)
        closedir(d);
    return n;
}

static void test_cdr_rotation(void)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/xdm-charging-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    char sub[96];
    snprintf(sub, sizeof sub, "%s/cdr", dir);
    struct charging_cdr *c;
    CU_ASSERT_EQUAL_FATAL(charging_cdr_open(sub, "node/1 x", 100, 3600, &c), 0);
    char line[64];
    memset(line, 'a', 59);
    line[59] = '\n';
    /* 60 bytes a line, 100 bytes a file: a new file after every second line. */
    for (uint64_t seq = 1; seq <= 5; seq++) {
        CU_ASSERT_EQUAL(charging_cdr_write(c, line, 60, seq), 0);
        CU_ASSERT_EQUAL(charging_cdr_sync(c), 0);
    }
    charging_cdr_close(c);
    CU_ASSERT_EQUAL(count_files(sub), 3);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "test -f %s/xdm-node_1_x-*-1.jsonl && test -f %s/xdm-node_1_x-*-5.jsonl", sub, sub);
    CU_ASSERT_EQUAL(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
}

static const struct config_key charging_keys[] = {CHARGING_CONFIG_KEYS, {0}};

/* Reads every CDR line under dir into out (concatenated in file-name order). */
static size_t read_lines(const char *dir, char *out, size_t len)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "cat %s/*.jsonl 2>/dev/null", dir);
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(out, 1, len - 1, p) : 0;
    if (p)
        pclose(p);
    out[n] = '\0';
    size_t lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += out[i] == '\n';
    return lines;
}

/* Subscription events numbered per session (RFC 6733 §9.8.3), deferred NOTIFYs queued in order
 * before the next event, everything delivered to the CDR file by the delivery thread. */
static void test_emit_and_defer(void)
{
    char dir[64], cdr[96];
    snprintf(dir, sizeof dir, "/tmp/xdm-charging-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    snprintf(cdr, sizeof cdr, "%s/cdr", dir);
    static const char *const tables[] = {STORE_CHARGE_TABLE, NULL};
    struct store_options so = {.tables = tables};
    struct store *st = NULL;
    CU_ASSERT_EQUAL_FATAL(store_open(dir, &so, &st), STORE_OK);
    static const char *const sections[] = {"charging", NULL};
    struct config *cfg = config_new(sections, charging_keys);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    CU_ASSERT_EQUAL(config_set(cfg, "cdr_dir", cdr), 0);
    struct charging *c = NULL;
    CU_ASSERT_EQUAL_FATAL(charging_start(cfg, st, "node-1", &c), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    struct charging_record r = {.user = "sip:a@example.com", .session = "tag1", .result = 200};
    r.event = CHARGING_SUB_STARTED;
    charging_emit(c, &r);
    CU_ASSERT_EQUAL(r.record_number, 0);
    struct buf pending;
    buf_init(&pending, SIZE_MAX);
    struct charging_record nr = {.event = CHARGING_NOTIFY_SENT, .session = "tag1", .result = 200};
    CU_ASSERT_EQUAL(charging_defer(c, &pending, &nr), 1);
    nr.result = 202;
    CU_ASSERT_EQUAL(charging_defer(c, &pending, &nr), 2);
    charging_flush(c, &pending);
    CU_ASSERT_EQUAL(pending.len, 0);
    r.event = CHARGING_SUB_REFRESHED;
    charging_emit(c, &r);
    CU_ASSERT_EQUAL(r.record_number, 1);
    r.event = CHARGING_SUB_ENDED;
    charging_emit(c, &r);
    CU_ASSERT_EQUAL(r.record_number, 2);
    r.event = CHARGING_SUB_STARTED; /* a new session under the same tag starts at 0 again */
    charging_emit(c, &r);
    CU_ASSERT_EQUAL(r.record_number, 0);
    char text[8192];
    for (int i = 0; i < 100 && read_lines(cdr, text, sizeof text) < 6; i++)
        usleep(50000);
    CU_ASSERT_EQUAL(read_lines(cdr, text, sizeof text), 6);
    const char *want[] = {"\"seq\":1,\"event\":\"subscription-started\"",
                          "\"seq\":2,\"event\":\"notify-sent\"",
                          "\"seq\":3,\"event\":\"notify-sent\"",
                          "\"seq\":4,\"event\":\"subscription-refreshed\"",
                          "\"seq\":5,\"event\":\"subscription-ended\"",
                          "\"seq\":6,\"event\":\"subscription-started\""};
    const char *at = text;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *hit = strstr(at, want[i]);
        CU_ASSERT_PTR_NOT_NULL(hit);
        if (hit)
            at = hit;
    }
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"result\":202"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"record_type\":\"STOP_RECORD\",\"record_number\":2"));
    charging_stop(c);
    buf_release(&pending);
    config_free(cfg);
    store_close(st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"record round trip", test_round_trip},
        {"CDR line", test_json_line},
        {"record types", test_record_types},
        {"CDR rotation by size", test_cdr_rotation},
        {"emit, defer, flush, deliver", test_emit_and_defer},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {{"charging", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    return unit_run(suites);
}

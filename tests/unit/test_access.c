/* common/access.c: request ids (a peer's only when well-formed, else a fresh unique one) and the
 * exact text and JSON lines, with every unsafe byte escaped and long targets cut. */
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <string.h>

#include "access.h"
#include "buf.h"
#include "unit.h"

static void test_id_valid(void)
{
    CU_ASSERT_TRUE(access_id_valid("abc-123_x.y:z"));
    CU_ASSERT_FALSE(access_id_valid(""));
    CU_ASSERT_FALSE(access_id_valid("a b"));
    CU_ASSERT_FALSE(access_id_valid("a\"b"));
    CU_ASSERT_FALSE(access_id_valid("a\nb"));
    char id[ACCESS_ID_MAX + 2];
    memset(id, 'a', sizeof id);
    id[ACCESS_ID_MAX] = '\0';
    CU_ASSERT_TRUE(access_id_valid(id)); /* exactly the maximum */
    id[ACCESS_ID_MAX] = 'a';
    id[ACCESS_ID_MAX + 1] = '\0';
    CU_ASSERT_FALSE(access_id_valid(id)); /* one more */
}

static void test_begin(void)
{
    access_init(ACCESS_OFF, "unit");
    CU_ASSERT_STRING_EQUAL(access_begin("proxy-id-1"), "proxy-id-1");
    CU_ASSERT_STRING_EQUAL(access_request_id(), "proxy-id-1");
    char a[ACCESS_ID_MAX + 1], b[ACCESS_ID_MAX + 1];
    snprintf(a, sizeof a, "%s", access_begin("bad id"));
    CU_ASSERT_EQUAL(strlen(a), 24);
    CU_ASSERT_TRUE(access_id_valid(a));
    snprintf(b, sizeof b, "%s", access_begin(NULL));
    CU_ASSERT_EQUAL(strlen(b), 24);
    CU_ASSERT_STRING_NOT_EQUAL(a, b); /* fresh ids never repeat */
}

static const struct access_entry entry = {"2026-12-03T12:00:00.123Z",
                                          "127.0.0.1",
                                          "PUT",
                                          "/x/a\"b\\c\x01\xe9",
                                          201,
                                          42,
                                          0.0035,
                                          "id1",
                                          "client-1"};

static void test_text(void)
{
    struct buf b;
    buf_init(&b, 4096);
    CU_ASSERT_EQUAL(access_render(ACCESS_TEXT, "aggproxy", &entry, &b), 0);
    CU_ASSERT_STRING_EQUAL(b.data, "2026-12-03T12:00:00.123Z ACCESS aggproxy: 127.0.0.1 \"PUT "
                                   "/x/a\\x22b\\x5cc\\x01\\xe9\" 201 42 0.003500 id=id1 "
                                   "client_id=client-1");
    /* A client id that is not well-formed is not logged. */
    struct access_entry e = entry;
    e.client_id = "bad id";
    buf_reset(&b);
    CU_ASSERT_EQUAL(access_render(ACCESS_TEXT, "x", &e, &b), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(b.data, " id=id1 client_id=-"));
    buf_release(&b);
}

static void test_json(void)
{
    struct buf b;
    buf_init(&b, 4096);
    CU_ASSERT_EQUAL(access_render(ACCESS_JSON, "xdms(rls)", &entry, &b), 0);
    CU_ASSERT_STRING_EQUAL(b.data,
                           "{\"time\":\"2026-12-03T12:00:00.123Z\",\"process\":\"xdms(rls)\","
                           "\"peer\":\"127.0.0.1\",\"method\":\"PUT\","
                           "\"target\":\"/x/a\\\"b\\\\c\\u0001\\u00e9\",\"status\":201,"
                           "\"bytes\":42,\"seconds\":0.003500,\"id\":\"id1\","
                           "\"client_id\":\"client-1\"}");
    struct access_entry e = entry;
    e.client_id = NULL;
    buf_reset(&b);
    CU_ASSERT_EQUAL(access_render(ACCESS_JSON, "x", &e, &b), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(b.data, "\"client_id\":null}"));
    buf_release(&b);
}

static void test_long_target(void)
{
    char target[ACCESS_TARGET_MAX + 100];
    memset(target, 'a', sizeof target - 1);
    target[sizeof target - 1] = '\0';
    struct access_entry e = entry;
    e.target = target;
    struct buf b;
    buf_init(&b, 8192);
    CU_ASSERT_EQUAL(access_render(ACCESS_TEXT, "x", &e, &b), 0);
    char want[ACCESS_TARGET_MAX + 8];
    memset(want, 'a', ACCESS_TARGET_MAX);
    memcpy(want + ACCESS_TARGET_MAX, "...\" 2", 7);
    CU_ASSERT_PTR_NOT_NULL(strstr(b.data, want));
    buf_release(&b);
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"id valid", test_id_valid},
        {"begin", test_begin},
        {"text line", test_text},
        {"json line", test_json},
        {"long target cut", test_long_target},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {{"access", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    return unit_run(suites);
}

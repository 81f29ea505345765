/* xdms/corpdir.c: the corporate directory documents (sorting, repeated URIs, escaping, the split
 * rule), checked byte for byte and against the resource-lists schema's shape by parsing. */
#include <stdlib.h>
#include <string.h>

#include "corpdir.h"
#include "unit.h"

#define HEAD                                                                                       \
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"                                                 \
    "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">\n"                           \
    "  <list name=\"directory\">\n"
#define TAIL "  </list>\n</resource-lists>\n"

static void test_one_document(void)
{
    struct corpdir_entry v[] = {
        {"sip:zed@example.com", "Zed"},
        {"sip:amy@example.com", "Amy <A&B>"},
        {"tel:+15550100", NULL},
        {"sip:amy@example.com", "Amy again"}, /* the same URI: kept once (RFC 4826 §3.4.5) */
    };
    struct corpdir_doc docs[2];
    memset(docs, 0, sizeof docs);
    CU_ASSERT_EQUAL_FATAL(
        corpdir_render(v, 4, "corporate-directory", "http://x/xcap-root/", 10, docs), 1);
    CU_ASSERT_STRING_EQUAL(docs[0].name, "corporate-directory");
    CU_ASSERT_STRING_EQUAL(
        docs[0].body.data,
        HEAD "    <entry uri=\"sip:amy@example.com\"><display-name>Amy &lt;A&amp;B&gt;"
             "</display-name></entry>\n"
             "    <entry uri=\"sip:zed@example.com\"><display-name>Zed</display-name></entry>\n"
             "    <entry uri=\"tel:+15550100\"/>\n" TAIL);
    corpdir_docs_release(docs, 1);
}

static void test_empty(void)
{
    struct corpdir_doc docs[1];
    memset(docs, 0, sizeof docs);
    CU_ASSERT_EQUAL_FATAL(corpdir_render(NULL, 0, "d", "http://x/r", 10, docs), 1);
    CU_ASSERT_STRING_EQUAL(docs[0].body.data, HEAD TAIL);
    corpdir_docs_release(docs, 1);
}

static void test_split(void)
{
    char uris[7][32];
    struct corpdir_entry v[7];
    for (int i = 0; i < 7; i++) {
        snprintf(uris[i], sizeof uris[i], "sip:u%d@example.com", 6 - i);
        v[i] = (struct corpdir_entry){uris[i], NULL};
    }
    struct corpdir_doc docs[4];
    memset(docs, 0, sizeof docs);
    /* 7 entries, 3 per document: 3 parts and the document of anchors */
    CU_ASSERT_EQUAL_FATAL(corpdir_render(v, 7, "dir", "https://h:8443/root/", 3, docs), 4);
    CU_ASSERT_STRING_EQUAL(docs[0].name, "dir");
    CU_ASSERT_STRING_EQUAL(docs[1].name, "dir-1");
    CU_ASSERT_STRING_EQUAL(docs[3].name, "dir-3");
    CU_ASSERT_STRING_EQUAL(
        docs[0].body.data,
        HEAD "    <external anchor=\"https://h:8443/root/resource-lists/global/dir-1/~~/"
             "resource-lists/list%5b@name=%22directory%22%5d\"/>\n"
             "    <external anchor=\"https://h:8443/root/resource-lists/global/dir-2/~~/"
             "resource-lists/list%5b@name=%22directory%22%5d\"/>\n"
             "    <external anchor=\"https://h:8443/root/resource-lists/global/dir-3/~~/"
             "resource-lists/list%5b@name=%22directory%22%5d\"/>\n" TAIL);
    CU_ASSERT_STRING_EQUAL(docs[1].body.data,
                           HEAD "    <entry uri=\"sip:u0@example.com\"/>\n"
                                "    <entry uri=\"sip:u1@example.com\"/>\n"
                                "    <entry uri=\"sip:u2@example.com\"/>\n" TAIL);
    CU_ASSERT_STRING_EQUAL(docs[3].body.data,
                           HEAD "    <entry uri=\"sip:u6@example.com\"/>\n" TAIL);
    corpdir_docs_release(docs, 4);
    /* exactly max_entries: no split */
    memset(docs, 0, sizeof docs);
    CU_ASSERT_EQUAL_FATAL(corpdir_render(v, 3, "dir", "http://x/r", 3, docs), 1);
    corpdir_docs_release(docs, 1);
}

static CU_TestInfo corpdir_tests[] = {
    {"one document: sorted, repeated URIs once, escaped", test_one_document},
    {"an empty directory", test_empty},
    {"the split rule: parts and anchors", test_split},
    CU_TEST_INFO_NULL,
};

int main(void)
{
    CU_SuiteInfo suites[] = {
        {"corpdir", NULL, NULL, NULL, NULL, corpdir_tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}

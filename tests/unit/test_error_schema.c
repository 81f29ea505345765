/* Every xcap-error body the servers send validates against the xcap-error schema (RFC 4825 §11)
 * with the OMA extension (urn:oma:xml:xdm:xcap-error), and the xcap-caps documents against the
 * xcap-caps schema (RFC 4825 §12). */
#include <CUnit/CUnit.h>
#include <libxml/xmlschemas.h>
#include <string.h>

#include "buf.h"
#include "caps.h"
#include "status.h"
#include "unit.h"
#include "usage.h"
#include "xdoc.h"

static xmlSchemaPtr load_schema(const char *file)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", usage_default_schema_dir(), file);
    xmlSchemaParserCtxtPtr pc = xmlSchemaNewParserCtxt(path);
    xmlSchemaPtr s = pc ? xmlSchemaParse(pc) : NULL;
    xmlSchemaFreeParserCtxt(pc);
    return s;
}

static int valid(xmlSchemaPtr schema, const char *data, size_t len)
{
    xmlDocPtr doc = NULL;
    struct xcap_err perr = {0};
    if (xdoc_parse(data, len, &doc, &perr) != XCAP_OK) {
        xcap_err_release(&perr);
        return 0;
    }
    xmlSchemaValidCtxtPtr vc = xmlSchemaNewValidCtxt(schema);
    int rc = xmlSchemaValidateDoc(vc, doc);
    if (rc != 0)
        fprintf(stderr, "\n  not valid:\n%.*s\n", (int)len, data);
    xmlSchemaFreeValidCtxt(vc);
    xmlFreeDoc(doc);
    return rc == 0;
}

static void test_every_condition(void)
{
    xmlSchemaPtr schema = load_schema("usage-xcap-error.xsd");
    CU_ASSERT_PTR_NOT_NULL_FATAL(schema);
    int checked = 0;
#define X(name, code, cond, phrase)                                                                \
    if (cond) {                                                                                    \
        struct xcap_err e = {0};                                                                   \
        xcap_fail(&e, name, "why <it> \"failed\" & more");                                         \
        if (name == XCAP_NO_PARENT)                                                                \
            e.ancestor = strdup("http://x.example.com/xcap-root/a/users/sip:a@x/i/~~/r");          \
        if (name == XCAP_UNIQUENESS_FAILURE) {                                                     \
            struct xcap_exists *ex = xcap_err_add_exists(&e, "r/l%5B1%5D/@name");                  \
            xcap_exists_add_alt(ex, "friends-1");                                                  \
            xcap_exists_add_alt(ex, "friends-2");                                                  \
            xcap_err_add_exists(&e, "r/l%5B2%5D/e%5B3%5D/@uri");                                   \
        }                                                                                          \
        struct buf b;                                                                              \
        buf_init(&b, 1 << 16);                                                                     \
        CU_ASSERT_EQUAL(status_error_body(&e, &b), 0);                                             \
        CU_ASSERT_TRUE(valid(schema, b.data, b.len));                                              \
        /* and without the optional parts (uniqueness-failure has none: one <exists> is */         \
        /* required by the schema) */                                                              \
        struct xcap_err bare = {.status = name};                                                   \
        buf_reset(&b);                                                                             \
        CU_ASSERT_EQUAL(status_error_body(&bare, &b), 0);                                          \
        CU_ASSERT_EQUAL(valid(schema, b.data, b.len), name != XCAP_UNIQUENESS_FAILURE);            \
        buf_release(&b);                                                                           \
        xcap_err_release(&e);                                                                      \
        checked++;                                                                                 \
    }
    XCAP_STATUS_LIST(X)
#undef X
    CU_ASSERT_EQUAL(checked, 11);
    xmlSchemaFree(schema);
}

static void test_caps_documents(void)
{
    xmlSchemaPtr schema = load_schema("xcap-caps.xsd");
    CU_ASSERT_PTR_NOT_NULL_FATAL(schema);
    for (int r = ROLE_SHARED_LIST; r < XDMS_ROLE_COUNT; r++) {
        struct buf b;
        buf_init(&b, 1 << 16);
        CU_ASSERT_EQUAL(caps_render((enum xdms_role)r, &b), 0);
        CU_ASSERT_TRUE(valid(schema, b.data, b.len));
        /* <extensions> always, empty, between <auids> and <namespaces> (RFC 4825 §12.2) */
        CU_ASSERT_PTR_NOT_NULL(strstr(b.data, "</auids><extensions/><namespaces>"));
        buf_release(&b);
    }
    xmlSchemaFree(schema);
}

int main(void)
{
    xdoc_global_init();
    CU_TestInfo tests[] = {
        {"every 409 condition validates", test_every_condition},
        {"xcap-caps documents validate", test_caps_documents},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {{"error_schema", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    int rc = unit_run(suites);
    xdoc_global_cleanup();
    return rc;
}

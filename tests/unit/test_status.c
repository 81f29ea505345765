/* common/status.c: the status table (HTTP codes, RFC 4825 §11 conditions) and the
 * application/xcap-error+xml bodies (RFC 4825 §11; OMA XDM Core 2.0 §6.4). */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "status.h"
#include "unit.h"

#define XML_DECL "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
#define ERR_OPEN "<xcap-error xmlns=\"urn:ietf:params:xml:ns:xcap-error\">"
#define ERR_CLOSE "</xcap-error>\n"

struct status_row {
    enum xcap_status status;
    const char *name;
};

/* Every enum constant, taken from the list itself so a new row is covered automatically. */
static const struct status_row status_all[] = {
#define X(name, code, cond, phrase) {name, #name},
    XCAP_STATUS_LIST(X)
#undef X
};
#define STATUS_COUNT (sizeof status_all / sizeof status_all[0])

/* Expected codes written out independently of the list (RFC 4825 §8, RFC 9110). */
static const struct {
    enum xcap_status status;
    int code;
} status_expected_codes[] = {
    {XCAP_OK, 200},
    {XCAP_CREATED, 201},
    {XCAP_NOT_MODIFIED, 304},
    {XCAP_BAD_REQUEST, 400},
    {XCAP_UNAUTHORIZED, 401},
    {XCAP_FORBIDDEN, 403},
    {XCAP_NOT_FOUND, 404},
    {XCAP_METHOD_NOT_ALLOWED, 405},
    {XCAP_PRECONDITION_FAILED, 412},
    {XCAP_TOO_LARGE, 413},
    {XCAP_UNSUPPORTED_MEDIA, 415},
    {XCAP_INTERNAL, 500},
    {XCAP_STORAGE, 503},
    {XCAP_INSUFFICIENT_STORAGE, 507},
    {XCAP_UPSTREAM, 502},
    {XCAP_NOT_WELL_FORMED, 409},
    {XCAP_NOT_XML_FRAG, 409},
    {XCAP_NO_PARENT, 409},
    {XCAP_SCHEMA_VALIDATION_ERROR, 409},
    {XCAP_NOT_XML_ATT_VALUE, 409},
    {XCAP_CANNOT_INSERT, 409},
    {XCAP_CANNOT_DELETE, 409},
    {XCAP_UNIQUENESS_FAILURE, 409},
    {XCAP_CONSTRAINT_FAILURE, 409},
    {XCAP_NOT_UTF8, 409},
    {XCAP_LOCAL_CONSTRAINT_FAILURE, 409},
};

/* The RFC 4825 §11 condition elements; each must belong to exactly one row. */
static const char *const status_conditions[] = {
    "not-well-formed",    "not-xml-frag",  "no-parent",     "schema-validation-error",
    "not-xml-att-value",  "cannot-insert", "cannot-delete", "uniqueness-failure",
    "constraint-failure", "extension",     "not-utf-8",
};

static void test_every_status_has_http_code(void)
{
    for (size_t i = 0; i < STATUS_COUNT; i++) {
        int code = status_http(status_all[i].status);
        CU_ASSERT(code >= 200 && code <= 599);
        const char *phrase = status_phrase(status_all[i].status);
        CU_ASSERT_PTR_NOT_NULL_FATAL(phrase);
        CU_ASSERT(phrase[0] != '\0');
        CU_ASSERT_STRING_EQUAL(status_name(status_all[i].status), status_all[i].name);
    }
    for (size_t i = 0; i < sizeof status_expected_codes / sizeof status_expected_codes[0]; i++)
        CU_ASSERT_EQUAL(status_http(status_expected_codes[i].status),
                        status_expected_codes[i].code);
    CU_ASSERT_STRING_EQUAL(status_phrase(XCAP_NOT_FOUND), "Not Found");
    CU_ASSERT_STRING_EQUAL(status_phrase(XCAP_NO_PARENT), "Conflict");
}

static void test_conditions_exactly_on_409(void)
{
    size_t n409 = 0;
    for (size_t i = 0; i < STATUS_COUNT; i++) {
        enum xcap_status s = status_all[i].status;
        const char *cond = status_condition(s);
        if (status_http(s) == 409) {
            n409++;
            CU_ASSERT_PTR_NOT_NULL(cond);
        } else {
            CU_ASSERT_PTR_NULL(cond);
        }
    }
    CU_ASSERT_EQUAL(n409, sizeof status_conditions / sizeof status_conditions[0]);
    for (size_t c = 0; c < sizeof status_conditions / sizeof status_conditions[0]; c++) {
        int owners = 0;
        for (size_t i = 0; i < STATUS_COUNT; i++) {
            const char *cond = status_condition(status_all[i].status);
            if (cond && strcmp(cond, status_conditions[c]) == 0)
                owners++;
        }
        CU_ASSERT_EQUAL(owners, 1);
    }
    CU_ASSERT_STRING_EQUAL(status_condition(XCAP_NO_PARENT), "no-parent");
    CU_ASSERT_STRING_EQUAL(status_condition(XCAP_NOT_UTF8), "not-utf-8");
    CU_ASSERT_STRING_EQUAL(status_condition(XCAP_UNIQUENESS_FAILURE), "uniqueness-failure");
}

static void test_xcap_fail(void)
{
    struct xcap_err err = {0};
    CU_ASSERT_EQUAL(xcap_fail(&err, XCAP_NO_PARENT, "no list named %s", "x"), XCAP_NO_PARENT);
    CU_ASSERT_EQUAL(err.status, XCAP_NO_PARENT);
    CU_ASSERT_STRING_EQUAL(err.phrase, "no list named x");
    /* a later failure replaces status and phrase; NULL fmt clears the phrase */
    CU_ASSERT_EQUAL(xcap_fail(&err, XCAP_NOT_FOUND, "%d", 7), XCAP_NOT_FOUND);
    CU_ASSERT_STRING_EQUAL(err.phrase, "7");
    CU_ASSERT_EQUAL(xcap_fail(&err, XCAP_FORBIDDEN, NULL), XCAP_FORBIDDEN);
    CU_ASSERT_EQUAL(err.status, XCAP_FORBIDDEN);
    CU_ASSERT_PTR_NULL(err.phrase);
    /* no err: only the status comes back */
    CU_ASSERT_EQUAL(xcap_fail(NULL, XCAP_INTERNAL, "ignored"), XCAP_INTERNAL);
    xcap_err_release(&err);
    CU_ASSERT_EQUAL(err.n_exists, 0);
    CU_ASSERT_PTR_NULL(err.exists);
}

/* Parses body with libxml2 and checks the RFC 4825 §11 shape: root xcap-error in the xcap-error
 * namespace holding exactly one element child named cond. */
static void status_check_xml(const char *body, size_t len, const char *cond)
{
    xmlDocPtr doc = xmlReadMemory(body, (int)len, NULL, NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    xmlNodePtr root = xmlDocGetRootElement(doc);
    CU_ASSERT_PTR_NOT_NULL(root);
    if (root) {
        CU_ASSERT_STRING_EQUAL((const char *)root->name, "xcap-error");
        CU_ASSERT_PTR_NOT_NULL(root->ns);
        if (root->ns)
            CU_ASSERT_STRING_EQUAL((const char *)root->ns->href,
                                   "urn:ietf:params:xml:ns:xcap-error");
        int n = 0;
        for (xmlNodePtr c = root->children; c; c = c->next) {
            if (c->type != XML_ELEMENT_NODE)
                continue;
            n++;
            CU_ASSERT_STRING_EQUAL((const char *)c->name, cond);
        }
        CU_ASSERT_EQUAL(n, 1);
    }
    xmlFreeDoc(doc);
}

static void status_check_body(const struct xcap_err *err, const char *expected)
{
    struct buf out;
    buf_init(&out, 1 << 16);
    CU_ASSERT_EQUAL_FATAL(status_error_body(err, &out), 0);
    CU_ASSERT_STRING_EQUAL(out.data, expected);
    status_check_xml(out.data, out.len, status_condition(err->status));
    buf_release(&out);
}

static void test_body_plain_conditions(void)
{
    struct xcap_err err = {0};
    xcap_fail(&err, XCAP_NOT_WELL_FORMED, NULL);
    status_check_body(&err, XML_DECL ERR_OPEN "<not-well-formed/>" ERR_CLOSE);
    xcap_fail(&err, XCAP_CANNOT_INSERT, NULL);
    status_check_body(&err, XML_DECL ERR_OPEN "<cannot-insert/>" ERR_CLOSE);
    /* no-parent without an ancestor has no children */
    xcap_fail(&err, XCAP_NO_PARENT, "no document");
    status_check_body(&err, XML_DECL ERR_OPEN "<no-parent phrase=\"no document\"/>" ERR_CLOSE);
    /* every 409 row renders a well-formed body carrying its condition */
    for (size_t i = 0; i < STATUS_COUNT; i++) {
        if (status_http(status_all[i].status) != 409)
            continue;
        xcap_fail(&err, status_all[i].status, "p");
        struct buf out;
        buf_init(&out, 4096);
        CU_ASSERT_EQUAL(status_error_body(&err, &out), 0);
        if (out.data)
            status_check_xml(out.data, out.len, status_condition(err.status));
        buf_release(&out);
    }
    xcap_err_release(&err);
}

static void test_body_no_parent_with_ancestor(void)
{
    struct xcap_err err = {0};
    xcap_fail(&err, XCAP_NO_PARENT, NULL);
    err.ancestor = strdup("http://xcap.example.com/xcap-root/resource-lists/users/"
                          "sip:alice@example.com/index/~~/resource-lists");
    status_check_body(
        &err, XML_DECL ERR_OPEN
        "<no-parent><ancestor>http://xcap.example.com/xcap-root/resource-lists/users/"
        "sip:alice@example.com/index/~~/resource-lists</ancestor></no-parent>" ERR_CLOSE);
    /* the ancestor is text content: '&' and '<' are escaped */
    free(err.ancestor);
    err.ancestor = strdup("http://h/r/a/users/x/d/~~/a/b%5B@n=%22&<%22%5D");
    status_check_body(&err, XML_DECL ERR_OPEN
                      "<no-parent><ancestor>http://h/r/a/users/x/d/~~/a/"
                      "b%5B@n=%22&amp;&lt;%22%5D</ancestor></no-parent>" ERR_CLOSE);
    /* an ancestor on another condition is not rendered */
    xcap_fail(&err, XCAP_CANNOT_DELETE, NULL);
    status_check_body(&err, XML_DECL ERR_OPEN "<cannot-delete/>" ERR_CLOSE);
    xcap_err_release(&err);
}

static void test_body_uniqueness(void)
{
    struct xcap_err err = {0};
    xcap_fail(&err, XCAP_UNIQUENESS_FAILURE, NULL);
    struct xcap_exists *ex = xcap_err_add_exists(&err, "rls-services/service[1]/@uri");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ex);
    CU_ASSERT_EQUAL(xcap_exists_add_alt(ex, "sip:friends2@example.com"), 0);
    status_check_body(&err, XML_DECL ERR_OPEN "<uniqueness-failure>"
                                              "<exists field=\"rls-services/service[1]/@uri\">"
                                              "<alt-value>sip:friends2@example.com</alt-value>"
                                              "</exists></uniqueness-failure>" ERR_CLOSE);

    /* two items; the second with two alt-values; the first gets a third item without any */
    ex = xcap_err_add_exists(&err, "resource-lists/list[@name=\"a\"]/@name");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ex);
    CU_ASSERT_EQUAL(xcap_exists_add_alt(ex, "a1"), 0);
    CU_ASSERT_EQUAL(xcap_exists_add_alt(ex, "a<2>"), 0);
    CU_ASSERT_PTR_NOT_NULL(xcap_err_add_exists(&err, "x/@y"));
    CU_ASSERT_EQUAL(err.n_exists, 3);
    CU_ASSERT_EQUAL(err.exists[1].n_alt, 2);
    status_check_body(&err, XML_DECL ERR_OPEN
                      "<uniqueness-failure>"
                      "<exists field=\"rls-services/service[1]/@uri\">"
                      "<alt-value>sip:friends2@example.com</alt-value>"
                      "</exists>"
                      "<exists field=\"resource-lists/list[@name=&quot;a&quot;]/@name\">"
                      "<alt-value>a1</alt-value><alt-value>a&lt;2&gt;</alt-value>"
                      "</exists>"
                      "<exists field=\"x/@y\"/>"
                      "</uniqueness-failure>" ERR_CLOSE);
    xcap_err_release(&err);
    CU_ASSERT_PTR_NULL(err.exists);
    CU_ASSERT_EQUAL(err.n_exists, 0);
}

static void test_body_phrase_escaping(void)
{
    struct xcap_err err = {0};
    xcap_fail(&err, XCAP_NOT_WELL_FORMED, "line 1: expected '>' & got \"<\"");
    status_check_body(&err, XML_DECL ERR_OPEN
                      "<not-well-formed phrase=\"line 1: expected "
                      "&apos;&gt;&apos; &amp; got &quot;&lt;&quot;\"/>" ERR_CLOSE);
    /* the phrase survives a parse round trip unchanged */
    struct buf out;
    buf_init(&out, 4096);
    CU_ASSERT_EQUAL_FATAL(status_error_body(&err, &out), 0);
    xmlDocPtr doc = xmlReadMemory(out.data, (int)out.len, NULL, NULL, XML_PARSE_NONET);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    xmlNodePtr cond = xmlDocGetRootElement(doc)->children;
    CU_ASSERT_PTR_NOT_NULL_FATAL(cond);
    xmlChar *p = xmlGetProp(cond, (const xmlChar *)"phrase");
    CU_ASSERT_PTR_NOT_NULL(p);
    if (p)
        CU_ASSERT_STRING_EQUAL((const char *)p, "line 1: expected '>' & got \"<\"");
    xmlFree(p);
    xmlFreeDoc(doc);
    buf_release(&out);
    xcap_err_release(&err);
}

static void test_body_oma_local_constraint(void)
{
    struct xcap_err err = {0};
    xcap_fail(&err, XCAP_LOCAL_CONSTRAINT_FAILURE, "too many entries");
    status_check_body(&err,
                      XML_DECL ERR_OPEN "<extension><local-constraint-failure "
                                        "xmlns=\"urn:oma:xml:xdm:xcap-error\" "
                                        "phrase=\"too many entries\"/></extension>" ERR_CLOSE);
    /* the OMA element is in the OMA namespace, inside the IETF <extension> */
    struct buf out;
    buf_init(&out, 4096);
    CU_ASSERT_EQUAL_FATAL(status_error_body(&err, &out), 0);
    xmlDocPtr doc = xmlReadMemory(out.data, (int)out.len, NULL, NULL, XML_PARSE_NONET);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    xmlNodePtr ext = xmlDocGetRootElement(doc)->children;
    CU_ASSERT_PTR_NOT_NULL_FATAL(ext);
    CU_ASSERT_STRING_EQUAL((const char *)ext->ns->href, "urn:ietf:params:xml:ns:xcap-error");
    xmlNodePtr lcf = ext->children;
    CU_ASSERT_PTR_NOT_NULL_FATAL(lcf);
    CU_ASSERT_STRING_EQUAL((const char *)lcf->name, "local-constraint-failure");
    CU_ASSERT_PTR_NOT_NULL_FATAL(lcf->ns);
    CU_ASSERT_STRING_EQUAL((const char *)lcf->ns->href, "urn:oma:xml:xdm:xcap-error");
    xmlFreeDoc(doc);
    buf_release(&out);

    /* without a phrase */
    xcap_fail(&err, XCAP_LOCAL_CONSTRAINT_FAILURE, NULL);
    status_check_body(&err, XML_DECL ERR_OPEN
                      "<extension><local-constraint-failure "
                      "xmlns=\"urn:oma:xml:xdm:xcap-error\"/></extension>" ERR_CLOSE);
    xcap_err_release(&err);
}

static void test_body_refused(void)
{
    struct xcap_err err = {0};
    struct buf out;
    buf_init(&out, 4096);
    CU_ASSERT_EQUAL(buf_puts(&out, "keep"), 0);
    /* statuses without a condition have no xcap-error body */
    xcap_fail(&err, XCAP_NOT_FOUND, "x");
    CU_ASSERT_EQUAL(status_error_body(&err, &out), -1);
    xcap_fail(&err, XCAP_OK, NULL);
    CU_ASSERT_EQUAL(status_error_body(&err, &out), -1);
    xcap_fail(&err, XCAP_PRECONDITION_FAILED, NULL);
    CU_ASSERT_EQUAL(status_error_body(&err, &out), -1);
    CU_ASSERT_EQUAL(out.len, 4);
    CU_ASSERT_STRING_EQUAL(out.data, "keep");
    buf_release(&out);

    /* a full output buffer: -1, and the buffer is as before (still NUL-terminated) */
    buf_init(&out, 150); /* room for the opening tags, not for the ancestor */
    CU_ASSERT_EQUAL(buf_puts(&out, "keep"), 0);
    xcap_fail(&err, XCAP_NO_PARENT, NULL);
    err.ancestor = strdup("http://xcap.example.com/xcap-root/resource-lists/users/"
                          "sip:alice@example.com/index/~~/resource-lists");
    CU_ASSERT_EQUAL(status_error_body(&err, &out), -1);
    CU_ASSERT_EQUAL(out.len, 4);
    CU_ASSERT_STRING_EQUAL(out.data, "keep");
    buf_release(&out);
    xcap_err_release(&err);
}

static void test_body_appends(void)
{
    struct xcap_err err = {0};
    struct buf out;
    buf_init(&out, 4096);
    CU_ASSERT_EQUAL(buf_puts(&out, "X"), 0);
    xcap_fail(&err, XCAP_NOT_UTF8, NULL);
    CU_ASSERT_EQUAL(status_error_body(&err, &out), 0);
    CU_ASSERT_STRING_EQUAL(out.data, "X" XML_DECL ERR_OPEN "<not-utf-8/>" ERR_CLOSE);
    buf_release(&out);
    xcap_err_release(&err);
}

static void test_err_headers(void)
{
    struct xcap_err err = {0};
    CU_ASSERT_EQUAL(xcap_err_add_header(&err, "WWW-Authenticate", "Digest a"), 0);
    CU_ASSERT_EQUAL(xcap_err_add_header(&err, "WWW-Authenticate", "Digest b"), 0);
    CU_ASSERT_EQUAL_FATAL(err.n_headers, 2);
    CU_ASSERT_STRING_EQUAL(err.headers[0].value, "Digest a");
    CU_ASSERT_STRING_EQUAL(err.headers[1].name, "WWW-Authenticate");
    CU_ASSERT_STRING_EQUAL(err.headers[1].value, "Digest b");
    for (size_t i = 2; i < XCAP_ERR_HEADERS_MAX; i++)
        CU_ASSERT_EQUAL(xcap_err_add_header(&err, "Retry-After", "1"), 0);
    CU_ASSERT_EQUAL(xcap_err_add_header(&err, "Retry-After", "1"), -1); /* bounded */
    CU_ASSERT_EQUAL(err.n_headers, XCAP_ERR_HEADERS_MAX);
    xcap_fail(&err, XCAP_UNAUTHORIZED, "again"); /* the headers stay with the phrase */
    CU_ASSERT_EQUAL(err.n_headers, XCAP_ERR_HEADERS_MAX);
    xcap_err_release(&err);
    CU_ASSERT_EQUAL(err.n_headers, 0);
    CU_ASSERT_PTR_NULL(err.headers);
}

static int status_suite_cleanup(void)
{
    xmlCleanupParser();
    return 0;
}

static CU_TestInfo status_tests[] = {
    {"every status has an HTTP code, phrase and name", test_every_status_has_http_code},
    {"every 409 row has a condition, others none", test_conditions_exactly_on_409},
    {"xcap_fail fills and replaces", test_xcap_fail},
    {"plain condition bodies", test_body_plain_conditions},
    {"no-parent with ancestor", test_body_no_parent_with_ancestor},
    {"uniqueness-failure with exists and alt-values", test_body_uniqueness},
    {"phrase escaping", test_body_phrase_escaping},
    {"OMA local-constraint-failure inside extension", test_body_oma_local_constraint},
    {"no body for non-409, rollback when full", test_body_refused},
    {"body is appended", test_body_appends},
    {"extra headers: kept in order, bounded, released", test_err_headers},
    CU_TEST_INFO_NULL,
};

int main(void)
{
    CU_SuiteInfo suites[] = {
        {"status", NULL, status_suite_cleanup, NULL, NULL, status_tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}

/* xdms/usage.c and friends: the schemas, the per-usage constraints and the rls-services index.
 *
 * Most cases are data files, tests/unit/data/usage/<auid>/<case>.xml, each run through
 * usage_validate() and usage_interdepend() as the engine runs them, with the expected status,
 * phrase, <exists> fields and alt-values in the file's leading comment (see the README there).
 * The rest needs code: every schema compiles, error and caps bodies validate, the entity loader
 * refuses what is outside the schema directory, cross-user service URI uniqueness and the global
 * index over a real store, size limits, speed on a large list, validation from several threads. */
#include <dirent.h>
#include <ftw.h>
#include <libxml/parser.h>
#include <libxml/xmlschemas.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "appusage.h"
#include "au_simservs.h"
#include "buf.h"
#include "caps.h"
#include "nodesel.h"
#include "status.h"
#include "store.h"
#include "unit.h"
#include "usage.h"
#include "xcap_uri.h"
#include "xdoc.h"

/* Timing bounds mean nothing under valgrind's instrumentation. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define UNDER_VALGRIND() RUNNING_ON_VALGRIND
#endif
#endif
#ifndef UNDER_VALGRIND
#define UNDER_VALGRIND() 0
#endif

#define ALICE "sip:alice@example.com"
#define BOB "sip:bob@example.com"
#define RLS_NS "urn:ietf:params:xml:ns:rls-services"

/* ---- fixtures ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *schema_dir(void)
{
    return usage_default_schema_dir();
}

/* tests/unit/data/usage sits next to schemas/ in the source tree. */
static void data_dir(char out[PATH_MAX], const char *sub)
{
    snprintf(out, PATH_MAX, "%s/../tests/unit/data/usage/%s", schema_dir(), sub);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct buf b;
    buf_init(&b, 64u << 20);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (buf_append(&b, chunk, n) < 0)
            break;
    fclose(f);
    return buf_detach(&b, len);
}

static xmlDocPtr parse(const char *xml)
{
    xmlDocPtr doc = NULL;
    struct xcap_err err = {0};
    enum xcap_status st = xdoc_parse(xml, strlen(xml), &doc, &err);
    if (st != XCAP_OK)
        printf("\n  parse failed: %s\n", err.phrase ? err.phrase : "");
    xcap_err_release(&err);
    return doc;
}

static struct usage *open_usage(enum xdms_role role)
{
    struct usage *u = NULL;
    CU_ASSERT_EQUAL_FATAL(usage_open(role, schema_dir(), &u), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(u);
    return u;
}

struct rls_fx {
    char dir[64];
    struct store *store;
    struct usage *u;
    const struct appusage *au;
};

static void rls_open(struct rls_fx *f)
{
    snprintf(f->dir, sizeof f->dir, "/tmp/xdm-test-usage-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(f->dir));
    struct store_options so = {.tables = usage_store_tables(ROLE_RLS)};
    CU_ASSERT_EQUAL_FATAL(store_open(f->dir, &so, &f->store), STORE_OK);
    f->u = open_usage(ROLE_RLS);
    f->au = appusage_find(ROLE_RLS, "rls-services");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f->au);
}

static void rls_close(struct rls_fx *f)
{
    usage_close(f->u);
    store_close(f->store);
    rm_rf(f->dir);
}

/* What the engine does for a document PUT (or DELETE when xml is NULL): validate, update the
 * dependants, store, log, commit; everything aborted on a failure. */
static enum xcap_status rls_write(struct rls_fx *f, const char *xui, const char *path,
                                  const char *xml, struct xcap_err *err)
{
    struct doc_key k = {"rls-services", "users", xui, path};
    xmlDocPtr doc = NULL;
    enum xcap_status st = XCAP_OK;
    if (xml) {
        doc = parse(xml);
        CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
        st = usage_validate(f->u, f->au, &k, doc, err);
    }
    struct store_txn *t = NULL;
    if (st == XCAP_OK)
        CU_ASSERT_EQUAL_FATAL(store_txn_begin(f->store, true, &t), STORE_OK);
    if (st == XCAP_OK)
        st = usage_interdepend(f->u, t, f->au, &k, doc, err);
    if (st == XCAP_OK) {
        char etag[STORE_ETAG_MAX];
        enum store_rc rc =
            xml ? store_doc_put(t, &k, xml, strlen(xml), etag) : store_doc_del(t, &k);
        CU_ASSERT_EQUAL(rc, STORE_OK);
        CU_ASSERT_EQUAL(store_txn_commit(t), STORE_OK);
    } else if (t) {
        store_txn_abort(t);
    }
    if (doc)
        xmlFreeDoc(doc);
    return st;
}

static const struct doc_key index_key = {"rls-services", "global", "", "index"};

/* Reads the global index; returns its bytes (caller frees) and ETag, NULL when absent. */
static char *rls_index(struct rls_fx *f, char etag[STORE_ETAG_MAX])
{
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(f->store, false, &t), STORE_OK);
    struct store_doc d = {0};
    enum store_rc rc = store_doc_get(t, &index_key, &d);
    store_txn_abort(t);
    if (rc != STORE_OK) {
        etag[0] = '\0';
        return NULL;
    }
    memcpy(etag, d.etag, STORE_ETAG_MAX);
    char *data = d.data;
    d.data = NULL;
    store_doc_release(&d);
    return data;
}

/* ---- data-file cases ---- */

#define CASE_MAX_PHRASES 8
#define CASE_MAX_EXISTS 16
#define CASE_MAX_ALTS 4

struct case_exists {
    char *field;
    char *alts[CASE_MAX_ALTS];
    size_t n_alt;
};

struct case_expect {
    char *status;
    char *tree;
    char *xui;
    char *path;
    char *phrases[CASE_MAX_PHRASES];
    size_t n_phrases;
    struct case_exists exists[CASE_MAX_EXISTS];
    size_t n_exists;
    size_t max_icon_size;
    char *xcap_root;    /* usage_set_references() before the case */
    bool allow_foreign; /* ... with allow_foreign_references */
    bool bad;           /* the header could not be read */
};

static void case_release(struct case_expect *e)
{
    free(e->status);
    free(e->tree);
    free(e->xui);
    free(e->path);
    free(e->xcap_root);
    for (size_t i = 0; i < e->n_phrases; i++)
        free(e->phrases[i]);
    for (size_t i = 0; i < e->n_exists; i++) {
        free(e->exists[i].field);
        for (size_t j = 0; j < e->exists[i].n_alt; j++)
            free(e->exists[i].alts[j]);
    }
}

/* Reads "key: value" lines of the first comment of text. */
static void case_header(const char *text, struct case_expect *e)
{
    const char *start = strstr(text, "<!--"), *end = start ? strstr(start, "-->") : NULL;
    if (!start || !end) {
        e->bad = true;
        return;
    }
    start += 4;
    while (start < end) {
        const char *nl = memchr(start, '\n', (size_t)(end - start));
        const char *le = nl ? nl : end;
        const char *p = start;
        while (p < le && (*p == ' ' || *p == '\t'))
            p++;
        size_t n = (size_t)(le - p);
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\r'))
            n--;
        char *line = strndup(p, n);
        char *colon = strchr(line, ':');
        if (colon) {
            *colon = '\0';
            const char *v = colon + 1;
            while (*v == ' ')
                v++;
            const char *key = line;
            if (strcmp(key, "status") == 0) {
                e->status = strdup(v);
            } else if (strcmp(key, "tree") == 0) {
                e->tree = strdup(v);
            } else if (strcmp(key, "xui") == 0) {
                e->xui = strdup(v);
            } else if (strcmp(key, "path") == 0) {
                e->path = strdup(v);
            } else if (strcmp(key, "max_icon_size") == 0) {
                e->max_icon_size = strtoul(v, NULL, 10);
            } else if (strcmp(key, "xcap_root") == 0) {
                e->xcap_root = strdup(v);
            } else if (strcmp(key, "allow_foreign_references") == 0) {
                e->allow_foreign = strcmp(v, "true") == 0;
            } else if (strcmp(key, "phrase") == 0) {
                if (e->n_phrases == CASE_MAX_PHRASES)
                    e->bad = true;
                else
                    e->phrases[e->n_phrases++] = strdup(v);
            } else if (strcmp(key, "exists") == 0) {
                if (e->n_exists == CASE_MAX_EXISTS)
                    e->bad = true;
                else
                    e->exists[e->n_exists++].field = strdup(v);
            } else if (strcmp(key, "alt") == 0) {
                struct case_exists *x = e->n_exists ? &e->exists[e->n_exists - 1] : NULL;
                if (!x || x->n_alt == CASE_MAX_ALTS)
                    e->bad = true;
                else
                    x->alts[x->n_alt++] = strdup(v);
            }
        }
        free(line);
        start = le + 1;
    }
    if (!e->status)
        e->bad = true;
}

/* xmlns() bindings for every prefixed namespace declared in the document, so that the prefixes
 * a report uses can be bound as a client would. */
static void doc_bindings(xmlNodePtr n, struct buf *q)
{
    for (; n; n = n->next) {
        if (n->type != XML_ELEMENT_NODE)
            continue;
        for (xmlNsPtr ns = n->nsDef; ns; ns = ns->next)
            if (ns->prefix)
                buf_printf(q, "xmlns(%s=%s)", ns->prefix, ns->href);
        doc_bindings(n->children, q);
    }
}

/* A reported field is a working node selector: decoded and evaluated on the document, it selects
 * exactly one element, which carries the attribute. */
static bool field_selects(const char *name, const char *field, xmlDocPtr doc, const char *ns)
{
    char *sel_text = xcap_uri_decode(field, strlen(field));
    struct buf q;
    buf_init(&q, 1 << 16);
    buf_puts(&q, "");
    doc_bindings(xmlDocGetRootElement(doc), &q);
    struct nodesel sel;
    struct xcap_err err = {0};
    bool ok = sel_text && nodesel_parse(sel_text, q.data, ns, &sel, &err) == XCAP_OK;
    if (ok) {
        bool ambiguous = false;
        xmlNodePtr el = nodesel_eval(&sel, sel.n_steps, doc, &ambiguous, NULL);
        ok = el && sel.terminal == NODESEL_ATTRIBUTE &&
             nodesel_find_attr(el, sel.attr_ns, sel.attr_local) != NULL;
        nodesel_release(&sel);
    }
    if (!ok)
        printf("\n  %s: field %s selects nothing (%s)", name, field, err.phrase ? err.phrase : "");
    xcap_err_release(&err);
    buf_release(&q);
    free(sel_text);
    return ok;
}

/* Compares the outcome with the expectations; prints every difference. Returns true when
 * they agree. */
static bool case_check(const char *name, const struct case_expect *e, enum xcap_status st,
                       const struct xcap_err *err)
{
    bool ok = true;
    if (strcmp(status_name(st), e->status) != 0) {
        printf("\n  %s: status %s, expected %s (phrase: %s)", name, status_name(st), e->status,
               err->phrase ? err->phrase : "-");
        ok = false;
    }
    for (size_t i = 0; i < e->n_phrases; i++)
        if (!err->phrase || !strstr(err->phrase, e->phrases[i])) {
            printf("\n  %s: phrase \"%s\" lacks \"%s\"", name, err->phrase ? err->phrase : "",
                   e->phrases[i]);
            ok = false;
        }
    if (st == XCAP_UNIQUENESS_FAILURE && e->n_exists != err->n_exists) {
        printf("\n  %s: %zu exists, expected %zu", name, err->n_exists, e->n_exists);
        for (size_t i = 0; i < err->n_exists; i++)
            printf("\n    got %s", err->exists[i].field);
        ok = false;
    }
    for (size_t i = 0; i < e->n_exists && i < err->n_exists; i++) {
        const struct xcap_exists *x = &err->exists[i];
        if (strcmp(x->field, e->exists[i].field) != 0) {
            printf("\n  %s: exists[%zu] %s\n    expected %s", name, i, x->field,
                   e->exists[i].field);
            ok = false;
        }
        bool alts_ok = x->n_alt == e->exists[i].n_alt;
        for (size_t j = 0; alts_ok && j < x->n_alt; j++)
            alts_ok = strcmp(x->alt_values[j], e->exists[i].alts[j]) == 0;
        if (!alts_ok) {
            printf("\n  %s: exists[%zu] alt-values:", name, i);
            for (size_t j = 0; j < x->n_alt; j++)
                printf(" %s", x->alt_values[j]);
            printf("; expected:");
            for (size_t j = 0; j < e->exists[i].n_alt; j++)
                printf(" %s", e->exists[i].alts[j]);
            ok = false;
        }
    }
    return ok;
}

static int case_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every case of one AUID; returns how many ran. */
static size_t run_cases(const char *auid, enum xdms_role role)
{
    char dir[PATH_MAX];
    data_dir(dir, auid);
    DIR *d = opendir(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    char *names[256];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < 256)
        if (strlen(de->d_name) > 4 && strcmp(de->d_name + strlen(de->d_name) - 4, ".xml") == 0)
            names[n++] = strdup(de->d_name);
    closedir(d);
    qsort(names, n, sizeof names[0], case_name_cmp);

    const struct appusage *au = appusage_find(role, auid);
    CU_ASSERT_PTR_NOT_NULL_FATAL(au);
    struct usage *u = open_usage(role);
    char sdir[64];
    snprintf(sdir, sizeof sdir, "/tmp/xdm-test-usage-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(sdir));
    struct store_options so = {.tables = usage_store_tables(role)};
    struct store *s;
    CU_ASSERT_EQUAL_FATAL(store_open(sdir, &so, &s), STORE_OK);

    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX * 2];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t len;
        char *text = read_file(path, &len);
        struct case_expect e = {0};
        if (text)
            case_header(text, &e);
        xmlDocPtr doc = NULL;
        struct xcap_err perr = {0};
        if (!text || e.bad || xdoc_parse(text, len, &doc, &perr) != XCAP_OK) {
            printf("\n  %s: unreadable case (%s)", names[i], perr.phrase ? perr.phrase : "header");
            failed++;
        } else {
            struct doc_key k = {auid, e.tree ? e.tree : "users", e.xui ? e.xui : ALICE,
                                e.path ? e.path : "index"};
            usage_set_max_icon_size(u, e.max_icon_size);
            CU_ASSERT_EQUAL(usage_set_references(u, e.xcap_root, e.allow_foreign), 0);
            struct xcap_err err = {0};
            enum xcap_status st = usage_validate(u, au, &k, doc, &err);
            if (st == XCAP_OK) {
                struct store_txn *t;
                CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, true, &t), STORE_OK);
                st = usage_interdepend(u, t, au, &k, doc, &err);
                store_txn_abort(t);
            }
            bool ok = case_check(names[i], &e, st, &err);
            for (size_t j = 0; j < err.n_exists; j++)
                ok &= field_selects(names[i], err.exists[j].field, doc, au->default_ns);
            if (!ok)
                failed++;
            xcap_err_release(&err);
            usage_set_max_icon_size(u, 0);
            usage_set_references(u, NULL, false);
        }
        xcap_err_release(&perr);
        if (doc)
            xmlFreeDoc(doc);
        case_release(&e);
        free(text);
        free(names[i]);
    }
    if (failed)
        printf("\n  %zu of %zu %s cases failed\n", failed, n, auid);
    CU_ASSERT_EQUAL(failed, 0);
    store_close(s);
    rm_rf(sdir);
    usage_close(u);
    return n;
}

static void test_cases_resource_lists(void)
{
    CU_ASSERT(run_cases("resource-lists", ROLE_SHARED_LIST) >= 25);
}

static void test_cases_rls_services(void)
{
    CU_ASSERT(run_cases("rls-services", ROLE_RLS) >= 15);
}

static void test_cases_pres_rules(void)
{
    CU_ASSERT(run_cases("pres-rules", ROLE_PRESENCE) >= 6);
}

static void test_cases_oma_pres_rules(void)
{
    CU_ASSERT(run_cases("org.openmobilealliance.pres-rules", ROLE_PRESENCE) >= 14);
}

static void test_cases_pidf(void)
{
    CU_ASSERT(run_cases("pidf-manipulation", ROLE_PRESENCE) >= 7);
}

static void test_cases_simservs(void)
{
    CU_ASSERT(run_cases("simservs.ngn.etsi.org", ROLE_UT) >= 17);
}

/* The forward-to target forms of TS 24.604 (au_simservs_target_ok()). */
static void test_simservs_targets(void)
{
    static const char *const ok[] = {
        "sip:bob@example.com",
        "SIPS:bob@example.com:5061",
        "sip:example.com",
        "sip:+4930123@ims.example.com;user=phone",
        "sip:vm@h?subject=x",
        "tel:+4930123456",
        "tel:+49-30-(123).456",
        "TEL:+1",
        "tel:7042;phone-context=example.com",
        "tel:*21#;phone-context=+49",
        "tel:+4930123;ext=12",
    };
    static const char *const bad[] = {
        "",
        "+4930123456",
        "4930123456",
        "mailto:bob@example.com",
        "sip:",
        "sip:@example.com",
        "sip:bob@",
        "sip:bob@example.com x",
        "sip:<bob@example.com>",
        "tel:",
        "tel:+",
        "tel:+49 30",
        "tel:+49a30",
        "tel:7042",
        "tel:-",
        "http://example.com/",
        "sip:bob@:5060",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        if (!au_simservs_target_ok(ok[i]))
            fprintf(stderr, "refused: %s\n", ok[i]);
        CU_ASSERT_TRUE(au_simservs_target_ok(ok[i]));
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (au_simservs_target_ok(bad[i]))
            fprintf(stderr, "accepted: %s\n", bad[i]);
        CU_ASSERT_FALSE(au_simservs_target_ok(bad[i]));
    }
    char longer[600];
    memset(longer, '1', sizeof longer - 1);
    memcpy(longer, "tel:+", 5);
    longer[sizeof longer - 1] = '\0';
    CU_ASSERT_FALSE(au_simservs_target_ok(longer)); /* over 512 bytes */
}

static void write_file(const char *dir, const char *name, const char *text);

/* The operator's default document (usage_set_default_doc(), usage_default_doc()). */
static void test_default_document(void)
{
    char dir[] = "/tmp/xdm-test-default-XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    struct usage *u = open_usage(ROLE_UT);
    const struct appusage *au = appusage_find(ROLE_UT, "simservs.ngn.etsi.org");
    CU_ASSERT_PTR_NOT_NULL_FATAL(au);
    /* The built-in one, valid as a PUT would need it. */
    const char *builtin = usage_default_doc(u, au);
    CU_ASSERT_PTR_NOT_NULL_FATAL(builtin);
    CU_ASSERT_PTR_EQUAL(usage_default_doc(NULL, au), builtin);
    xmlDocPtr doc = NULL;
    struct xcap_err err = {0};
    CU_ASSERT_EQUAL_FATAL(xdoc_parse(builtin, strlen(builtin), &doc, &err), XCAP_OK);
    struct doc_key k = {au->auid, "users", ALICE, "simservs.xml"};
    CU_ASSERT_EQUAL(usage_validate(u, au, &k, doc, &err), XCAP_OK);
    xmlFreeDoc(doc);
    /* Other usages have none. */
    CU_ASSERT_PTR_NULL(usage_default_doc(u, appusage_find(ROLE_SHARED_LIST, "resource-lists")));

    const char *mine = "<simservs xmlns=\"http://uri.etsi.org/ngn/params/xml/simservs/xcap\">"
                       "<communication-waiting active=\"true\"/></simservs>\n";
    write_file(dir, "ok.xml", mine);
    write_file(dir, "timer.xml",
               "<simservs xmlns=\"http://uri.etsi.org/ngn/params/xml/simservs/xcap\">"
               "<communication-diversion><NoReplyTimer>181</NoReplyTimer>"
               "</communication-diversion></simservs>");
    write_file(dir, "schema.xml",
               "<simservs xmlns=\"http://uri.etsi.org/ngn/params/xml/simservs/xcap\">"
               "<communication-waiting active=\"yes\"/></simservs>");
    write_file(dir, "broken.xml", "<simservs");
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/ok.xml", dir);
    CU_ASSERT_EQUAL(usage_set_default_doc(u, path), 0);
    CU_ASSERT_STRING_EQUAL(usage_default_doc(u, au), mine);
    static const char *const refused[] = {"timer.xml", "schema.xml", "broken.xml", "none.xml"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, refused[i]);
        CU_ASSERT_EQUAL(usage_set_default_doc(u, path), -1);
        CU_ASSERT_STRING_EQUAL(usage_default_doc(u, au), mine); /* the earlier one stays */
    }
    /* Larger than 64 KiB. */
    char *big = malloc(USAGE_DEFAULT_DOC_MAX + 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    memset(big, ' ', USAGE_DEFAULT_DOC_MAX + 1);
    big[USAGE_DEFAULT_DOC_MAX + 1] = '\0';
    write_file(dir, "big.xml", big);
    free(big);
    snprintf(path, sizeof path, "%s/big.xml", dir);
    CU_ASSERT_EQUAL(usage_set_default_doc(u, path), -1);
    usage_close(u);
    /* A role without a usage that has a default refuses the key. */
    u = open_usage(ROLE_SHARED_LIST);
    snprintf(path, sizeof path, "%s/ok.xml", dir);
    CU_ASSERT_EQUAL(usage_set_default_doc(u, path), -1);
    usage_close(u);
    rm_rf(dir);
}

static void test_cases_pres_content(void)
{
    CU_ASSERT(run_cases("org.openmobilealliance.pres-content", ROLE_PRESENCE) >= 17);
}

/* ---- schemas ---- */

static void quiet(void *cls, xmlErrorPtr e)
{
}

static xmlSchemaPtr compile(const char *dir, const char *file)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    xmlSchemaParserCtxtPtr pc = xmlSchemaNewParserCtxt(path);
    if (!pc)
        return NULL;
    xmlSchemaSetParserStructuredErrors(pc, quiet, NULL);
    xmlSchemaPtr s = xmlSchemaParse(pc);
    xmlSchemaFreeParserCtxt(pc);
    return s;
}

static void test_every_schema_compiles(void)
{
    struct usage *u = open_usage(ROLE_SHARED_LIST); /* installs the loader for schema_dir() */
    DIR *d = opendir(schema_dir());
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    struct dirent *de;
    size_t n = 0;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 4, ".xsd") != 0)
            continue;
        xmlSchemaPtr s = compile(schema_dir(), de->d_name);
        if (!s)
            printf("\n  %s does not compile", de->d_name);
        CU_ASSERT_PTR_NOT_NULL(s);
        xmlSchemaFree(s);
        n++;
    }
    closedir(d);
    CU_ASSERT(n >= 21);
    usage_close(u);
}

static bool valid_against(xmlSchemaPtr s, const char *xml, size_t len)
{
    xmlDocPtr doc = xmlReadMemory(xml, (int)len, NULL, NULL, XML_PARSE_NONET);
    if (!doc)
        return false;
    xmlSchemaValidCtxtPtr vc = xmlSchemaNewValidCtxt(s);
    xmlSchemaSetValidStructuredErrors(vc, quiet, NULL);
    int rc = xmlSchemaValidateDoc(vc, doc);
    xmlSchemaFreeValidCtxt(vc);
    xmlFreeDoc(doc);
    return rc == 0;
}

/* The bodies common/status.c renders are valid RFC 4825 / OMA error documents. */
static void test_error_bodies_valid(void)
{
    struct usage *u = open_usage(ROLE_SHARED_LIST);
    xmlSchemaPtr s = compile(schema_dir(), "usage-xcap-error.xsd");
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    enum xcap_status all[] = {
        XCAP_NOT_WELL_FORMED,
        XCAP_NOT_XML_FRAG,
        XCAP_NO_PARENT,
        XCAP_SCHEMA_VALIDATION_ERROR,
        XCAP_NOT_XML_ATT_VALUE,
        XCAP_CANNOT_INSERT,
        XCAP_CANNOT_DELETE,
        XCAP_UNIQUENESS_FAILURE,
        XCAP_CONSTRAINT_FAILURE,
        XCAP_NOT_UTF8,
        XCAP_LOCAL_CONSTRAINT_FAILURE,
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        struct xcap_err err = {0};
        xcap_fail(&err, all[i], "a <phrase> & \"more\"");
        if (all[i] == XCAP_NO_PARENT)
            err.ancestor = strdup("http://xcap.example.com/xcap-root/resource-lists/users/x");
        if (all[i] == XCAP_UNIQUENESS_FAILURE) {
            struct xcap_exists *ex = xcap_err_add_exists(&err, "rls-services/service%5B1%5D/@uri");
            xcap_exists_add_alt(ex, "sip:friends-1@example.com");
            xcap_err_add_exists(&err, "rls-services/service%5B2%5D/@uri");
        }
        struct buf b;
        buf_init(&b, 1 << 16);
        CU_ASSERT_EQUAL_FATAL(status_error_body(&err, &b), 0);
        bool ok = valid_against(s, b.data, b.len);
        if (!ok)
            printf("\n  invalid body: %s", b.data);
        CU_ASSERT(ok);
        buf_release(&b);
        xcap_err_release(&err);
    }
    /* And the schema does refuse: two conditions, an unknown one. */
    static const char two[] = "<xcap-error xmlns=\"urn:ietf:params:xml:ns:xcap-error\">"
                              "<cannot-insert/><cannot-delete/></xcap-error>";
    static const char unknown[] = "<xcap-error xmlns=\"urn:ietf:params:xml:ns:xcap-error\">"
                                  "<oops/></xcap-error>";
    CU_ASSERT_FALSE(valid_against(s, two, sizeof two - 1));
    CU_ASSERT_FALSE(valid_against(s, unknown, sizeof unknown - 1));
    xmlSchemaFree(s);
    usage_close(u);
}

static void test_caps_valid(void)
{
    struct usage *u = open_usage(ROLE_SHARED_LIST);
    xmlSchemaPtr s = compile(schema_dir(), "xcap-caps.xsd");
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    enum xdms_role roles[] = {ROLE_SHARED_LIST, ROLE_PRESENCE, ROLE_RLS};
    for (size_t i = 0; i < 3; i++) {
        struct buf b;
        buf_init(&b, 1 << 16);
        CU_ASSERT_EQUAL_FATAL(caps_render(roles[i], &b), 0);
        CU_ASSERT(valid_against(s, b.data, b.len));
        buf_release(&b);
    }
    xmlSchemaFree(s);
    usage_close(u);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

/* A schema that uses xml:lang from the schema at location loc. */
static char *lang_schema(const char *loc)
{
    char *s = NULL;
    CU_ASSERT_FATAL(asprintf(&s,
                             "<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" "
                             "targetNamespace=\"urn:t\" elementFormDefault=\"qualified\">"
                             "<xs:import namespace=\"http://www.w3.org/XML/1998/namespace\" "
                             "schemaLocation=\"%s\"/>"
                             "<xs:element name=\"resource-lists\"><xs:complexType>"
                             "<xs:attribute ref=\"xml:lang\"/></xs:complexType></xs:element>"
                             "</xs:schema>",
                             loc) > 0);
    return s;
}

/* The loader opens files inside the schema directory and nothing else: not a file next to it,
 * not through a symbolic link, not over the network. */
static void test_loader_confined(void)
{
    char top[64];
    snprintf(top, sizeof top, "/tmp/xdm-test-usage-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(top));
    char inside[PATH_MAX], outside[PATH_MAX], xmlxsd[PATH_MAX * 2];
    snprintf(inside, sizeof inside, "%s/schemas", top);
    snprintf(outside, sizeof outside, "%s/outside", top);
    CU_ASSERT_EQUAL_FATAL(mkdir(inside, 0700), 0);
    CU_ASSERT_EQUAL_FATAL(mkdir(outside, 0700), 0);
    snprintf(xmlxsd, sizeof xmlxsd, "%s/xml.xsd", schema_dir());
    size_t len;
    char *xml = read_file(xmlxsd, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(xml);
    write_file(inside, "xml.xsd", xml);
    write_file(outside, "xml.xsd", xml);
    free(xml);
    char link[PATH_MAX * 2], target[PATH_MAX * 2];
    snprintf(link, sizeof link, "%s/linked.xsd", inside);
    snprintf(target, sizeof target, "%s/xml.xsd", outside);
    CU_ASSERT_EQUAL_FATAL(symlink(target, link), 0);

    struct {
        const char *loc;
        bool ok;
    } cases[] = {
        {"xml.xsd", true},
        {"../outside/xml.xsd", false},
        {"linked.xsd", false},
        {"http://127.0.0.1:9/xml.xsd", false},
        {"ftp://127.0.0.1:9/xml.xsd", false},
        {"/etc/hostname", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = lang_schema(cases[i].loc);
        write_file(inside, "resource-lists.xsd", text);
        free(text);
        struct usage *u = NULL;
        int rc = usage_open(ROLE_SHARED_LIST, inside, &u);
        if ((rc == 0) != cases[i].ok)
            printf("\n  schemaLocation %s: usage_open returned %d", cases[i].loc, rc);
        CU_ASSERT_EQUAL(rc == 0, cases[i].ok);
        CU_ASSERT_EQUAL(u != NULL, cases[i].ok);
        usage_close(u);
    }
    struct usage *u = NULL;
    CU_ASSERT_EQUAL(usage_open(ROLE_SHARED_LIST, "/nonexistent/schemas", &u), -1);
    CU_ASSERT_PTR_NULL(u);
    CU_ASSERT_EQUAL(usage_open(ROLE_SHARED_LIST, outside, &u), -1); /* no resource-lists.xsd */
    rm_rf(top);
}

/* ---- small contract points ---- */

static void test_contract_basics(void)
{
    const char *const *t = usage_store_tables(ROLE_RLS);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_STRING_EQUAL(t[0], USAGE_RLS_URI_TABLE);
    CU_ASSERT_STRING_EQUAL(t[1], USAGE_RLS_DOC_TABLE);
    CU_ASSERT_PTR_NULL(t[2]);
    CU_ASSERT_PTR_NULL(usage_store_tables(ROLE_SHARED_LIST));
    CU_ASSERT_PTR_NULL(usage_store_tables(ROLE_PRESENCE));

    const struct appusage *rls = appusage_find(ROLE_RLS, "rls-services");
    const struct appusage *rl = appusage_find(ROLE_SHARED_LIST, "resource-lists");
    struct doc_key idx = {"rls-services", "global", "", "index"};
    struct doc_key other = {"rls-services", "global", "", "other"};
    struct doc_key user = {"rls-services", "users", ALICE, "index"};
    struct doc_key rlidx = {"resource-lists", "global", "", "index"};
    CU_ASSERT_TRUE(usage_server_owned(rls, &idx));
    CU_ASSERT_FALSE(usage_server_owned(rls, &other));
    CU_ASSERT_FALSE(usage_server_owned(rls, &user));
    CU_ASSERT_FALSE(usage_server_owned(rl, &rlidx));

    /* A NULL usage (engine unit tests) validates nothing and has no dependants. */
    xmlDocPtr doc = parse("<not-a-list/>");
    struct xcap_err err = {0};
    CU_ASSERT_EQUAL(usage_validate(NULL, rl, &user, doc, &err), XCAP_OK);
    CU_ASSERT_EQUAL(usage_interdepend(NULL, NULL, rls, &user, doc, &err), XCAP_OK);
    xmlFreeDoc(doc);

    /* Usages of another role are not served by this one. */
    struct usage *u = open_usage(ROLE_SHARED_LIST);
    const struct appusage *pidf = appusage_find(ROLE_PRESENCE, "pidf-manipulation");
    doc = parse("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:a@b'/>");
    CU_ASSERT_EQUAL(usage_validate(u, pidf, &user, doc, &err), XCAP_INTERNAL);
    xmlFreeDoc(doc);
    xcap_err_release(&err);
    usage_close(u);
}

/* ---- rls-services: uniqueness across users and the global index ---- */

#define SVC(uri) "<service uri=\"" uri "\"><list/></service>"
#define RLS(body) "<rls-services xmlns=\"" RLS_NS "\">" body "</rls-services>"

static void test_rls_cross_user(void)
{
    struct rls_fx f;
    rls_open(&f);
    struct xcap_err err = {0};
    CU_ASSERT_EQUAL(rls_write(&f, ALICE, "index",
                              RLS(SVC("sip:friends@example.com") SVC("sip:friends-1@example.com")),
                              &err),
                    XCAP_OK);
    char e1[STORE_ETAG_MAX];
    char *before = rls_index(&f, e1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(before);

    /* RFC 4826 §4.4.5: bob may not take alice's URI; the alternatives are free across all users. */
    enum xcap_status st = rls_write(
        &f, BOB, "index", RLS(SVC("sip:bob-own@example.com") SVC("sip:friends@example.com")), &err);
    CU_ASSERT_EQUAL(st, XCAP_UNIQUENESS_FAILURE);
    CU_ASSERT_EQUAL_FATAL(err.n_exists, 1);
    CU_ASSERT_STRING_EQUAL(err.exists[0].field,
                           "rls-services/service%5B@uri=%22sip:friends@example.com%22%5D/@uri");
    CU_ASSERT_EQUAL_FATAL(err.exists[0].n_alt, 3);
    CU_ASSERT_STRING_EQUAL(err.exists[0].alt_values[0], "sip:friends-2@example.com");
    CU_ASSERT_STRING_EQUAL(err.exists[0].alt_values[1], "sip:friends-3@example.com");
    CU_ASSERT_STRING_EQUAL(err.exists[0].alt_values[2], "sip:friends-4@example.com");
    CU_ASSERT_PTR_NOT_NULL(strstr(err.phrase, "unique across all users"));
    xcap_err_release(&err);

    /* Nothing of bob's attempt is left: no document, index unchanged, his URI still free. */
    char e2[STORE_ETAG_MAX];
    char *after = rls_index(&f, e2);
    CU_ASSERT_STRING_EQUAL(e1, e2);
    CU_ASSERT_STRING_EQUAL(before, after);
    CU_ASSERT_PTR_NULL(strstr(after, "bob-own"));
    free(after);
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(f.store, false, &t), STORE_OK);
    struct store_doc d = {0};
    struct doc_key bobk = {"rls-services", "users", BOB, "index"};
    CU_ASSERT_EQUAL(store_doc_get(t, &bobk, &d), STORE_NOTFOUND);
    void *v = NULL;
    size_t vlen;
    CU_ASSERT_EQUAL(store_kv_get(t, USAGE_RLS_URI_TABLE, "sip:bob-own@example.com", 23, &v, &vlen),
                    STORE_NOTFOUND);
    store_txn_abort(t);

    /* Another document of the same user is another owner too. */
    st = rls_write(&f, ALICE, "second", RLS(SVC("sip:friends-1@example.com")), &err);
    CU_ASSERT_EQUAL(st, XCAP_UNIQUENESS_FAILURE);
    CU_ASSERT_EQUAL(err.n_exists, 1);
    xcap_err_release(&err);

    /* Rewriting one's own document with the same URIs is fine. */
    CU_ASSERT_EQUAL(rls_write(&f, ALICE, "index",
                              RLS(SVC("sip:friends-1@example.com") SVC("sip:friends@example.com")),
                              &err),
                    XCAP_OK);

    /* Once alice drops the URI, bob may have it. */
    CU_ASSERT_EQUAL(rls_write(&f, ALICE, "index", RLS(SVC("sip:friends-1@example.com")), &err),
                    XCAP_OK);
    CU_ASSERT_EQUAL(rls_write(&f, BOB, "index", RLS(SVC("sip:friends@example.com")), &err),
                    XCAP_OK);
    CU_ASSERT_EQUAL(rls_write(&f, ALICE, "index", RLS(SVC("sip:friends@example.com")), &err),
                    XCAP_UNIQUENESS_FAILURE);
    xcap_err_release(&err);
    free(before);
    rls_close(&f);
}

struct index_changes {
    size_t n;
    char prev[8][STORE_ETAG_MAX];
    char next[8][STORE_ETAG_MAX];
};

static int collect_index_changes(void *cls, const struct store_change *c)
{
    struct index_changes *x = cls;
    if (strcmp(c->key.tree, "global") == 0 && strcmp(c->key.path, "index") == 0 && x->n < 8) {
        CU_ASSERT_EQUAL(c->kind, STORE_CHANGE_PUT);
        snprintf(x->prev[x->n], STORE_ETAG_MAX, "%s", c->prev_etag);
        snprintf(x->next[x->n], STORE_ETAG_MAX, "%s", c->new_etag);
        x->n++;
    }
    return 0;
}

/* RFC 4826 §4.4.7, §4.4.8; RFC 4825 §8.2.7: every write rebuilds the union, with a new ETag and a
 * change-log record. */
static void test_rls_global_index(void)
{
    struct rls_fx f;
    rls_open(&f);
    struct xcap_err err = {0};
    char e0[STORE_ETAG_MAX], e1[STORE_ETAG_MAX], e2[STORE_ETAG_MAX], e3[STORE_ETAG_MAX],
        e4[STORE_ETAG_MAX];
    CU_ASSERT_PTR_NULL(rls_index(&f, e0));

    CU_ASSERT_EQUAL(
        rls_write(&f, ALICE, "index", RLS(SVC("sip:b@example.com") SVC("sip:a@example.com")), &err),
        XCAP_OK);
    char *x1 = rls_index(&f, e1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x1);
    CU_ASSERT_STRING_EQUAL(x1, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                               "<rls-services xmlns=\"" RLS_NS "\">\n"
                               "<service xmlns=\"" RLS_NS "\" uri=\"sip:a@example.com\"><list/>"
                               "</service>\n"
                               "<service xmlns=\"" RLS_NS "\" uri=\"sip:b@example.com\"><list/>"
                               "</service>\n"
                               "</rls-services>\n");

    CU_ASSERT_EQUAL(rls_write(&f, BOB, "index", RLS(SVC("sip:c@example.com")), &err), XCAP_OK);
    char *x2 = rls_index(&f, e2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x2);
    CU_ASSERT_STRING_NOT_EQUAL(e1, e2);
    CU_ASSERT_PTR_NOT_NULL(strstr(x2, "sip:a@example.com"));
    CU_ASSERT_PTR_NOT_NULL(strstr(x2, "sip:c@example.com"));

    /* The index is itself a valid rls-services document. */
    const struct doc_key gk = {"rls-services", "global", "", "index"};
    xmlDocPtr idoc = parse(x2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(idoc);
    CU_ASSERT_EQUAL(usage_validate(f.u, f.au, &gk, idoc, &err), XCAP_OK);
    xmlFreeDoc(idoc);

    CU_ASSERT_EQUAL(rls_write(&f, ALICE, "index", NULL, &err), XCAP_OK); /* delete */
    char *x3 = rls_index(&f, e3);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x3);
    CU_ASSERT_STRING_NOT_EQUAL(e2, e3);
    CU_ASSERT_PTR_NULL(strstr(x3, "sip:a@example.com"));
    CU_ASSERT_PTR_NOT_NULL(strstr(x3, "sip:c@example.com"));

    CU_ASSERT_EQUAL(rls_write(&f, BOB, "index", NULL, &err), XCAP_OK);
    char *x4 = rls_index(&f, e4);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x4);
    CU_ASSERT_STRING_NOT_EQUAL(e3, e4);
    CU_ASSERT_STRING_EQUAL(x4, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                               "<rls-services xmlns=\"" RLS_NS "\"/>\n");

    /* Four index records chaining the ETags; the tables are empty again. */
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(f.store, false, &t), STORE_OK);
    struct index_changes ic = {0};
    CU_ASSERT_EQUAL(store_change_read(t, 0, collect_index_changes, &ic), STORE_OK);
    CU_ASSERT_EQUAL_FATAL(ic.n, 4);
    CU_ASSERT_STRING_EQUAL(ic.prev[0], "");
    CU_ASSERT_STRING_EQUAL(ic.next[0], e1);
    CU_ASSERT_STRING_EQUAL(ic.prev[1], e1);
    CU_ASSERT_STRING_EQUAL(ic.next[1], e2);
    CU_ASSERT_STRING_EQUAL(ic.prev[2], e2);
    CU_ASSERT_STRING_EQUAL(ic.next[2], e3);
    CU_ASSERT_STRING_EQUAL(ic.prev[3], e3);
    CU_ASSERT_STRING_EQUAL(ic.next[3], e4);
    void *v = NULL;
    size_t vlen;
    CU_ASSERT_EQUAL(store_kv_get(t, USAGE_RLS_URI_TABLE, "sip:c@example.com", 17, &v, &vlen),
                    STORE_NOTFOUND);
    CU_ASSERT_EQUAL(
        store_kv_get(t, USAGE_RLS_DOC_TABLE, ALICE "\0index", sizeof ALICE + 5, &v, &vlen),
        STORE_NOTFOUND);
    store_txn_abort(t);
    free(x1);
    free(x2);
    free(x3);
    free(x4);
    rls_close(&f);
}

static int count_rows(void *cls, const void *key, size_t klen, const void *val, size_t vlen)
{
    (*(size_t *)cls)++;
    return 0;
}

/* A service is copied into the index as it is: inline lists with their own prefixes, extension
 * elements and attributes; a replaced document drops the URIs it no longer has. */
static void test_rls_index_copies_services(void)
{
    struct rls_fx f;
    rls_open(&f);
    struct xcap_err err = {0};
    const char *doc =
        "<rs:rls-services xmlns:rs=\"" RLS_NS
        "\" xmlns:rl=\"urn:ietf:params:xml:ns:resource-lists\""
        " xmlns:x=\"urn:example:ext\" xmlns:unused=\"urn:example:unused\">\n"
        "  <rs:service uri=\"sip:team@example.com\" x:owner=\"alice\">\n"
        "    <rs:list name=\"team\"><rl:entry uri=\"sip:bob@example.com\">"
        "<rl:display-name xml:lang=\"en\">Bob &amp; co</rl:display-name></rl:entry></rs:list>\n"
        "    <rs:packages><rs:package>presence</rs:package></rs:packages>\n"
        "    <x:note>kept</x:note>\n"
        "  </rs:service>\n"
        "  <rs:service uri=\"sip:gone@example.com\"><rs:list/></rs:service>\n"
        "</rs:rls-services>";
    CU_ASSERT_EQUAL_FATAL(rls_write(&f, ALICE, "index", doc, &err), XCAP_OK);
    char etag[STORE_ETAG_MAX];
    char *x = rls_index(&f, etag);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(x, "<rl:display-name xml:lang=\"en\">Bob &amp; co</rl:display-name>"));
    CU_ASSERT_PTR_NOT_NULL(strstr(x, "<x:note>kept</x:note>"));
    CU_ASSERT_PTR_NOT_NULL(strstr(x, "x:owner=\"alice\""));
    CU_ASSERT_PTR_NULL(strstr(x, "urn:example:unused"));

    /* Parsed back, every element is in its namespace. */
    xmlDocPtr idoc = parse(x);
    CU_ASSERT_PTR_NOT_NULL_FATAL(idoc);
    xmlNodePtr root = xmlDocGetRootElement(idoc);
    xmlNodePtr svc = root->children; /* services in URI order: sip:gone, then sip:team */
    while (svc &&
           !(svc->type == XML_ELEMENT_NODE && svc->properties &&
             strcmp((const char *)svc->properties->children->content, "sip:team@example.com") == 0))
        svc = svc->next;
    CU_ASSERT_PTR_NOT_NULL_FATAL(svc);
    CU_ASSERT_STRING_EQUAL((const char *)svc->ns->href, RLS_NS);
    xmlNodePtr list = svc->children;
    while (list && list->type != XML_ELEMENT_NODE)
        list = list->next;
    CU_ASSERT_PTR_NOT_NULL_FATAL(list);
    CU_ASSERT_STRING_EQUAL((const char *)list->name, "list");
    xmlNodePtr entry = list->children;
    CU_ASSERT_PTR_NOT_NULL_FATAL(entry);
    CU_ASSERT_PTR_NOT_NULL_FATAL(entry->ns);
    CU_ASSERT_STRING_EQUAL((const char *)entry->name, "entry");
    CU_ASSERT_STRING_EQUAL((const char *)entry->ns->href, "urn:ietf:params:xml:ns:resource-lists");
    const struct doc_key gk = {"rls-services", "global", "", "index"};
    CU_ASSERT_EQUAL(usage_validate(f.u, f.au, &gk, idoc, &err), XCAP_OK);
    xmlFreeDoc(idoc);
    free(x);

    CU_ASSERT_EQUAL(rls_write(&f, ALICE, "index", RLS(SVC("sip:team@example.com")), &err), XCAP_OK);
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(f.store, false, &t), STORE_OK);
    size_t rows = 0;
    CU_ASSERT_EQUAL(store_kv_scan(t, USAGE_RLS_URI_TABLE, NULL, 0, count_rows, &rows), STORE_OK);
    CU_ASSERT_EQUAL(rows, 1);
    void *v = NULL;
    size_t vlen = 0;
    CU_ASSERT_EQUAL_FATAL(
        store_kv_get(t, USAGE_RLS_DOC_TABLE, ALICE "\0index", sizeof ALICE + 5, &v, &vlen),
        STORE_OK);
    CU_ASSERT_EQUAL(vlen, sizeof "sip:team@example.com");
    CU_ASSERT_EQUAL(memcmp(v, "sip:team@example.com", vlen), 0);
    free(v);
    store_txn_abort(t);
    x = rls_index(&f, etag);
    CU_ASSERT_PTR_NULL(strstr(x, "gone"));
    CU_ASSERT_PTR_NULL(strstr(x, "x:note"));
    free(x);
    rls_close(&f);
}

/* ---- the index check (xdmctl check) ---- */

struct index_report {
    char lines[8][256];
    size_t n;
};

static void index_report_add(void *cls, const struct doc_key *k, const char *problem)
{
    struct index_report *r = cls;
    if (r->n < 8)
        snprintf(r->lines[r->n], sizeof r->lines[0], "%s%s%s", k ? k->path : "", k ? ": " : "",
                 problem);
    r->n++;
}

/* Runs the row's index check on ALICE's document xml and on every entry. */
static void rls_index_check(struct rls_fx *f, const char *xml, struct index_report *r)
{
    memset(r, 0, sizeof *r);
    struct doc_key k = {"rls-services", "users", ALICE, "index"};
    xmlDocPtr doc = parse(xml);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(f->store, false, &t), STORE_OK);
    CU_ASSERT_EQUAL(f->au->index_check(t, &k, doc, index_report_add, r), 0);
    CU_ASSERT_EQUAL(f->au->index_check(t, NULL, NULL, index_report_add, r), 0);
    store_txn_abort(t);
    xmlFreeDoc(doc);
}

/* The rls-services row checks its own index: nothing to say of a sound store; a missing or a
 * stray entry is named. Only this row keeps an index. */
static void test_rls_index_check(void)
{
    const struct appusage *const *rows;
    size_t n = appusage_all(&rows);
    for (size_t i = 0; i < n; i++)
        CU_ASSERT((rows[i]->index_check != NULL) == (strcmp(rows[i]->auid, "rls-services") == 0));

    struct rls_fx f;
    rls_open(&f);
    struct xcap_err err = {0};
    const char *doc = RLS(SVC("sip:b@example.com") SVC("sip:a@example.com"));
    CU_ASSERT_EQUAL_FATAL(rls_write(&f, ALICE, "index", doc, &err), XCAP_OK);
    struct index_report r;
    rls_index_check(&f, doc, &r);
    CU_ASSERT_EQUAL(r.n, 0);

    /* The document as it would be with one more service than the index has. */
    rls_index_check(
        &f, RLS(SVC("sip:b@example.com") SVC("sip:a@example.com") SVC("sip:c@example.com")), &r);
    CU_ASSERT_EQUAL_FATAL(r.n, 2);
    CU_ASSERT_STRING_EQUAL(r.lines[0], "index: the index rls_doc lists other service URIs");
    CU_ASSERT_STRING_EQUAL(r.lines[1],
                           "index: service URI sip:c@example.com is not indexed to it in rls_uri");

    /* An rls_uri entry whose document does not list it. */
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(f.store, true, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_kv_put(t, USAGE_RLS_URI_TABLE, "sip:z@example.com", 17,
                                 ALICE "\0index\0<service/>", sizeof ALICE + 16),
                    STORE_OK);
    CU_ASSERT_EQUAL(store_txn_commit(t), STORE_OK);
    rls_index_check(&f, doc, &r);
    CU_ASSERT_EQUAL_FATAL(r.n, 1);
    CU_ASSERT_STRING_EQUAL(r.lines[0], "rls_uri: service URI sip:z@example.com is indexed to " ALICE
                                       "/index, which does not list it");
    rls_close(&f);
}

/* ---- limits and performance ---- */

static char *icon_doc(size_t raw)
{
    size_t b64 = (raw + 2) / 3 * 4;
    char *s = malloc(b64 + 256);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    int n = sprintf(s, "<content xmlns=\"urn:oma:xml:prs:pres-content\"><mime-type>image/gif"
                       "</mime-type><encoding>base64</encoding><data>");
    memset(s + n, 'A', b64);
    size_t pad = (3 - raw % 3) % 3;
    memset(s + n + b64 - pad, '=', pad);
    strcpy(s + n + b64, "</data></content>");
    return s;
}

static void test_icon_default_limit(void)
{
    struct usage *u = open_usage(ROLE_PRESENCE);
    const struct appusage *au = appusage_find(ROLE_PRESENCE, "org.openmobilealliance.pres-content");
    struct doc_key k = {au->auid, "users", ALICE, "oma_status-icon/me"};
    size_t sizes[] = {USAGE_DEFAULT_MAX_ICON_SIZE, USAGE_DEFAULT_MAX_ICON_SIZE + 1};
    for (size_t i = 0; i < 2; i++) {
        char *xml = icon_doc(sizes[i]);
        xmlDocPtr doc = parse(xml);
        CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
        struct xcap_err err = {0};
        enum xcap_status st = usage_validate(u, au, &k, doc, &err);
        if (i == 0) {
            CU_ASSERT_EQUAL(st, XCAP_OK);
        } else {
            CU_ASSERT_EQUAL(st, XCAP_LOCAL_CONSTRAINT_FAILURE);
            CU_ASSERT(err.phrase && strstr(err.phrase, "at most 262144 bytes"));
        }
        xcap_err_release(&err);
        xmlFreeDoc(doc);
        free(xml);
    }
    usage_close(u);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *big_list(size_t n, bool dup_last)
{
    struct buf b;
    buf_init(&b, 64u << 20);
    buf_puts(&b, "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">"
                 "<list name=\"all\">\n");
    for (size_t i = 0; i < n; i++)
        buf_printf(&b,
                   "<entry uri=\"sip:user%zu@example.com\"><display-name>User %zu"
                   "</display-name></entry>\n",
                   dup_last && i == n - 1 ? (size_t)0 : i, i);
    buf_puts(&b, "</list></resource-lists>");
    size_t len;
    return buf_detach(&b, &len);
}

static void test_large_list_fast(void)
{
    struct usage *u = open_usage(ROLE_SHARED_LIST);
    const struct appusage *au = appusage_find(ROLE_SHARED_LIST, "resource-lists");
    struct doc_key k = {au->auid, "users", ALICE, "index"};
    for (int dup = 0; dup < 2; dup++) {
        char *xml = big_list(10000, dup);
        xmlDocPtr doc = parse(xml);
        CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
        struct xcap_err err = {0};
        double t0 = now_s();
        enum xcap_status st = usage_validate(u, au, &k, doc, &err);
        double dt = now_s() - t0;
        printf("\n  10000 entries%s: %.1f ms", dup ? " (one duplicate)" : "", dt * 1e3);
        CU_ASSERT_EQUAL(st, dup ? XCAP_UNIQUENESS_FAILURE : XCAP_OK);
        if (dup) {
            CU_ASSERT_EQUAL_FATAL(err.n_exists, 1);
            CU_ASSERT_STRING_EQUAL(
                err.exists[0].field,
                "resource-lists/list%5B@name=%22all%22%5D/entry%5B10000%5D/@uri");
        }
        if (!UNDER_VALGRIND())
            CU_ASSERT(dt < 0.5);
        xcap_err_release(&err);
        xmlFreeDoc(doc);
        free(xml);
    }
    usage_close(u);
}

/* One compiled schema set shared by threads, each with its own documents and errors. */
struct worker {
    struct usage *u;
    const struct appusage *au;
    int mismatches;
};

static void *validate_loop(void *arg)
{
    struct worker *w = arg;
    static const char good[] = "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">"
                               "<list name=\"a\"><entry uri=\"sip:x@y\"/></list></resource-lists>";
    static const char bad[] = "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">"
                              "<list name=\"a\"><entry/></list></resource-lists>";
    static const char dup[] = "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">"
                              "<list name=\"a\"/><list name=\"a\"/></resource-lists>";
    struct doc_key k = {"resource-lists", "users", ALICE, "index"};
    for (int i = 0; i < 150; i++) {
        const char *xml = i % 3 == 0 ? good : i % 3 == 1 ? bad : dup;
        enum xcap_status want = i % 3 == 0   ? XCAP_OK
                                : i % 3 == 1 ? XCAP_SCHEMA_VALIDATION_ERROR
                                             : XCAP_UNIQUENESS_FAILURE;
        xmlDocPtr doc = NULL;
        struct xcap_err err = {0};
        if (xdoc_parse(xml, strlen(xml), &doc, &err) != XCAP_OK ||
            usage_validate(w->u, w->au, &k, doc, &err) != want ||
            (want == XCAP_SCHEMA_VALIDATION_ERROR && !strstr(err.phrase, "line 1")))
            w->mismatches++;
        xcap_err_release(&err);
        if (doc)
            xmlFreeDoc(doc);
    }
    return NULL;
}

static void test_concurrent_validation(void)
{
    struct usage *u = open_usage(ROLE_SHARED_LIST);
    struct worker w[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){u, appusage_find(ROLE_SHARED_LIST, "resource-lists"), 0};
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, validate_loop, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CU_ASSERT_EQUAL(w[i].mismatches, 0);
    }
    usage_close(u);
}

int main(void)
{
    xdoc_global_init();
    CU_TestInfo tests[] = {
        {"cases: resource-lists", test_cases_resource_lists},
        {"cases: rls-services", test_cases_rls_services},
        {"cases: pres-rules", test_cases_pres_rules},
        {"cases: OMA pres-rules", test_cases_oma_pres_rules},
        {"cases: pidf-manipulation", test_cases_pidf},
        {"cases: OMA pres-content", test_cases_pres_content},
        {"cases: simservs (TS 24.623)", test_cases_simservs},
        {"simservs: forward-to targets", test_simservs_targets},
        {"simservs: the default document", test_default_document},
        {"every schema compiles", test_every_schema_compiles},
        {"error bodies are valid xcap-error", test_error_bodies_valid},
        {"xcap-caps bodies are valid", test_caps_valid},
        {"entity loader confined to the schema dir", test_loader_confined},
        {"tables, server-owned, NULL usage", test_contract_basics},
        {"rls: service URI unique across users", test_rls_cross_user},
        {"rls: global index after PUT and DELETE", test_rls_global_index},
        {"rls: index copies services unchanged", test_rls_index_copies_services},
        {"rls: the row checks its own index", test_rls_index_check},
        {"pres-content: default icon size limit", test_icon_default_limit},
        {"10000 entries validate fast", test_large_list_fast},
        {"validation from 4 threads", test_concurrent_validation},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {
        {"usage", NULL, NULL, NULL, NULL, tests},
        CU_SUITE_INFO_NULL,
    };
    int rc = unit_run(suites);
    xdoc_global_cleanup();
    return rc;
}

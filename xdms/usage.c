/* Application usages at run time: the compiled schema of each row of the role (RFC 4825 §5.3),
 * validation, and dispatch to the row's constraints (§5.4, §8.2.5) and interdependencies
 * (§8.2.7). What each usage is and checks lives in its row (appusage.h). */
#include "usage.h"

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlschemas.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "au_lists.h"
#include "log.h"
#include "xdoc.h"

/* Longest schema complaint quoted in a phrase; libxml2's "expected is one of" lists grow long. */
#define USAGE_MSG_MAX 400

/* The compiled schema of each row the role serves: schemas[i] is that of rows[i]
 * (appusage_list() order); n_schemas of them are compiled. */
struct usage {
    enum xdms_role role;
    size_t max_icon_size;
    struct au_lists_refs refs;
    const struct appusage *const *rows;
    xmlSchemaPtr *schemas;
    size_t n_schemas;
    char *default_doc; /* the operator's default document (default_document), or NULL */
};

const char *const *usage_store_tables(enum xdms_role role)
{
    /* One role's usages keep their tables in its store; at most one of them has any. */
    const struct appusage *const *rows;
    size_t n = appusage_list(role, &rows);
    for (size_t i = 0; i < n; i++)
        if (rows[i]->tables)
            return rows[i]->tables;
    return NULL;
}

/* ---- schema loading: files under the schema directory only ---- */

/* The real path of the schema directory, read by the entity loader. libxml2's loader hook takes
 * no user data, so this is the one piece of process state: written by usage_open() at start
 * (under the lock), read-only afterwards. */
static char usage_schema_root[PATH_MAX];
static pthread_mutex_t usage_open_lock = PTHREAD_MUTEX_INITIALIZER;

/* Every external resource libxml2 wants (schema imports and includes, and anything an instance
 * document might name) comes through here: a file inside the schema directory is opened, any
 * other URL (http:, ftp:, files elsewhere) is refused, so no request can make us read the
 * network or the file system. */
static xmlParserInputPtr usage_entity_loader(const char *url, const char *id, xmlParserCtxtPtr ctxt)
{
    if (!url)
        return NULL;
    const char *path = url;
    if (strncasecmp(url, "file://", 7) == 0)
        path = url + 7;
    char real[PATH_MAX];
    size_t n = strlen(usage_schema_root);
    if (strstr(path, "://") || !realpath(path, real) || n == 0 ||
        strncmp(real, usage_schema_root, n) != 0 || real[n] != '/') {
        log_warn("schema loader: refused to load \"%.200s\"", url);
        return NULL;
    }
    return xmlNewInputFromFile(ctxt, real);
}

/* The first complaint libxml2 reports during one parse or validation (per call, so threads
 * never share it). */
struct usage_complaint {
    bool set;
    int line;
    char msg[USAGE_MSG_MAX + 4];
};

static void usage_collect(void *cls, xmlErrorPtr e)
{
    struct usage_complaint *c = cls;
    if (c->set || !e || !e->message)
        return;
    c->set = true;
    c->line = e->line;
    size_t n = strlen(e->message);
    while (n && (e->message[n - 1] == '\n' || e->message[n - 1] == ' '))
        n--;
    if (n > USAGE_MSG_MAX) {
        n = USAGE_MSG_MAX;
        while (n && ((unsigned char)e->message[n] & 0xC0) == 0x80) /* keep UTF-8 whole */
            n--;
        memcpy(c->msg, e->message, n);
        memcpy(c->msg + n, "...", 4);
    } else {
        memcpy(c->msg, e->message, n);
        c->msg[n] = '\0';
    }
}

static xmlSchemaPtr usage_compile(const char *dir, const char *file)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, file) >= sizeof path) {
        log_error("schema path too long: %s/%s", dir, file);
        return NULL;
    }
    xmlSchemaParserCtxtPtr pc = xmlSchemaNewParserCtxt(path);
    if (!pc) {
        log_error("schema %s: out of memory", path);
        return NULL;
    }
    struct usage_complaint c = {0};
    xmlSchemaSetParserStructuredErrors(pc, usage_collect, &c);
    xmlSchemaPtr s = xmlSchemaParse(pc);
    xmlSchemaFreeParserCtxt(pc);
    if (!s)
        log_error("schema %s: %s", path, c.set ? c.msg : "cannot be compiled");
    return s;
}

int usage_open(enum xdms_role role, const char *schema_dir, struct usage **out)
{
    *out = NULL;
    struct usage *u = calloc(1, sizeof *u);
    if (!u)
        return -1;
    u->role = role;
    u->max_icon_size = USAGE_DEFAULT_MAX_ICON_SIZE;
    pthread_mutex_lock(&usage_open_lock);
    if (!realpath(schema_dir, usage_schema_root)) {
        usage_schema_root[0] = '\0';
        pthread_mutex_unlock(&usage_open_lock);
        log_error("schema directory %s: cannot be opened", schema_dir);
        free(u);
        return -1;
    }
    xmlSetExternalEntityLoader(usage_entity_loader);
    size_t n = appusage_list(role, &u->rows);
    int rc = n && !(u->schemas = calloc(n, sizeof *u->schemas)) ? -1 : 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        xmlSchemaPtr s = usage_compile(usage_schema_root, u->rows[i]->xsd);
        if (!s)
            rc = -1;
        else
            u->schemas[u->n_schemas++] = s;
    }
    pthread_mutex_unlock(&usage_open_lock);
    if (rc < 0) {
        usage_close(u);
        return -1;
    }
    *out = u;
    return 0;
}

void usage_close(struct usage *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < u->n_schemas; i++)
        xmlSchemaFree(u->schemas[i]);
    free(u->schemas);
    free(u->default_doc);
    free(u);
}

const char *usage_default_schema_dir(void)
{
#ifdef XDM_SCHEMA_DIR
    return XDM_SCHEMA_DIR;
#else
    return "schemas";
#endif
}

void usage_set_max_icon_size(struct usage *u, size_t bytes)
{
    u->max_icon_size = bytes ? bytes : USAGE_DEFAULT_MAX_ICON_SIZE;
}

int usage_set_references(struct usage *u, const char *xcap_root, bool allow_foreign)
{
    if (!xcap_root) {
        memset(&u->refs, 0, sizeof u->refs);
        u->refs.allow_foreign = allow_foreign;
        return 0;
    }
    return au_lists_refs_init(&u->refs, xcap_root, allow_foreign);
}

/* ---- schema validation ---- */

static xmlSchemaPtr usage_schema_for(const struct usage *u, const struct appusage *au)
{
    for (size_t i = 0; i < u->n_schemas; i++)
        if (u->rows[i] == au)
            return u->schemas[i];
    return NULL;
}

/* libxml2 names elements "{namespace}local"; the usage's own namespace is implied for the
 * client, so it is left out of the phrase. */
static void usage_strip_ns(char *msg, const char *ns)
{
    char pat[256];
    if ((size_t)snprintf(pat, sizeof pat, "{%s}", ns) >= sizeof pat)
        return;
    size_t plen = strlen(pat);
    char *p;
    while ((p = strstr(msg, pat)) != NULL)
        memmove(p, p + plen, strlen(p + plen) + 1);
}

static enum xcap_status usage_schema_validate(xmlSchemaPtr s, const char *ns, xmlDocPtr doc,
                                              struct xcap_err *err)
{
    xmlSchemaValidCtxtPtr vc = xmlSchemaNewValidCtxt(s);
    if (!vc)
        return xcap_fail(err, XCAP_INTERNAL, "out of memory");
    struct usage_complaint c = {0};
    xmlSchemaSetValidStructuredErrors(vc, usage_collect, &c);
    int rc = xmlSchemaValidateDoc(vc, doc);
    xmlSchemaFreeValidCtxt(vc);
    if (rc == 0 && !c.set)
        return XCAP_OK;
    if (rc < 0 && !c.set)
        return xcap_fail(err, XCAP_INTERNAL, "schema validation failed to run");
    usage_strip_ns(c.msg, ns);
    if (c.line > 0)
        return xcap_fail(err, XCAP_SCHEMA_VALIDATION_ERROR, "line %d: %s", c.line, c.msg);
    return xcap_fail(err, XCAP_SCHEMA_VALIDATION_ERROR, "%s", c.msg);
}

/* ---- the contract ---- */

enum xcap_status usage_validate(struct usage *u, const struct appusage *au, const struct doc_key *k,
                                xmlDocPtr doc, struct xcap_err *err)
{
    if (!u)
        return XCAP_OK;
    xmlSchemaPtr s = usage_schema_for(u, au);
    if (!s)
        return xcap_fail(err, XCAP_INTERNAL, "no schema for %s", au->auid);
    xmlNodePtr root = xmlDocGetRootElement(doc);
    const char *root_ns = appusage_root_ns(au);
    if (!xdoc_is(root, root_ns, au->root))
        return xcap_fail(err, XCAP_SCHEMA_VALIDATION_ERROR,
                         "the document element must be <%s> in namespace %s", au->root, root_ns);
    enum xcap_status st = usage_schema_validate(s, root_ns, doc, err);
    if (st != XCAP_OK || !au->check)
        return st;
    /* References may point into the owner's documents (or global ones). A global document has
     * no owner; who may write it is decided above this layer. */
    struct appusage_check c = {
        .key = k,
        .owner = strcmp(k->tree, "users") == 0 ? k->xui : NULL,
        .refs = &u->refs,
        .max_icon_size = u->max_icon_size,
    };
    return au->check(&c, root, err);
}

enum xcap_status usage_interdepend(struct usage *u, struct store_txn *t, const struct appusage *au,
                                   const struct doc_key *k, xmlDocPtr doc, struct xcap_err *err)
{
    if (!u || !au->interdepend)
        return XCAP_OK;
    return au->interdepend(t, k, doc, err);
}

bool usage_server_owned(const struct appusage *au, const struct doc_key *k)
{
    return au && k && au->server_owned && au->server_owned(k);
}

/* ---- default documents ---- */

/* The row of the role with a default document, or NULL. */
static const struct appusage *usage_default_row(const struct usage *u)
{
    for (size_t i = 0; i < u->n_schemas; i++)
        if (u->rows[i]->default_name)
            return u->rows[i];
    return NULL;
}

int usage_set_default_doc(struct usage *u, const char *path)
{
    const struct appusage *au = usage_default_row(u);
    if (!au) {
        log_error("default_document %s: no application usage of this role has a default "
                  "document",
                  path);
        return -1;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        log_error("default_document %s: cannot be read", path);
        return -1;
    }
    char *data = malloc(USAGE_DEFAULT_DOC_MAX + 1);
    size_t n = data ? fread(data, 1, USAGE_DEFAULT_DOC_MAX + 1, f) : 0;
    bool bad = ferror(f) != 0;
    fclose(f);
    if (!data || bad || n > USAGE_DEFAULT_DOC_MAX) {
        log_error("default_document %s: %s", path,
                  !data ? "out of memory"
                  : bad ? "read error"
                        : "larger than 64 KiB");
        free(data);
        return -1;
    }
    data[n] = '\0';
    /* Checked like a PUT of the document by a user: what is refused here would be refused to
     * every handset reading it. */
    xmlDocPtr doc = NULL;
    struct xcap_err err = {0};
    struct doc_key k = {au->auid, "users", "sip:default@invalid", au->default_name};
    enum xcap_status st = xdoc_parse(data, n, &doc, &err);
    if (st == XCAP_OK)
        st = usage_validate(u, au, &k, doc, &err);
    if (doc)
        xmlFreeDoc(doc);
    if (st != XCAP_OK) {
        log_error("default_document %s: not a valid %s document: %s", path, au->auid,
                  err.phrase ? err.phrase : status_phrase(st));
        xcap_err_release(&err);
        free(data);
        return -1;
    }
    free(u->default_doc);
    u->default_doc = data;
    return 0;
}

const char *usage_default_doc(const struct usage *u, const struct appusage *au)
{
    if (!au->default_name)
        return NULL;
    return u && u->default_doc ? u->default_doc : au->default_doc;
}

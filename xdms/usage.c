/* Application usages: which schema set each AUID validates against (RFC 4825 §5.3), the checks a
 * schema cannot express (§5.4, §8.2.5), and dispatch to the list and rls-services modules. */
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

#include "log.h"
#include "usage_internal.h"

#define USAGE_NS_CP "urn:ietf:params:xml:ns:common-policy"
#define USAGE_NS_PR "urn:ietf:params:xml:ns:pres-rules"
#define USAGE_NS_OCP "urn:oma:xml:xdm:common-policy"
#define USAGE_NS_PC "urn:oma:xml:prs:pres-content"

/* Longest schema complaint quoted in a phrase; libxml2's "expected is one of" lists grow long. */
#define USAGE_MSG_MAX 400

enum usage_kind {
    USAGE_RESOURCE_LISTS,
    USAGE_RLS_SERVICES,
    USAGE_PRES_RULES,
    USAGE_OMA_PRES_RULES,
    USAGE_PIDF,
    USAGE_PRES_CONTENT,
};

/* The file each AUID's schema set starts from and the document element it must have: a schema
 * set declares more global elements than the one root (rls-services imports resource-lists,
 * pres-rules declares every transformation), so the root is checked by name as well. */
struct usage_def {
    const char *auid;
    const char *file;
    const char *root;
    enum usage_kind kind;
};

static const struct usage_def usage_defs[] = {
    {"resource-lists", "resource-lists.xsd", "resource-lists", USAGE_RESOURCE_LISTS},
    {"rls-services", "rls-services.xsd", "rls-services", USAGE_RLS_SERVICES},
    {"pres-rules", "usage-pres-rules.xsd", "ruleset", USAGE_PRES_RULES},
    {"org.openmobilealliance.pres-rules", "usage-oma-pres-rules.xsd", "ruleset",
     USAGE_OMA_PRES_RULES},
    {"pidf-manipulation", "usage-pidf-manipulation.xsd", "presence", USAGE_PIDF},
    {"org.openmobilealliance.pres-content", "prs_presContent-v1_0.xsd", "content",
     USAGE_PRES_CONTENT},
};

#define USAGE_DEF_COUNT (sizeof usage_defs / sizeof usage_defs[0])

struct usage_schema {
    const struct usage_def *def;
    xmlSchemaPtr schema;
};

struct usage {
    enum xdms_role role;
    size_t max_icon_size;
    struct usage_refs refs;
    struct usage_schema schemas[USAGE_DEF_COUNT];
    size_t n_schemas;
};

static const char *const usage_rls_tables[] = {USAGE_RLS_URI_TABLE, USAGE_RLS_DOC_TABLE, NULL};

const char *const *usage_store_tables(enum xdms_role role)
{
    return role == ROLE_RLS ? usage_rls_tables : NULL;
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
    int rc = 0;
    for (size_t i = 0; i < USAGE_DEF_COUNT && rc == 0; i++) {
        const struct appusage *au = appusage_find(role, usage_defs[i].auid);
        if (!au)
            continue;
        xmlSchemaPtr s = usage_compile(usage_schema_root, usage_defs[i].file);
        if (!s) {
            rc = -1;
            break;
        }
        u->schemas[u->n_schemas].def = &usage_defs[i];
        u->schemas[u->n_schemas].schema = s;
        u->n_schemas++;
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
        xmlSchemaFree(u->schemas[i].schema);
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
    return usage_refs_init(&u->refs, xcap_root, allow_foreign);
}

/* ---- small tree helpers shared by the usage_*.c files ---- */

bool usage_is(xmlNodePtr el, const char *ns, const char *local)
{
    return el && el->type == XML_ELEMENT_NODE && el->ns && el->ns->href &&
           strcmp((const char *)el->ns->href, ns) == 0 &&
           strcmp((const char *)el->name, local) == 0;
}

xmlNodePtr usage_next(xmlNodePtr el)
{
    for (el = el ? el->next : NULL; el && el->type != XML_ELEMENT_NODE; el = el->next)
        ;
    return el;
}

xmlNodePtr usage_first_child(xmlNodePtr el)
{
    xmlNodePtr c = el ? el->children : NULL;
    while (c && c->type != XML_ELEMENT_NODE)
        c = c->next;
    return c;
}

const char *usage_attr(xmlNodePtr el, const char *name)
{
    for (xmlAttrPtr a = el->properties; a; a = a->next)
        if (!a->ns && strcmp((const char *)a->name, name) == 0) {
            /* Attribute values are one text node in a parsed tree (no entity references:
             * xdoc_parse() substitutes nothing and refuses DTDs). */
            xmlNodePtr t = a->children;
            if (!t)
                return "";
            if (t->type == XML_TEXT_NODE && !t->next && t->content)
                return (const char *)t->content;
            return NULL;
        }
    return NULL;
}

char *usage_text(xmlNodePtr el)
{
    xmlChar *raw = xmlNodeGetContent(el);
    if (!raw)
        return NULL;
    const char *s = (const char *)raw;
    s += strspn(s, " \t\r\n");
    size_t n = strlen(s);
    while (n && strchr(" \t\r\n", s[n - 1]))
        n--;
    char *out = strndup(s, n);
    xmlFree(raw);
    return out;
}

/* ---- schema validation ---- */

static const struct usage_schema *usage_schema_for(const struct usage *u, const char *auid)
{
    for (size_t i = 0; i < u->n_schemas; i++)
        if (strcmp(u->schemas[i].def->auid, auid) == 0)
            return &u->schemas[i];
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

static enum xcap_status usage_schema_validate(const struct usage_schema *s, const char *ns,
                                              xmlDocPtr doc, struct xcap_err *err)
{
    xmlSchemaValidCtxtPtr vc = xmlSchemaNewValidCtxt(s->schema);
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

/* ---- OMA presence rules (SPEC OPR-4..OPR-6) ---- */

static enum xcap_status usage_check_oma_rule(xmlNodePtr rule, const char *owner,
                                             const struct usage_refs *refs, struct xcap_err *err)
{
    const char *id = usage_attr(rule, "id");
    if (!id)
        id = "?";
    /* OMA Presence XDM: a rule's conditions are not combined; each kind appears at most once. */
    static const struct {
        const char *ns, *local;
    } once[] = {
        {USAGE_NS_CP, "identity"},
        {USAGE_NS_OCP, "external-list"},
        {USAGE_NS_OCP, "other-identity"},
        {USAGE_NS_OCP, "anonymous-request"},
    };
    xmlNodePtr transformations = NULL, actions = NULL;
    for (xmlNodePtr part = usage_first_child(rule); part; part = usage_next(part)) {
        if (usage_is(part, USAGE_NS_CP, "actions"))
            actions = part;
        else if (usage_is(part, USAGE_NS_CP, "transformations"))
            transformations = part;
        if (!usage_is(part, USAGE_NS_CP, "conditions"))
            continue;
        unsigned count[sizeof once / sizeof once[0]] = {0};
        for (xmlNodePtr c = usage_first_child(part); c; c = usage_next(c)) {
            for (size_t i = 0; i < sizeof once / sizeof once[0]; i++)
                if (usage_is(c, once[i].ns, once[i].local) && ++count[i] > 1)
                    return xcap_fail(err, XCAP_CONSTRAINT_FAILURE,
                                     "rule \"%.100s\": at most one <%s> condition per rule", id,
                                     once[i].local);
            if (!usage_is(c, USAGE_NS_OCP, "external-list"))
                continue;
            /* OPR-6: the listed members come from the owner's own resource lists. */
            for (xmlNodePtr e = usage_first_child(c); e; e = usage_next(e)) {
                const char *anc = usage_is(e, USAGE_NS_OCP, "entry") ? usage_attr(e, "anc") : NULL;
                char why[160];
                if (anc && !usage_ref_ok(anc, USAGE_REF_ANY, "list", owner, refs, why, sizeof why))
                    return xcap_fail(err, XCAP_CONSTRAINT_FAILURE,
                                     "rule \"%.100s\": external-list entry \"%.200s\" %s", id, anc,
                                     why);
            }
        }
    }
    /* OPR-5: a watcher that is not allowed gets nothing, so a rule that blocks, confirms or
     * polite-blocks carries no transformations. A rule without <sub-handling> is left alone. */
    xmlNodePtr sh = NULL;
    for (xmlNodePtr a = usage_first_child(actions); a && !sh; a = usage_next(a))
        if (usage_is(a, USAGE_NS_PR, "sub-handling"))
            sh = a;
    if (!sh || !usage_first_child(transformations))
        return XCAP_OK;
    char *v = usage_text(sh);
    if (!v)
        return xcap_fail(err, XCAP_INTERNAL, "out of memory");
    enum xcap_status st = XCAP_OK;
    if (strcmp(v, "allow") != 0)
        st = xcap_fail(err, XCAP_CONSTRAINT_FAILURE,
                       "rule \"%.100s\": sub-handling is %s, so <transformations> must be empty",
                       id, v);
    free(v);
    return st;
}

static enum xcap_status usage_check_oma_rules(xmlNodePtr root, const char *owner,
                                              const struct usage_refs *refs, struct xcap_err *err)
{
    for (xmlNodePtr r = usage_first_child(root); r; r = usage_next(r)) {
        if (!usage_is(r, USAGE_NS_CP, "rule"))
            continue;
        enum xcap_status st = usage_check_oma_rule(r, owner, refs, err);
        if (st != XCAP_OK)
            return st;
    }
    return XCAP_OK;
}

/* ---- OMA presence content (SPEC PC-1, PC-2) ---- */

/* Decoded size of base64 text (RFC 4648 §4; white space between groups is allowed, as in
 * line-wrapped data). Returns -1 when s is not base64. */
static long long usage_base64_size(const char *s)
{
    size_t n = 0, pad = 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n')
            continue;
        if (ch == '=') {
            if (++pad > 2)
                return -1;
        } else if (pad || !((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                            (ch >= '0' && ch <= '9') || ch == '+' || ch == '/')) {
            return -1;
        }
        n++;
    }
    if (n % 4 != 0)
        return -1;
    return (long long)(n / 4 * 3 - pad);
}

/* PC-1: icons are stored as oma_status-icon/<name> (OMA; RCS clients use the document name
 * rcs_status_icon there) or, for older RCS clients, rcs_status_icon/<name>. A document anywhere
 * else would never be found by a watcher, so it is refused rather than stored. */
static bool usage_icon_path_ok(const char *path)
{
    static const char *const dirs[] = {"oma_status-icon/", "rcs_status_icon/"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        size_t n = strlen(dirs[i]);
        if (strncmp(path, dirs[i], n) == 0 && path[n] && !strchr(path + n, '/'))
            return true;
    }
    return false;
}

static enum xcap_status usage_check_content(const struct usage *u, const struct doc_key *k,
                                            xmlNodePtr root, struct xcap_err *err)
{
    if (!usage_icon_path_ok(k->path))
        return xcap_fail(err, XCAP_CONSTRAINT_FAILURE,
                         "presence content is stored as oma_status-icon/<name> "
                         "(or rcs_status_icon/<name>)");
    xmlNodePtr mime = NULL, enc = NULL, data = NULL;
    for (xmlNodePtr c = usage_first_child(root); c; c = usage_next(c)) {
        if (usage_is(c, USAGE_NS_PC, "mime-type"))
            mime = c;
        else if (usage_is(c, USAGE_NS_PC, "encoding"))
            enc = c;
        else if (usage_is(c, USAGE_NS_PC, "data"))
            data = c;
    }
    enum xcap_status st = XCAP_OK;
    char *m = mime ? usage_text(mime) : NULL;
    char *e = enc ? usage_text(enc) : NULL;
    char *d = data ? usage_text(data) : NULL;
    if ((mime && !m) || (enc && !e) || (data && !d)) {
        st = xcap_fail(err, XCAP_INTERNAL, "out of memory");
        goto done;
    }
    if (m && strcasecmp(m, "image/jpeg") != 0 && strcasecmp(m, "image/gif") != 0 &&
        strcasecmp(m, "image/png") != 0) {
        st = xcap_fail(err, XCAP_LOCAL_CONSTRAINT_FAILURE,
                       "mime-type \"%.100s\" is not accepted: use image/jpeg, image/gif or "
                       "image/png",
                       m);
        goto done;
    }
    long long size = d ? (long long)strlen(d) : 0;
    if (e && strcasecmp(e, "base64") == 0 && d) {
        /* The encoding is the document's own format, not local policy: wrong data breaks every
         * watcher that decodes it, so it is a constraint failure (RFC 4825 §8.2.5). */
        if ((size = usage_base64_size(d)) < 0) {
            st = xcap_fail(err, XCAP_CONSTRAINT_FAILURE, "<data> is not valid base64");
            goto done;
        }
    }
    if ((unsigned long long)size > u->max_icon_size)
        st = xcap_fail(err, XCAP_LOCAL_CONSTRAINT_FAILURE,
                       "the icon is %lld bytes; at most %zu bytes are accepted", size,
                       u->max_icon_size);
done:
    free(m);
    free(e);
    free(d);
    return st;
}

/* ---- the contract ---- */

enum xcap_status usage_validate(struct usage *u, const struct appusage *au, const struct doc_key *k,
                                xmlDocPtr doc, struct xcap_err *err)
{
    if (!u)
        return XCAP_OK;
    const struct usage_schema *s = usage_schema_for(u, au->auid);
    if (!s)
        return xcap_fail(err, XCAP_INTERNAL, "no schema for %s", au->auid);
    xmlNodePtr root = xmlDocGetRootElement(doc);
    const char *root_ns = appusage_root_ns(au);
    if (!usage_is(root, root_ns, s->def->root))
        return xcap_fail(err, XCAP_SCHEMA_VALIDATION_ERROR,
                         "the document element must be <%s> in namespace %s", s->def->root,
                         root_ns);
    enum xcap_status st = usage_schema_validate(s, root_ns, doc, err);
    if (st != XCAP_OK)
        return st;
    /* RL-8, OPR-6, RLS-4: references may point into the owner's documents (or global ones). A
     * global document has no owner; who may write it is decided above this layer. */
    const char *owner = strcmp(k->tree, "users") == 0 ? k->xui : NULL;
    switch (s->def->kind) {
    case USAGE_RESOURCE_LISTS:
        return usage_lists_check(root, owner, &u->refs, err);
    case USAGE_RLS_SERVICES:
        if ((st = usage_lists_check_rls(root, owner, &u->refs, err)) != XCAP_OK)
            return st;
        /* In the users tree, usage_interdepend() checks URI uniqueness against the index as
         * well, with alt-values that are free there; elsewhere only the document counts. */
        return owner ? XCAP_OK : usage_rls_unique(NULL, NULL, 0, root, err);
    case USAGE_OMA_PRES_RULES:
        return usage_check_oma_rules(root, owner, &u->refs, err);
    case USAGE_PRES_CONTENT:
        return usage_check_content(u, k, root, err);
    case USAGE_PRES_RULES: /* PR-5: the schema says it all */
    case USAGE_PIDF:       /* PM-3; ids are xs:ID, unique through the schema */
        return XCAP_OK;
    }
    return XCAP_OK;
}

enum xcap_status usage_interdepend(struct usage *u, struct store_txn *t, const struct appusage *au,
                                   const struct doc_key *k, xmlDocPtr doc, struct xcap_err *err)
{
    if (!u || strcmp(au->auid, "rls-services") != 0)
        return XCAP_OK;
    return usage_rls_interdepend(t, k, doc, err);
}

bool usage_server_owned(const struct appusage *au, const struct doc_key *k)
{
    /* RFC 4826 §4.4.8: the global index is made by the server from all users' documents. */
    return au && k && strcmp(au->auid, "rls-services") == 0 && strcmp(k->tree, "global") == 0 &&
           strcmp(k->path, "index") == 0;
}

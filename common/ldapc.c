/* The LDAP client of the enterprise directory (ldapc.h) over OpenLDAP's libldap: the one
 * LDAP client library Debian ships for C, the one slapd is tested with, and it has the paged
 * results control and per-handle timeouts built in. */
#include "ldapc.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>
#include <sys/time.h>

#include <ldap.h>

#include "buf.h"
#include "log.h"

#define LDAPC_PAGE_SIZE 500
#define LDAPC_VALUE_MAX 4096

struct ldapc {
    char *uri;
    char *bind_dn;
    char *bind_password;
    unsigned timeout_ms;
    LDAP *ld; /* NULL while not connected */
};

struct ldapc_entry {
    LDAP *ld;
    LDAPMessage *msg;
    const char *dn;
};

static atomic_uint_fast64_t ldapc_counters[LDAPC_COUNTER_COUNT];

void ldapc_count(enum ldapc_counter k)
{
    if ((unsigned)k < LDAPC_COUNTER_COUNT)
        atomic_fetch_add_explicit(&ldapc_counters[k], 1, memory_order_relaxed);
}

const char *ldapc_strerror(enum ldapc_rc rc)
{
    switch (rc) {
    case LDAPC_OK:
        return "ok";
    case LDAPC_NOT_FOUND:
        return "not found";
    case LDAPC_BAD_PASSWORD:
        return "invalid credentials";
    case LDAPC_UNAVAILABLE:
        return "directory unavailable";
    case LDAPC_TOO_MANY:
        return "too many entries";
    case LDAPC_ERROR:
        return "directory error";
    }
    return "?";
}

static char *ldapc_strdup0(const char *s)
{
    return strdup(s ? s : "");
}

void ldapc_free(struct ldapc *c)
{
    if (!c)
        return;
    if (c->ld)
        ldap_unbind_ext_s(c->ld, NULL, NULL);
    free(c->uri);
    free(c->bind_dn);
    if (c->bind_password)
        memset(c->bind_password, 0, strlen(c->bind_password));
    free(c->bind_password);
    free(c);
}

struct ldapc *ldapc_new(const struct ldapc_options *o)
{
    struct ldapc *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->uri = ldapc_strdup0(o->uri);
    c->bind_dn = ldapc_strdup0(o->bind_dn);
    c->bind_password = ldapc_strdup0(o->bind_password);
    c->timeout_ms = o->timeout_ms ? o->timeout_ms : 2000;
    if (!c->uri || !c->bind_dn || !c->bind_password) {
        ldapc_free(c);
        return NULL;
    }
    if (strncmp(c->uri, "ldap://", 7) != 0 && strncmp(c->uri, "ldaps://", 8) != 0 &&
        strncmp(c->uri, "ldapi://", 8) != 0) {
        log_error("ldap_uri \"%s\" is not an ldap://, ldaps:// or ldapi:// URI", c->uri);
        ldapc_free(c);
        return NULL;
    }
    return c;
}

static struct timeval ldapc_tv(unsigned ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};
}

static enum ldapc_rc ldapc_rc_of(int err)
{
    switch (err) {
    case LDAP_SUCCESS:
        return LDAPC_OK;
    case LDAP_NO_SUCH_OBJECT:
        return LDAPC_NOT_FOUND;
    case LDAP_INVALID_CREDENTIALS:
    case LDAP_INAPPROPRIATE_AUTH:
    case LDAP_UNWILLING_TO_PERFORM:
        return LDAPC_BAD_PASSWORD;
    case LDAP_SERVER_DOWN:
    case LDAP_CONNECT_ERROR:
    case LDAP_TIMEOUT:
    case LDAP_TIMELIMIT_EXCEEDED:
    case LDAP_BUSY:
    case LDAP_UNAVAILABLE:
        return LDAPC_UNAVAILABLE;
    case LDAP_SIZELIMIT_EXCEEDED:
        return LDAPC_TOO_MANY;
    default:
        return LDAPC_ERROR;
    }
}

/* A new handle with the bounds on every call (LDAPv3, no referral chasing: a referral would
 * take a lookup to a server nobody configured). */
static int ldapc_handle(const struct ldapc *c, LDAP **out)
{
    LDAP *ld = NULL;
    int err = ldap_initialize(&ld, c->uri);
    if (err != LDAP_SUCCESS)
        return err;
    int v3 = LDAP_VERSION3;
    struct timeval tv = ldapc_tv(c->timeout_ms);
    if ((err = ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3)) != LDAP_OPT_SUCCESS ||
        (err = ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF)) != LDAP_OPT_SUCCESS ||
        (err = ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv)) != LDAP_OPT_SUCCESS ||
        (err = ldap_set_option(ld, LDAP_OPT_TIMEOUT, &tv)) != LDAP_OPT_SUCCESS) {
        ldap_unbind_ext_s(ld, NULL, NULL);
        return LDAP_LOCAL_ERROR;
    }
    *out = ld;
    return LDAP_SUCCESS;
}

static int ldapc_bind(LDAP *ld, const char *dn, const char *password)
{
    struct berval cred = {.bv_len = strlen(password), .bv_val = (char *)password};
    return ldap_sasl_bind_s(ld, dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
}

static int ldapc_connect(struct ldapc *c)
{
    if (c->ld)
        return LDAP_SUCCESS;
    LDAP *ld;
    int err = ldapc_handle(c, &ld);
    if (err != LDAP_SUCCESS)
        return err;
    if (c->bind_dn[0] && (err = ldapc_bind(ld, c->bind_dn, c->bind_password)) != LDAP_SUCCESS) {
        ldap_unbind_ext_s(ld, NULL, NULL);
        return err;
    }
    c->ld = ld;
    return LDAP_SUCCESS;
}

static void ldapc_disconnect(struct ldapc *c)
{
    if (c->ld)
        ldap_unbind_ext_s(c->ld, NULL, NULL);
    c->ld = NULL;
}

const char *ldapc_entry_dn(const struct ldapc_entry *e)
{
    return e->dn ? e->dn : "";
}

size_t ldapc_entry_values(const struct ldapc_entry *e, const char *attr, char **out, size_t max)
{
    struct berval **vals = ldap_get_values_len(e->ld, e->msg, attr);
    size_t n = 0;
    for (size_t i = 0; vals && vals[i] && n < max; i++) {
        const struct berval *v = vals[i];
        if (v->bv_len > LDAPC_VALUE_MAX || memchr(v->bv_val, '\0', v->bv_len))
            continue;
        if (!(out[n] = strndup(v->bv_val, v->bv_len)))
            break;
        n++;
    }
    if (vals)
        ldap_value_free_len(vals);
    return n;
}

void ldapc_values_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
}

struct ldapc_page {
    size_t seen;
    size_t max;
    bool stop;
    int (*fn)(void *cls, const struct ldapc_entry *e);
    void *cls;
};

/* The entries of one page; LDAPC_TOO_MANY past max. */
static enum ldapc_rc ldapc_page_entries(LDAP *ld, LDAPMessage *res, struct ldapc_page *pg)
{
    for (LDAPMessage *m = ldap_first_entry(ld, res); m && !pg->stop; m = ldap_next_entry(ld, m)) {
        if (pg->seen == pg->max)
            return LDAPC_TOO_MANY;
        pg->seen++;
        char *dn = ldap_get_dn(ld, m);
        struct ldapc_entry e = {.ld = ld, .msg = m, .dn = dn};
        if (pg->fn(pg->cls, &e))
            pg->stop = true;
        ldap_memfree(dn);
    }
    return LDAPC_OK;
}

/* One search, page by page. Returns an LDAP result code; *ours is set when *rc is a verdict of
 * ours instead (too many entries). */
static int ldapc_search_pages(struct ldapc *c, const char *base, const char *filter,
                              const char *const *attrs, struct ldapc_page *pg, enum ldapc_rc *rc,
                              bool *ours)
{
    struct berval *cookie = NULL;
    int err = LDAP_SUCCESS;
    *rc = LDAPC_OK;
    do {
        LDAPControl *page = NULL, *ctrls[2] = {NULL, NULL};
        err = ldap_create_page_control(c->ld, LDAPC_PAGE_SIZE, cookie, 0, &page);
        if (err != LDAP_SUCCESS)
            break;
        ctrls[0] = page;
        struct timeval tv = ldapc_tv(c->timeout_ms);
        LDAPMessage *res = NULL;
        ldapc_count(LDAPC_SEARCHES);
        err = ldap_search_ext_s(c->ld, base, LDAP_SCOPE_SUBTREE, filter, (char **)attrs, 0, ctrls,
                                NULL, &tv, LDAP_NO_LIMIT, &res);
        ldap_control_free(page);
        if (cookie) {
            ber_bvfree(cookie);
            cookie = NULL;
        }
        if (err != LDAP_SUCCESS && err != LDAP_SIZELIMIT_EXCEEDED) {
            if (res)
                ldap_msgfree(res);
            break;
        }
        *rc = ldapc_page_entries(c->ld, res, pg);
        LDAPControl **rctrls = NULL;
        int perr = LDAP_SUCCESS;
        if (ldap_parse_result(c->ld, res, &perr, NULL, NULL, NULL, &rctrls, 0) == LDAP_SUCCESS) {
            LDAPControl *pr = ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, rctrls, NULL);
            struct berval next = {0, NULL};
            ber_int_t estimate;
            if (pr &&
                ldap_parse_pageresponse_control(c->ld, pr, &estimate, &next) == LDAP_SUCCESS &&
                next.bv_len > 0)
                cookie = ber_bvdup(&next);
            if (next.bv_val)
                ldap_memfree(next.bv_val);
            if (rctrls)
                ldap_controls_free(rctrls);
        }
        ldap_msgfree(res);
        if (err == LDAP_SIZELIMIT_EXCEEDED && !cookie) {
            /* a server without paging that caps the answer: the directory is larger than read */
            *rc = LDAPC_TOO_MANY;
            err = LDAP_SUCCESS;
        }
    } while (cookie && *rc == LDAPC_OK && !pg->stop);
    if (cookie)
        ber_bvfree(cookie);
    *ours = *rc != LDAPC_OK;
    return err;
}

enum ldapc_rc ldapc_search(struct ldapc *c, const char *base, const char *filter,
                           const char *const *attrs, size_t max_entries,
                           int (*fn)(void *cls, const struct ldapc_entry *e), void *cls)
{
    enum ldapc_rc rc = LDAPC_ERROR;
    for (int attempt = 0; attempt < 2; attempt++) {
        int err = ldapc_connect(c);
        if (err == LDAP_SUCCESS) {
            struct ldapc_page pg = {.max = max_entries, .fn = fn, .cls = cls};
            bool ours = false;
            err = ldapc_search_pages(c, base, filter, attrs, &pg, &rc, &ours);
            if (ours)
                return rc;
        }
        rc = ldapc_rc_of(err);
        if (rc != LDAPC_UNAVAILABLE) {
            if (rc == LDAPC_ERROR || rc == LDAPC_BAD_PASSWORD) {
                log_warn("LDAP search of %s failed: %s", base, ldap_err2string(err));
                ldapc_count(LDAPC_FAILURES);
                rc = LDAPC_ERROR; /* our own bind refused is a configuration problem */
            }
            return rc;
        }
        /* A connection the server closed (idle timeout, restart): once more on a new one. */
        bool had = c->ld != NULL;
        ldapc_disconnect(c);
        if (!had)
            break;
    }
    ldapc_count(LDAPC_FAILURES);
    log_warn("LDAP server %s unavailable", c->uri);
    return LDAPC_UNAVAILABLE;
}

enum ldapc_rc ldapc_check_password(const struct ldapc *c, const char *dn, const char *password)
{
    if (!password || !password[0] || !dn || !dn[0])
        return LDAPC_BAD_PASSWORD;
    LDAP *ld;
    ldapc_count(LDAPC_BINDS);
    int err = ldapc_handle(c, &ld);
    if (err == LDAP_SUCCESS) {
        err = ldapc_bind(ld, dn, password);
        ldap_unbind_ext_s(ld, NULL, NULL);
    }
    enum ldapc_rc rc = ldapc_rc_of(err);
    if (rc == LDAPC_NOT_FOUND)
        rc = LDAPC_BAD_PASSWORD;
    if (rc == LDAPC_UNAVAILABLE || rc == LDAPC_ERROR || rc == LDAPC_TOO_MANY) {
        ldapc_count(LDAPC_FAILURES);
        log_warn("LDAP bind as %s: %s", dn, ldap_err2string(err));
        if (rc == LDAPC_TOO_MANY)
            rc = LDAPC_ERROR;
    }
    return rc;
}

int ldapc_filter_escape(const char *value, char *out, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        bool esc = *p == '*' || *p == '(' || *p == ')' || *p == '\\' || *p < 0x20 || *p == 0x7f;
        size_t need = esc ? 3 : 1;
        if (n + need >= len)
            return -1;
        if (esc) {
            out[n++] = '\\';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        } else {
            out[n++] = (char)*p;
        }
    }
    if (n >= len)
        return -1;
    out[n] = '\0';
    return (int)n;
}

int ldapc_filter_fill(const char *tmpl, const char *user, const char *domain, char *out, size_t len)
{
    size_t n = 0;
    for (const char *p = tmpl; *p; p++) {
        if (*p != '%') {
            if (n + 1 >= len)
                return -1;
            out[n++] = *p;
            continue;
        }
        p++;
        if (*p == '%') {
            if (n + 1 >= len)
                return -1;
            out[n++] = '%';
            continue;
        }
        if (*p != 'u' && *p != 'd')
            return -1;
        const char *v = *p == 'u' ? user : domain;
        int w = ldapc_filter_escape(v ? v : "", out + n, len - n);
        if (w < 0)
            return -1;
        n += (size_t)w;
    }
    if (n >= len)
        return -1;
    out[n] = '\0';
    return 0;
}

bool ldapc_filter_template_ok(const char *tmpl)
{
    char out[1024];
    size_t l = tmpl ? strlen(tmpl) : 0;
    return l >= 2 && tmpl[0] == '(' && tmpl[l - 1] == ')' &&
           ldapc_filter_fill(tmpl, "x", "x", out, sizeof out) == 0;
}

int ldapc_metrics_render(struct buf *out)
{
    static const struct {
        enum ldapc_counter k;
        const char *name, *help;
    } rows[] = {
        {LDAPC_SEARCHES, "xdm_ldap_searches_total", "LDAP search requests sent (one per page)."},
        {LDAPC_BINDS, "xdm_ldap_binds_total", "LDAP binds sent to verify a user's password."},
        {LDAPC_FAILURES, "xdm_ldap_errors_total",
         "LDAP operations that failed: the server could not be reached, answered too late or "
         "answered with an error."},
        {LDAPC_CACHE_HITS, "xdm_ldap_cache_hits_total",
         "User lookups answered from the LDAP cache (found or not found)."},
        {LDAPC_CACHE_MISSES, "xdm_ldap_cache_misses_total",
         "User lookups that needed the directory."},
        {LDAPC_REFUSED, "xdm_ldap_refused_total",
         "User lookups answered 503 without asking, while the directory was found down."},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        rc |= buf_printf(
            out, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n", rows[i].name, rows[i].help,
            rows[i].name, rows[i].name,
            (uint64_t)atomic_load_explicit(&ldapc_counters[rows[i].k], memory_order_relaxed));
    return rc ? -1 : 0;
}

int ldapc_value_uri(const char *value, char *out, size_t len)
{
    while (*value == ' ')
        value++;
    if (strncasecmp(value, "sip:", 4) == 0 || strncasecmp(value, "sips:", 5) == 0 ||
        strncasecmp(value, "tel:", 4) == 0) {
        size_t n = strcspn(value, " \t");
        size_t scheme = (size_t)(strchr(value, ':') - value);
        if (n >= len || n == scheme + 1)
            return -1;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)value[i] < 0x21 || value[i] == '"' || value[i] == '<' ||
                value[i] == '>' || value[i] == 0x7f)
                return -1;
        for (size_t i = 0; i < n; i++)
            out[i] = i < scheme ? (char)tolower((unsigned char)value[i]) : value[i];
        out[n] = '\0';
        return 0;
    }
    if (*value != '+')
        return -1;
    /* RFC 3966 §5.1.4: a global number, "+" and digits; visual separators dropped (§5.1.1) */
    size_t n = 0, digits = 0;
    if (len < 6)
        return -1;
    memcpy(out, "tel:+", 5);
    n = 5;
    for (const char *p = value + 1; *p; p++) {
        if (*p >= '0' && *p <= '9') {
            if (n + 1 >= len)
                return -1;
            out[n++] = *p;
            digits++;
        } else if (!strchr(" -.()", *p)) {
            return -1;
        }
    }
    if (digits == 0)
        return -1;
    out[n] = '\0';
    return 0;
}

int ldapc_password(const char *password, const char *password_file, char *out, size_t len)
{
    if (!password_file || !password_file[0]) {
        if (snprintf(out, len, "%s", password ? password : "") >= (int)len) {
            log_error("ldap_bind_password is too long");
            return -1;
        }
        return 0;
    }
    FILE *f = fopen(password_file, "r");
    if (!f) {
        log_error("ldap_bind_password_file %s: cannot read it", password_file);
        return -1;
    }
    out[0] = '\0';
    bool ok = fgets(out, (int)len, f) != NULL || !ferror(f);
    fclose(f);
    size_t n = strlen(out);
    bool whole = n == 0 || out[n - 1] == '\n' || n < len - 1;
    out[strcspn(out, "\r\n")] = '\0';
    if (!ok || !whole) {
        memset(out, 0, len);
        log_error("ldap_bind_password_file %s: unreadable or its line is too long", password_file);
        return -1;
    }
    return 0;
}

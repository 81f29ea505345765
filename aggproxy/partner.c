#include "partner.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "upstream.h"

/* Upper bounds (seconds) of the latency histogram's buckets. */
static const double partner_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define PARTNER_BUCKETS (sizeof partner_buckets / sizeof partner_buckets[0])

struct partner {
    char domain[PARTNER_DOMAIN_MAX + 1];
    struct route_table *routes;
    struct forward *fw;
    struct upstream_check *check;
    unsigned max_requests;
    unsigned connect_timeout_ms;
    atomic_uint in_flight;
    atomic_uint_fast64_t requests, errors, rejected;
    atomic_uint_fast64_t bucket[PARTNER_BUCKETS + 1]; /* last: +Inf */
    atomic_uint_fast64_t micros;                      /* sum of durations, microseconds */
};

struct partners {
    struct partner *v[PARTNERS_MAX];
    size_t n;
    char local[PARTNER_LOCAL_DOMAINS_MAX][PARTNER_DOMAIN_MAX + 1];
    size_t n_local;
};

__attribute__((format(printf, 3, 4))) static int partner_fail(char *err, size_t errlen,
                                                              const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int partner_domain_norm(const char *in, size_t len, char *out)
{
    if (len == 0 || len > PARTNER_DOMAIN_MAX || in[0] == '.' || in[len - 1] == '.')
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (!isalnum(c) && c != '-' && !(c == '.' && in[i + 1] != '.'))
            return -1;
        out[i] = (char)tolower(c);
    }
    out[len] = '\0';
    return 0;
}

void partner_spec_release(struct partner_spec *s)
{
    free(s->urls);
    free(s->ca);
    free(s->cert);
    free(s->key);
    memset(s, 0, sizeof *s);
}

/* N in 1..max, decimal. */
static int partner_uint(const char *v, size_t len, unsigned max, unsigned *out)
{
    if (len == 0 || len > 10)
        return -1;
    unsigned long long x = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)v[i]))
            return -1;
        x = x * 10 + (unsigned)(v[i] - '0');
    }
    if (x == 0 || x > max)
        return -1;
    *out = (unsigned)x;
    return 0;
}

/* One NAME=VALUE option of a partner line. */
static int partner_option(struct partner_spec *s, const char *tok, size_t len, char *err,
                          size_t errlen)
{
    const char *eq = memchr(tok, '=', len);
    size_t nlen = (size_t)(eq - tok), vlen = len - nlen - 1;
    const char *v = eq + 1;
    char **str = NULL;
    unsigned *num = NULL, max = PARTNER_TIMEOUT_MAX_MS;
    if (nlen == 2 && memcmp(tok, "ca", 2) == 0)
        str = &s->ca;
    else if (nlen == 4 && memcmp(tok, "cert", 4) == 0)
        str = &s->cert;
    else if (nlen == 3 && memcmp(tok, "key", 3) == 0)
        str = &s->key;
    else if (nlen == 10 && memcmp(tok, "timeout_ms", 10) == 0)
        num = &s->timeout_ms;
    else if (nlen == 18 && memcmp(tok, "connect_timeout_ms", 18) == 0)
        num = &s->connect_timeout_ms;
    else if (nlen == 12 && memcmp(tok, "max_requests", 12) == 0) {
        num = &s->max_requests;
        max = PARTNER_MAX_REQUESTS_MAX;
    } else
        return partner_fail(err, errlen,
                            "unknown option '%.*s' (want ca, cert, key, timeout_ms, "
                            "connect_timeout_ms, max_requests)",
                            (int)nlen, tok);
    if ((str && *str) || (num && *num))
        return partner_fail(err, errlen, "option %.*s given twice", (int)nlen, tok);
    if (str) {
        if (vlen == 0 || vlen > 4096)
            return partner_fail(err, errlen, "option %.*s needs a file name", (int)nlen, tok);
        if (!(*str = strndup(v, vlen)))
            return partner_fail(err, errlen, "out of memory");
        return 0;
    }
    if (partner_uint(v, vlen, max, num) < 0)
        return partner_fail(err, errlen, "option %.*s wants a number from 1 to %u", (int)nlen, tok,
                            max);
    return 0;
}

int partner_spec_parse(const char *line, struct partner_spec *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    struct buf urls;
    buf_init(&urls, ROUTE_LIST_MAX + 1);
    const char *p = line;
    bool have_domain = false;
    int rc = 0;
    while (rc == 0) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        size_t len = 0;
        while (p[len] && !isspace((unsigned char)p[len]))
            len++;
        if (!have_domain) {
            if (partner_domain_norm(p, len, s->domain) < 0)
                rc = partner_fail(err, errlen, "bad partner domain '%.*s'",
                                  (int)(len > 300 ? 300 : len), p);
            have_domain = true;
        } else if (memchr(p, '=', len)) {
            rc = partner_option(s, p, len, err, errlen);
        } else if (len < 8 || strncasecmp(p, "https://", 8) != 0) {
            rc = partner_fail(err, errlen,
                              "partner URL '%.*s' is not https:// (partners are reached over "
                              "mutual TLS)",
                              (int)(len > 300 ? 300 : len), p);
        } else if ((urls.len && buf_puts(&urls, " ") < 0) || buf_append(&urls, p, len) < 0 ||
                   buf_puts(&urls, "") < 0) {
            rc = partner_fail(err, errlen, "too many or too long partner URLs");
        }
        p += len;
    }
    if (rc == 0 && !have_domain)
        rc = partner_fail(err, errlen,
                          "empty partner (want: partner = DOMAIN https://HOST:PORT... ca=FILE "
                          "cert=FILE key=FILE)");
    else if (rc == 0 && urls.len == 0)
        rc = partner_fail(err, errlen, "partner %s has no https:// URL", s->domain);
    else if (rc == 0 && route_list_check(urls.data, err, errlen) < 0)
        rc = -1;
    else if (rc == 0 && (!s->ca || !s->cert || !s->key))
        rc = partner_fail(err, errlen,
                          "partner %s needs ca=FILE (its CA), cert=FILE and key=FILE (the "
                          "proxy's client certificate for it)",
                          s->domain);
    if (rc == 0 && !(s->urls = buf_detach(&urls, NULL)))
        rc = partner_fail(err, errlen, "out of memory");
    buf_release(&urls);
    if (rc < 0)
        partner_spec_release(s);
    return rc;
}

struct partners *partners_new(void)
{
    return calloc(1, sizeof(struct partners));
}

static void partner_free(struct partner *p)
{
    if (!p)
        return;
    upstream_check_stop(p->check);
    forward_free(p->fw);
    route_table_free(p->routes);
    free(p);
}

void partners_free(struct partners *ps)
{
    if (!ps)
        return;
    for (size_t i = 0; i < ps->n; i++)
        partner_free(ps->v[i]);
    free(ps);
}

static bool partner_is_local(const struct partners *ps, const char *domain)
{
    for (size_t i = 0; i < ps->n_local; i++)
        if (strcmp(ps->local[i], domain) == 0)
            return true;
    return false;
}

static struct partner *partner_find(const struct partners *ps, const char *domain)
{
    for (size_t i = 0; i < ps->n; i++)
        if (strcmp(ps->v[i]->domain, domain) == 0)
            return ps->v[i];
    return NULL;
}

int partners_add_local(struct partners *ps, const char *domain, char *err, size_t errlen)
{
    char d[PARTNER_DOMAIN_MAX + 1];
    if (partner_domain_norm(domain, strlen(domain), d) < 0)
        return partner_fail(err, errlen, "bad domain '%.300s'", domain);
    if (partner_find(ps, d))
        return partner_fail(err, errlen, "%s is a partner's domain", d);
    if (partner_is_local(ps, d))
        return 0;
    if (ps->n_local == PARTNER_LOCAL_DOMAINS_MAX)
        return partner_fail(err, errlen, "too many local domains (at most %d)",
                            PARTNER_LOCAL_DOMAINS_MAX);
    memcpy(ps->local[ps->n_local++], d, sizeof d);
    return 0;
}

int partners_check_spec(const struct partners *ps, const struct partner_spec *s,
                        const struct partner_spec *specs, size_t n, char *err, size_t errlen)
{
    if (partner_is_local(ps, s->domain))
        return partner_fail(err, errlen, "%s is a local_domain too", s->domain);
    for (size_t i = 0; i < n; i++)
        if (strcmp(specs[i].domain, s->domain) == 0)
            return partner_fail(err, errlen, "partner %s is configured twice", s->domain);
    return 0;
}

int partners_add(struct partners *ps, const char *root_path, const struct partner_spec *s,
                 const struct forward_options *base, char *err, size_t errlen)
{
    if (partner_find(ps, s->domain))
        return partner_fail(err, errlen, "partner %s is configured twice", s->domain);
    if (partner_is_local(ps, s->domain))
        return partner_fail(err, errlen, "%s is a local_domain too", s->domain);
    if (ps->n == PARTNERS_MAX)
        return partner_fail(err, errlen, "too many partners (at most %d)", PARTNERS_MAX);
    struct partner *p = calloc(1, sizeof *p);
    if (!p)
        return partner_fail(err, errlen, "out of memory");
    memcpy(p->domain, s->domain, sizeof p->domain);
    p->max_requests = s->max_requests ? s->max_requests : PARTNER_MAX_REQUESTS_DEFAULT;
    struct forward_options fo = *base;
    fo.ca_file = s->ca;
    fo.cert_file = NULL; /* set below, with the reason when it fails */
    fo.key_file = NULL;
    if (s->timeout_ms)
        fo.timeout_ms = s->timeout_ms;
    if (s->connect_timeout_ms)
        fo.connect_timeout_ms = s->connect_timeout_ms;
    p->connect_timeout_ms = fo.connect_timeout_ms ? fo.connect_timeout_ms : fo.timeout_ms;
    char why[512];
    if (!(p->routes = route_table_new(root_path, s->urls, s->urls, s->urls, err, errlen)) ||
        route_table_set(p->routes, ROUTE_UT_AUID, s->urls, err, errlen) < 0) {
        partner_free(p);
        return -1;
    }
    if (!(p->fw = forward_new(&fo))) {
        partner_free(p);
        return partner_fail(err, errlen, "partner %s: cannot make its HTTP client", s->domain);
    }
    if (forward_set_client_cert(p->fw, s->cert, s->key, why, sizeof why) < 0) {
        partner_free(p);
        return partner_fail(err, errlen, "partner %s: %s", s->domain, why);
    }
    ps->v[ps->n++] = p;
    return 0;
}

long partner_route_parse(const char *line, char domain[PARTNER_DOMAIN_MAX + 1], char *err,
                         size_t errlen)
{
    const char *p = line;
    while (isspace((unsigned char)*p))
        p++;
    size_t len = strcspn(p, " \t\r\n\v\f");
    if (partner_domain_norm(p, len, domain) < 0)
        return partner_fail(
            err, errlen,
            "bad partner_route (want: partner_route = DOMAIN AUID https://HOST:PORT "
            "[...])");
    const char *rest = p + len;
    while (isspace((unsigned char)*rest))
        rest++;
    const char *u = rest + strcspn(rest, " \t\r\n\v\f");
    while (isspace((unsigned char)*u))
        u++;
    if (!*u)
        return partner_fail(
            err, errlen,
            "bad partner_route (want: partner_route = DOMAIN AUID https://HOST:PORT "
            "[...])");
    for (const char *q = u; *q;) {
        size_t ulen = strcspn(q, " \t\r\n\v\f");
        if (ulen < 8 || strncasecmp(q, "https://", 8) != 0)
            return partner_fail(err, errlen,
                                "partner URL '%.*s' is not https:// (partners are reached over "
                                "mutual TLS)",
                                (int)(ulen > 300 ? 300 : ulen), q);
        q += ulen;
        while (isspace((unsigned char)*q))
            q++;
    }
    if (route_list_check(u, err, errlen) < 0)
        return -1;
    return (long)(rest - line);
}

int partners_route(struct partners *ps, const char *line, char *err, size_t errlen)
{
    char domain[PARTNER_DOMAIN_MAX + 1];
    long off = partner_route_parse(line, domain, err, errlen);
    if (off < 0)
        return -1;
    struct partner *p = partner_find(ps, domain);
    if (!p)
        return partner_fail(err, errlen, "%s is not a partner (no partner = %s ... line)", domain,
                            domain);
    return route_table_set_spec(p->routes, line + off, err, errlen);
}

size_t partners_count(const struct partners *ps)
{
    return ps ? ps->n : 0;
}

struct partner *partners_get(const struct partners *ps, size_t i)
{
    return ps->v[i];
}

enum partners_site partners_lookup(const struct partners *ps, const char *domain,
                                   struct partner **out)
{
    *out = NULL;
    if (!ps || !domain[0])
        return PARTNERS_LOCAL;
    char d[PARTNER_DOMAIN_MAX + 1];
    if (partner_domain_norm(domain, strlen(domain), d) < 0)
        return ps->n_local ? PARTNERS_UNKNOWN : PARTNERS_LOCAL;
    if ((*out = partner_find(ps, d)) != NULL)
        return PARTNERS_REMOTE;
    return !ps->n_local || partner_is_local(ps, d) ? PARTNERS_LOCAL : PARTNERS_UNKNOWN;
}

const char *partner_domain(const struct partner *p)
{
    return p->domain;
}

struct route_table *partner_routes(const struct partner *p)
{
    return p->routes;
}

struct forward *partner_forward(const struct partner *p)
{
    return p->fw;
}

bool partner_begin(struct partner *p)
{
    unsigned now = atomic_fetch_add(&p->in_flight, 1) + 1;
    if (now > p->max_requests) {
        atomic_fetch_sub(&p->in_flight, 1);
        atomic_fetch_add(&p->rejected, 1);
        return false;
    }
    return true;
}

void partner_end(struct partner *p, int status, double seconds)
{
    atomic_fetch_sub(&p->in_flight, 1);
    atomic_fetch_add(&p->requests, 1);
    if (status >= 500)
        atomic_fetch_add(&p->errors, 1);
    size_t b = 0;
    while (b < PARTNER_BUCKETS && seconds > partner_buckets[b])
        b++;
    atomic_fetch_add(&p->bucket[b], 1);
    atomic_fetch_add(&p->micros, (uint_fast64_t)(seconds > 0 ? seconds * 1e6 : 0));
}

int partners_checks_start(struct partners *ps, unsigned interval_ms)
{
    for (size_t i = 0; ps && i < ps->n; i++) {
        struct partner *p = ps->v[i];
        if (!(p->check =
                  upstream_check_start(p->fw, p->routes, interval_ms, p->connect_timeout_ms)))
            return -1;
    }
    return 0;
}

void partners_checks_stop(struct partners *ps)
{
    for (size_t i = 0; ps && i < ps->n; i++) {
        upstream_check_stop(ps->v[i]->check);
        ps->v[i]->check = NULL;
    }
}

/* One counter or gauge family, one series per partner. */
static int partner_family(const struct partners *ps, struct buf *out, const char *name,
                          const char *type, const char *help, size_t field)
{
    int rc = buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    for (size_t i = 0; i < ps->n && rc == 0; i++) {
        const struct partner *p = ps->v[i];
        unsigned long long v;
        switch (field) {
        case 0:
            v = atomic_load(&p->requests);
            break;
        case 1:
            v = atomic_load(&p->errors);
            break;
        case 2:
            v = atomic_load(&p->rejected);
            break;
        default:
            v = atomic_load(&p->in_flight);
            break;
        }
        rc = buf_printf(out, "%s{partner=\"%s\"} %llu\n", name, p->domain, v);
    }
    return rc;
}

int partners_metrics(void *cls, struct buf *out)
{
    const struct partners *ps = cls;
    if (!ps || !ps->n)
        return 0;
    int rc = partner_family(ps, out, "xdm_partner_requests_total", "counter",
                            "Requests the proxy sent to a partner domain's XDMSs.", 0);
    rc |= partner_family(ps, out, "xdm_partner_errors_total", "counter",
                         "Requests to a partner that ended in a 5xx (unreachable, timeout, "
                         "or the partner's own server error).",
                         1);
    rc |= partner_family(ps, out, "xdm_partner_rejected_total", "counter",
                         "Requests refused (503) because max_requests were in flight to the "
                         "partner.",
                         2);
    rc |= partner_family(ps, out, "xdm_partner_in_flight", "gauge",
                         "Requests in flight to a partner.", 3);
    rc |= buf_puts(out, "# HELP xdm_partner_request_duration_seconds Time from routing to the "
                        "partner to its answer.\n# TYPE xdm_partner_request_duration_seconds "
                        "histogram\n");
    for (size_t i = 0; i < ps->n && rc == 0; i++) {
        const struct partner *p = ps->v[i];
        unsigned long long cum = 0;
        for (size_t b = 0; b <= PARTNER_BUCKETS && rc == 0; b++) {
            cum += atomic_load(&p->bucket[b]);
            if (b < PARTNER_BUCKETS)
                rc = buf_printf(out,
                                "xdm_partner_request_duration_seconds_bucket{partner=\"%s\","
                                "le=\"%g\"} %llu\n",
                                p->domain, partner_buckets[b], cum);
            else
                rc = buf_printf(out,
                                "xdm_partner_request_duration_seconds_bucket{partner=\"%s\","
                                "le=\"+Inf\"} %llu\n",
                                p->domain, cum);
        }
        rc |= buf_printf(out,
                         "xdm_partner_request_duration_seconds_sum{partner=\"%s\"} %.6f\n"
                         "xdm_partner_request_duration_seconds_count{partner=\"%s\"} %llu\n",
                         p->domain, (double)atomic_load(&p->micros) / 1e6, p->domain, cum);
    }
    rc |= buf_puts(out, "# HELP xdm_partner_instance_up Whether a partner's XDMS instance is in "
                        "rotation (1) or marked down (0).\n# TYPE xdm_partner_instance_up "
                        "gauge\n");
    for (size_t i = 0; i < ps->n && rc == 0; i++) {
        const struct partner *p = ps->v[i];
        for (size_t k = 0; k < route_table_instances(p->routes) && rc == 0; k++) {
            rc = buf_printf(out, "xdm_partner_instance_up{partner=\"%s\",upstream=\"", p->domain);
            /* a label value: backslash and double quote escaped (a URL has no newline) */
            for (const char *c = route_instance_url(p->routes, k); *c && rc == 0; c++)
                rc = *c == '\\' || *c == '"' ? buf_printf(out, "\\%c", *c) : buf_append(out, c, 1);
            rc |= buf_printf(out, "\"} %d\n", route_instance_up(p->routes, k, NULL, 0) ? 1 : 0);
        }
    }
    return rc ? -1 : 0;
}

/* aggproxy: the XCAP Aggregation Proxy (OMA XDM Core §5.1; processes and addresses in
 * docs/architecture.md). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "access.h"
#include "caps.h"
#include "charging_config.h"
#include "config.h"
#include "digest.h"
#include "gba.h"
#include "forward.h"
#include "httpd.h"
#include "ldapc.h"
#include "ldapusers.h"
#include "log.h"
#include "main_keys.h"
#include "metrics.h"
#include "partner.h"
#include "proxy.h"
#include "route.h"
#include "sdnotify.h"
#include "store.h"
#include "upstream.h"
#include "users.h"
#include "xcap_names.h"
#include "xdoc.h"

static void aggproxy_usage(FILE *f)
{
    fputs("Usage: aggproxy [options]\n"
          "\n"
          "  --config FILE        INI file; section [aggproxy] is read\n"
          "  --check-config       check the configuration and exit (0: \"configuration OK\")\n"
          "  --option KEY=VALUE   set any key below (repeatable); beats the file\n"
          "  --data, --http, --https, --realm, --log-level VALUE\n"
          "                       shorthands for data, http, https, realm, log_level\n"
          "  --help               this text\n"
          "\n"
          "Keys (--option KEY=VALUE or KEY = VALUE in the file):\n",
          f);
    config_keys_usage(f, main_keys);
    fputs("Users and GBA records are managed with tools/xdmctl. See docs/configuration.md and\n"
          "docs/proxy.md.\n",
          f);
}

struct aggproxy_routes {
    struct route_table *t;
    const struct config *cfg;
    int failed;
};

struct aggproxy_fqdns {
    const char *v[64];
    size_t n;
    int failed;
};

static int aggproxy_add_fqdn(void *cls, const char *value)
{
    struct aggproxy_fqdns *f = cls;
    if (f->n == sizeof f->v / sizeof f->v[0]) {
        log_error("gaa_fqdn: at most %zu names", f->n);
        f->failed = 1;
        return 1;
    }
    f->v[f->n++] = value;
    return 0;
}

/* A listener key, checked when read (CONFIG_HOSTPORT with CONFIG_OFF): HOST:PORT, or unset,
 * "off" or "" for none. Returns 1 (listen) or 0 (none). */
static int aggproxy_listener(const char *value, char *host, size_t hostlen, uint16_t *port)
{
    if (!value || !value[0] || strcmp(value, "off") == 0)
        return 0;
    return config_parse_hostport(value, host, hostlen, port) == 0;
}

/* The time and outcome of an answered request (metrics.h, access.h). */
static void aggproxy_answered(const struct http_request *req, const struct http_response *resp,
                              double s)
{
    metrics_request(http_request_method(req), http_request_path(req), resp->status, s);
    access_log(http_request_peer_str(req), http_request_method(req), http_request_target(req),
               resp->status, resp->body.len, s, http_request_header(req, "X-Request-ID"));
}

/* The request handler with its time and outcome recorded; a deferred request is recorded when
 * it is answered (proxy_config.answered). */
static void aggproxy_handle(void *cls, const struct http_request *req, struct http_response *resp)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* A fresh request id whatever the client sent (its own is logged next to it): the id is
     * forwarded to the XDMS and must not be chosen by a client to confuse the logs. */
    access_begin(NULL);
    proxy_handle(cls, req, resp);
    if (http_request_deferred(req))
        return;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    aggproxy_answered(req, resp, s);
}

static int aggproxy_add_route(void *cls, const char *value)
{
    struct aggproxy_routes *r = cls;
    char err[256];
    if (route_table_set_spec(r->t, value, err, sizeof err) < 0) {
        char where[CONFIG_WHERE_MAX];
        log_error("%s: route = %s: %s", config_where(r->cfg, "route", value, where, sizeof where),
                  value, err);
        r->failed = 1;
        return 1;
    }
    return 0;
}

/* The partner lines and local domains as read, checked with their place named; the partners are
 * made from them when the process is built (their certificates are loaded then). */
struct aggproxy_partners {
    const struct config *cfg;
    struct partners *set;
    struct partner_spec specs[PARTNERS_MAX];
    size_t n;
    int failed;
};

static int aggproxy_add_local_domain(void *cls, const char *value)
{
    struct aggproxy_partners *ap = cls;
    char err[256], where[CONFIG_WHERE_MAX];
    if (partners_add_local(ap->set, value, err, sizeof err) < 0) {
        log_error("%s: local_domain = %s: %s",
                  config_where(ap->cfg, "local_domain", value, where, sizeof where), value, err);
        ap->failed = 1;
        return 1;
    }
    return 0;
}

static int aggproxy_add_partner(void *cls, const char *value)
{
    struct aggproxy_partners *ap = cls;
    char err[512] = "", where[CONFIG_WHERE_MAX];
    if (ap->n == PARTNERS_MAX)
        snprintf(err, sizeof err, "too many partners (at most %d)", PARTNERS_MAX);
    else if (partner_spec_parse(value, &ap->specs[ap->n], err, sizeof err) == 0) {
        if (partners_check_spec(ap->set, &ap->specs[ap->n], ap->specs, ap->n, err, sizeof err) ==
            0) {
            ap->n++;
            return 0;
        }
        partner_spec_release(&ap->specs[ap->n]);
    }
    log_error("%s: partner = %s: %s", config_where(ap->cfg, "partner", value, where, sizeof where),
              value, err);
    ap->failed = 1;
    return 1;
}

/* A partner_route line: its syntax and that its domain is a partner's, when read; applied to the
 * partner's table when the partners are made. */
static int aggproxy_check_partner_route(void *cls, const char *value)
{
    struct aggproxy_partners *ap = cls;
    char err[768] = "", where[CONFIG_WHERE_MAX], domain[PARTNER_DOMAIN_MAX + 1];
    if (partner_route_parse(value, domain, err, sizeof err) >= 0) {
        for (size_t i = 0; i < ap->n; i++)
            if (strcmp(ap->specs[i].domain, domain) == 0)
                return 0;
        snprintf(err, sizeof err, "%s is not a partner (no partner = %s ... line)", domain, domain);
    }
    log_error("%s: partner_route = %s: %s",
              config_where(ap->cfg, "partner_route", value, where, sizeof where), value, err);
    ap->failed = 1;
    return 1;
}

static int aggproxy_add_partner_route(void *cls, const char *value)
{
    struct aggproxy_partners *ap = cls;
    char err[512], where[CONFIG_WHERE_MAX];
    if (partners_route(ap->set, value, err, sizeof err) == 0)
        return 0;
    log_error("%s: partner_route = %s: %s",
              config_where(ap->cfg, "partner_route", value, where, sizeof where), value, err);
    ap->failed = 1;
    return 1;
}

/* /metrics of the proxy: the local instances, the partners, and LDAP when it is used. */
struct aggproxy_metrics_src {
    struct upstream_check *check;
    struct partners *partners;
    bool ldap;
};

static int aggproxy_metrics(void *cls, struct buf *out)
{
    struct aggproxy_metrics_src *src = cls;
    if (upstream_metrics(src->check, out) < 0 || partners_metrics(src->partners, out) < 0)
        return -1;
    return src->ldap ? ldapc_metrics_render(out) : 0;
}

static bool aggproxy_ready(void *cls, char *reason, size_t len)
{
    return upstream_ready(((struct aggproxy_metrics_src *)cls)->check, reason, len);
}

/* The upstream lists of the four XDMS roles, checked with the place they were set named. */
static int aggproxy_check_lists(const struct config *cfg)
{
    static const char *const keys[] = {"shared_list_url", "presence_url", "rls_url", "ut_url"};
    int rc = 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = config_str(cfg, keys[i]);
        char err[256], where[CONFIG_WHERE_MAX];
        bool off = strcmp(keys[i], "ut_url") == 0 && v && strcmp(v, "off") == 0;
        if (v && !off && route_list_check(v, err, sizeof err) < 0) {
            log_error("%s: %s = %s: %s", config_where(cfg, keys[i], v, where, sizeof where),
                      keys[i], v, err);
            rc = -1;
        }
    }
    return rc;
}

/* Keys a reload applies (docs/operations.md); every other changed key waits for a restart. */
static const char *const aggproxy_reloadable[] = {"log_level", "max_body", "upstream_cert",
                                                  "upstream_key", NULL};

/* SIGHUP: reads the configuration again from the same --config and command line and applies
 * what may change while running; a configuration with any problem is refused whole and the
 * running one (run, as started) stays. */
/* The client certificates the proxy presents to its partners (partner ... cert= key=) are read
 * again on a reload, under the names the partner lines had at start (the lines themselves need a
 * restart), so they rotate like upstream_cert. Every pair is checked before any is swapped.
 * Returns 0, or -1 (logged) with every pair left as it was. */
static int aggproxy_reload_partner_certs(const struct aggproxy_partners *ap, bool swap)
{
    for (size_t i = 0; i < ap->n; i++) {
        const struct partner_spec *s = &ap->specs[i];
        char err[512];
        int rc = swap ? forward_set_client_cert(partner_forward(partners_get(ap->set, i)), s->cert,
                                                s->key, err, sizeof err)
                      : forward_check_client_cert(s->cert, s->key, err, sizeof err);
        if (rc < 0) {
            log_error("partner %s: %s", s->domain, err);
            return -1;
        }
    }
    return 0;
}

static void aggproxy_reload(const struct config_args *args, const char *const *sections,
                            const struct config *run, struct proxy *proxy, struct forward *fw,
                            struct httpd *httpd, struct httpd *httpsd,
                            const struct aggproxy_partners *ap)
{
    char errbuf[4096];
    struct config *cfg = config_args_load(args, sections, errbuf, sizeof errbuf);
    if (!cfg) {
        char *save = NULL;
        for (char *line = strtok_r(errbuf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
            log_error("reload: %s", line);
        log_error("reload refused: the running configuration stays");
        return;
    }
    /* The HTTPS listener takes the files again even under the same names: rotation replaces
     * them in place. Adding or removing the listener needs a restart. */
    const char *tls_cert = config_str(cfg, "tls_cert"), *tls_key = config_str(cfg, "tls_key");
    bool tls_reloads = httpsd && tls_cert && tls_key;
    struct httpd_tls *tls = NULL;
    if (httpsd && (!tls_cert || !tls_key)) {
        log_error("https needs tls_cert and tls_key (PEM files)");
        log_error("reload refused: the running configuration stays");
        config_free(cfg);
        return;
    }
    if (tls_reloads && !(tls = httpd_tls_load(tls_cert, tls_key))) {
        log_error("reload refused: the running configuration stays");
        config_free(cfg);
        return;
    }
    /* The client certificate towards https XDMSs is read again too (rotation in place, or other
     * files): checked first, so a bad pair refuses the whole reload. */
    const char *up_cert = config_str(cfg, "upstream_cert"),
               *up_key = config_str(cfg, "upstream_key");
    char uperr[512];
    if (aggproxy_reload_partner_certs(ap, false) < 0) {
        log_error("reload refused: the running configuration stays");
        httpd_tls_free(tls);
        config_free(cfg);
        return;
    }
    if (forward_set_client_cert(fw, up_cert, up_key, uperr, sizeof uperr) < 0) {
        log_error("%s", uperr);
        log_error("reload refused: the running configuration stays");
        httpd_tls_free(tls);
        config_free(cfg);
        return;
    }
    /* checked above; a file replaced between the check and now refuses only that partner's */
    aggproxy_reload_partner_certs(ap, true);
    static const char *const tls_keys[] = {"tls_cert", "tls_key", NULL};
    config_warn_restart(run, cfg, aggproxy_reloadable, tls_reloads ? tls_keys : NULL);
    if (tls)
        httpd_tls_set(httpsd, tls);
    size_t max_body = (size_t)config_u64(cfg, "max_body");
    proxy_set_max_body(proxy, max_body);
    if (httpd)
        httpd_set_max_body(httpd, max_body);
    if (httpsd)
        httpd_set_max_body(httpsd, max_body);
    enum log_level level = LOG_LEVEL_INFO;
    log_level_parse(config_str(cfg, "log_level"), &level);
    log_set_level(level);
    log_always("configuration reloaded: log_level %s%s%s%s%s%s", config_str(cfg, "log_level"),
               tls ? ", certificate " : "", tls ? tls_cert : "",
               up_cert ? ", upstream certificate " : "", up_cert ? up_cert : "",
               ap->n ? ", partner certificates" : "");
    config_free(cfg);
}

/* Everything the process holds, from the options to the listeners; released in one place
 * (aggproxy_release). */
struct aggproxy_main {
    struct config_args *args;
    bool check_only;
    const char *sections[3];
    struct config *cfg;
    char host[CONFIG_HOST_MAX], tls_host[CONFIG_HOST_MAX], metrics_host[CONFIG_HOST_MAX];
    uint16_t port, tls_port, metrics_port;
    int plain, tls, metrics_on;
    const char *tls_cert, *tls_key, *realm, *up_cert, *up_key;
    uint64_t threads, max_body, max_header, timeout, lifetime, max_nonces, up_timeout, up_connect,
        check_interval, max_resp, gzip_min, caps_ttl, caps_retry, up_threads, up_max_in_flight;
    bool gzip;
    struct digest_algs algs;
    enum proxy_assert assert_mode;
    enum gba_password_form pw_form;
    struct aggproxy_fqdns fqdns;
    bool xml_ready;
    struct store *store;
    struct digest *digest;
    struct route_table *routes;
    struct forward *fw;
    struct forward_loop *loop; /* NULL: upstream_threads = 0 */
    struct upstream_check *check;
    struct caps_cache *caps;
    struct aggproxy_partners partners;
    struct aggproxy_metrics_src metrics_src;
    struct gba_source gba;
    struct proxy *proxy;
    struct ldapusers *ldap;
    struct httpd *httpd, *httpsd, *admin;
    sigset_t sigs;
};

/* The LDAP keys that need more than the key table (docs/enterprise.md). Returns 0 or -1
 * (logged). */
static int aggproxy_check_ldap(const struct config *cfg)
{
    const char *uri = config_str(cfg, "ldap_uri");
    if (!uri || !uri[0])
        return 0;
    if (strncmp(uri, "ldap://", 7) != 0 && strncmp(uri, "ldaps://", 8) != 0 &&
        strncmp(uri, "ldapi://", 8) != 0) {
        log_error("ldap_uri must be an ldap://, ldaps:// or ldapi:// URI (got \"%s\")", uri);
        return -1;
    }
    const char *base = config_str(cfg, "ldap_base_dn");
    if (!base || !base[0]) {
        log_error("ldap_uri needs ldap_base_dn (the subtree of the users)");
        return -1;
    }
    const char *realm = config_str(cfg, "ldap_realm");
    if (realm && strpbrk(realm, "\"\\")) {
        /* it goes into the quoted realm of the challenges (RFC 9110 §11.2) */
        log_error("ldap_realm must be a name without quotes or backslashes");
        return -1;
    }
    if (!ldapc_filter_template_ok(config_str(cfg, "ldap_user_filter"))) {
        log_error("ldap_user_filter must be a filter in parentheses using only %%u, %%d and %%%%");
        return -1;
    }
    return 0;
}

/* Phase: read options — the command line, the configuration file, logging, and every check of
 * the configuration that needs nothing opened (listeners, realm, algorithms, GAA names, upstream
 * lists and routes). Returns -1 to go on, else the exit status (--help and --check-config: 0; a
 * usage or configuration mistake: 2). */
static int aggproxy_read_options(struct aggproxy_main *m, int argc, char **argv)
{
    char errbuf[4096];
    switch (config_args_parse(argc, argv, NULL, main_keys, &m->args, errbuf, sizeof errbuf)) {
    case CONFIG_ARGS_OK:
        break;
    case CONFIG_ARGS_HELP:
        aggproxy_usage(stdout);
        return 0;
    case CONFIG_ARGS_USAGE:
        fprintf(stderr, "aggproxy: %s\n", errbuf);
        aggproxy_usage(stderr);
        return 2;
    }
    m->check_only = config_args_check_only(m->args);
    /* [charging] is checked here too: the proxy commits nothing, so it charges nothing
     * (docs/charging.md), but one file serves every process. */
    m->sections[0] = "charging";
    m->sections[1] = "aggproxy";
    m->sections[2] = NULL;
    m->cfg = config_args_load(m->args, m->sections, errbuf, sizeof errbuf);
    if (!m->cfg) {
        config_print_errors(stderr, "aggproxy", errbuf);
        return 2;
    }
    struct config *cfg = m->cfg;
    enum log_level level = LOG_LEVEL_INFO;
    log_level_parse(config_str(cfg, "log_level"), &level);
    log_init("aggproxy", level);
    enum access_format access_fmt = ACCESS_TEXT;
    access_format_parse(config_str(cfg, "access_log"), &access_fmt); /* checked when read */
    access_init(access_fmt, "aggproxy");

    m->plain = aggproxy_listener(config_str(cfg, "http"), m->host, sizeof m->host, &m->port);
    m->tls =
        aggproxy_listener(config_str(cfg, "https"), m->tls_host, sizeof m->tls_host, &m->tls_port);
    m->metrics_on = aggproxy_listener(config_str(cfg, "metrics"), m->metrics_host,
                                      sizeof m->metrics_host, &m->metrics_port);
    if (!m->plain && !m->tls) {
        log_error("no listener: set http and/or https");
        return 2;
    }
    m->tls_cert = config_str(cfg, "tls_cert");
    m->tls_key = config_str(cfg, "tls_key");
    if (m->tls && (!m->tls_cert || !m->tls_key)) {
        log_error("https needs tls_cert and tls_key (PEM files)");
        return 2;
    }
    m->threads = config_u64(cfg, "threads");
    m->max_body = config_u64(cfg, "max_body");
    m->max_header = config_u64(cfg, "max_header");
    m->timeout = config_u64(cfg, "timeout");
    m->lifetime = config_u64(cfg, "nonce_lifetime");
    m->max_nonces = config_u64(cfg, "max_nonces");
    m->up_timeout = config_u64(cfg, "upstream_timeout_ms");
    m->up_threads = config_u64(cfg, "upstream_threads");
    m->up_max_in_flight = config_u64(cfg, "upstream_max_in_flight");
    m->up_connect = config_u64(cfg, "upstream_connect_timeout_ms");
    m->check_interval = config_u64(cfg, "upstream_check_interval");
    m->max_resp = config_u64(cfg, "max_response");
    m->gzip_min = config_u64(cfg, "gzip_min_size");
    m->caps_ttl = config_u64(cfg, "caps_ttl");
    m->caps_retry = config_u64(cfg, "caps_retry");
    m->gzip = config_bool(cfg, "gzip");
    m->realm = config_str(cfg, "realm");
    if (!m->realm[0] || strpbrk(m->realm, "\"\\")) {
        log_error("realm must be a non-empty name without quotes or backslashes");
        return 2;
    }
    char algs_err[DIGEST_ALGS_ERR_MAX];
    if (digest_algs_parse(config_str(cfg, "digest_algorithms"), &m->algs, algs_err) < 0) {
        log_error("digest_algorithms: %s", algs_err);
        return 2;
    }
    const char *asserted = config_str(cfg, "asserted_identity");
    m->assert_mode = strcmp(asserted, "xcap") == 0   ? PROXY_ASSERT_XCAP
                     : strcmp(asserted, "both") == 0 ? PROXY_ASSERT_BOTH
                                                     : PROXY_ASSERT_3GPP;
    m->pw_form = strcmp(config_str(cfg, "gaa_password"), "raw") == 0 ? GBA_PASSWORD_RAW
                                                                     : GBA_PASSWORD_BASE64;
    config_each(cfg, "gaa_fqdn", aggproxy_add_fqdn, &m->fqdns);
    if (m->fqdns.failed)
        return 2;

    if (aggproxy_check_lists(cfg) < 0)
        return 2;
    char err[256];
    m->routes = route_table_new(config_str(cfg, "xcap_root_path"),
                                config_str(cfg, "shared_list_url"), config_str(cfg, "presence_url"),
                                config_str(cfg, "rls_url"), err, sizeof err);
    /* 3GPP TS 24.623: the Ut settings live in an XDMS of their own, the ut role ("off": none). */
    const char *ut_url = config_str(cfg, "ut_url") ? config_str(cfg, "ut_url") : ROUTE_DEFAULT_UT;
    if (!m->routes || (strcmp(ut_url, "off") != 0 &&
                       route_table_set(m->routes, ROUTE_UT_AUID, ut_url, err, sizeof err) < 0)) {
        log_error("%s", err);
        return 2;
    }
    struct aggproxy_routes ar = {m->routes, cfg, 0};
    config_each(cfg, "route", aggproxy_add_route, &ar);
    if (ar.failed)
        return 2;
    m->partners.cfg = cfg;
    if (!(m->partners.set = partners_new())) {
        log_error("out of memory");
        return 2;
    }
    config_each(cfg, "local_domain", aggproxy_add_local_domain, &m->partners);
    if (!m->partners.failed)
        config_each(cfg, "partner", aggproxy_add_partner, &m->partners);
    if (!m->partners.failed)
        config_each(cfg, "partner_route", aggproxy_check_partner_route, &m->partners);
    if (m->partners.failed)
        return 2;
    m->up_cert = config_str(cfg, "upstream_cert");
    m->up_key = config_str(cfg, "upstream_key");
    if (!m->up_cert != !m->up_key) {
        log_error("upstream_cert and upstream_key go together");
        return 2;
    }
    if (aggproxy_check_ldap(cfg) < 0)
        return 2;
    if (m->check_only) {
        puts("configuration OK");
        return 0;
    }
    return -1;
}

/* The LDAP user source when ldap_uri is set. Returns 0, or -1 (logged). */
static int aggproxy_ldap(struct aggproxy_main *m)
{
    const struct config *cfg = m->cfg;
    const char *uri = config_str(cfg, "ldap_uri");
    if (!uri || !uri[0])
        return 0;
    char pw[1024];
    if (ldapc_password(config_str(cfg, "ldap_bind_password"),
                       config_str(cfg, "ldap_bind_password_file"), pw, sizeof pw) < 0)
        return -1;
    const char *realm = config_str(cfg, "ldap_realm");
    struct ldapusers_options o = {
        .ldap = {.uri = uri,
                 .bind_dn = config_str(cfg, "ldap_bind_dn"),
                 .bind_password = pw,
                 .timeout_ms = (unsigned)config_u64(cfg, "ldap_timeout_ms")},
        .base_dn = config_str(cfg, "ldap_base_dn"),
        .user_filter = config_str(cfg, "ldap_user_filter"),
        .xui_attribute = config_str(cfg, "ldap_xui_attribute"),
        .identity_attributes = config_str(cfg, "ldap_identity_attributes"),
        .ha1_attribute = config_str(cfg, "ldap_ha1_attribute"),
        .realm = realm && realm[0] ? realm : m->realm,
        .cache_ttl_s = (unsigned)config_u64(cfg, "ldap_cache_ttl"),
        .negative_ttl_s = (unsigned)config_u64(cfg, "ldap_negative_ttl"),
        .retry_after_s = (unsigned)config_u64(cfg, "ldap_retry_after"),
        .cache_max = (size_t)config_u64(cfg, "ldap_cache_max"),
    };
    m->ldap = ldapusers_new(&o);
    OPENSSL_cleanse(pw, sizeof pw);
    if (!m->ldap) {
        log_error("cannot set up the LDAP users of %s", uri);
        return -1;
    }
    log_info("users also from LDAP %s (realm %s)", uri, o.realm);
    return 0;
}

/* Phase: build — the user store, Digest nonces, the HTTP client, the xcap-caps cache and the
 * proxy pipeline. Returns -1 to go on, else the exit status (1). */
static int aggproxy_build(struct aggproxy_main *m)
{
    struct config *cfg = m->cfg;
    xdoc_global_init();
    m->xml_ready = true;
    const char *data = config_str(cfg, "data");
    if (users_open(data, &m->store) != USERS_OK) {
        log_error("cannot open the user store in %s", data);
        m->store = NULL;
        return 1;
    }
    struct digest_options dopts = {.nonce_lifetime_s = (unsigned)m->lifetime,
                                   .max_nonces = (size_t)m->max_nonces};
    struct forward_options fopts = {
        .timeout_ms = (unsigned)m->up_timeout,
        .connect_timeout_ms = (unsigned)m->up_connect,
        .max_response = (size_t)m->max_resp,
        .ca_file = config_str(cfg, "upstream_ca"),
    };
    if (!(m->digest = digest_new(&dopts)) || !(m->fw = forward_new(&fopts))) {
        log_error("cannot initialise digest or HTTP client");
        return 1;
    }
    char uperr[512];
    if (forward_set_client_cert(m->fw, m->up_cert, m->up_key, uperr, sizeof uperr) < 0) {
        log_error("%s", uperr);
        return 1;
    }
    if (!(m->caps =
              caps_cache_new(m->fw, m->routes, (unsigned)m->caps_ttl, (unsigned)m->caps_retry)))
        return 1;
    /* Partners: each with its own route table, CA, client certificate and timeouts; their
     * xcap-caps join the union. */
    for (size_t i = 0; i < m->partners.n; i++) {
        const struct partner_spec *ps = &m->partners.specs[i];
        const char *root = route_table_root(m->routes);
        char perr[768];
        if (partners_add(m->partners.set, root[0] ? root : "/", ps, &fopts, perr, sizeof perr) <
            0) {
            log_error("partner %s: %s", ps->domain, perr);
            return 1;
        }
        struct partner *pt = partners_get(m->partners.set, i);
        if (caps_cache_add_source(m->caps, partner_forward(pt), partner_routes(pt)) < 0)
            return 1;
        log_info("partner %s: %s", ps->domain, ps->urls);
    }
    /* Per-AUID instances of the partners, before anything reads their tables. */
    config_each(cfg, "partner_route", aggproxy_add_partner_route, &m->partners);
    if (m->partners.failed)
        return 1;
    if (aggproxy_ldap(m) < 0)
        return 1;
    m->gba = (struct gba_source){gba_store_fetch, m->store};
    if (m->up_threads && !(m->loop = forward_loop_start((unsigned)m->up_threads)))
        return 1;
    struct proxy_config pcfg = {
        .default_realm = m->realm,
        .store = m->store,
        .digest = m->digest,
        .routes = m->routes,
        .forward = m->fw,
        .caps = m->caps,
        .partners = partners_count(m->partners.set) ? m->partners.set : NULL,
        .gba = &m->gba,
        .gaa_fqdns = m->fqdns.v,
        .n_gaa_fqdns = m->fqdns.n,
        .gaa_password = m->pw_form,
        .asserted = m->assert_mode,
        .gzip = m->gzip,
        .gzip_min = (size_t)m->gzip_min,
        .max_body = (size_t)m->max_body,
        .algs = &m->algs,
        .ldap = m->ldap,
        .ldap_basic = config_bool(cfg, "ldap_basic"),
        .loop = m->loop,
        .max_in_flight = (unsigned)m->up_max_in_flight,
        .answered = aggproxy_answered,
    };
    if (!(m->proxy = proxy_new(&pcfg)))
        return 1;
    return -1;
}

/* Phase: serve — health checks and listeners, then signals until SIGINT or SIGTERM (SIGHUP
 * reloads), then a graceful stop. Returns the exit status. */
static int aggproxy_serve(struct aggproxy_main *m)
{
    struct config *cfg = m->cfg;
    /* Signals (held since main() began) are taken synchronously by this thread. */

    struct httpd_config hcfg = {
        .host = m->host,
        .port = m->port,
        .threads = (unsigned)m->threads,
        .max_body = (size_t)m->max_body,
        .max_header = (size_t)m->max_header,
        .timeout_s = (unsigned)m->timeout,
    };
    httpd_config_limits(cfg, &hcfg);
    /* The AUID label values: the routed AUIDs, then the two the proxy answers itself. */
    const char *auids[METRICS_AUIDS_MAX + 1], *lists[METRICS_AUIDS_MAX];
    size_t n_auids = route_table_routes(m->routes, auids, lists, METRICS_AUIDS_MAX - 2);
    n_auids = n_auids < METRICS_AUIDS_MAX - 2 ? n_auids : METRICS_AUIDS_MAX - 2;
    auids[n_auids++] = XCAP_CAPS_AUID;
    auids[n_auids++] = XDM_DIRECTORY_AUID;
    auids[n_auids] = NULL;
    metrics_init("aggproxy", route_table_root(m->routes), auids);
    /* The first round of health checks runs now, so /readyz and the first requests see the
     * instances as they are. */
    if (!(m->check = upstream_check_start(m->fw, m->routes, (unsigned)m->check_interval,
                                          (unsigned)m->up_connect)))
        return 1;
    if (partners_checks_start(m->partners.set, (unsigned)m->check_interval) < 0)
        return 1;
    m->metrics_src = (struct aggproxy_metrics_src){m->check, m->partners.set, m->ldap != NULL};
    /* Readiness is the local XDMSs' only: a partner that is down leaves the operator's own
     * users served. */
    if (m->metrics_on && metrics_admin_start(m->metrics_host, m->metrics_port, aggproxy_metrics,
                                             aggproxy_ready, &m->metrics_src, &m->admin) < 0)
        return 1;
    if (m->plain) {
        if (httpd_start(&hcfg, aggproxy_handle, m->proxy, &m->httpd) < 0)
            return 1;
        log_info("aggproxy listening on http://%s%s%s:%u", strchr(m->host, ':') ? "[" : "", m->host,
                 strchr(m->host, ':') ? "]" : "", httpd_port(m->httpd));
    }
    if (m->tls) {
        hcfg.host = m->tls_host;
        hcfg.port = m->tls_port;
        hcfg.tls_cert = m->tls_cert;
        hcfg.tls_key = m->tls_key;
        hcfg.tls_priorities = config_str(cfg, "tls_priorities");
        if (httpd_start(&hcfg, aggproxy_handle, m->proxy, &m->httpsd) < 0)
            return 1;
        log_info("aggproxy listening on https://%s%s%s:%u", strchr(m->tls_host, ':') ? "[" : "",
                 m->tls_host, strchr(m->tls_host, ':') ? "]" : "", httpd_port(m->httpsd));
    }
    if (m->fqdns.n)
        log_info("GAA (GBA Digest) for %zu NAF name(s), first %s", m->fqdns.n, m->fqdns.v[0]);
    sdnotify_ready(NULL);

    int sig = 0;
    while (sigwait(&m->sigs, &sig) == 0 && sig == SIGHUP) {
        sdnotify_reloading();
        aggproxy_reload(m->args, m->sections, cfg, m->proxy, m->fw, m->httpd, m->httpsd,
                        &m->partners);
        sdnotify_reloaded();
    }
    sdnotify_stopping();
    /* Graceful stop: no new connection, the requests in progress get shutdown_timeout. */
    unsigned drain_s = (unsigned)config_u64(cfg, "shutdown_timeout");
    log_info("signal %d: stopping; requests in progress get up to %u s", sig, drain_s);
    struct httpd *listeners[] = {m->httpd, m->httpsd};
    size_t left = httpd_drain(listeners, 2, drain_s);
    /* Requests still waiting for an XDMS are answered now (503, Retry-After), and get a moment
     * to be written out before the listeners close. */
    forward_loop_stop(m->loop);
    if (left)
        left = httpd_drain(listeners, 2, 1);
    if (left)
        log_warn("stopping with %zu request(s) unfinished after shutdown_timeout (%u s)", left,
                 drain_s);
    return 0;
}

/* Releases whatever the phases built, the admin listener first: no handler runs after it. */
static void aggproxy_release(struct aggproxy_main *m)
{
    httpd_stop(m->admin);
    /* Every deferred request is answered before its listener stops. */
    forward_loop_stop(m->loop);
    httpd_stop(m->httpd);
    httpd_stop(m->httpsd);
    forward_loop_free(m->loop);
    upstream_check_stop(m->check);
    partners_checks_stop(m->partners.set);
    proxy_free(m->proxy);
    ldapusers_free(m->ldap);
    caps_cache_free(m->caps);
    partners_free(m->partners.set);
    for (size_t i = 0; i < m->partners.n; i++)
        partner_spec_release(&m->partners.specs[i]);
    forward_free(m->fw);
    digest_free(m->digest);
    route_table_free(m->routes);
    if (m->store)
        store_close(m->store);
    config_free(m->cfg);
    config_args_free(m->args);
    if (m->xml_ready)
        xdoc_global_cleanup();
}

int main(int argc, char **argv)
{
    struct aggproxy_main m = {0};
    sdnotify_hold_signals(&m.sigs);
    int rc = aggproxy_read_options(&m, argc, argv);
    if (rc < 0)
        rc = aggproxy_build(&m);
    if (rc < 0)
        rc = aggproxy_serve(&m);
    aggproxy_release(&m);
    return rc;
}

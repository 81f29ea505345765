/* aggproxy: the XCAP Aggregation Proxy (DESIGN §1, SPEC §5.2). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caps.h"
#include "config.h"
#include "digest.h"
#include "gba.h"
#include "forward.h"
#include "httpd.h"
#include "log.h"
#include "proxy.h"
#include "route.h"
#include "store.h"
#include "users.h"
#include "xdoc.h"

static void aggproxy_usage(FILE *f)
{
    fputs("Usage: aggproxy [options]\n"
          "\n"
          "Options (each sets the config key in brackets; --option sets any key):\n"
          "  --config FILE        INI file; section [aggproxy] is read\n"
          "  --data DIR           LMDB directory with the users and GBA records [data]\n"
          "                       (default var/aggproxy)\n"
          "  --http HOST:PORT     HTTP listener [http] (default 127.0.0.1:8080; port 0 = any;\n"
          "                       \"off\" = none)\n"
          "  --https HOST:PORT    HTTPS listener [https] (needs tls_cert and tls_key)\n"
          "  --realm REALM        realm for URIs that name no user [realm] (default example.com)\n"
          "  --log-level LEVEL    error, warn, info, debug [log_level] (default info)\n"
          "  --option KEY=VALUE   any key: xcap_root_path (/xcap-root), threads (4),\n"
          "                       max_body (1M), max_header (64K), timeout (30 s idle),\n"
          "                       nonce_lifetime (300 s), max_nonces (100000),\n"
          "                       digest_algorithms (\"MD5 SHA-256\": offered, in order),\n"
          "                       upstream_timeout_ms (10000), max_response (16M),\n"
          "                       shared_list_url, presence_url, rls_url (unix:PATH of an\n"
          "                       XDMS socket, default unix:var/ROLE/xdms.sock; or https://\n"
          "                       with upstream_cert), route (\"AUID URL\", repeatable),\n"
          "                       tls_cert, tls_key,\n"
          "                       tls_priorities, upstream_ca, upstream_cert, upstream_key,\n"
          "                       gaa_fqdn (repeatable), gaa_password (base64|raw),\n"
          "                       asserted_identity (3gpp|xcap|both), gzip (true),\n"
          "                       gzip_min_size (256), caps_ttl (60 s), caps_retry (5 s),\n"
          "                       max_connections (4096), max_connections_per_ip (64),\n"
          "                       header_timeout (10 s), body_min_rate (1K bytes/s)\n"
          "  --help               this text\n"
          "Users and GBA records are managed with tools/xdmctl. See docs/configuration.md and\n"
          "docs/proxy.md.\n",
          f);
}

struct aggproxy_routes {
    struct route_table *t;
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

/* Parses a listener key: HOST:PORT, or "off"/"" for none. Returns 1 (listen), 0 (off), -1. */
static int aggproxy_listener(const char *key, const char *value, char *host, size_t hostlen,
                             uint16_t *port)
{
    if (!value || !value[0] || strcmp(value, "off") == 0)
        return 0;
    if (config_parse_hostport(value, host, hostlen, port) < 0) {
        log_error("%s must be HOST:PORT or off (got \"%s\")", key, value);
        return -1;
    }
    return 1;
}

static int aggproxy_add_route(void *cls, const char *value)
{
    struct aggproxy_routes *r = cls;
    char err[256];
    if (route_table_set_spec(r->t, value, err, sizeof err) < 0) {
        log_error("route: %s", err);
        r->failed = 1;
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct config_flag flags[] = {
        {"data", "data"},   {"http", "http"},           {"https", "https"},
        {"realm", "realm"}, {"log-level", "log_level"}, {NULL, NULL},
    };
    char errbuf[512];
    struct config_args *args;
    switch (config_args_parse(argc, argv, flags, &args, errbuf, sizeof errbuf)) {
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
    const char *sections[] = {"aggproxy", NULL};
    struct config *cfg = config_args_load(args, sections, errbuf, sizeof errbuf);
    config_args_free(args);
    if (!cfg) {
        fprintf(stderr, "aggproxy: %s\n", errbuf);
        return 2;
    }
    enum log_level level = LOG_INFO;
    if (log_level_parse(config_get(cfg, "log_level", "info"), &level) < 0) {
        fprintf(stderr, "aggproxy: log_level must be error, warn, info or debug\n");
        config_free(cfg);
        return 2;
    }
    log_init("aggproxy", level);

    int exit_code = 2;
    struct store *store = NULL;
    struct digest *digest = NULL;
    struct route_table *routes = NULL;
    struct forward *fw = NULL;
    struct caps_cache *caps = NULL;
    struct proxy *proxy = NULL;
    struct httpd *httpd = NULL, *httpsd = NULL;

    char host[64], tls_host[64];
    uint16_t port = 0, tls_port = 0;
    int plain = aggproxy_listener("http", config_get(cfg, "http", "127.0.0.1:8080"), host,
                                  sizeof host, &port);
    int tls = aggproxy_listener("https", config_get(cfg, "https", NULL), tls_host, sizeof tls_host,
                                &tls_port);
    if (plain < 0 || tls < 0)
        goto out;
    if (!plain && !tls) {
        log_error("no listener: set http and/or https");
        goto out;
    }
    const char *tls_cert = config_get(cfg, "tls_cert", NULL);
    const char *tls_key = config_get(cfg, "tls_key", NULL);
    if (tls && (!tls_cert || !tls_key)) {
        log_error("https needs tls_cert and tls_key (PEM files)");
        goto out;
    }
    uint64_t threads, max_body, max_header, timeout, lifetime, max_nonces, up_timeout, max_resp;
    uint64_t gzip_min, caps_ttl, caps_retry;
    bool gzip;
    if (config_get_uint(cfg, "threads", 4, &threads) < 0 ||
        config_get_size(cfg, "max_body", 1 << 20, &max_body) < 0 ||
        config_get_size(cfg, "max_header", 64 << 10, &max_header) < 0 ||
        config_get_uint(cfg, "timeout", 30, &timeout) < 0 ||
        config_get_uint(cfg, "nonce_lifetime", 300, &lifetime) < 0 ||
        config_get_uint(cfg, "max_nonces", 100000, &max_nonces) < 0 ||
        config_get_uint(cfg, "upstream_timeout_ms", 10000, &up_timeout) < 0 ||
        config_get_size(cfg, "max_response", 16 << 20, &max_resp) < 0 ||
        config_get_bool(cfg, "gzip", true, &gzip) < 0 ||
        config_get_size(cfg, "gzip_min_size", 256, &gzip_min) < 0 ||
        config_get_uint(cfg, "caps_ttl", 60, &caps_ttl) < 0 ||
        config_get_uint(cfg, "caps_retry", 5, &caps_retry) < 0)
        goto out;
    if (threads == 0 || threads > 256) {
        log_error("threads must be 1..256");
        goto out;
    }
    if (lifetime == 0 || lifetime > 86400 || max_nonces == 0 || max_nonces > 10000000 ||
        up_timeout == 0 || up_timeout > 3600000 || max_resp == 0 || max_resp > (1ull << 32) ||
        max_body == 0 || max_body > (1ull << 32) || gzip_min == 0 || gzip_min > (1ull << 32) ||
        caps_ttl == 0 || caps_ttl > 86400 || caps_retry == 0 || caps_retry > 86400) {
        log_error("nonce_lifetime must be 1..86400, max_nonces 1..10000000, "
                  "upstream_timeout_ms 1..3600000, max_response, max_body and gzip_min_size "
                  "1..4G, caps_ttl and caps_retry 1..86400");
        goto out;
    }
    const char *realm = config_get(cfg, "realm", "example.com");
    if (!realm[0] || strpbrk(realm, "\"\\") || strlen(realm) > USERS_NAME_MAX) {
        log_error("realm must be a non-empty name without quotes or backslashes");
        goto out;
    }
    struct digest_algs algs;
    char algs_err[DIGEST_ALGS_ERR_MAX];
    if (digest_algs_parse(config_get(cfg, "digest_algorithms", "MD5 SHA-256"), &algs, algs_err) <
        0) {
        log_error("digest_algorithms: %s", algs_err);
        goto out;
    }
    const char *asserted = config_get(cfg, "asserted_identity", "3gpp");
    enum proxy_assert assert_mode;
    if (strcmp(asserted, "3gpp") == 0)
        assert_mode = PROXY_ASSERT_3GPP;
    else if (strcmp(asserted, "xcap") == 0)
        assert_mode = PROXY_ASSERT_XCAP;
    else if (strcmp(asserted, "both") == 0)
        assert_mode = PROXY_ASSERT_BOTH;
    else {
        log_error("asserted_identity must be 3gpp, xcap or both");
        goto out;
    }
    const char *gaa_pw = config_get(cfg, "gaa_password", "base64");
    enum gba_password_form pw_form;
    if (strcmp(gaa_pw, "base64") == 0)
        pw_form = GBA_PASSWORD_BASE64;
    else if (strcmp(gaa_pw, "raw") == 0)
        pw_form = GBA_PASSWORD_RAW;
    else {
        log_error("gaa_password must be base64 or raw");
        goto out;
    }
    struct aggproxy_fqdns fqdns = {.n = 0};
    config_each(cfg, "gaa_fqdn", aggproxy_add_fqdn, &fqdns);
    if (fqdns.failed)
        goto out;

    char err[256];
    routes = route_table_new(config_get(cfg, "xcap_root_path", ROUTE_DEFAULT_ROOT),
                             config_get(cfg, "shared_list_url", NULL),
                             config_get(cfg, "presence_url", NULL),
                             config_get(cfg, "rls_url", NULL), err, sizeof err);
    if (!routes) {
        log_error("%s", err);
        goto out;
    }
    struct aggproxy_routes ar = {routes, 0};
    config_each(cfg, "route", aggproxy_add_route, &ar);
    if (ar.failed)
        goto out;
    const char *up_cert = config_get(cfg, "upstream_cert", NULL);
    const char *up_key = config_get(cfg, "upstream_key", NULL);
    if (!up_cert != !up_key) {
        log_error("upstream_cert and upstream_key go together");
        goto out;
    }

    exit_code = 1;
    xdoc_global_init();
    const char *data = config_get(cfg, "data", "var/aggproxy");
    if (users_open(data, &store) != USERS_OK) {
        log_error("cannot open the user store in %s", data);
        goto out;
    }
    struct digest_options dopts = {.nonce_lifetime_s = (unsigned)lifetime,
                                   .max_nonces = (size_t)max_nonces};
    struct forward_options fopts = {
        .timeout_ms = (unsigned)up_timeout,
        .max_response = (size_t)max_resp,
        .ca_file = config_get(cfg, "upstream_ca", NULL),
        .cert_file = up_cert,
        .key_file = up_key,
    };
    if (!(digest = digest_new(&dopts)) || !(fw = forward_new(&fopts))) {
        log_error("cannot initialise digest or HTTP client");
        goto out;
    }
    if (!(caps = caps_cache_new(fw, routes, (unsigned)caps_ttl, (unsigned)caps_retry)))
        goto out;
    struct gba_source gba = {gba_store_fetch, store};
    struct proxy_config pcfg = {
        .default_realm = realm,
        .store = store,
        .digest = digest,
        .routes = routes,
        .forward = fw,
        .caps = caps,
        .gba = &gba,
        .gaa_fqdns = fqdns.v,
        .n_gaa_fqdns = fqdns.n,
        .gaa_password = pw_form,
        .asserted = assert_mode,
        .gzip = gzip,
        .gzip_min = (size_t)gzip_min,
        .max_body = (size_t)max_body,
        .algs = &algs,
    };
    if (!(proxy = proxy_new(&pcfg)))
        goto out;

    /* Signals are taken synchronously by this thread; every other thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct httpd_config hcfg = {
        .host = host,
        .port = port,
        .threads = (unsigned)threads,
        .max_body = (size_t)max_body,
        .max_header = (size_t)max_header,
        .timeout_s = (unsigned)timeout,
    };
    if (httpd_config_limits(cfg, &hcfg) < 0)
        goto out;
    if (plain) {
        if (httpd_start(&hcfg, proxy_handle, proxy, &httpd) < 0)
            goto out;
        log_info("aggproxy listening on http://%s%s%s:%u", strchr(host, ':') ? "[" : "", host,
                 strchr(host, ':') ? "]" : "", httpd_port(httpd));
    }
    if (tls) {
        hcfg.host = tls_host;
        hcfg.port = tls_port;
        hcfg.tls_cert = tls_cert;
        hcfg.tls_key = tls_key;
        hcfg.tls_priorities = config_get(cfg, "tls_priorities", NULL);
        if (httpd_start(&hcfg, proxy_handle, proxy, &httpsd) < 0)
            goto out;
        log_info("aggproxy listening on https://%s%s%s:%u", strchr(tls_host, ':') ? "[" : "",
                 tls_host, strchr(tls_host, ':') ? "]" : "", httpd_port(httpsd));
    }
    if (fqdns.n)
        log_info("GAA (GBA Digest) for %zu NAF name(s), first %s", fqdns.n, fqdns.v[0]);

    int sig = 0;
    sigwait(&sigs, &sig);
    log_info("signal %d: stopping", sig);
    exit_code = 0;

out:
    httpd_stop(httpd); /* first: no handler runs after this */
    httpd_stop(httpsd);
    proxy_free(proxy);
    caps_cache_free(caps);
    forward_free(fw);
    digest_free(digest);
    route_table_free(routes);
    if (store)
        store_close(store);
    config_free(cfg);
    if (exit_code != 2)
        xdoc_global_cleanup();
    return exit_code;
}

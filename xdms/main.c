/* xdms: one XCAP server process for one role (DESIGN §1). */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "appusage.h"
#include "config.h"
#include "engine.h"
#include "httpd.h"
#include "log.h"
#include "notify.h"
#include "server.h"
#include "store.h"
#include "usage.h"
#include "xdoc.h"

/* DESIGN §1 default addresses per role. */
static const char *const xdms_default_http[] = {[ROLE_SHARED_LIST] = "127.0.0.1:8181",
                                                [ROLE_PRESENCE] = "127.0.0.1:8182",
                                                [ROLE_RLS] = "127.0.0.1:8183"};
static const char *const xdms_default_sip[] = {[ROLE_SHARED_LIST] = "127.0.0.1:5081",
                                               [ROLE_PRESENCE] = "127.0.0.1:5082",
                                               [ROLE_RLS] = "127.0.0.1:5083"};

/* Every key an XDMS reads, from [xdms] and then [ROLE] (docs/configuration.md). Defaults that
 * depend on the role or the machine are NULL here and computed in main(). */
static const struct config_key xdms_keys[] = {
    {"data", CONFIG_STR, 0, 0, NULL, "data", 0, NULL, "LMDB directory (default var/ROLE)"},
    {"http", CONFIG_HOSTPORT, 0, 0, NULL, "http", 0, NULL,
     "HTTP listener (default 127.0.0.1:8181/8182/8183 by role)"},
    {"sip", CONFIG_HOSTPORT, 0, 0, NULL, "sip", 0, NULL,
     "SIP listener, UDP and TCP (default 127.0.0.1:5081/5082/5083 by role)"},
    {"xcap_root", CONFIG_STR, 0, 0, "http://127.0.0.1:8080/xcap-root/", "xcap-root", 0, NULL,
     "public XCAP root, for notifications and no-parent errors"},
    {"log_level", CONFIG_ENUM, 0, 0, "info", "log-level", 0, "error|warn|info|debug",
     "log verbosity"},
    {"root_path", CONFIG_STR, 0, 0, "/xcap-root", NULL, 0, NULL, "path of the XCAP root"},
    {"schema_dir", CONFIG_STR, 0, 0, XDM_SCHEMA_DIR, NULL, 0, NULL, "directory of the XSD files"},
    {"threads", CONFIG_UINT, 1, 64, NULL, NULL, 0, NULL,
     "HTTP threads (default one per CPU, at most 8)"},
    {"max_body", CONFIG_SIZE, 1, 1ull << 32, "1M", NULL, 0, NULL, "largest request body"},
    {"max_header", CONFIG_SIZE, 1 << 10, 1 << 20, "64K", NULL, 0, NULL, "request line + headers"},
    {"max_uri", CONFIG_SIZE, 256, 1 << 20, "8K", NULL, 0, NULL, "longest request-target"},
    {"default_domain", CONFIG_STR, 0, 255, "example.com", NULL, 0, NULL,
     "domain of bare user names used as XUI"},
    {"timeout", CONFIG_UINT, 1, 86400, "30", NULL, 0, NULL, "idle connection timeout, seconds"},
    {"map_size", CONFIG_SIZE, 1 << 20, 1ull << 44, "1G", NULL, 0, NULL,
     "LMDB map size: the largest the store can grow"},
    {"max_icon_size", CONFIG_SIZE, 1, 1 << 30, "256K", NULL, 0, NULL,
     "largest decoded OMA pres-content icon"},
    {"max_docs_per_user", CONFIG_UINT, 1, 10000000, "1000", NULL, 0, NULL,
     "documents one user may have here"},
    {"trusted_peer", CONFIG_STR, 0, 0, NULL, NULL, CONFIG_REPEAT, NULL,
     "ADDRESS[/BITS]|subject:DN|sha256:HEX proxy|server (default: loopback as proxy)"},
    {"sip_trusted_peer", CONFIG_ADDR, 0, 0, NULL, NULL, CONFIG_REPEAT, NULL,
     "address whose P-Asserted-Identity is believed (default: loopback)"},
    {"sip_server", CONFIG_STR, 0, 0, NULL, NULL, CONFIG_REPEAT, NULL,
     "SIP URI of a server that may watch every user's documents"},
    {"default_expires", CONFIG_UINT, 1, 31536000, "3600", NULL, 0, NULL,
     "subscription duration when SUBSCRIBE has no Expires"},
    {"max_expires", CONFIG_UINT, 1, 31536000, "86400", NULL, 0, NULL,
     "longest subscription granted"},
    {"min_expires", CONFIG_UINT, 1, 86400, "60", NULL, 0, NULL,
     "shorter subscriptions get 423 with Min-Expires"},
    {"notify_min_interval_ms", CONFIG_UINT, 0, 3600000, "200", NULL, 0, NULL,
     "least time between two NOTIFYs of one subscription"},
    {"tls_cert", CONFIG_FILE, 0, 0, NULL, NULL, 0, NULL, "PEM certificate: serve HTTPS"},
    {"tls_key", CONFIG_FILE, 0, 0, NULL, NULL, 0, NULL, "PEM private key of tls_cert"},
    {"tls_client_ca", CONFIG_FILE, 0, 0, NULL, NULL, 0, NULL,
     "PEM CA bundle: require and verify client certificates"},
    {0},
};

static void xdms_usage(FILE *f)
{
    fputs("Usage: xdms --role shared-list|presence|rls [options]\n"
          "\n"
          "  --role ROLE          which XDMS to be (required)\n"
          "  --config FILE        INI file; sections [xdms] then [ROLE] are read\n"
          "  --check-config       check the configuration and exit (0: \"configuration OK\")\n"
          "  --option KEY=VALUE   set any key below (repeatable); beats the file\n"
          "  --data, --http, --sip, --xcap-root, --log-level VALUE\n"
          "                       shorthands for data, http, sip, xcap_root, log_level\n"
          "  --help               this text\n"
          "\n"
          "Keys (--option KEY=VALUE or KEY = VALUE in the file):\n",
          f);
    config_keys_usage(f, xdms_keys);
    fputs("See docs/configuration.md for every key.\n", f);
}

struct xdms_list {
    const char **v;
    size_t n;
};

static int xdms_collect(void *cls, const char *value)
{
    struct xdms_list *l = cls;
    const char **v = realloc(l->v, (l->n + 2) * sizeof *v);
    if (!v)
        return -1;
    l->v = v;
    v[l->n++] = value;
    v[l->n] = NULL;
    return 0;
}

static int xdms_add_peer(void *cls, const char *value)
{
    return server_add_peer(cls, value);
}

/* Rules between keys, which the table cannot express. Returns -1 after logging. */
static int xdms_check_keys(const struct config *cfg)
{
    uint64_t min_exp = config_u64(cfg, "min_expires"), max_exp = config_u64(cfg, "max_expires");
    if (min_exp > max_exp) {
        log_error("min_expires (%" PRIu64 ") must not exceed max_expires (%" PRIu64 ")", min_exp,
                  max_exp);
        return -1;
    }
    if (!config_str(cfg, "tls_cert") != !config_str(cfg, "tls_key")) {
        log_error("tls_cert and tls_key go together");
        return -1;
    }
    if (config_str(cfg, "tls_client_ca") && !config_str(cfg, "tls_cert")) {
        log_error("tls_client_ca needs tls_cert and tls_key (HTTPS)");
        return -1;
    }
    return 0;
}

/* The trusted peers of the configuration (default: loopback as proxy), added to s. */
static int xdms_add_peers(struct xdms_server *s, const struct config *cfg)
{
    if (config_str(cfg, "trusted_peer"))
        return config_each(cfg, "trusted_peer", xdms_add_peer, s) != 0 ? -1 : 0;
    if (server_add_peer(s, "127.0.0.1 proxy") < 0 || server_add_peer(s, "::1 proxy") < 0)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    static const char *const values[] = {"role", NULL};
    char errbuf[4096];
    struct config_args *args;
    switch (config_args_parse(argc, argv, values, xdms_keys, &args, errbuf, sizeof errbuf)) {
    case CONFIG_ARGS_OK:
        break;
    case CONFIG_ARGS_HELP:
        xdms_usage(stdout);
        return 0;
    case CONFIG_ARGS_USAGE:
        fprintf(stderr, "xdms: %s\n", errbuf);
        xdms_usage(stderr);
        return 2;
    }
    const char *role_name = config_args_value(args, "role");
    enum xdms_role role;
    if (!role_name || xdms_role_parse(role_name, &role) < 0) {
        fprintf(stderr, "xdms: --role must be shared-list, presence or rls\n");
        config_args_free(args);
        return 2;
    }
    bool check_only = config_args_check_only(args);
    const char *sections[] = {"xdms", role_name, NULL};
    struct config *cfg = config_args_load(args, sections, errbuf, sizeof errbuf);
    if (!cfg) {
        config_print_errors(stderr, "xdms", errbuf);
        config_args_free(args);
        return 2;
    }
    enum log_level level = LOG_INFO;
    log_level_parse(config_str(cfg, "log_level"), &level);
    char prog[32];
    snprintf(prog, sizeof prog, "xdms(%s)", role_name);
    log_init(prog, level);

    char default_data[64];
    snprintf(default_data, sizeof default_data, "var/%s", role_name);
    char http_host[CONFIG_HOST_MAX], sip_host[CONFIG_HOST_MAX];
    uint16_t http_port, sip_port;
    /* Checked when read (CONFIG_HOSTPORT), so these parse. */
    config_parse_hostport(config_get(cfg, "http", xdms_default_http[role]), http_host,
                          sizeof http_host, &http_port);
    config_parse_hostport(config_get(cfg, "sip", xdms_default_sip[role]), sip_host, sizeof sip_host,
                          &sip_port);
    /* One epoll thread per CPU measured fastest (docs/performance.md): reads then never wait
     * behind a write's fsync. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t default_threads = cpus < 1 ? 1 : cpus > 8 ? 8 : (uint64_t)cpus;
    uint64_t threads;
    config_get_uint(cfg, "threads", default_threads, &threads); /* checked when read */
    uint64_t max_body = config_u64(cfg, "max_body"), max_header = config_u64(cfg, "max_header"),
             timeout = config_u64(cfg, "timeout"), map_size = config_u64(cfg, "map_size"),
             max_docs = config_u64(cfg, "max_docs_per_user"),
             def_exp = config_u64(cfg, "default_expires"), max_exp = config_u64(cfg, "max_expires"),
             min_exp = config_u64(cfg, "min_expires"),
             min_interval = config_u64(cfg, "notify_min_interval_ms");
    if (xdms_check_keys(cfg) < 0) {
        config_free(cfg);
        config_args_free(args);
        return 2;
    }

    xdoc_global_init();
    const char *data = config_get(cfg, "data", default_data);
    const char *xcap_root = config_str(cfg, "xcap_root");
    struct xdms_server_config scfg = {
        .role = role,
        .root_path = config_str(cfg, "root_path"),
        .max_uri = config_u64(cfg, "max_uri"),
        .default_domain = config_str(cfg, "default_domain"),
        .xcap_root = xcap_root,
    };
    struct usage *usage;
    if (usage_open(role, config_str(cfg, "schema_dir"), &usage) < 0) {
        config_free(cfg);
        config_args_free(args);
        xdoc_global_cleanup();
        return 1;
    }
    usage_set_max_icon_size(usage, (size_t)config_u64(cfg, "max_icon_size"));
    if (check_only) {
        /* The trusted peers parse as the server will parse them; nothing is bound or opened. */
        struct xdms_server *probe = server_new(&scfg, NULL, NULL);
        int rc = probe && xdms_add_peers(probe, cfg) == 0 ? 0 : 2;
        server_free(probe);
        usage_close(usage);
        config_free(cfg);
        config_args_free(args);
        xdoc_global_cleanup();
        if (rc == 0)
            puts("configuration OK");
        return rc;
    }
    /* The store's extra tables: the usages' indexes and the persisted subscriptions. */
    const char *tables[32];
    size_t n_tables = 0;
    const char *const *lists[] = {usage_store_tables(role), notify_store_tables()};
    for (size_t l = 0; l < sizeof lists / sizeof lists[0]; l++)
        for (const char *const *t = lists[l]; t && *t && n_tables + 1 < 32; t++)
            tables[n_tables++] = *t;
    tables[n_tables] = NULL;
    struct store_options sopts = {.map_size = map_size, .tables = tables};
    struct store *store;
    enum store_rc src = store_open(data, &sopts, &store);
    if (src != STORE_OK) {
        log_error("cannot open the store in %s: %s", data, store_strerror(src));
        return 1;
    }

    struct engine_config ecfg = {
        .role = role,
        .xcap_root = xcap_root,
        .max_docs_per_user = (unsigned)max_docs,
        .usage = usage,
    };
    struct engine *engine = engine_new(store, &ecfg);

    struct xdms_list sip_peers = {0}, sip_servers = {0};
    config_each(cfg, "sip_trusted_peer", xdms_collect, &sip_peers);
    config_each(cfg, "sip_server", xdms_collect, &sip_servers);
    struct notifier_config ncfg = {
        .host = sip_host,
        .port = sip_port,
        .xcap_root = xcap_root,
        .role = role,
        .default_expires = (unsigned)def_exp,
        .max_expires = (unsigned)max_exp,
        .min_expires = (unsigned)min_exp,
        .min_interval_ms = (unsigned)min_interval,
        .trusted_peers = sip_peers.v,
        .server_identities = sip_servers.v,
    };
    struct notifier *notifier = NULL;
    if (!engine || notifier_start(&ncfg, store, &notifier) < 0) {
        store_close(store);
        return 1;
    }

    scfg.store = store;
    struct xdms_server *server = server_new(&scfg, engine, notifier);
    if (!server)
        return 1;
    if (xdms_add_peers(server, cfg) < 0)
        return 2;

    /* Signals are taken synchronously by this thread; every other thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* With tls_cert the listener speaks HTTPS; tls_client_ca makes it ask for client
     * certificates, so trusted_peer may name the proxy by certificate (mutual TLS). */
    const char *tls_cert = config_str(cfg, "tls_cert");
    struct httpd_config hcfg = {
        .host = http_host,
        .port = http_port,
        .threads = (unsigned)threads,
        .max_body = max_body,
        .max_header = max_header,
        .timeout_s = (unsigned)timeout,
        .tls_cert = tls_cert,
        .tls_key = config_str(cfg, "tls_key"),
        .tls_client_ca = config_str(cfg, "tls_client_ca"),
    };
    struct httpd *httpd;
    if (httpd_start(&hcfg, server_handle, server, &httpd) < 0) {
        notifier_stop(notifier);
        store_close(store);
        return 1;
    }
    log_info("xdms (%s) listening on %s://%s:%u sip %s:%u", role_name, tls_cert ? "https" : "http",
             http_host, httpd_port(httpd), sip_host, notifier_port(notifier));

    int sig = 0;
    sigwait(&sigs, &sig);
    log_info("signal %d: stopping", sig);
    httpd_stop(httpd);
    notifier_stop(notifier);
    server_free(server);
    engine_free(engine);
    store_close(store);
    usage_close(usage);
    free(sip_peers.v);
    free(sip_servers.v);
    config_free(cfg);
    config_args_free(args);
    xdoc_global_cleanup();
    return 0;
}

/* xdms: one XCAP server process for one role (DESIGN §1). */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appusage.h"
#include "config.h"
#include "engine.h"
#include "httpd.h"
#include "log.h"
#include "notify.h"
#include "prescan.h"
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

static void xdms_usage(FILE *f)
{
    fputs("Usage: xdms --role shared-list|presence|rls [options]\n"
          "\n"
          "Options (each sets the config key in brackets; --option sets any key):\n"
          "  --role ROLE          which XDMS to be (required)\n"
          "  --config FILE        INI file; sections [xdms] then [ROLE] are read\n"
          "  --data DIR           LMDB directory of this XDMS [data] (default var/ROLE)\n"
          "  --http HOST:PORT     HTTP listener [http] (default 127.0.0.1:8181/8182/8183)\n"
          "  --socket PATH|off    UNIX-domain HTTP listener for the proxy [socket]\n"
          "                       (default DATA/xdms.sock)\n"
          "  --sip HOST:PORT      SIP listener, UDP and TCP [sip] (default "
          "127.0.0.1:5081/5082/5083)\n"
          "  --xcap-root URL      public XCAP root for notifications [xcap_root]\n"
          "                       (default http://127.0.0.1:8080/xcap-root/)\n"
          "  --log-level LEVEL    error, warn, info, debug [log_level]\n"
          "  --option KEY=VALUE   any other key: root_path, threads, max_body, max_header,\n"
          "                       timeout, map_size, map_high_water, max_docs_per_user,\n"
          "                       max_bytes_per_user, change_log_max_count,\n"
          "                       change_log_max_bytes, change_log_max_age,\n"
          "                       change_log_max_record, max_attributes,\n"
          "                       max_elements, max_depth, allow_foreign_references,\n"
          "                       max_connections, max_connections_per_ip,\n"
          "                       header_timeout, body_min_rate, trusted_peer,\n"
          "                       sip_trusted_peer, sip_server, default_expires, max_expires,\n"
          "                       tls_cert, tls_key, tls_client_ca (HTTPS, mutual TLS)\n"
          "  --help               this text\n"
          "See docs/configuration.md for every key.\n",
          f);
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

int main(int argc, char **argv)
{
    static const struct config_flag flags[] = {
        {"role", NULL},
        {"data", "data"},
        {"http", "http"},
        {"socket", "socket"},
        {"sip", "sip"},
        {"xcap-root", "xcap_root"},
        {"log-level", "log_level"},
        {NULL, NULL},
    };
    char errbuf[512];
    struct config_args *args;
    switch (config_args_parse(argc, argv, flags, &args, errbuf, sizeof errbuf)) {
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
        return 2;
    }
    const char *sections[] = {"xdms", role_name, NULL};
    struct config *cfg = config_args_load(args, sections, errbuf, sizeof errbuf);
    if (!cfg) {
        fprintf(stderr, "xdms: %s\n", errbuf);
        return 2;
    }
    enum log_level level = LOG_INFO;
    if (log_level_parse(config_get(cfg, "log_level", "info"), &level) < 0) {
        fprintf(stderr, "xdms: log_level must be error, warn, info or debug\n");
        return 2;
    }
    char prog[32];
    snprintf(prog, sizeof prog, "xdms(%s)", role_name);
    log_init(prog, level);

    char default_data[64];
    snprintf(default_data, sizeof default_data, "var/%s", role_name);
    char http_host[64], sip_host[64];
    uint16_t http_port, sip_port;
    uint64_t threads, max_body, max_header, timeout, map_size, max_docs, def_exp, max_exp, min_exp,
        min_interval, high_water, max_user_bytes, log_count, log_bytes, log_age, log_record;
    const char *http = config_get(cfg, "http", xdms_default_http[role]);
    const char *sip = config_get(cfg, "sip", xdms_default_sip[role]);
    if (config_parse_hostport(http, http_host, sizeof http_host, &http_port) < 0 ||
        config_parse_hostport(sip, sip_host, sizeof sip_host, &sip_port) < 0) {
        log_error("http and sip must be HOST:PORT (got \"%s\", \"%s\")", http, sip);
        return 2;
    }
    /* One epoll thread per CPU measured fastest (docs/performance.md): reads then never wait
     * behind a write's fsync. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t default_threads = cpus < 1 ? 1 : cpus > 8 ? 8 : (uint64_t)cpus;
    if (config_get_uint(cfg, "threads", default_threads, &threads) < 0 ||
        config_get_size(cfg, "max_body", 1 << 20, &max_body) < 0 ||
        config_get_size(cfg, "max_header", 64 << 10, &max_header) < 0 ||
        config_get_uint(cfg, "timeout", 30, &timeout) < 0 ||
        config_get_size(cfg, "map_size", 1ull << 30, &map_size) < 0 ||
        config_get_uint(cfg, "max_docs_per_user", 1000, &max_docs) < 0 ||
        config_get_uint(cfg, "map_high_water", 90, &high_water) < 0 ||
        config_get_size(cfg, "max_bytes_per_user", 16 << 20, &max_user_bytes) < 0 ||
        config_get_uint(cfg, "change_log_max_count", 100000, &log_count) < 0 ||
        config_get_size(cfg, "change_log_max_bytes", 0, &log_bytes) < 0 ||
        config_get_uint(cfg, "change_log_max_age", 86400, &log_age) < 0 ||
        config_get_size(cfg, "change_log_max_record", 64 << 10, &log_record) < 0 ||
        config_get_uint(cfg, "default_expires", 3600, &def_exp) < 0 ||
        config_get_uint(cfg, "max_expires", 86400, &max_exp) < 0 ||
        config_get_uint(cfg, "min_expires", 60, &min_exp) < 0 ||
        config_get_uint(cfg, "notify_min_interval_ms", 200, &min_interval) < 0)
        return 2;
    if (threads == 0 || threads > 64) {
        log_error("threads must be 1..64");
        return 2;
    }
    if (high_water < 50 || high_water > 99) {
        log_error("map_high_water must be 50..99 (percent of map_size)");
        return 2;
    }
    if (log_record == 0 || log_record > SIZE_MAX) {
        log_error("change_log_max_record must be at least 1 byte");
        return 2;
    }

    /* Everything this process creates (store files, the UNIX-domain socket) is private to its
     * account: that account is who may act for users over the socket. */
    umask(077);
    xdoc_global_init();
    const char *data = config_get(cfg, "data", default_data);
    struct usage *usage;
    uint64_t max_icon;
    if (config_get_size(cfg, "max_icon_size", USAGE_DEFAULT_MAX_ICON_SIZE, &max_icon) < 0)
        return 2;
    if (usage_open(role, config_get(cfg, "schema_dir", XDM_SCHEMA_DIR), &usage) < 0)
        return 1;
    usage_set_max_icon_size(usage, (size_t)max_icon);
    /* RFC 4826 §3.2: references to other servers are accepted as they are; this server is the
     * one clients reach at xcap_root. */
    const char *xcap_root = config_get(cfg, "xcap_root", "http://127.0.0.1:8080/xcap-root/");
    bool allow_foreign = false;
    if (config_get_bool(cfg, "allow_foreign_references", false, &allow_foreign) < 0)
        return 2;
    if (usage_set_references(usage, xcap_root, allow_foreign) < 0) {
        log_error("xcap_root must be an absolute http or https URI (got \"%s\")", xcap_root);
        return 2;
    }
    /* The store's extra tables: the usages' indexes and the persisted subscriptions. */
    const char *tables[32];
    size_t n_tables = 0;
    const char *const *lists[] = {usage_store_tables(role), notify_store_tables()};
    for (size_t l = 0; l < sizeof lists / sizeof lists[0]; l++)
        for (const char *const *t = lists[l]; t && *t && n_tables + 1 < 32; t++)
            tables[n_tables++] = *t;
    tables[n_tables] = NULL;
    /* The change log is bounded by count, bytes (default: an eighth of the map) and age, so that
     * however a user writes it cannot fill the map (docs/configuration.md, "A full store"). */
    struct store_options sopts = {
        .map_size = map_size,
        .change_retention = log_count,
        .change_max_bytes = log_bytes,
        .change_max_age = log_age,
        .high_water = (unsigned)high_water,
        .tables = tables,
    };
    struct store *store;
    enum store_rc src = store_open(data, &sopts, &store);
    if (src != STORE_OK) {
        log_error("cannot open the store in %s: %s", data, store_strerror(src));
        return 1;
    }
    /* The default socket lives in the data directory, whose mode keeps every other account from
     * reaching it (and the documents), whatever mode an operator gave it before. */
    if (chmod(data, 0700) != 0) {
        log_error("cannot make the data directory %s private (mode 0700): %s", data,
                  strerror(errno));
        store_close(store);
        return 1;
    }
    const char *socket_opt = config_get(cfg, "socket", NULL);
    char *socket_path = NULL;
    if (!socket_opt ? asprintf(&socket_path, "%s/xdms.sock", data) < 0
                    : strcmp(socket_opt, "off") != 0 && !(socket_path = strdup(socket_opt))) {
        store_close(store);
        return 1;
    }
    if (socket_path && strlen(socket_path) > HTTPD_UNIX_PATH_MAX) {
        log_error("socket path %s is longer than %d bytes; set socket = a shorter path",
                  socket_path, HTTPD_UNIX_PATH_MAX);
        store_close(store);
        return 2;
    }

    /* Bounds on the shape of every XML body (prescan.h); the depth leaves one level for the
     * wrapper an element body is checked in (XDOC_MAX_DEPTH). */
    uint64_t max_attrs, max_els, max_depth;
    if (config_get_uint(cfg, "max_attributes", PRESCAN_DEFAULT_MAX_ATTRIBUTES, &max_attrs) < 0 ||
        config_get_uint(cfg, "max_elements", PRESCAN_DEFAULT_MAX_ELEMENTS, &max_els) < 0 ||
        config_get_uint(cfg, "max_depth", PRESCAN_DEFAULT_MAX_DEPTH, &max_depth) < 0)
        return 2;
    if (max_attrs < 1 || max_attrs > 65536 || max_els < 1 || max_els > 10000000 || max_depth < 1 ||
        max_depth > XDOC_MAX_DEPTH - 1) {
        log_error("max_attributes must be 1..65536, max_elements 1..10000000, max_depth 1..%d",
                  XDOC_MAX_DEPTH - 1);
        return 2;
    }

    struct engine_config ecfg = {
        .role = role,
        .xcap_root = xcap_root,
        .max_docs_per_user = (unsigned)max_docs,
        .max_bytes_per_user = max_user_bytes,
        .change_max_record = (size_t)log_record,
        .usage = usage,
        .limits = {.max_attributes = (size_t)max_attrs,
                   .max_elements = (size_t)max_els,
                   .max_depth = (size_t)max_depth},
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

    uint64_t max_uri;
    if (config_get_size(cfg, "max_uri", 8 << 10, &max_uri) < 0)
        return 2;
    struct xdms_server_config scfg = {
        .role = role,
        .root_path = config_get(cfg, "root_path", "/xcap-root"),
        .max_uri = max_uri,
        .default_domain = config_get(cfg, "default_domain", "example.com"),
        .xcap_root = xcap_root,
        .store = store,
    };
    struct xdms_server *server = server_new(&scfg, engine, notifier);
    if (!server)
        return 1;
    /* No default: without a trusted_peer line nothing on TCP is trusted, and the proxy uses the
     * UNIX-domain socket. */
    struct httpd *httpd = NULL;
    int rc = 0;
    if (config_each(cfg, "trusted_peer", xdms_add_peer, server) != 0) {
        rc = 2;
        goto stop;
    }

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
    const char *tls_cert = config_get(cfg, "tls_cert", NULL);
    struct httpd_config hcfg = {
        .host = http_host,
        .port = http_port,
        .threads = (unsigned)threads,
        .max_body = max_body,
        .max_header = max_header,
        .timeout_s = (unsigned)timeout,
        .tls_cert = tls_cert,
        .tls_key = config_get(cfg, "tls_key", NULL),
        .tls_client_ca = config_get(cfg, "tls_client_ca", NULL),
        .unix_path = socket_path,
    };
    if (httpd_config_limits(cfg, &hcfg) < 0) {
        rc = 2;
        goto stop;
    }
    if (httpd_start(&hcfg, server_handle, server, &httpd) < 0) {
        rc = 1;
        goto stop;
    }
    log_info("xdms (%s) listening on %s://%s:%u socket %s sip %s:%u", role_name,
             tls_cert ? "https" : "http", http_host, httpd_port(httpd),
             socket_path ? socket_path : "off", sip_host, notifier_port(notifier));

    int sig = 0;
    sigwait(&sigs, &sig);
    log_info("signal %d: stopping", sig);
stop:
    httpd_stop(httpd);
    notifier_stop(notifier);
    server_free(server);
    engine_free(engine);
    store_close(store);
    usage_close(usage);
    free(sip_peers.v);
    free(sip_servers.v);
    free(socket_path);
    config_free(cfg);
    config_args_free(args);
    xdoc_global_cleanup();
    return rc;
}

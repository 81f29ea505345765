/* xdms: one XCAP server process for one role (docs/architecture.md). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "access.h"
#include "appusage.h"
#include "config.h"
#include "engine.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "prescan.h"
#include "sdnotify.h"
#include "server.h"
#include "store.h"
#include "usage.h"
#include "xdoc.h"

/* The default addresses per role (README.md, "Default addresses"). */
static const char *const xdms_default_http[] = {[ROLE_SHARED_LIST] = "127.0.0.1:8181",
                                                [ROLE_PRESENCE] = "127.0.0.1:8182",
                                                [ROLE_RLS] = "127.0.0.1:8183"};
static const char *const xdms_default_sip[] = {[ROLE_SHARED_LIST] = "127.0.0.1:5081",
                                               [ROLE_PRESENCE] = "127.0.0.1:5082",
                                               [ROLE_RLS] = "127.0.0.1:5083"};
static const char *const xdms_default_metrics[] = {[ROLE_SHARED_LIST] = METRICS_DEFAULT_SHARED_LIST,
                                                   [ROLE_PRESENCE] = METRICS_DEFAULT_PRESENCE,
                                                   [ROLE_RLS] = METRICS_DEFAULT_RLS};

/* Every key an XDMS reads, from [xdms] and then [ROLE] (docs/configuration.md). Defaults that
 * depend on the role or the machine are NULL here and computed in main(). */
static const struct config_key xdms_keys[] = {
    {"data", CONFIG_STR, 0, 0, NULL, "data", 0, NULL,
     "LMDB directory and socket directory (default var/ROLE)"},
    {"store", CONFIG_ENUM, 0, 0, "lmdb", NULL, 0, "lmdb|postgresql",
     "document store: LMDB in data, or the PostgreSQL database of pg_conninfo"},
    {"pg_conninfo", CONFIG_STR, 0, 4096, NULL, NULL, 0, NULL,
     "PostgreSQL: libpq connection string of this role's database or schema"},
    {"pg_pool_size", CONFIG_UINT, 1, STORE_PG_MAX_POOL, "4", NULL, 0, NULL,
     "PostgreSQL: connections of this process"},
    {"pg_timeout", CONFIG_UINT, 1, STORE_PG_MAX_TIMEOUT, "5", NULL, 0, NULL,
     "PostgreSQL: longest wait for a connection or a statement; then 503 with Retry-After"},
    {"http", CONFIG_HOSTPORT, 0, 0, NULL, "http", 0, NULL,
     "HTTP listener (default 127.0.0.1:8181/8182/8183 by role)"},
    {"metrics", CONFIG_HOSTPORT, 0, 0, NULL, NULL, CONFIG_OFF, NULL,
     "admin listener: /metrics, /healthz, /readyz (default 127.0.0.1:9181/9182/9183 by role; "
     "off: none)"},
    {"sip", CONFIG_HOSTPORT, 0, 0, NULL, "sip", 0, NULL,
     "SIP listener, UDP and TCP (default 127.0.0.1:5081/5082/5083 by role)"},
    {"xcap_root", CONFIG_STR, 0, 0, "http://127.0.0.1:8080/xcap-root/", "xcap-root", 0, NULL,
     "public XCAP root, for notifications and no-parent errors"},
    {"access_log", CONFIG_ENUM, 0, 0, "text", NULL, 0, "off|text|json",
     "one line per request on stderr: text, JSON lines, or off"},
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
    {"max_bytes_per_user", CONFIG_SIZE, 0, 1ull << 40, "16M", NULL, 0, NULL,
     "bytes of one user's documents here (0 = unlimited)"},
    {"map_high_water", CONFIG_UINT, 50, 99, "90", NULL, 0, NULL,
     "percent of the map writes may fill; above it PUTs get 507, DELETEs still work"},
    {"change_log_max_count", CONFIG_UINT, 1, 100000000, "100000", NULL, 0, NULL,
     "change-log records kept"},
    {"change_log_max_bytes", CONFIG_SIZE, 0, 1ull << 44, NULL, NULL, 0, NULL,
     "bytes of change-log records kept (default map_size/8)"},
    {"change_log_max_age", CONFIG_UINT, 0, 315360000, "86400", NULL, 0, NULL,
     "seconds a change-log record is kept (0 = no age bound)"},
    {"change_log_max_record", CONFIG_SIZE, 1, 1ull << 30, "64K", NULL, 0, NULL,
     "largest node edit kept with its content in the change log"},
    {"max_attributes", CONFIG_UINT, 1, 65536, "256", NULL, 0, NULL,
     "attributes on one element of a body or stored document"},
    {"max_elements", CONFIG_UINT, 1, 10000000, "100000", NULL, 0, NULL,
     "elements in a body or stored document"},
    {"max_depth", CONFIG_UINT, 1, XDOC_MAX_DEPTH - 1, "64", NULL, 0, NULL,
     "element nesting in a body or stored document"},
    {"allow_foreign_references", CONFIG_BOOL, 0, 0, "false", NULL, 0, NULL,
     "accept references into other users' documents on this server"},
    HTTPD_CONFIG_KEYS,
    {"shutdown_timeout", CONFIG_UINT, 0, 3600, "10", NULL, 0, NULL,
     "seconds SIGTERM waits for requests in progress (0: none)"},
    {"socket", CONFIG_STR, 0, HTTPD_UNIX_PATH_MAX, NULL, "socket", 0, NULL,
     "UNIX-domain listener for the proxy, or off (default DATA/xdms.sock)"},
    {"trusted_peer", CONFIG_STR, 0, 0, NULL, NULL, CONFIG_REPEAT, NULL,
     "ADDRESS[/BITS] server | subject:DN|sha256:HEX proxy|server (default: none)"},
    {"sip_trusted_peer", CONFIG_ADDR, 0, 0, NULL, NULL, CONFIG_REPEAT, NULL,
     "address whose P-Asserted-Identity is believed (default: none)"},
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
          "  --data, --http, --socket, --sip, --xcap-root, --log-level VALUE\n"
          "                       shorthands for data, http, socket, sip, xcap_root,\n"
          "                       log_level\n"
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

/* The request handler with its time and outcome recorded (metrics.h). */
static void xdms_handle(void *cls, const struct http_request *req, struct http_response *resp)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* The proxy's request id, so that one request can be followed through both logs. */
    access_begin(http_request_header(req, "X-Request-ID"));
    server_handle(cls, req, resp);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    metrics_request(http_request_method(req), http_request_path(req), resp->status, s);
    access_log(http_request_peer_str(req), http_request_method(req), http_request_target(req),
               resp->status, resp->body.len, s, NULL);
}

/* Store gauges, read in one read transaction at scrape time. */
static int xdms_collect_store(void *cls, struct buf *out)
{
    struct store_txn *t;
    struct store_usage u;
    if (store_txn_begin(cls, false, &t) != STORE_OK)
        return -1;
    enum store_rc rc = store_usage_get(t, &u);
    store_txn_abort(t);
    if (rc != STORE_OK)
        return -1;
    return buf_printf(
        out,
        "# HELP xdm_store_map_bytes Size of the LMDB map (map_size), bytes.\n"
        "# TYPE xdm_store_map_bytes gauge\n"
        "xdm_store_map_bytes %" PRIu64 "\n"
        "# HELP xdm_store_used_bytes Pages of the map in use, bytes.\n"
        "# TYPE xdm_store_used_bytes gauge\n"
        "xdm_store_used_bytes %" PRIu64 "\n"
        "# HELP xdm_store_limit_bytes The map's high-water mark: writes above it get 507.\n"
        "# TYPE xdm_store_limit_bytes gauge\n"
        "xdm_store_limit_bytes %" PRIu64 "\n"
        "# HELP xdm_store_map_fill_ratio Used bytes over the map size.\n"
        "# TYPE xdm_store_map_fill_ratio gauge\n"
        "xdm_store_map_fill_ratio %.6f\n"
        "# HELP xdm_change_log_records Records in the change log.\n"
        "# TYPE xdm_change_log_records gauge\n"
        "xdm_change_log_records %" PRIu64 "\n"
        "# HELP xdm_change_log_bytes Size of the change-log records, bytes.\n"
        "# TYPE xdm_change_log_bytes gauge\n"
        "xdm_change_log_bytes %" PRIu64 "\n"
        "# HELP xdm_documents Documents stored.\n"
        "# TYPE xdm_documents gauge\n"
        "xdm_documents %" PRIu64 "\n"
        "# HELP xdm_users Users with at least one document here.\n"
        "# TYPE xdm_users gauge\n"
        "xdm_users %" PRIu64 "\n",
        u.map_bytes, u.used_bytes, u.limit_bytes,
        u.map_bytes ? (double)u.used_bytes / (double)u.map_bytes : 0.0, u.change_records,
        u.change_bytes, u.documents, u.users);
}

/* What the admin listener reads: the store, and the largest write a request can make. */
struct xdms_admin {
    struct store *store;
    uint64_t max_body;
};

static int xdms_collect_admin(void *cls, struct buf *out)
{
    const struct xdms_admin *a = cls;
    return xdms_collect_store(a->store, out);
}

/* Ready while the largest write a request may make (max_body) fits below the store's
 * high-water mark (map_high_water), as the PUT path checks it: otherwise some PUTs get 507. */
static bool xdms_ready(void *cls, char *reason, size_t len)
{
    const struct xdms_admin *a = cls;
    struct store_txn *t;
    struct store_usage u;
    if (store_txn_begin(a->store, false, &t) != STORE_OK) {
        snprintf(reason, len, "store: cannot begin a transaction");
        return false;
    }
    enum store_rc rc = store_usage_get(t, &u);
    store_txn_abort(t);
    if (rc != STORE_OK) {
        snprintf(reason, len, "store: %s", store_strerror(rc));
        return false;
    }
    /* No map on PostgreSQL (map_bytes 0): no high-water mark to check. */
    if (u.map_bytes != 0 &&
        (u.used_bytes > u.limit_bytes || a->max_body > u.limit_bytes - u.used_bytes)) {
        snprintf(reason, len,
                 "store full: %" PRIu64 " bytes used of %" PRIu64
                 " allowed (map_high_water); a max_body write of %" PRIu64 " bytes would not fit",
                 u.used_bytes, u.limit_bytes, a->max_body);
        return false;
    }
    return true;
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
    const char *conninfo = config_str(cfg, "pg_conninfo");
    if (strcmp(config_str(cfg, "store"), "postgresql") == 0 && (!conninfo || !conninfo[0])) {
        char where[512];
        log_error("%s: store = postgresql needs pg_conninfo (a libpq connection string)",
                  config_where_key(cfg, "store", where, sizeof where));
        return -1;
    }
    return 0;
}

/* Keys a reload applies (docs/operations.md); every other changed key waits for a restart. */
static const char *const xdms_reloadable[] = {
    "log_level",          "trusted_peer",   "sip_trusted_peer", "max_body",  "max_docs_per_user",
    "max_bytes_per_user", "max_attributes", "max_elements",     "max_depth", NULL};

/* SIGHUP: reads the configuration again from the same --config and command line, checks all of
 * it as at start, and applies what may change while running. A configuration with any problem
 * is refused whole and the running one stays. run is the configuration the process started
 * with, which the restart-only keys keep. */
static void xdms_reload(const struct config_args *args, const char *const *sections,
                        const struct config *run, const struct xdms_server_config *scfg,
                        struct xdms_server *server, struct engine *engine,
                        struct notifier *notifier, struct httpd *httpd)
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
    /* An HTTPS listener takes the files again even under the same names: rotation replaces
     * them in place. HTTP to HTTPS and back needs a restart. */
    struct xdms_server *peers = NULL;
    struct httpd_tls *tls = NULL;
    const char *tls_cert = config_str(cfg, "tls_cert");
    bool tls_reloads = httpd_is_tls(httpd) && tls_cert;
    if (xdms_check_keys(cfg) < 0 || !(peers = server_new(scfg, NULL, NULL)) ||
        config_each(cfg, "trusted_peer", xdms_add_peer, peers) != 0 ||
        (tls_reloads && !(tls = httpd_tls_load(tls_cert, config_str(cfg, "tls_key"))))) {
        log_error("reload refused: the running configuration stays");
        server_free(peers);
        config_free(cfg);
        return;
    }
    struct xdms_list sip_peers = {0};
    if (config_each(cfg, "sip_trusted_peer", xdms_collect, &sip_peers) != 0 ||
        notifier_set_trusted_peers(notifier, sip_peers.v) < 0) {
        log_error("reload refused: the running configuration stays");
        free(sip_peers.v);
        httpd_tls_free(tls);
        server_free(peers);
        config_free(cfg);
        return;
    }
    free(sip_peers.v);
    static const char *const tls_keys[] = {"tls_cert", "tls_key", NULL};
    config_warn_restart(run, cfg, xdms_reloadable, tls_reloads ? tls_keys : NULL);
    httpd_set_max_body(httpd, (size_t)config_u64(cfg, "max_body"));
    if (tls)
        httpd_tls_set(httpd, tls);
    enum log_level level = LOG_LEVEL_INFO;
    log_level_parse(config_str(cfg, "log_level"), &level);
    log_set_level(level);
    server_take_peers(server, peers);
    server_free(peers);
    struct engine_limits lim = {
        .max_docs_per_user = (unsigned)config_u64(cfg, "max_docs_per_user"),
        .max_bytes_per_user = config_u64(cfg, "max_bytes_per_user"),
        .limits = {.max_attributes = (size_t)config_u64(cfg, "max_attributes"),
                   .max_elements = (size_t)config_u64(cfg, "max_elements"),
                   .max_depth = (size_t)config_u64(cfg, "max_depth")},
    };
    engine_set_limits(engine, &lim);
    log_always("configuration reloaded: log_level %s, %zu trusted peer(s)%s%s",
               config_str(cfg, "log_level"), server_peer_count(server), tls ? ", certificate " : "",
               tls ? tls_cert : "");
    config_free(cfg);
}

/* Graceful stop: no new connection, the requests in progress get up to timeout_s seconds. */
static void xdms_drain(struct httpd *httpd, unsigned timeout_s, int sig)
{
    log_info("signal %d: stopping; requests in progress get up to %u s", sig, timeout_s);
    size_t left = httpd_drain(&httpd, 1, timeout_s);
    if (left)
        log_warn("stopping with %zu request(s) unfinished after shutdown_timeout (%u s)", left,
                 timeout_s);
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
    enum log_level level = LOG_LEVEL_INFO;
    log_level_parse(config_str(cfg, "log_level"), &level);
    char prog[32];
    snprintf(prog, sizeof prog, "xdms(%s)", role_name);
    log_init(prog, level);
    enum access_format access_fmt = ACCESS_TEXT;
    access_format_parse(config_str(cfg, "access_log"), &access_fmt); /* checked when read */
    access_init(access_fmt, prog);

    char default_data[64];
    snprintf(default_data, sizeof default_data, "var/%s", role_name);
    char http_host[CONFIG_HOST_MAX], sip_host[CONFIG_HOST_MAX], metrics_host[CONFIG_HOST_MAX];
    uint16_t http_port, sip_port, metrics_port = 0;
    /* Checked when read (CONFIG_HOSTPORT), so these parse. */
    config_parse_hostport(config_get(cfg, "http", xdms_default_http[role]), http_host,
                          sizeof http_host, &http_port);
    const char *metrics_addr = config_get(cfg, "metrics", xdms_default_metrics[role]);
    bool metrics_on =
        metrics_addr[0] && strcmp(metrics_addr, "off") != 0 &&
        config_parse_hostport(metrics_addr, metrics_host, sizeof metrics_host, &metrics_port) == 0;
    config_parse_hostport(config_get(cfg, "sip", xdms_default_sip[role]), sip_host, sizeof sip_host,
                          &sip_port);
    /* One epoll thread per CPU measured fastest (docs/performance.md): reads then never wait
     * behind a write's fsync. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t default_threads = cpus < 1 ? 1 : cpus > 8 ? 8 : (uint64_t)cpus;
    uint64_t threads, log_bytes;
    config_get_uint(cfg, "threads", default_threads, &threads);  /* checked when read */
    config_get_size(cfg, "change_log_max_bytes", 0, &log_bytes); /* 0: the store's default */
    uint64_t max_body = config_u64(cfg, "max_body"), max_header = config_u64(cfg, "max_header"),
             timeout = config_u64(cfg, "timeout"), map_size = config_u64(cfg, "map_size"),
             max_docs = config_u64(cfg, "max_docs_per_user"),
             def_exp = config_u64(cfg, "default_expires"), max_exp = config_u64(cfg, "max_expires"),
             min_exp = config_u64(cfg, "min_expires"),
             min_interval = config_u64(cfg, "notify_min_interval_ms"),
             high_water = config_u64(cfg, "map_high_water"),
             max_user_bytes = config_u64(cfg, "max_bytes_per_user"),
             log_count = config_u64(cfg, "change_log_max_count"),
             log_age = config_u64(cfg, "change_log_max_age"),
             log_record = config_u64(cfg, "change_log_max_record");
    if (xdms_check_keys(cfg) < 0) {
        config_free(cfg);
        config_args_free(args);
        return 2;
    }

    /* Everything this process creates (store files, the UNIX-domain socket) is private to its
     * account: that account is who may act for users over the socket. */
    umask(077);
    xdoc_global_init();
    const char *data = config_get(cfg, "data", default_data);
    struct usage *usage;
    if (usage_open(role, config_str(cfg, "schema_dir"), &usage) < 0) {
        config_free(cfg);
        config_args_free(args);
        xdoc_global_cleanup();
        return 1;
    }
    usage_set_max_icon_size(usage, (size_t)config_u64(cfg, "max_icon_size"));
    /* RFC 4826 §3.2: references to other servers are accepted as they are; this server is the
     * one clients reach at xcap_root. */
    const char *xcap_root = config_str(cfg, "xcap_root");
    if (usage_set_references(usage, xcap_root, config_bool(cfg, "allow_foreign_references")) < 0) {
        log_error("xcap_root must be an absolute http or https URI (got \"%s\")", xcap_root);
        usage_close(usage);
        config_free(cfg);
        config_args_free(args);
        xdoc_global_cleanup();
        return 2;
    }
    struct xdms_server_config scfg = {
        .role = role,
        .root_path = config_str(cfg, "root_path"),
        .max_uri = config_u64(cfg, "max_uri"),
        .default_domain = config_str(cfg, "default_domain"),
        .xcap_root = xcap_root,
    };
    if (check_only) {
        /* The trusted peers parse as the server will parse them; nothing is bound or opened. */
        struct xdms_server *probe = server_new(&scfg, NULL, NULL);
        int rc = probe && config_each(cfg, "trusted_peer", xdms_add_peer, probe) == 0 ? 0 : 2;
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
    /* The change log is bounded by count, bytes (default: an eighth of the map) and age, so that
     * however a user writes it cannot fill the map (docs/configuration.md, "A full store"). */
    bool pg = strcmp(config_str(cfg, "store"), "postgresql") == 0;
    struct store_options sopts = {
        .backend = pg ? STORE_BACKEND_POSTGRESQL : STORE_BACKEND_LMDB,
        .pg_conninfo = config_str(cfg, "pg_conninfo"),
        .pg_pool_size = (unsigned)config_u64(cfg, "pg_pool_size"),
        .pg_timeout = (unsigned)config_u64(cfg, "pg_timeout"),
        .map_size = map_size,
        .change_retention = log_count,
        .change_max_bytes = log_bytes,
        .change_max_age = log_age,
        .high_water = (unsigned)high_water,
        .tables = tables,
    };
    struct store *store;
    /* PostgreSQL keeps the documents; data still holds the socket. */
    if (pg && mkdir(data, 0700) != 0 && errno != EEXIST) {
        log_error("cannot create the data directory %s: %s", data, strerror(errno));
        usage_close(usage);
        config_free(cfg);
        config_args_free(args);
        xdoc_global_cleanup();
        return 1;
    }
    enum store_rc src = store_open(data, &sopts, &store);
    if (src != STORE_OK) {
        if (pg)
            log_error("cannot open the PostgreSQL store (pg_conninfo): %s", store_strerror(src));
        else
            log_error("cannot open the store in %s: %s", data, store_strerror(src));
        usage_close(usage);
        config_free(cfg);
        config_args_free(args);
        xdoc_global_cleanup();
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
    const char *socket_opt = config_str(cfg, "socket");
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

    /* Bounds on the shape of every XML body (prescan.h); the depth's limit in the key table
     * leaves one level for the wrapper an element body is checked in (XDOC_MAX_DEPTH). */
    struct prescan_limits limits = {
        .max_attributes = (size_t)config_u64(cfg, "max_attributes"),
        .max_elements = (size_t)config_u64(cfg, "max_elements"),
        .max_depth = (size_t)config_u64(cfg, "max_depth"),
    };

    struct engine_config ecfg = {
        .role = role,
        .xcap_root = xcap_root,
        .max_docs_per_user = (unsigned)max_docs,
        .max_bytes_per_user = max_user_bytes,
        .change_max_record = (size_t)log_record,
        .usage = usage,
        .limits = limits,
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
    /* No default: without a trusted_peer line nothing on TCP is trusted, and the proxy uses the
     * UNIX-domain socket. */
    struct httpd *httpd = NULL, *admin = NULL;
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
        .unix_path = socket_path,
    };
    httpd_config_limits(cfg, &hcfg);
    metrics_init(prog, scfg.root_path);
    struct xdms_admin admin_cls = {store, max_body};
    if (httpd_start(&hcfg, xdms_handle, server, &httpd) < 0 ||
        (metrics_on && metrics_admin_start(metrics_host, metrics_port, xdms_collect_admin,
                                           xdms_ready, &admin_cls, &admin) < 0)) {
        rc = 1;
        goto stop;
    }
    log_info("xdms (%s) listening on %s://%s:%u socket %s sip %s:%u", role_name,
             tls_cert ? "https" : "http", http_host, httpd_port(httpd),
             socket_path ? socket_path : "off", sip_host, notifier_port(notifier));
    /* Every listener is up: a unit ordered after this one (the proxy) finds the socket. */
    sdnotify_ready(NULL);

    int sig = 0;
    while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP)
        xdms_reload(args, sections, cfg, &scfg, server, engine, notifier, httpd);
    sdnotify_stopping();
    xdms_drain(httpd, (unsigned)config_u64(cfg, "shutdown_timeout"), sig);
stop:
    httpd_stop(admin);
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

/* xdms: one XCAP server process for one role (docs/architecture.md). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
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
#include "charging.h"
#include "charging_config.h"
#include "config.h"
#include "corpdir.h"
#include "engine.h"
#include "httpd.h"
#include "ldapc.h"
#include "log.h"
#include "main_keys.h"
#include "metrics.h"
#include "notify.h"
#include "prescan.h"
#include "sdnotify.h"
#include "server.h"
#include "store.h"
#include "usage.h"
#include "xdoc.h"

static void xdms_usage(FILE *f)
{
    fputs("Usage: xdms --role shared-list|presence|rls|ut [options]\n"
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
    config_keys_usage(f, main_keys);
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

/* A request's time and outcome recorded (metrics.h), when its answer is sent. */
static void xdms_answered(const struct http_request *req, const struct http_response *resp,
                          double s)
{
    metrics_request(http_request_method(req), http_request_path(req), resp->status, s);
    access_log(http_request_peer_str(req), http_request_method(req), http_request_target(req),
               resp->status, resp->body.len, s, NULL);
}

/* The request handler; a parked write is recorded by its write thread instead (server.h). */
static void xdms_handle(void *cls, const struct http_request *req, struct http_response *resp)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* The proxy's request id, so that one request can be followed through both logs. */
    access_begin(http_request_header(req, "X-Request-ID"));
    server_handle(cls, req, resp);
    if (http_request_deferred(req))
        return;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    xdms_answered(req, resp,
                  (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
}

/* The group-commit histogram (docs/storage.md "Group commit"): write requests per durable
 * commit; all zero while group commit is off or on PostgreSQL. */
static int xdms_collect_group(struct store *store, struct buf *out)
{
    struct store_group_stats g;
    store_group_stats(store, &g);
    int rc = buf_printf(out, "# HELP xdm_store_commit_batch_size Write transactions acknowledged "
                             "together by one durable commit (group commit).\n"
                             "# TYPE xdm_store_commit_batch_size histogram\n");
    uint64_t cum = 0;
    for (unsigned b = 0; b < STORE_GROUP_BUCKETS; b++) {
        cum += g.buckets[b];
        rc |= buf_printf(out, "xdm_store_commit_batch_size_bucket{le=\"%u\"} %" PRIu64 "\n",
                         STORE_GROUP_BUCKET(b), cum);
    }
    cum += g.buckets[STORE_GROUP_BUCKETS];
    rc |= buf_printf(out,
                     "xdm_store_commit_batch_size_bucket{le=\"+Inf\"} %" PRIu64 "\n"
                     "xdm_store_commit_batch_size_sum %" PRIu64 "\n"
                     "xdm_store_commit_batch_size_count %" PRIu64 "\n",
                     cum, g.requests, g.commits);
    return rc < 0 ? -1 : 0;
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
    if (xdms_collect_group(cls, out) < 0)
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
    struct corpdir *corpdir;
};

static int xdms_collect_admin(void *cls, struct buf *out)
{
    const struct xdms_admin *a = cls;
    if (xdms_collect_store(a->store, out) < 0)
        return -1;
    return corpdir_metrics(a->corpdir, out);
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
    const char *instance = config_str(cfg, "instance"), *contact = config_str(cfg, "sip_contact");
    if (instance && !notifier_instance_name_ok(instance)) {
        log_error("instance \"%s\": use 1 to %d letters, digits and ._:-[]", instance,
                  NOTIFY_INSTANCE_MAX);
        return -1;
    }
    if (contact && !notifier_contact_ok(contact)) {
        log_error("sip_contact \"%s\" is not a sip: or sips: URI (e.g. sip:xdm.example.com:5081)",
                  contact);
        return -1;
    }
    if (config_str(cfg, "tls_client_ca") && !config_str(cfg, "tls_cert")) {
        log_error("tls_client_ca needs tls_cert and tls_key (HTTPS)");
        return -1;
    }
    if (charging_check_keys(cfg) < 0)
        return -1;
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

/* Everything one process holds, from the options to the listeners; released in one place
 * (xdms_release). */
struct xdms_main {
    struct config_args *args;
    const char *role_name;
    enum xdms_role role;
    bool check_only;
    const char *sections[4];
    struct config *cfg;
    char prog[32];
    char default_data[64];
    char http_host[CONFIG_HOST_MAX], sip_host[CONFIG_HOST_MAX], metrics_host[CONFIG_HOST_MAX];
    uint16_t http_port, sip_port, metrics_port;
    bool metrics_on;
    uint64_t threads, log_bytes, max_body, max_header, timeout, map_size, max_docs, def_exp,
        max_exp, min_exp, min_interval, high_water, max_user_bytes, log_count, log_age, log_record;
    bool xml_ready;
    const char *data;
    const char *xcap_root;
    struct usage *usage;
    struct xdms_server_config scfg;
    const char *tables[32];
    struct store *store;
    char *socket_path;
    struct engine *engine;
    struct charging *charging;
    char node[STORE_CHARGE_QUEUE_MAX + 1];
    struct xdms_list sip_peers, sip_servers;
    struct notifier *notifier;
    struct xdms_server *server;
    struct corpdir *corpdir;
    struct httpd *httpd, *admin;
    struct xdms_admin admin_cls;
    sigset_t sigs;
};

/* Phase: read options — the command line, the configuration file, logging. Returns -1 to go
 * on, else the exit status (--help: 0; a usage or configuration mistake: 2). */
static int xdms_read_options(struct xdms_main *m, int argc, char **argv)
{
    static const char *const values[] = {"role", NULL};
    char errbuf[4096];
    switch (config_args_parse(argc, argv, values, main_keys, &m->args, errbuf, sizeof errbuf)) {
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
    m->role_name = config_args_value(m->args, "role");
    if (!m->role_name || xdms_role_parse(m->role_name, &m->role) < 0) {
        fprintf(stderr, "xdms: --role must be shared-list, presence, rls or ut\n");
        return 2;
    }
    m->check_only = config_args_check_only(m->args);
    /* [charging] first: one file configures the charging of every process (docs/charging.md);
     * [xdms] and the role's section may still override a key. */
    m->sections[0] = "charging";
    m->sections[1] = "xdms";
    m->sections[2] = m->role_name;
    m->sections[3] = NULL;
    m->cfg = config_args_load(m->args, m->sections, errbuf, sizeof errbuf);
    if (!m->cfg) {
        config_print_errors(stderr, "xdms", errbuf);
        return 2;
    }
    struct config *cfg = m->cfg;
    enum log_level level = LOG_LEVEL_INFO;
    log_level_parse(config_str(cfg, "log_level"), &level);
    snprintf(m->prog, sizeof m->prog, "xdms(%s)", m->role_name);
    log_init(m->prog, level);
    enum access_format access_fmt = ACCESS_TEXT;
    access_format_parse(config_str(cfg, "access_log"), &access_fmt); /* checked when read */
    access_init(access_fmt, m->prog);

    snprintf(m->default_data, sizeof m->default_data, "var/%s", m->role_name);
    /* Checked when read (CONFIG_HOSTPORT), so these parse. */
    config_parse_hostport(config_get(cfg, "http", main_keys_default_http[m->role]), m->http_host,
                          sizeof m->http_host, &m->http_port);
    const char *metrics_addr = config_get(cfg, "metrics", main_keys_default_metrics[m->role]);
    m->metrics_on = metrics_addr[0] && strcmp(metrics_addr, "off") != 0 &&
                    config_parse_hostport(metrics_addr, m->metrics_host, sizeof m->metrics_host,
                                          &m->metrics_port) == 0;
    config_parse_hostport(config_get(cfg, "sip", main_keys_default_sip[m->role]), m->sip_host,
                          sizeof m->sip_host, &m->sip_port);
    /* One epoll thread per CPU measured fastest (docs/performance.md): reads then never wait
     * behind a write's fsync. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t default_threads = cpus < 1 ? 1 : cpus > 8 ? 8 : (uint64_t)cpus;
    config_get_uint(cfg, "threads", default_threads, &m->threads);  /* checked when read */
    config_get_size(cfg, "change_log_max_bytes", 0, &m->log_bytes); /* 0: the store's default */
    m->max_body = config_u64(cfg, "max_body");
    m->max_header = config_u64(cfg, "max_header");
    m->timeout = config_u64(cfg, "timeout");
    m->map_size = config_u64(cfg, "map_size");
    m->max_docs = config_u64(cfg, "max_docs_per_user");
    m->def_exp = config_u64(cfg, "default_expires");
    m->max_exp = config_u64(cfg, "max_expires");
    m->min_exp = config_u64(cfg, "min_expires");
    m->min_interval = config_u64(cfg, "notify_min_interval_ms");
    m->high_water = config_u64(cfg, "map_high_water");
    m->max_user_bytes = config_u64(cfg, "max_bytes_per_user");
    m->log_count = config_u64(cfg, "change_log_max_count");
    m->log_age = config_u64(cfg, "change_log_max_age");
    m->log_record = config_u64(cfg, "change_log_max_record");
    if (xdms_check_keys(cfg) < 0)
        return 2;
    return -1;
}

/* The store's extra tables: the usages' indexes and the persisted subscriptions. */
static void xdms_store_tables(struct xdms_main *m)
{
    size_t n_tables = 0;
    const char *const *lists[] = {usage_store_tables(m->role), notify_store_tables()};
    for (size_t l = 0; l < sizeof lists / sizeof lists[0]; l++)
        for (const char *const *t = lists[l]; t && *t && n_tables + 1 < 32; t++)
            m->tables[n_tables++] = *t;
    /* The charging queue, also while charging is off, so that records left queued by a run
     * with charging on stay in the store until charging is on again. */
    if (n_tables + 1 < 32)
        m->tables[n_tables++] = charging_store_table();
    m->tables[n_tables] = NULL;
}

/* The corporate directory when directory_base_dn is set: the Shared List XDMS builds it
 * (resource-lists is its usage). Returns 0, or -1 (logged). */
static int xdms_corpdir(struct xdms_main *m)
{
    const struct config *cfg = m->cfg;
    const char *base = config_str(cfg, "directory_base_dn");
    if (!base || !base[0])
        return 0;
    if (m->role != ROLE_SHARED_LIST) {
        log_warn("directory_base_dn is set, but only the shared-list XDMS builds the corporate "
                 "directory: ignored");
        return 0;
    }
    const char *uri = config_str(cfg, "ldap_uri");
    if (!uri || !uri[0]) {
        log_error("directory_base_dn needs ldap_uri");
        return -1;
    }
    char pw[1024];
    if (ldapc_password(config_str(cfg, "ldap_bind_password"),
                       config_str(cfg, "ldap_bind_password_file"), pw, sizeof pw) < 0)
        return -1;
    struct corpdir_options o = {
        .ldap = {.uri = uri,
                 .bind_dn = config_str(cfg, "ldap_bind_dn"),
                 .bind_password = pw,
                 .timeout_ms = (unsigned)config_u64(cfg, "ldap_timeout_ms")},
        .base_dn = base,
        .filter = config_str(cfg, "directory_filter"),
        .name_attr = config_str(cfg, "directory_name_attribute"),
        .uri_attrs = config_str(cfg, "directory_uri_attributes"),
        .document = config_str(cfg, "directory_document"),
        .xcap_root = m->xcap_root,
        .max_entries = (size_t)config_u64(cfg, "directory_max_entries"),
        .max_total = (size_t)config_u64(cfg, "directory_max_total"),
        .refresh_s = (unsigned)config_u64(cfg, "directory_refresh"),
    };
    m->corpdir = corpdir_start(&o, m->store, m->notifier);
    memset(pw, 0, sizeof pw);
    if (!m->corpdir) {
        log_error("cannot start the corporate directory");
        return -1;
    }
    log_info("corporate directory resource-lists/global/%s from LDAP %s", o.document, uri);
    return 0;
}

/* Phase: build — the usages, the store, the engine, the notifier and the request path; with
 * --check-config only what checks the configuration. Returns -1 to go on, else the exit
 * status. */
static int xdms_build(struct xdms_main *m)
{
    struct config *cfg = m->cfg;
    /* Everything this process creates (store files, the UNIX-domain socket) is private to its
     * account: that account is who may act for users over the socket. */
    umask(077);
    xdoc_global_init();
    m->xml_ready = true;
    m->data = config_get(cfg, "data", m->default_data);
    if (usage_open(m->role, config_str(cfg, "schema_dir"), &m->usage) < 0)
        return 1;
    usage_set_max_icon_size(m->usage, (size_t)config_u64(cfg, "max_icon_size"));
    if (config_str(cfg, "default_document") &&
        usage_set_default_doc(m->usage, config_str(cfg, "default_document")) < 0)
        return 2;
    /* RFC 4826 §3.2: references to other servers are accepted as they are; this server is the
     * one clients reach at xcap_root. */
    m->xcap_root = config_str(cfg, "xcap_root");
    if (usage_set_references(m->usage, m->xcap_root, config_bool(cfg, "allow_foreign_references")) <
        0) {
        log_error("xcap_root must be an absolute http or https URI (got \"%s\")", m->xcap_root);
        return 2;
    }
    m->scfg = (struct xdms_server_config){
        .role = m->role,
        .root_path = config_str(cfg, "root_path"),
        .max_uri = config_u64(cfg, "max_uri"),
        .default_domain = config_str(cfg, "default_domain"),
        .xcap_root = m->xcap_root,
        .write_threads = (unsigned)config_u64(cfg, "write_threads"),
        .max_parked_writes = (unsigned)config_u64(cfg, "max_parked_writes"),
        .batch_max_writes = (unsigned)config_u64(cfg, "group_commit_max_requests"),
        .batch_wait_us = (unsigned)config_u64(cfg, "group_commit_wait_us"),
        .answered = xdms_answered,
    };
    const char *dir_base = config_str(cfg, "directory_base_dn");
    const char *ldap_uri = config_str(cfg, "ldap_uri");
    if (dir_base && dir_base[0] && (!ldap_uri || !ldap_uri[0])) {
        log_error("directory_base_dn needs ldap_uri (the LDAP server of the corporate directory)");
        return 2;
    }
    if (m->check_only) {
        /* The trusted peers parse as the server will parse them; nothing is bound or opened. */
        struct xdms_server *probe = server_new(&m->scfg, NULL, NULL);
        int rc = probe && config_each(cfg, "trusted_peer", xdms_add_peer, probe) == 0 ? 0 : 2;
        server_free(probe);
        if (rc == 0)
            puts("configuration OK");
        return rc;
    }
    xdms_store_tables(m);
    /* The change log is bounded by count, bytes (default: an eighth of the map) and age, so that
     * however a user writes it cannot fill the map (docs/configuration.md, "A full store"). */
    bool pg = strcmp(config_str(cfg, "store"), "postgresql") == 0;
    struct store_options sopts = {
        .backend = pg ? STORE_BACKEND_POSTGRESQL : STORE_BACKEND_LMDB,
        .pg_conninfo = config_str(cfg, "pg_conninfo"),
        .pg_pool_size = (unsigned)config_u64(cfg, "pg_pool_size"),
        .pg_timeout = (unsigned)config_u64(cfg, "pg_timeout"),
        .map_size = m->map_size,
        .change_retention = m->log_count,
        .change_max_bytes = m->log_bytes,
        .change_max_age = m->log_age,
        .high_water = (unsigned)m->high_water,
        .group_max_requests = (unsigned)config_u64(cfg, "group_commit_max_requests"),
        .group_max_bytes = config_u64(cfg, "group_commit_max_bytes"),
        .tables = m->tables,
    };
    /* PostgreSQL keeps the documents; data still holds the socket. */
    if (pg && mkdir(m->data, 0700) != 0 && errno != EEXIST) {
        log_error("cannot create the data directory %s: %s", m->data, strerror(errno));
        return 1;
    }
    enum store_rc src = store_open(m->data, &sopts, &m->store);
    if (src != STORE_OK) {
        if (pg)
            log_error("cannot open the PostgreSQL store (pg_conninfo): %s", store_strerror(src));
        else
            log_error("cannot open the store in %s: %s", m->data, store_strerror(src));
        m->store = NULL;
        return 1;
    }
    /* The default socket lives in the data directory, whose mode keeps every other account from
     * reaching it (and the documents), whatever mode an operator gave it before. */
    if (chmod(m->data, 0700) != 0) {
        log_error("cannot make the data directory %s private (mode 0700): %s", m->data,
                  strerror(errno));
        return 1;
    }
    const char *socket_opt = config_str(cfg, "socket");
    if (!socket_opt ? asprintf(&m->socket_path, "%s/xdms.sock", m->data) < 0
                    : strcmp(socket_opt, "off") != 0 && !(m->socket_path = strdup(socket_opt))) {
        m->socket_path = NULL;
        return 1;
    }
    if (m->socket_path && strlen(m->socket_path) > HTTPD_UNIX_PATH_MAX) {
        log_error("socket path %s is longer than %d bytes; set socket = a shorter path",
                  m->socket_path, HTTPD_UNIX_PATH_MAX);
        return 2;
    }

    /* Bounds on the shape of every XML body (prescan.h); the depth's limit in the key table
     * leaves one level for the wrapper an element body is checked in (XDOC_MAX_DEPTH). */
    struct prescan_limits limits = {
        .max_attributes = (size_t)config_u64(cfg, "max_attributes"),
        .max_elements = (size_t)config_u64(cfg, "max_elements"),
        .max_depth = (size_t)config_u64(cfg, "max_depth"),
    };
    /* The serving node of the charging records: the instance name, else the role on this host,
     * which stays the same across restarts so that a restarted process delivers its queue. */
    const char *instance = config_str(cfg, "instance");
    if (instance)
        snprintf(m->node, sizeof m->node, "%s", instance);
    else {
        char host[256] = "localhost";
        gethostname(host, sizeof host - 1);
        snprintf(m->node, sizeof m->node, "%s@%.40s", m->role_name, host);
    }
    if (charging_start(cfg, m->store, m->node, m->data, &m->charging) < 0)
        return 2;
    struct engine_config ecfg = {
        .role = m->role,
        .charging = m->charging,
        .xcap_root = m->xcap_root,
        .max_docs_per_user = (unsigned)m->max_docs,
        .max_bytes_per_user = m->max_user_bytes,
        .change_max_record = (size_t)m->log_record,
        .usage = m->usage,
        .limits = limits,
    };
    m->engine = engine_new(m->store, &ecfg);

    config_each(cfg, "sip_trusted_peer", xdms_collect, &m->sip_peers);
    config_each(cfg, "sip_server", xdms_collect, &m->sip_servers);
    struct notifier_config ncfg = {
        .host = m->sip_host,
        .port = m->sip_port,
        .xcap_root = m->xcap_root,
        .role = m->role,
        .default_expires = (unsigned)m->def_exp,
        .max_expires = (unsigned)m->max_exp,
        .min_expires = (unsigned)m->min_exp,
        .min_interval_ms = (unsigned)m->min_interval,
        .max_subscriptions = (unsigned)config_u64(cfg, "notify_max_subscriptions"),
        .trusted_peers = m->sip_peers.v,
        .server_identities = m->sip_servers.v,
        /* Several instances of the role share the store when they are named (docs/sip.md). */
        .instance = config_str(cfg, "instance"),
        .cluster = config_str(cfg, "instance") != NULL,
        .lease_s = (unsigned)config_u64(cfg, "instance_lease"),
        .poll_ms = (unsigned)config_u64(cfg, "notify_poll_ms"),
        .contact = config_str(cfg, "sip_contact"),
        .charging = m->charging,
    };
    if (!m->engine || notifier_start(&ncfg, m->store, &m->notifier) < 0) {
        m->notifier = NULL;
        return 1;
    }

    m->server = server_new(&m->scfg, m->engine, m->notifier);
    if (!m->server || xdms_corpdir(m) < 0)
        return 1;
    /* No default: without a trusted_peer line nothing on TCP is trusted, and the proxy uses the
     * UNIX-domain socket. */
    if (config_each(cfg, "trusted_peer", xdms_add_peer, m->server) != 0)
        return 2;
    return -1;
}

/* Phase: serve — the listeners, then signals until SIGINT or SIGTERM (SIGHUP reloads), then a
 * graceful stop. Returns the exit status. */
static int xdms_serve(struct xdms_main *m)
{
    struct config *cfg = m->cfg;
    /* Signals (held since main() began) are taken synchronously by this thread. */

    /* With tls_cert the listener speaks HTTPS; tls_client_ca makes it ask for client
     * certificates, so trusted_peer may name the proxy by certificate (mutual TLS). */
    const char *tls_cert = config_str(cfg, "tls_cert");
    struct httpd_config hcfg = {
        .host = m->http_host,
        .port = m->http_port,
        .threads = (unsigned)m->threads,
        .max_body = m->max_body,
        .max_header = m->max_header,
        .timeout_s = (unsigned)m->timeout,
        .tls_cert = tls_cert,
        .tls_key = config_str(cfg, "tls_key"),
        .tls_client_ca = config_str(cfg, "tls_client_ca"),
        .unix_path = m->socket_path,
    };
    httpd_config_limits(cfg, &hcfg);
    const char *auids[METRICS_AUIDS_MAX + 1];
    auids[appusage_auids(auids, METRICS_AUIDS_MAX)] = NULL;
    metrics_init(m->prog, m->scfg.root_path, auids);
    m->admin_cls = (struct xdms_admin){m->store, m->max_body, m->corpdir};
    if (httpd_start(&hcfg, xdms_handle, m->server, &m->httpd) < 0 ||
        (m->metrics_on && metrics_admin_start(m->metrics_host, m->metrics_port, xdms_collect_admin,
                                              xdms_ready, &m->admin_cls, &m->admin) < 0))
        return 1;
    log_info("xdms (%s) listening on %s://%s:%u socket %s sip %s:%u", m->role_name,
             tls_cert ? "https" : "http", m->http_host, httpd_port(m->httpd),
             m->socket_path ? m->socket_path : "off", m->sip_host, notifier_port(m->notifier));
    /* Every listener is up: a unit ordered after this one (the proxy) finds the socket. */
    sdnotify_ready(NULL);

    int sig = 0;
    while (sigwait(&m->sigs, &sig) == 0 && (sig == SIGHUP || sig == SIGUSR1)) {
        if (sig == SIGUSR1) {
            /* the corporate directory on demand (docs/enterprise.md) */
            if (m->corpdir)
                corpdir_refresh(m->corpdir);
            else
                log_info("SIGUSR1: no corporate directory here (directory_base_dn unset)");
            continue;
        }
        sdnotify_reloading();
        xdms_reload(m->args, m->sections, cfg, &m->scfg, m->server, m->engine, m->notifier,
                    m->httpd);
        sdnotify_reloaded();
    }
    sdnotify_stopping();
    xdms_drain(m->httpd, (unsigned)config_u64(cfg, "shutdown_timeout"), sig);
    return 0;
}

/* Releases whatever the phases built, listeners first. */
static void xdms_release(struct xdms_main *m)
{
    httpd_stop(m->admin);
    if (m->server)
        server_stop_writes(m->server); /* no connection may stay suspended (httpd_stop) */
    httpd_stop(m->httpd);
    corpdir_stop(m->corpdir);
    notifier_stop(m->notifier);
    server_free(m->server);
    charging_stop(m->charging);
    engine_free(m->engine);
    store_close(m->store);
    usage_close(m->usage);
    free(m->sip_peers.v);
    free(m->sip_servers.v);
    free(m->socket_path);
    config_free(m->cfg);
    config_args_free(m->args);
    if (m->xml_ready)
        xdoc_global_cleanup();
}

int main(int argc, char **argv)
{
    struct xdms_main m = {0};
    sdnotify_hold_signals(&m.sigs);
    /* SIGUSR1: rebuild the corporate directory now, taken by the serve loop like SIGHUP */
    sigaddset(&m.sigs, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &m.sigs, NULL);
    int rc = xdms_read_options(&m, argc, argv);
    if (rc < 0)
        rc = xdms_build(&m);
    if (rc < 0)
        rc = xdms_serve(&m);
    xdms_release(&m);
    return rc;
}

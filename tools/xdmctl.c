/* xdmctl: administration of the XDM servers' data while they run (docs/operations.md).
 * It manages the Aggregation Proxy's users and its built-in GBA bootstrapping records (what a BSF
 * would return over Zn, TS 33.220), and backs up, restores, exports, imports and checks the
 * stores of a whole data directory (xdmctl_data.c). */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "gba.h"
#include "log.h"
#include "store.h"
#include "users.h"
#include "xcap_uri.h"
#include "xdmctl_data.h"

static void xdmctl_usage(FILE *f)
{
    fputs(
        "Usage: xdmctl [--data DIR] [--config FILE] COMMAND ...\n"
        "\n"
        "  user add XUI [--password PW | --password-file FILE] [--username U] [--realm R]\n"
        "           [--impu URI]...\n"
        "        add a user of the Aggregation Proxy. The Digest username and realm default\n"
        "        to the user part and the domain of a sip: XUI (sip:alice@example.com ->\n"
        "        alice, example.com). Without --password or --password-file the password is\n"
        "        read from standard input (one line). Only HA1 hashes are stored. Each --impu\n"
        "        adds a further public identity the user may pick with\n"
        "        X-3GPP-Intended-Identity (the XUI is always the default one).\n"
        "  user del XUI\n"
        "        remove a user\n"
        "  user list\n"
        "        print one user per line: XUI, username, realm and, when there are any,\n"
        "        the further identities (comma-separated), separated by tabs\n"
        "  gba add --btid B-TID --impi IMPI --ks HEX --impu URI [--impu URI]...\n"
        "          [--rand HEX|BASE64] [--lifetime SECONDS] [--allow AUID]...\n"
        "        add a GBA bootstrapping record for GAA (TS 33.220): Ks = CK||IK as 64 hex\n"
        "        digits, RAND as 32 hex digits or base64 (default: the base64 part of the\n"
        "        B-TID before '@'), key lifetime from now (default 3600). The first --impu is\n"
        "        the subscriber's default public identity. The proxy derives Ks_NAF per NAF.\n"
        "        Each --allow names an application usage the subscriber may use through the\n"
        "        proxy (GUSS authorisation, e.g. --allow resource-lists); others get 403.\n"
        "        Without --allow every AUID is allowed. xcap-caps is always readable; the\n"
        "        composed directory needs --allow org.openmobilealliance.xcap-directory.\n"
        "  gba del B-TID\n"
        "        remove a record\n"
        "  gba list\n"
        "        print one record per line: B-TID, IMPI, expiry (UTC, \"expired\" when past),\n"
        "        the public identities (comma-separated) and the allowed AUIDs\n"
        "        (comma-separated, \"*\" for every AUID), separated by tabs; no keys\n"
        "  backup DEST\n"
        "        copy every store under DIR (shared-list, presence, rls, ut, aggproxy) into the\n"
        "        new directory DEST while the servers run: LMDB's compacting copy, each store\n"
        "        consistent in itself, the four one after the other; DEST/MANIFEST last.\n"
        "        A role on PostgreSQL: pg_dump (custom format, --no-owner, one snapshot)\n"
        "        into DEST/ROLE.pgdump\n"
        "  restore SRC [--force]\n"
        "        put the stores of the backup SRC under DIR. Refuses while a server has one\n"
        "        of DIR's stores open, and refuses to replace an existing store without --force.\n"
        "        A ROLE.pgdump: pg_restore into the role's database, refused when it holds\n"
        "        documents unless --force\n"
        "  export DEST [--user XUI]\n"
        "        write every document (or only those of XUI) into the new directory DEST, one\n"
        "        file per document at its XCAP document selector (AUID/users/XUI/PATH,\n"
        "        AUID/global/PATH; segments percent-encoded), bytes unchanged\n"
        "  import SRC [--xcap-root URI] [--from kamailio|openxcap]\n"
        "        PUT every file of a tree written by export into the stores under DIR, each\n"
        "        one validated as an HTTP PUT would be (servers stopped). Refused files are\n"
        "        reported with the reason; the others are imported. --xcap-root: the public\n"
        "        XCAP root that references are checked against (default\n"
        "        http://127.0.0.1:8080/xcap-root/). --from kamailio, --from openxcap: SRC\n"
        "        is a SQLite database or an SQL dump (mysqldump, pg_dump --inserts) with\n"
        "        the xcap table of Kamailio's xcap_server or of OpenXCAP instead\n"
        "  db init|migrate --config FILE --role ROLE\n"
        "        create (init) or bring up to date (migrate, after an upgrade) the PostgreSQL\n"
        "        schema of the XDMS role ROLE (shared-list, presence, rls, ut), as that server "
        "does\n"
        "        when it starts: reads store and pg_conninfo from [xdms] and [ROLE] of FILE, the\n"
        "        server's configuration. Idempotent; safe while servers run\n"
        "  check [--xcap-root URI]\n"
        "        check the XDMS stores under DIR (read-only, servers may run): documents\n"
        "        valid, quota counters, change log and RLS indexes consistent; one line per\n"
        "        problem, exit status 1 when there is one\n",
        f);
    fputs("  charging list --role ROLE\n"
          "        print each charging queue of the role's store: the serving node and its\n"
          "        records not delivered yet, separated by a tab\n"
          "  charging drain --role ROLE --node N --to M\n"
          "        move every queued record of serving node N (an instance that does not\n"
          "        come back) to the queue of node M, which delivers them (docs/charging.md)\n",
          f);
    fputs("\n"
          "Options:\n"
          "  --data DIR   top data directory (default var); users and GBA records live in\n"
          "               DIR/aggproxy, the store aggproxy opens with --data DIR/aggproxy\n"
          "  --config FILE\n"
          "               the servers' configuration: which store each XDMS role uses\n"
          "               (store, pg_conninfo, pg_timeout of [xdms] and [ROLE]), for backup,\n"
          "               restore, export, import and check. Default DIR/cluster.conf (written\n"
          "               by tools/xdm run --cluster), else DIR/xdm.conf, when one exists;\n"
          "               else every role on LMDB under DIR\n"
          "  --help       this text\n"
          "\n"
          "Exit status: 0 success, 1 error (message on stderr), 2 bad usage.\n",
          f);
}

/* db init|migrate: opening a PostgreSQL store creates or migrates its schema (store.h), under the
 * schema's advisory lock, so this is what a starting server does, without serving. */
static int xdmctl_db(const char *config_path, const char *role, const char *cmd)
{
    if (!config_path || !role) {
        fprintf(stderr, "xdmctl: db %s needs --config FILE and --role ROLE\n", cmd);
        return 2;
    }
    if (strcmp(role, "shared-list") != 0 && strcmp(role, "presence") != 0 &&
        strcmp(role, "rls") != 0 && strcmp(role, "ut") != 0) {
        fprintf(stderr, "xdmctl: --role must be shared-list, presence, rls or ut\n");
        return 2;
    }
    struct xdmctl_data_store st;
    int bad = xdmctl_data_store_config(config_path, role, &st);
    if (bad)
        return bad;
    if (st.backend != STORE_BACKEND_POSTGRESQL) {
        fprintf(stderr,
                "xdmctl: [%s] of %s does not use store = postgresql with pg_conninfo: no "
                "database schema to %s (an LMDB store is created by its server)\n",
                role, config_path, cmd);
        return 1;
    }
    /* No pruning of the change log here: its bounds are the server's to apply. */
    struct store_options o = {
        .backend = STORE_BACKEND_POSTGRESQL,
        .pg_conninfo = st.conninfo,
        .pg_pool_size = 1,
        .pg_timeout = st.pg_timeout,
        .change_retention = UINT64_MAX,
        .change_max_bytes = UINT64_MAX,
    };
    struct store *s;
    enum store_rc rc = store_open(NULL, &o, &s);
    if (rc != STORE_OK) {
        fprintf(stderr, "xdmctl: db %s for %s: %s\n", cmd, role, store_strerror(rc));
        free(st.conninfo);
        return 1;
    }
    printf("%s: database schema up to date (store instance %s)\n", role, store_instance_id(s));
    store_close(s);
    free(st.conninfo);
    return 0;
}

__attribute__((format(printf, 1, 2))) static int xdmctl_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("xdmctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

/* Reads the first line of f (without its end of line) into out. */
static int xdmctl_read_line(FILE *f, char *out, size_t outlen)
{
    if (!fgets(out, (int)outlen, f))
        return -1;
    size_t len = strlen(out);
    if (len == outlen - 1 && out[len - 1] != '\n' && !feof(f))
        return -1; /* longer than allowed */
    while (len && (out[len - 1] == '\n' || out[len - 1] == '\r'))
        out[--len] = '\0';
    return 0;
}

static int xdmctl_password_from_file(const char *path, char *out, size_t outlen)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!f)
        return xdmctl_fail("cannot open password file %s: %s", path, strerror(errno));
    int rc = xdmctl_read_line(f, out, outlen);
    if (f != stdin)
        fclose(f);
    if (rc < 0)
        return xdmctl_fail("no password in %s (or longer than %d bytes)", path, USERS_PASSWORD_MAX);
    return 0;
}

static int xdmctl_password_prompt(char *out, size_t outlen)
{
    if (!isatty(STDIN_FILENO))
        return xdmctl_password_from_file("-", out, outlen);
    struct termios old, quiet;
    if (tcgetattr(STDIN_FILENO, &old) < 0)
        return xdmctl_password_from_file("-", out, outlen);
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    fputs("Password: ", stderr);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    int rc = xdmctl_read_line(stdin, out, outlen);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    fputc('\n', stderr);
    if (rc < 0)
        return xdmctl_fail("no password given");
    return 0;
}

static int xdmctl_print_user(void *cls, const struct users_entry *u)
{
    (void)cls;
    printf("%s\t%s\t%s", u->xui, u->username, u->realm);
    for (size_t i = 0; i < u->n_ids; i++)
        printf("%c%s", i ? ',' : '\t', u->ids[i]);
    putchar('\n');
    return 0;
}

static int xdmctl_print_gba(void *cls, const struct gba_record *r)
{
    const time_t *now = cls;
    char when[32];
    struct tm tm;
    time_t e = (time_t)r->expires;
    gmtime_r(&e, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("%s\t%s\t%s%s", r->btid, r->impi, when, r->expires <= *now ? " expired" : "");
    for (size_t i = 0; i < r->n_impus; i++)
        printf("%c%s", i ? ',' : '\t', r->impus[i]);
    if (r->n_auids == 0)
        fputs("\t*", stdout);
    for (size_t i = 0; i < r->n_auids; i++)
        printf("%c%s", i ? ',' : '\t', r->auids[i]);
    putchar('\n');
    return 0;
}

/* Exactly n bytes from 2n hex digits. */
static int xdmctl_hex(const char *s, unsigned char *out, size_t n)
{
    if (strlen(s) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = xcap_uri_hex(s[2 * i]), lo = xcap_uri_hex(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

/* Opens DIR/aggproxy, the proxy's store. */
static struct store *xdmctl_open(const char *data)
{
    size_t dlen = strlen(data);
    char *dir = malloc(dlen + sizeof "/aggproxy");
    if (!dir) {
        xdmctl_fail("out of memory");
        return NULL;
    }
    memcpy(dir, data, dlen);
    memcpy(dir + dlen, "/aggproxy", sizeof "/aggproxy");
    struct store *s;
    if (users_open(dir, &s) != USERS_OK) {
        xdmctl_fail("cannot open the store in %s", dir);
        s = NULL;
    }
    free(dir);
    return s;
}

struct xdmctl_gba_args {
    const char *btid, *impi, *ks, *rand, *lifetime;
    const char *const *impus;
    size_t n_impus;
    const char *const *auids;
    size_t n_auids;
};

static int xdmctl_gba(const char *data, const char *cmd, const char *arg,
                      const struct xdmctl_gba_args *a)
{
    struct gba_record r = {.btid = a->btid,
                           .impi = a->impi,
                           .impus = a->impus,
                           .n_impus = a->n_impus,
                           .auids = a->auids,
                           .n_auids = a->n_auids};
    if (strcmp(cmd, "add") == 0) {
        if (!a->btid || !a->impi || !a->ks || a->n_impus == 0)
            return xdmctl_fail("gba add needs --btid, --impi, --ks and at least one --impu");
        if (xdmctl_hex(a->ks, r.ks, sizeof r.ks) < 0)
            return xdmctl_fail("--ks must be 64 hex digits (Ks = CK || IK, 256 bits)");
        if (a->rand) {
            if (xdmctl_hex(a->rand, r.rand, sizeof r.rand) < 0 &&
                gba_base64_decode(a->rand, strlen(a->rand), r.rand, sizeof r.rand) < 0)
                return xdmctl_fail("--rand must be 32 hex digits or the base64 of 16 bytes");
        } else {
            /* TS 33.220 §4.5.2: B-TID = base64(RAND) "@" BSF server name. */
            const char *at = strchr(a->btid, '@');
            if (!at ||
                gba_base64_decode(a->btid, (size_t)(at - a->btid), r.rand, sizeof r.rand) < 0)
                return xdmctl_fail("no --rand, and the B-TID does not start with base64(RAND)@");
        }
        long long lifetime = 3600;
        if (a->lifetime) {
            char *end;
            errno = 0;
            lifetime = strtoll(a->lifetime, &end, 10);
            if (errno || end == a->lifetime || *end || lifetime < 1 ||
                lifetime > 10LL * 366 * 86400)
                return xdmctl_fail("--lifetime must be 1..316224000 seconds");
        }
        r.expires = (int64_t)time(NULL) + lifetime;
    } else if (a->btid || a->impi || a->ks || a->rand || a->lifetime || a->n_impus || a->n_auids) {
        return xdmctl_fail("gba %s takes no options", cmd);
    }
    if (strcmp(cmd, "add") == 0 && gba_record_check(&r) != GBA_OK)
        return xdmctl_fail("bad B-TID, IMPI, IMPU or --allow (B-TID: printable, no spaces, quotes "
                           "or backslashes; IMPUs: URIs such as sip:alice@example.com or "
                           "tel:+1...; --allow: distinct AUIDs such as resource-lists, no spaces, "
                           "'/', '?', '#' or ',')");

    struct store *s = xdmctl_open(data);
    if (!s)
        return 1;
    enum gba_rc rc;
    time_t now = time(NULL);
    if (strcmp(cmd, "add") == 0)
        rc = gba_add(s, &r);
    else if (strcmp(cmd, "del") == 0)
        rc = gba_del(s, arg);
    else
        rc = gba_list(s, xdmctl_print_gba, &now);
    store_close(s);
    memset(r.ks, 0, sizeof r.ks);
    switch (rc) {
    case GBA_OK:
        return 0;
    case GBA_EXISTS:
        return xdmctl_fail("a record for B-TID %s exists (gba del it first)", a->btid);
    case GBA_NOT_FOUND:
        return xdmctl_fail("no record for B-TID %s", arg);
    case GBA_BAD:
        return xdmctl_fail("bad B-TID \"%s\"", arg ? arg : a->btid);
    case GBA_ERROR:
        return xdmctl_fail("cannot update the store in %s/aggproxy", data);
    }
    return 1;
}

/* The options of the data commands (backup, restore, export, import, check). */
struct xdmctl_data_opts {
    bool any_opts, force;
    const char *user, *from, *xcap_root;
};

/* backup, restore, export, import and check, on the stores the configuration names. */
static int xdmctl_data_cmd(int nargs, char **args, const char *data,
                           const struct xdmctl_data_stores *stores,
                           const struct xdmctl_data_opts *o)
{
    if (nargs >= 1 && (strcmp(args[0], "backup") == 0 || strcmp(args[0], "restore") == 0)) {
        bool backup = strcmp(args[0], "backup") == 0;
        if (nargs != 2 || o->any_opts || (backup && o->force) || o->user) {
            fprintf(stderr, "xdmctl: bad arguments for \"%s\"\n", args[0]);
            xdmctl_usage(stderr);
            return 2;
        }
        log_init("xdmctl", LOG_LEVEL_WARN);
        return backup ? xdmctl_data_backup(data, args[1], stores)
                      : xdmctl_data_restore(data, args[1], o->force, stores);
    }
    if (nargs >= 1 && strcmp(args[0], "export") == 0) {
        if (nargs != 2 || o->any_opts || o->force) {
            fprintf(stderr, "xdmctl: bad arguments for \"export\"\n");
            xdmctl_usage(stderr);
            return 2;
        }
        log_init("xdmctl", LOG_LEVEL_WARN);
        return xdmctl_data_export(data, args[1], o->user, stores);
    }
    if (nargs >= 1 && strcmp(args[0], "import") == 0) {
        if (nargs != 2 || o->any_opts || o->force || o->user) {
            fprintf(stderr, "xdmctl: bad arguments for \"import\"\n");
            xdmctl_usage(stderr);
            return 2;
        }
        if (o->from && strcmp(o->from, "kamailio") != 0 && strcmp(o->from, "openxcap") != 0) {
            fprintf(stderr, "xdmctl: --from knows kamailio and openxcap, not \"%s\"\n", o->from);
            return 2;
        }
        log_init("xdmctl", LOG_LEVEL_WARN);
        const char *xr = o->xcap_root ? o->xcap_root : "http://127.0.0.1:8080/xcap-root/";
        if (!o->from)
            return xdmctl_data_import(data, args[1], xr, stores);
        return strcmp(o->from, "kamailio") == 0
                   ? xdmctl_data_import_kamailio(data, args[1], xr, stores)
                   : xdmctl_data_import_openxcap(data, args[1], xr, stores);
    }
    if (o->from) {
        fprintf(stderr, "xdmctl: --from is for import only\n");
        return 2;
    }
    if (nargs >= 1 && strcmp(args[0], "check") == 0) {
        if (nargs != 1 || o->any_opts || o->force || o->user) {
            fprintf(stderr, "xdmctl: bad arguments for \"check\"\n");
            xdmctl_usage(stderr);
            return 2;
        }
        log_init("xdmctl", LOG_LEVEL_WARN);
        return xdmctl_data_check(
            data, o->xcap_root ? o->xcap_root : "http://127.0.0.1:8080/xcap-root/", stores);
    }
    fprintf(stderr, "xdmctl: bad arguments for \"%s\"\n", args[0]);
    xdmctl_usage(stderr);
    return 2;
}

/* The command line: options, then the command and its arguments. */
struct xdmctl_opts {
    const char *data, *password, *password_file, *username, *realm;
    const char *impus[GBA_IMPUS_MAX > USERS_IDS_MAX ? GBA_IMPUS_MAX : USERS_IDS_MAX];
    size_t n_impus;
    bool force;
    const char *user, *xcap_root, *from, *config_path, *role, *node, *to;
    const char *auids[GBA_AUIDS_MAX];
    struct xdmctl_gba_args ga;
    int nargs;
    char **args;
};

enum xdmctl_opt {
    OPT_DATA = 256,
    OPT_PASSWORD,
    OPT_PASSWORD_FILE,
    OPT_USERNAME,
    OPT_REALM,
    OPT_IMPU,
    OPT_BTID,
    OPT_IMPI,
    OPT_KS,
    OPT_RAND,
    OPT_LIFETIME,
    OPT_ALLOW,
    OPT_FORCE,
    OPT_USER,
    OPT_XCAP_ROOT,
    OPT_FROM,
    OPT_CONFIG,
    OPT_ROLE,
    OPT_NODE,
    OPT_TO,
};

static const struct option xdmctl_longopts[] = {
    {"data", required_argument, NULL, OPT_DATA},
    {"password", required_argument, NULL, OPT_PASSWORD},
    {"password-file", required_argument, NULL, OPT_PASSWORD_FILE},
    {"username", required_argument, NULL, OPT_USERNAME},
    {"realm", required_argument, NULL, OPT_REALM},
    {"impu", required_argument, NULL, OPT_IMPU},
    {"btid", required_argument, NULL, OPT_BTID},
    {"impi", required_argument, NULL, OPT_IMPI},
    {"ks", required_argument, NULL, OPT_KS},
    {"rand", required_argument, NULL, OPT_RAND},
    {"lifetime", required_argument, NULL, OPT_LIFETIME},
    {"allow", required_argument, NULL, OPT_ALLOW},
    {"force", no_argument, NULL, OPT_FORCE},
    {"user", required_argument, NULL, OPT_USER},
    {"xcap-root", required_argument, NULL, OPT_XCAP_ROOT},
    {"from", required_argument, NULL, OPT_FROM},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"role", required_argument, NULL, OPT_ROLE},
    {"node", required_argument, NULL, OPT_NODE},
    {"to", required_argument, NULL, OPT_TO},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* One option (opt from getopt_long, its argument in optarg) into o. Returns -1 to go on, else the
 * exit status (--help: 0; a mistake: 2). */
static int xdmctl_take_option(struct xdmctl_opts *o, int opt)
{
    switch (opt) {
    case OPT_DATA:
        o->data = optarg;
        break;
    case OPT_PASSWORD:
        o->password = optarg;
        break;
    case OPT_PASSWORD_FILE:
        o->password_file = optarg;
        break;
    case OPT_USERNAME:
        o->username = optarg;
        break;
    case OPT_REALM:
        o->realm = optarg;
        break;
    case OPT_IMPU:
        if (o->n_impus == sizeof o->impus / sizeof o->impus[0]) {
            fprintf(stderr, "xdmctl: too many --impu (at most %zu)\n", o->n_impus);
            return 2;
        }
        o->impus[o->n_impus++] = optarg;
        break;
    case OPT_BTID:
        o->ga.btid = optarg;
        break;
    case OPT_IMPI:
        o->ga.impi = optarg;
        break;
    case OPT_KS:
        o->ga.ks = optarg;
        break;
    case OPT_RAND:
        o->ga.rand = optarg;
        break;
    case OPT_LIFETIME:
        o->ga.lifetime = optarg;
        break;
    case OPT_ALLOW:
        if (o->ga.n_auids == GBA_AUIDS_MAX) {
            fprintf(stderr, "xdmctl: too many --allow (at most %d)\n", GBA_AUIDS_MAX);
            return 2;
        }
        o->auids[o->ga.n_auids++] = optarg;
        break;
    case OPT_FORCE:
        o->force = true;
        break;
    case OPT_USER:
        o->user = optarg;
        break;
    case OPT_XCAP_ROOT:
        o->xcap_root = optarg;
        break;
    case OPT_FROM:
        o->from = optarg;
        break;
    case OPT_CONFIG:
        o->config_path = optarg;
        break;
    case OPT_ROLE:
        o->role = optarg;
        break;
    case OPT_NODE:
        o->node = optarg;
        break;
    case OPT_TO:
        o->to = optarg;
        break;
    case 'h':
        xdmctl_usage(stdout);
        return 0;
    default:
        xdmctl_usage(stderr);
        return 2;
    }
    return -1;
}

/* Phase: read options. Returns -1 to go on, else the exit status (--help: 0; a mistake: 2). */
static int xdmctl_read_options(struct xdmctl_opts *o, int argc, char **argv)
{
    o->data = "var";
    o->ga = (struct xdmctl_gba_args){.impus = o->impus, .auids = o->auids};
    int opt, rc;
    while ((opt = getopt_long(argc, argv, "h", xdmctl_longopts, NULL)) != -1)
        if ((rc = xdmctl_take_option(o, opt)) >= 0)
            return rc;
    o->nargs = argc - optind;
    o->args = argv + optind;
    return -1;
}

/* xdmctl user add|del|list. */
static int xdmctl_user_command(struct xdmctl_opts *o, bool user_opts)
{
    if (o->nargs < 2 || strcmp(o->args[0], "user") != 0) {
        xdmctl_usage(stderr);
        return 2;
    }
    const char *cmd = o->args[1];
    bool add = strcmp(cmd, "add") == 0, del = strcmp(cmd, "del") == 0,
         list = strcmp(cmd, "list") == 0;
    if (!(add || del || list) || o->nargs != (list ? 2 : 3) ||
        (!add && (user_opts || o->n_impus)) || (o->password && o->password_file) || o->ga.btid ||
        o->ga.impi || o->ga.ks || o->ga.rand || o->ga.lifetime || o->ga.n_auids) {
        fprintf(stderr, "xdmctl: bad arguments for \"user %s\"\n", cmd);
        xdmctl_usage(stderr);
        return 2;
    }
    if (o->n_impus > USERS_IDS_MAX) {
        fprintf(stderr, "xdmctl: at most %d --impu per user\n", USERS_IDS_MAX);
        return 2;
    }

    char pw[USERS_PASSWORD_MAX + 2];
    if (add && !o->password) {
        int rc = o->password_file ? xdmctl_password_from_file(o->password_file, pw, sizeof pw)
                                  : xdmctl_password_prompt(pw, sizeof pw);
        if (rc)
            return rc;
        o->password = pw;
    }
    if (add && !o->password[0])
        return xdmctl_fail("the password must not be empty");

    log_init("xdmctl", LOG_LEVEL_WARN);
    struct store *s = xdmctl_open(o->data);
    if (!s)
        return 1;

    enum users_rc rc;
    const char *xui = list ? NULL : o->args[2];
    if (add)
        rc = users_add_ids(s, xui, o->username, o->realm, o->password, o->impus, o->n_impus);
    else if (del)
        rc = users_del(s, xui);
    else
        rc = users_list(s, xdmctl_print_user, NULL);
    if (o->password == pw)
        memset(pw, 0, sizeof pw);
    store_close(s);

    switch (rc) {
    case USERS_OK:
        return 0;
    case USERS_EXISTS:
        return xdmctl_fail("user %s already exists", xui);
    case USERS_CRED_TAKEN:
        return xdmctl_fail("%s: this username is already used in this realm by another user", xui);
    case USERS_NOT_FOUND:
        return xdmctl_fail("no user %s", xui);
    case USERS_BAD_XUI:
        return xdmctl_fail("bad XUI \"%s\": want sip:user@domain (or another URI with --username "
                           "and --realm)",
                           xui);
    case USERS_BAD_NAME:
        return xdmctl_fail("bad username, realm or password for %s (no quotes, backslashes or "
                           "control characters; at most 256 bytes, password 1024)",
                           xui);
    case USERS_BAD_ID:
        return xdmctl_fail("bad --impu for %s: each must be a URI such as tel:+15551234 or "
                           "sip:a@example.com, differ from the XUI and from each other",
                           xui);
    case USERS_ERROR:
        return xdmctl_fail("cannot update the user store in %s/aggproxy", o->data);
    }
    return 1;
}

/* Phase: run the command: check its arguments, then hand it to its module. Returns the exit
 * status. */
static int xdmctl_run(struct xdmctl_opts *o)
{
    bool user_opts = o->password || o->password_file || o->username || o->realm;
    bool any_opts = user_opts || o->n_impus || o->ga.btid || o->ga.impi || o->ga.ks || o->ga.rand ||
                    o->ga.lifetime || o->ga.n_auids;
    if (o->nargs >= 1 && strcmp(o->args[0], "db") == 0) {
        if (o->nargs != 2 ||
            (strcmp(o->args[1], "init") != 0 && strcmp(o->args[1], "migrate") != 0) || any_opts ||
            o->force || o->user || o->from || o->xcap_root) {
            fprintf(stderr, "xdmctl: bad arguments for \"db\"\n");
            xdmctl_usage(stderr);
            return 2;
        }
        log_init("xdmctl", LOG_LEVEL_WARN);
        return xdmctl_db(o->config_path, o->role, o->args[1]);
    }
    if (o->nargs >= 1 && strcmp(o->args[0], "charging") == 0) {
        if (o->nargs != 2 ||
            (strcmp(o->args[1], "list") != 0 && strcmp(o->args[1], "drain") != 0) || !o->role ||
            any_opts || o->force || o->user || o->from || o->xcap_root) {
            fprintf(stderr, "xdmctl: bad arguments for \"charging\"\n");
            xdmctl_usage(stderr);
            return 2;
        }
        log_init("xdmctl", LOG_LEVEL_WARN);
        struct xdmctl_data_stores stores;
        int rc = xdmctl_data_stores_load(&stores, o->config_path, o->data);
        if (rc)
            return rc;
        rc = xdmctl_charging(o->args[1], o->data, &stores, o->role, o->node, o->to);
        xdmctl_data_stores_release(&stores);
        return rc;
    }
    if (o->node || o->to) {
        fprintf(stderr, "xdmctl: --node and --to are for charging drain only\n");
        return 2;
    }
    if (o->role) {
        fprintf(stderr, "xdmctl: --role is for db and charging only\n");
        return 2;
    }
    bool data_cmd =
        o->nargs >= 1 && (strcmp(o->args[0], "backup") == 0 || strcmp(o->args[0], "restore") == 0 ||
                          strcmp(o->args[0], "export") == 0 || strcmp(o->args[0], "import") == 0 ||
                          strcmp(o->args[0], "check") == 0);
    if (o->config_path && !data_cmd) {
        fprintf(stderr, "xdmctl: --config is for db, backup, restore, export, import and check\n");
        return 2;
    }
    if (data_cmd) {
        /* Where each XDMS role keeps its documents: the servers' configuration says. */
        struct xdmctl_data_stores stores;
        int rc = xdmctl_data_stores_load(&stores, o->config_path, o->data);
        if (rc)
            return rc;
        rc = xdmctl_data_cmd(
            o->nargs, o->args, o->data, &stores,
            &(struct xdmctl_data_opts){any_opts, o->force, o->user, o->from, o->xcap_root});
        xdmctl_data_stores_release(&stores);
        return rc;
    }
    if (o->from) {
        fprintf(stderr, "xdmctl: --from is for import only\n");
        return 2;
    }
    if (o->xcap_root) {
        fprintf(stderr, "xdmctl: --xcap-root is for import and check only\n");
        return 2;
    }
    if (o->force || o->user) {
        fprintf(stderr, "xdmctl: --%s is for %s only\n", o->force ? "force" : "user",
                o->force ? "restore" : "export");
        return 2;
    }
    if (o->nargs >= 2 && strcmp(o->args[0], "gba") == 0) {
        const char *cmd = o->args[1];
        bool add = strcmp(cmd, "add") == 0, del = strcmp(cmd, "del") == 0,
             list = strcmp(cmd, "list") == 0;
        if (!(add || del || list) || o->nargs != (del ? 3 : 2) || user_opts) {
            fprintf(stderr, "xdmctl: bad arguments for \"gba %s\"\n", cmd);
            xdmctl_usage(stderr);
            return 2;
        }
        o->ga.n_impus = o->n_impus;
        log_init("xdmctl", LOG_LEVEL_WARN);
        return xdmctl_gba(o->data, cmd, del ? o->args[2] : NULL, &o->ga);
    }
    return xdmctl_user_command(o, user_opts);
}

int main(int argc, char **argv)
{
    struct xdmctl_opts o = {0};
    int rc = xdmctl_read_options(&o, argc, argv);
    return rc < 0 ? xdmctl_run(&o) : rc;
}

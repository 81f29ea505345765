/* xdmctl: administration of the XDM servers' data while they run (DESIGN §6 tools/).
 * This version manages the Aggregation Proxy's users. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "log.h"
#include "store.h"
#include "users.h"

static void xdmctl_usage(FILE *f)
{
    fputs("Usage: xdmctl [--data DIR] COMMAND ...\n"
          "\n"
          "  user add XUI [--password PW | --password-file FILE] [--username U] [--realm R]\n"
          "        add a user of the Aggregation Proxy. The Digest username and realm default\n"
          "        to the user part and the domain of a sip: XUI (sip:alice@example.com ->\n"
          "        alice, example.com). Without --password or --password-file the password is\n"
          "        read from standard input (one line). Only HA1 hashes are stored.\n"
          "  user del XUI\n"
          "        remove a user\n"
          "  user list\n"
          "        print one user per line: XUI, username and realm separated by tabs\n"
          "\n"
          "Options:\n"
          "  --data DIR   top data directory (default var); users live in DIR/aggproxy, the\n"
          "               store aggproxy opens with --data DIR/aggproxy\n"
          "  --help       this text\n"
          "\n"
          "Exit status: 0 success, 1 error (message on stderr), 2 bad usage.\n",
          f);
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
    printf("%s\t%s\t%s\n", u->xui, u->username, u->realm);
    return 0;
}

int main(int argc, char **argv)
{
    enum { OPT_DATA = 256, OPT_PASSWORD, OPT_PASSWORD_FILE, OPT_USERNAME, OPT_REALM };
    static const struct option longopts[] = {
        {"data", required_argument, NULL, OPT_DATA},
        {"password", required_argument, NULL, OPT_PASSWORD},
        {"password-file", required_argument, NULL, OPT_PASSWORD_FILE},
        {"username", required_argument, NULL, OPT_USERNAME},
        {"realm", required_argument, NULL, OPT_REALM},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *data = "var", *password = NULL, *password_file = NULL, *username = NULL,
               *realm = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_DATA:
            data = optarg;
            break;
        case OPT_PASSWORD:
            password = optarg;
            break;
        case OPT_PASSWORD_FILE:
            password_file = optarg;
            break;
        case OPT_USERNAME:
            username = optarg;
            break;
        case OPT_REALM:
            realm = optarg;
            break;
        case 'h':
            xdmctl_usage(stdout);
            return 0;
        default:
            xdmctl_usage(stderr);
            return 2;
        }
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    if (nargs < 2 || strcmp(args[0], "user") != 0) {
        xdmctl_usage(stderr);
        return 2;
    }
    const char *cmd = args[1];
    bool add = strcmp(cmd, "add") == 0, del = strcmp(cmd, "del") == 0,
         list = strcmp(cmd, "list") == 0;
    if (!(add || del || list) || nargs != (list ? 2 : 3) ||
        (!add && (password || password_file || username || realm)) || (password && password_file)) {
        fprintf(stderr, "xdmctl: bad arguments for \"user %s\"\n", cmd);
        xdmctl_usage(stderr);
        return 2;
    }

    char pw[USERS_PASSWORD_MAX + 2];
    if (add && !password) {
        int rc = password_file ? xdmctl_password_from_file(password_file, pw, sizeof pw)
                               : xdmctl_password_prompt(pw, sizeof pw);
        if (rc)
            return rc;
        password = pw;
    }
    if (add && !password[0])
        return xdmctl_fail("the password must not be empty");

    log_init("xdmctl", LOG_WARN);
    size_t dlen = strlen(data);
    char *dir = malloc(dlen + sizeof "/aggproxy");
    if (!dir)
        return xdmctl_fail("out of memory");
    memcpy(dir, data, dlen);
    memcpy(dir + dlen, "/aggproxy", sizeof "/aggproxy");
    struct store *s;
    if (users_open(dir, &s) != USERS_OK) {
        int rc = xdmctl_fail("cannot open the user store in %s", dir);
        free(dir);
        return rc;
    }

    enum users_rc rc;
    const char *xui = list ? NULL : args[2];
    if (add)
        rc = users_add(s, xui, username, realm, password);
    else if (del)
        rc = users_del(s, xui);
    else
        rc = users_list(s, xdmctl_print_user, NULL);
    if (password == pw)
        memset(pw, 0, sizeof pw);
    store_close(s);
    free(dir);

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
    case USERS_ERROR:
        return xdmctl_fail("cannot update the user store in %s/aggproxy", data);
    }
    return 1;
}

/* The socket file of an HTTP server's UNIX-domain listener (httpd_config.unix_path): making it
 * listen and removing it. httpd.c runs a libmicrohttpd server of its own on it, owned by the TCP
 * server, whose requests are local (http_request_is_local). */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "httpd.h"
#include "httpd_internal.h"
#include "log.h"

/* Makes the listening UNIX-domain socket at path. A socket file already there is probed: a
 * refused connection means its server died without removing it (a crash, SIGKILL), so it is
 * replaced; an accepted one means a live server owns it, which is never taken over. Returns the
 * listening socket (non-blocking), or -1 with a log line. */
int httpd_unix_listen(struct httpd *d, const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len == 0 || len > HTTPD_UNIX_PATH_MAX) {
        log_error("httpd: socket path \"%s\" is empty or longer than %d bytes", path,
                  HTTPD_UNIX_PATH_MAX);
        return -1;
    }
    memcpy(sun.sun_path, path, len + 1);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            log_error("httpd: %s exists and is not a socket; not replacing it", path);
            return -1;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe < 0) {
            log_error("httpd: socket: %s", strerror(errno));
            return -1;
        }
        int rc = connect(probe, (struct sockaddr *)&sun, sizeof sun);
        int err = errno;
        close(probe);
        if (rc == 0) {
            log_error("httpd: another process is listening on %s (is this server already "
                      "running?)",
                      path);
            return -1;
        }
        if (err != ECONNREFUSED && err != ENOENT) {
            log_error("httpd: cannot probe the existing socket %s: %s", path, strerror(err));
            return -1;
        }
        if (err == ECONNREFUSED) {
            log_info("httpd: replacing the stale socket %s", path);
            if (unlink(path) != 0 && errno != ENOENT) {
                log_error("httpd: cannot remove the stale socket %s: %s", path, strerror(errno));
                return -1;
            }
        }
    } else if (errno != ENOENT) {
        log_error("httpd: %s: %s", path, strerror(errno));
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_error("httpd: socket: %s", strerror(errno));
        return -1;
    }
    /* bind() creates the file with the process umask; the mode is then narrowed to the owner,
     * who alone may connect (the directory normally keeps everyone else out already). */
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
        log_error("httpd: cannot bind %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (chmod(path, 0600) != 0 || lstat(path, &st) != 0 || listen(fd, SOMAXCONN) != 0) {
        log_error("httpd: cannot listen on %s: %s", path, strerror(errno));
        unlink(path);
        close(fd);
        return -1;
    }
    d->unix_dev = st.st_dev;
    d->unix_ino = st.st_ino;
    return fd;
}

/* Removes the socket file if it is still the one this server bound (another server may have
 * replaced it meanwhile, e.g. after this one hung). */
void httpd_unix_remove(struct httpd *d)
{
    struct stat st;
    if (d->unix_path && lstat(d->unix_path, &st) == 0 && st.st_dev == d->unix_dev &&
        st.st_ino == d->unix_ino)
        unlink(d->unix_path);
}

/* What the charging files share (charging.c: records, the queue and the delivery thread;
 * charging_cdr.c: CDR files; charging_rf.c: the Diameter Rf client). Not for use elsewhere. */
#ifndef XDM_CHARGING_INTERNAL_H
#define XDM_CHARGING_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "charging.h"

/* CDR files: DIR/xdm-NODE-YYYYMMDDTHHMMSSZ-SEQ.jsonl (NODE with every byte other than
 * A-Z a-z 0-9 . _ - written as '_'; SEQ the number of the file's first record). The open file
 * is written in place (a reader sees whole lines once they are fsync'ed); a file is never
 * touched again once closed. */
struct charging_cdr;

/* Makes dir (mode 0700) when missing. 0, or -1 after logging. */
int charging_cdr_open(const char *dir, const char *node, uint64_t rotate_bytes,
                      uint64_t rotate_age_s, struct charging_cdr **out);
/* Appends one line of record seq (opening a file when none is open; closing the open one first
 * when it reached rotate_bytes or rotate_age_s). 0, or -1 after logging (the line may be partly
 * written: the file is closed and the line written again into a new one by the next try). */
int charging_cdr_write(struct charging_cdr *c, const char *line, size_t len, uint64_t seq);
/* fsync of the open file: what was written is on disk. 0, or -1 after logging. */
int charging_cdr_sync(struct charging_cdr *c);
/* Closes the open file (fsync'ed) when it is older than rotate_age_s. */
void charging_cdr_tick(struct charging_cdr *c);
void charging_cdr_close(struct charging_cdr *c);

/* The Diameter Rf client (freeDiameter's libfdcore): one per process. */
struct charging_rf_config {
    const char *conf_file;   /* freeDiameter configuration: Identity, Realm, peers, TLS */
    const char *dest_realm;  /* Destination-Realm */
    const char *dest_host;   /* Destination-Host, or NULL */
    const char *service_ctx; /* Service-Context-Id */
    unsigned answer_timeout_ms;
};
struct charging_rf;

/* Starts freeDiameter with conf_file. 0, or -1 after logging. */
int charging_rf_open(const struct charging_rf_config *cfg, struct charging_rf **out);
/* Sends the Accounting-Request of record seq and waits for its answer (at most
 * answer_timeout_ms). 0 on DIAMETER_SUCCESS; -1 otherwise, with the reason in why. */
int charging_rf_send(struct charging_rf *rf, const struct charging_record *r, uint64_t seq,
                     char *why, size_t whylen);
void charging_rf_close(struct charging_rf *rf);

#endif

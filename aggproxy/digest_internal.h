/* What the three files of the Digest code share (digest.c: hashing, challenges and
 * verification; digest_parse.c: the Authorization parser; digest_nonce.c: nonces, their replay
 * state and hex encoding). digest.c calls digest_nonce.c, never the other way round. Not for use
 * outside aggproxy/digest*.c. */
#ifndef XDM_DIGEST_INTERNAL_H
#define XDM_DIGEST_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct digest;

/* A nonce is base64url(ts(8) || random(16) || MAC(16)); its id is ts || random. */
#define DIGEST_NONCE_TS_LEN 8
#define DIGEST_NONCE_ID_LEN (DIGEST_NONCE_TS_LEN + 16)
/* The opaque of the challenges: hex of 16 random bytes, per process. */
#define DIGEST_OPAQUE_HEX_LEN 32

/* Lower-case hex of len bytes into out (2 * len + 1 bytes, NUL-terminated). digest_nonce.c. */
void digest_hex_encode(const unsigned char *in, size_t len, char *out);

/* Checks a nonce's MAC and splits it: id and issue time (digest_clock_now() seconds). 0, or -1
 * for anything this process did not issue. Thread-safe (reads only what digest_new() set). */
int digest_nonce_open(const struct digest *d, const char *nonce,
                      unsigned char id[DIGEST_NONCE_ID_LEN], uint64_t *ts);
/* True when a nonce issued at ts is past the lifetime at now (or from the future). */
bool digest_nonce_expired(const struct digest *d, uint64_t ts, uint64_t now);

/* How many stripes a replay table of max_nonces is split into (1..64, a power of two): no more
 * than leave 1024 nonces to each, so small tables keep one eviction order. Each stripe holds its
 * share of max_nonces (the shares add up to it) and is locked on its own. */
size_t digest_nonce_stripes(size_t max_nonces);

enum digest_nc_check { DIGEST_NC_OK, DIGEST_NC_REPLAY, DIGEST_NC_STALE, DIGEST_NC_NOMEM };
/* RFC 7616 §3.4, §5.12: nc must grow strictly per nonce. Records nc for the nonce (id, ts) of a
 * verified request: OK when it is above every nc accepted before, REPLAY when not, STALE when the
 * nonce's state may have been evicted (the client must take a new nonce), NOMEM. Thread-safe: it
 * locks the nonce's stripe only. */
enum digest_nc_check digest_nonce_accept_nc(struct digest *d,
                                            const unsigned char id[DIGEST_NONCE_ID_LEN],
                                            uint64_t ts, uint32_t nc, uint64_t now);

#endif

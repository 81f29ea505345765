/* Replays a fuzz target over saved inputs, so every corpus runs in the normal test run without
 * libFuzzer (and with any compiler).
 *
 *   fuzz_<target>_replay PATH...
 *
 * Each PATH is a file or a directory whose regular files (not recursing, dot files skipped) are
 * run in name order. Each input is handed over in a buffer of exactly its size, so a sanitizer sees
 * any read past the end. Prints "counts: N passed, F failed" where F counts paths that could not be
 * read; a crash in the target ends the process with the crash's status. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* libFuzzer's own default cap on input length is far below this. */
#define REPLAY_MAX_INPUT (16u << 20)
#define REPLAY_PATH_MAX 4096

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    uint8_t *data = NULL;
    size_t len = 0;
    struct stat st;
    int rc = -1;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0 || (uint64_t)st.st_size > REPLAY_MAX_INPUT) {
        fprintf(stderr, "%s: unreadable or larger than %u bytes\n", path, REPLAY_MAX_INPUT);
        goto out;
    }
    len = (size_t)st.st_size;
    /* malloc(0) may return NULL; an empty input still gets a valid, unreadable-past-end buffer. */
    data = malloc(len > 0 ? len : 1);
    if (!data || fread(data, 1, len, f) != len) {
        fprintf(stderr, "%s: short read\n", path);
        goto out;
    }
    LLVMFuzzerTestOneInput(data, len);
    rc = 0;
out:
    free(data);
    fclose(f);
    return rc;
}

static int replay_filter(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

static void replay_dir(const char *dir, unsigned *passed, unsigned *failed)
{
    struct dirent **names;
    int n = scandir(dir, &names, replay_filter, alphasort);
    if (n < 0) {
        fprintf(stderr, "%s: %s\n", dir, strerror(errno));
        (*failed)++;
        return;
    }
    for (int i = 0; i < n; i++) {
        char path[REPLAY_PATH_MAX];
        struct stat st;
        int len = snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        if (len < 0 || (size_t)len >= sizeof path) {
            (*failed)++;
        } else if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            if (replay_file(path) == 0)
                (*passed)++;
            else
                (*failed)++;
        }
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv)
{
    unsigned passed = 0, failed = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE-OR-DIRECTORY...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
            failed++;
        } else if (S_ISDIR(st.st_mode)) {
            replay_dir(argv[i], &passed, &failed);
        } else if (replay_file(argv[i]) == 0) {
            passed++;
        } else {
            failed++;
        }
    }
    printf("counts: %u passed, %u failed\n", passed, failed);
    return failed > 0 ? 1 : 0;
}

// File input and output of the C reference harnesses (scripts/*-harness.c,
// compiled by tessera_testkit::cref::compile_harness with `-I scripts`).
// Every failure prints the path and exits with status 2.
#ifndef TESSERA_HARNESS_IO_H
#define TESSERA_HARNESS_IO_H

#include <stdio.h>
#include <stdlib.h>

// The whole file `path` in a malloc'd buffer; its size goes to `*len`.
static void * read_all(const char * path, size_t * len) {
    FILE * f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    *len = (size_t) ftell(f);
    fseek(f, 0, SEEK_SET);
    void * buf = malloc(*len ? *len : 1);
    if (fread(buf, 1, *len, f) != *len) { perror(path); exit(2); }
    fclose(f);
    return buf;
}

// Writes `len` bytes of `buf` to `path`.
static void write_all(const char * path, const void * buf, size_t len) {
    FILE * f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len) { perror(path); exit(2); }
    fclose(f);
}

#endif

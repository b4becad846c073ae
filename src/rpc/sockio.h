/*
 * sockio: reading and writing a non-blocking socket, plain or through an
 * OpenSSL session, with one meaning for "would block" on both. Shared by
 * server connections (conn.c) and client connections (cconn.c).
 */
#ifndef TRPC_SOCKIO_H
#define TRPC_SOCKIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "buf.h"

/*
 * Reads into buf: returns the number of bytes (> 0), 0 when it would block,
 * or -1 at the end of the stream or on an error (*eof = 1 for a clean end).
 * *want_write is set when TLS needs to write before it can read.
 */
ssize_t sockio_read(int fd, SSL *ssl, uint8_t *buf, size_t size, int *eof, int *want_write);

/*
 * Writes out what `out` holds, consuming it. Returns 0 when everything is
 * written or the socket would block (then *would_block = 1), -1 on an
 * error (errno set for plain sockets).
 */
int sockio_write(int fd, SSL *ssl, struct buf *out, int *would_block);

/*
 * Appends what the nghttp2 session has to send to `out` until it holds
 * `limit` bytes or nghttp2 has nothing more: many frames, one write.
 * Returns 0, or -1 with the reason in *why (static text).
 */
int sockio_gather(nghttp2_session *h2, struct buf *out, size_t limit, const char **why);

#endif

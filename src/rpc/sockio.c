#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <unistd.h>

#include <openssl/err.h>

#include "sockio.h"

ssize_t sockio_read(int fd, SSL *ssl, uint8_t *buf, size_t size, int *eof, int *want_write)
{
	*eof = 0;
	if (ssl == NULL) {
		for (;;) {
			ssize_t n = read(fd, buf, size);
			if (n > 0)
				return n;
			if (n == 0) {
				*eof = 1;
				return -1;
			}
			if (errno == EINTR)
				continue;
			return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
		}
	}
	ERR_clear_error();
	int n = SSL_read(ssl, buf, size > INT32_MAX ? INT32_MAX : (int)size);
	if (n > 0)
		return n;
	int err = SSL_get_error(ssl, n);
	if (err == SSL_ERROR_WANT_READ)
		return 0;
	if (err == SSL_ERROR_WANT_WRITE) {
		*want_write = 1;
		return 0;
	}
	if (err == SSL_ERROR_ZERO_RETURN)
		*eof = 1;
	return -1;
}

int sockio_write(int fd, SSL *ssl, struct buf *out, int *would_block)
{
	while (buf_avail(out) > 0) {
		size_t len = buf_avail(out);
		ssize_t n;
		if (ssl == NULL) {
			n = write(fd, buf_head(out), len);
			if (n == -1) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK) {
					*would_block = 1;
					return 0;
				}
				return -1;
			}
		} else {
			ERR_clear_error();
			int w =
			    SSL_write(ssl, buf_head(out), len > INT32_MAX ? INT32_MAX : (int)len);
			if (w <= 0) {
				int err = SSL_get_error(ssl, w);
				if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
					*would_block = 1;
					return 0;
				}
				return -1;
			}
			n = w;
		}
		buf_consume(out, (size_t)n);
	}
	return 0;
}

int sockio_gather(nghttp2_session *h2, struct buf *out, size_t limit, const char **why)
{
	while (buf_avail(out) < limit) {
		const uint8_t *data;
		ssize_t len = nghttp2_session_mem_send(h2, &data);
		if (len < 0) {
			*why = nghttp2_strerror((int)len);
			return -1;
		}
		if (len == 0)
			return 0;
		if (buf_append(out, data, (size_t)len) != 0) {
			*why = "out of memory";
			return -1;
		}
	}
	return 0;
}

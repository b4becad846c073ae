/*
 * tls: the server's OpenSSL context: TLS 1.2 and 1.3, ALPN "h2" only,
 * optional client certificates (mTLS).
 */
#ifndef TRPC_TLS_H
#define TRPC_TLS_H

#include <openssl/ssl.h>

struct trpc_server_config;
struct trpc_channel_config;

/* Returns a context or NULL with *why set (a static or thread-local string). */
SSL_CTX *tls_server_ctx_new(const struct trpc_server_config *cfg, const char **why);

/* Client context: ALPN h2, peer verification unless insecure_skip_verify,
 * optional client certificate. The host name is checked per connection. */
SSL_CTX *tls_client_ctx_new(const struct trpc_channel_config *cfg, const char **why);

#endif

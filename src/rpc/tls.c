#include "config.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

#include "tasker/rpc.h"
#include "tls.h"

static __thread char tls_why[512];

static const char *ssl_error(const char *what, const char *file)
{
	char err[256];
	ERR_error_string_n(ERR_get_error(), err, sizeof err);
	snprintf(tls_why, sizeof tls_why, "%s %s: %s", what, file ? file : "", err);
	return tls_why;
}

/* ALPN: gRPC runs on h2 only; anything else fails the handshake. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	for (unsigned i = 0; i < inlen;) {
		unsigned len = in[i];
		if (i + 1 + len > inlen)
			break;
		if (len == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
			*out = in + i + 1;
			*outlen = 2;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + len;
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

SSL_CTX *tls_server_ctx_new(const struct trpc_server_config *cfg, const char **why)
{
	if (cfg->tls_cert_file == NULL || cfg->tls_key_file == NULL) {
		*why = "TLS listeners need tls.cert_file and tls.key_file";
		return NULL;
	}
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		*why = ssl_error("cannot create TLS context", NULL);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	                             SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
	                          SSL_MODE_RELEASE_BUFFERS);
	/* HTTP/2 (RFC 9113, 9.2.2) forbids the weak TLS 1.2 suites. */
	SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20");
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert_file) != 1) {
		*why = ssl_error("cannot load certificate", cfg->tls_cert_file);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key_file, SSL_FILETYPE_PEM) != 1) {
		*why = ssl_error("cannot load private key", cfg->tls_key_file);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		*why = ssl_error("private key does not match certificate", cfg->tls_key_file);
		goto fail;
	}
	SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
	if (cfg->tls_client_auth != TRPC_CLIENT_AUTH_NONE) {
		if (cfg->tls_client_ca_file == NULL) {
			*why = "tls.client_auth needs tls.client_ca_file";
			goto fail;
		}
		if (SSL_CTX_load_verify_locations(ctx, cfg->tls_client_ca_file, NULL) != 1) {
			*why = ssl_error("cannot load client CA", cfg->tls_client_ca_file);
			goto fail;
		}
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->tls_client_ca_file);
		if (names != NULL)
			SSL_CTX_set_client_CA_list(ctx, names);
		int mode = SSL_VERIFY_PEER;
		if (cfg->tls_client_auth == TRPC_CLIENT_AUTH_REQUIRE)
			mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
		SSL_CTX_set_verify(ctx, mode, NULL);
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *tls_client_ctx_new(const struct trpc_channel_config *cfg, const char **why)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		*why = ssl_error("cannot create TLS context", NULL);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	static const unsigned char alpn[] = {2, 'h', '2'};
	SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn);
	if (cfg->ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL) != 1) {
			*why = ssl_error("cannot load CA file", cfg->ca_file);
			goto fail;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		*why = ssl_error("cannot load the system CA store", NULL);
		goto fail;
	}
	SSL_CTX_set_verify(ctx, cfg->insecure_skip_verify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER,
	                   NULL);
	if (cfg->client_cert_file != NULL || cfg->client_key_file != NULL) {
		if (cfg->client_cert_file == NULL || cfg->client_key_file == NULL) {
			*why = "mTLS needs both client_cert_file and client_key_file";
			goto fail;
		}
		if (SSL_CTX_use_certificate_chain_file(ctx, cfg->client_cert_file) != 1) {
			*why = ssl_error("cannot load client certificate", cfg->client_cert_file);
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, cfg->client_key_file, SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(ctx) != 1) {
			*why = ssl_error("cannot load client key", cfg->client_key_file);
			goto fail;
		}
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

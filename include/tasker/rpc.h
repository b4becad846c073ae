/*
 * libtasker-rpc: the gRPC runtime of the tasker platform.
 *
 * One public header. Every exported symbol starts with trpc_ and is marked
 * TRPC_API; everything else in the library is hidden.
 *
 * Error convention: functions returning int return 0 (TRPC_OK) on success
 * or a negative value from enum trpc_error. Values at or below
 * TRPC_ERR_FATAL mean the object is unusable and must be freed.
 *
 * Threads: a server runs N I/O threads (epoll; each owns its connections),
 * a fixed pool of worker threads that run the handlers, and one keepalive
 * and backpressure thread. Handlers run on worker threads. trpc_call_send()
 * and trpc_call_finish() may be called from any thread.
 */
#ifndef TASKER_RPC_H
#define TASKER_RPC_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TRPC_API __attribute__((visibility("default")))
#else
#define TRPC_API
#endif

/* ------------------------------------------------------------------ errors */

enum trpc_error {
	TRPC_OK = 0,
	TRPC_ERR_INVALID = -1,      /* bad argument or bad state for the call */
	TRPC_ERR_NOMEM = -2,        /* out of memory */
	TRPC_ERR_CLOSED = -3,       /* the call is finished or cancelled */
	TRPC_ERR_SYSTEM = -4,       /* an operating-system call failed */
	TRPC_ERR_TLS = -5,          /* OpenSSL reported an error */
	TRPC_ERR_CONFIG = -6,       /* bad configuration key or value */
	TRPC_ERR_PROTOCOL = -7,     /* the peer broke HTTP/2 or gRPC rules */
	TRPC_ERR_TOO_LARGE = -8,    /* a size limit was exceeded */
	TRPC_ERR_ENCODING = -9,     /* unsupported or corrupt compression */
	TRPC_ERR_EXISTS = -10,      /* already registered / already exists */
	TRPC_ERR_NOT_FOUND = -11,   /* no such object */
	TRPC_ERR_STATE = -12,       /* not allowed in the object's current state */
	TRPC_ERR_DB = -13,          /* the database failed (connection, query) */
	TRPC_ERR_TIMEOUT = -14,     /* waited too long (pool acquire, lock, ...) */
	TRPC_ERR_UNAVAILABLE = -15, /* a dependency is down or overloaded: retry later */
	TRPC_ERR_FATAL = -100       /* below this the object is dead */
};

/* Returns a static English description of an enum trpc_error value. */
TRPC_API const char *trpc_strerror(int err);

/* gRPC status codes (numbering fixed by the gRPC protocol). */
enum trpc_status {
	TRPC_STATUS_OK = 0,
	TRPC_STATUS_CANCELLED = 1,
	TRPC_STATUS_UNKNOWN = 2,
	TRPC_STATUS_INVALID_ARGUMENT = 3,
	TRPC_STATUS_DEADLINE_EXCEEDED = 4,
	TRPC_STATUS_NOT_FOUND = 5,
	TRPC_STATUS_ALREADY_EXISTS = 6,
	TRPC_STATUS_PERMISSION_DENIED = 7,
	TRPC_STATUS_RESOURCE_EXHAUSTED = 8,
	TRPC_STATUS_FAILED_PRECONDITION = 9,
	TRPC_STATUS_ABORTED = 10,
	TRPC_STATUS_OUT_OF_RANGE = 11,
	TRPC_STATUS_UNIMPLEMENTED = 12,
	TRPC_STATUS_INTERNAL = 13,
	TRPC_STATUS_UNAVAILABLE = 14,
	TRPC_STATUS_DATA_LOSS = 15,
	TRPC_STATUS_UNAUTHENTICATED = 16
};

/* Returns the canonical upper-case name ("NOT_FOUND") or "UNKNOWN". */
TRPC_API const char *trpc_status_name(int status);

/* ------------------------------------------------------------------ config */

enum trpc_client_auth {
	TRPC_CLIENT_AUTH_NONE = 0,
	TRPC_CLIENT_AUTH_OPTIONAL = 1,
	TRPC_CLIENT_AUTH_REQUIRE = 2
};

/*
 * Server settings. trpc_server_config_init() fills the defaults; durations
 * are in milliseconds, 0 meaning "disabled" where noted. Strings are owned
 * by the config and released by trpc_server_config_clear().
 */
struct trpc_server_config {
	char *listen; /* h2c listeners, comma separated host:port ("127.0.0.1:0", "[::1]:50051") */
	char *tls_listen;           /* TLS listeners, same syntax; NULL = none */
	char *tls_cert_file;        /* PEM certificate chain (required with tls_listen) */
	char *tls_key_file;         /* PEM private key */
	char *tls_client_ca_file;   /* CA bundle for client certificates (mTLS) */
	int tls_client_auth;        /* enum trpc_client_auth */
	int io_threads;             /* 0 = one per online CPU */
	int workers;                /* worker pool size; 0 = one per online CPU */
	int max_connections;        /* refuse beyond this many connections */
	int max_concurrent_streams; /* SETTINGS_MAX_CONCURRENT_STREAMS, default 200 */
	int initial_window_size;    /* SETTINGS_INITIAL_WINDOW_SIZE, default 1 MiB */
	int max_header_list_size;   /* default 8192; enforced */
	int max_recv_message_size;  /* default 4 MiB */
	int max_send_message_size;  /* default 4 MiB */
	int max_outbound_bytes; /* per call send queue bound before send() waits, default 4 MiB */
	int keepalive_time_ms; /* server PING interval on an idle connection; default 2 h; 0 = off */
	int keepalive_timeout_ms;           /* PING ack timeout, default 20 s */
	int min_ping_interval_ms;           /* ping-strike threshold, default 5 min */
	int max_ping_strikes;               /* default 2 */
	int permit_keepalive_without_calls; /* accept client PINGs with no open stream */
	int max_connection_idle_ms;         /* 0 = unlimited */
	int max_connection_age_ms;          /* 0 = unlimited */
	int max_connection_age_grace_ms;    /* 0 = unlimited */
	int handshake_timeout_ms; /* preface + SETTINGS (and TLS handshake) deadline, default 10 s */
	int shutdown_grace_ms;    /* in-flight calls get this long on shutdown, default 10 s */
	int queue_high_watermark; /* work-queue depth that stops reading, default 4096 */
	int queue_low_watermark;  /* depth below which reading resumes, default 1024 */
	int retry_pushback_ms;  /* hint sent with RESOURCE_EXHAUSTED when overloaded, default 100 */
	int stream_reset_burst; /* nghttp2 stream reset rate limit: burst, default 1000 */
	int stream_reset_rate;  /* refill per second, default 33 */
	int max_continuations;  /* nghttp2 CONTINUATION limit, default 8 */
	char *log_level;        /* error, warn, info, debug; default info */
	int log_format;         /* enum trpc_log_format; default text */
	char *log_file;         /* append log lines here instead of stderr; reopened on SIGHUP */
	int log_access;         /* one log line per finished call */
	char *metrics_listen;   /* host:port of the programs' /metrics listener; NULL = none */
	int ratelimit_enabled;  /* per-client token buckets; default off */
	int ratelimit_rate;     /* tokens per second per client and service, default 100 */
	int ratelimit_burst;    /* bucket size; 0 = the rate */
	int ratelimit_key;      /* 0 = peer IP at dispatch, 1 = identity (trpc_call_rate_check) */
	char *
	    ratelimit_services; /* per-service overrides "pkg.Svc=rate[/burst], ..."; rate 0: none */
};

TRPC_API void trpc_server_config_init(struct trpc_server_config *cfg);
TRPC_API void trpc_server_config_clear(struct trpc_server_config *cfg);

/*
 * Sets one key by its name as written in the INI file, "section.key" or
 * "key" for the [server] section ("server.listen", "limits.max_recv_message_size").
 * Returns TRPC_ERR_CONFIG with *why naming the key for an unknown key or bad
 * value (*why is static or owned by the config until the next call).
 */
TRPC_API int trpc_server_config_set(struct trpc_server_config *cfg, const char *section,
                                    const char *key, const char *value, const char **why);

/*
 * Loads settings in order of increasing precedence: the INI file at `path`
 * (may be NULL), TASKER_<SECTION>_<KEY> environment variables, and
 * command-line options "--section.key=value" / "--key=value" in argv.
 * Options this loader does not know are an error unless `extra` accepts
 * them: extra(ud, section, key, value) returns 0 when it took the key,
 * TRPC_ERR_CONFIG when the key is unknown to it too.
 * Returns 0 or TRPC_ERR_CONFIG/TRPC_ERR_SYSTEM with a message in *why (owned
 * by the config).
 */
typedef int (*trpc_config_extra_fn)(void *ud, const char *section, const char *key,
                                    const char *value);
TRPC_API int trpc_server_config_load(struct trpc_server_config *cfg, const char *path, int argc,
                                     char **argv, trpc_config_extra_fn extra, void *ud,
                                     const char **why);

/*
 * The keys this loader knows, for listings (--list-options) and
 * documentation checks: the i-th key of the table, i from 0, as its
 * section and key names (static strings). Returns 0, or TRPC_ERR_NOT_FOUND
 * when i is past the last key.
 */
TRPC_API int trpc_server_config_key(size_t i, const char **section, const char **key);

/*
 * The value of the i-th key of cfg (see trpc_server_config_key) as text a
 * configuration file would accept, in a canonical spelling: "20s" for a
 * duration of 20000 ms, "4MiB", "true", "" for an unset string. Writes at
 * most size bytes (NUL included) to buf. Returns 0, TRPC_ERR_NOT_FOUND
 * when i is past the last key, or TRPC_ERR_INVALID for a NULL argument.
 */
TRPC_API int trpc_server_config_value(const struct trpc_server_config *cfg, size_t i, char *buf,
                                      size_t size);

/* ------------------------------------------------------- configuration keys */

/*
 * A configuration as a list of keys "section.key" and their values as
 * text, for telling what a reload leaves out. A program keeps the list of
 * the configuration it started with, builds another while it reloads, and
 * has trpc_config_keys_warn_restart() name what differs but cannot take
 * effect until a restart. Not thread-safe: one owner.
 */
typedef struct trpc_config_keys trpc_config_keys;

/* An empty list, or NULL when out of memory. */
TRPC_API trpc_config_keys *trpc_config_keys_new(void);
/* NULL is allowed. */
TRPC_API void trpc_config_keys_free(trpc_config_keys *keys);

/* Sets "section.key" to value (the last call for a key wins, as the
 * sources of trpc_server_config_load do). 0, TRPC_ERR_INVALID for a NULL
 * argument, or TRPC_ERR_NOMEM. */
TRPC_API int trpc_config_keys_set(trpc_config_keys *keys, const char *section, const char *key,
                                  const char *value);

/* Sets every key of the runtime's table to its value in cfg (defaults
 * included), spelled by trpc_server_config_value(). 0 or as above. */
TRPC_API int trpc_config_keys_add_server(trpc_config_keys *keys,
                                         const struct trpc_server_config *cfg);

/*
 * Logs one warning per key whose value differs between in_force and
 * fresh (a key only one of them has counts as changed, shown as
 * "(default)" on the other side) and whose name matches none of the
 * fnmatch(3) patterns of `reloaded` (NULL-terminated; NULL: none), the
 * keys the caller applies on a reload:
 *   reload: database.pool_size changed from "10" to "20"; restart to apply
 * Values go through trpc_config_value_shown(). Returns the number of
 * lines logged.
 */
TRPC_API size_t trpc_config_keys_warn_restart(const trpc_config_keys *in_force,
                                              const trpc_config_keys *fresh,
                                              const char *const *reloaded);

/*
 * The value of key `name` ("section.key") as it may appear in a log line:
 * "****" (or "" when empty) when the name contains "password", "secret",
 * "key" or "token" (in any case); otherwise the value with the password
 * of a URL ("scheme://user:****@host/...") and of "password=" items (a
 * libpq connection string or a URL query) replaced by "****". Writes at
 * most size bytes (NUL included) to buf, cutting a longer result, and
 * returns buf.
 */
TRPC_API const char *trpc_config_value_shown(const char *name, const char *value, char *buf,
                                             size_t size);

/* ------------------------------------------------------------------ calls */

typedef struct trpc_server trpc_server;
typedef struct trpc_call trpc_call;

enum trpc_method_kind {
	TRPC_UNARY = 1,
	TRPC_CLIENT_STREAMING = 2,
	TRPC_SERVER_STREAMING = 3,
	TRPC_BIDI_STREAMING = 4
};

/*
 * Unary and server-streaming handler. `req` is decoded into the call's
 * arena and lives as long as the call. The handler (or whoever it hands the
 * call to) must call trpc_call_finish() exactly once, now or later from any
 * thread; the call stays valid until then.
 */
typedef void (*trpc_unary_fn)(trpc_call *call, const ProtobufCMessage *req, void *ud);

/*
 * Client-streaming and bidirectional handlers. Callbacks run on worker
 * threads, one at a time per call, in order. `msg` in on_message is freed
 * when the callback returns (copy what you keep); its bytes are only then
 * counted as taken, which reopens the flow-control window. After
 * on_cancel no further callbacks run; the handler still calls
 * trpc_call_finish() once to release the call.
 */
struct trpc_stream_ops {
	void (*on_start)(trpc_call *call, void *ud);
	void (*on_message)(trpc_call *call, const ProtobufCMessage *msg, void *ud);
	void (*on_half_close)(trpc_call *call, void *ud);
	void (*on_cancel)(trpc_call *call, void *ud);
};

struct trpc_method {
	const char *name; /* method name, e.g. "UnaryCall" */
	enum trpc_method_kind kind;
	const ProtobufCMessageDescriptor *request;  /* required */
	const ProtobufCMessageDescriptor *response; /* required */
	trpc_unary_fn handler;                      /* UNARY, SERVER_STREAMING */
	/* CLIENT_STREAMING and BIDI_STREAMING use all four; with `handler`
	 * set, only on_cancel is used (optional: to learn of cancellation). */
	struct trpc_stream_ops stream;
};

struct trpc_service {
	const char *name; /* fully qualified, e.g. "grpc.testing.TestService" */
	const struct trpc_method *methods;
	size_t n_methods;
	void *ud; /* passed to every handler */
};

/* Sends one response message (encoded, compressed if negotiated). Waits
 * while the call's outbound queue is above its bound, unless called on an
 * I/O thread. Returns TRPC_ERR_CLOSED once the call is over,
 * TRPC_ERR_TOO_LARGE above max_send_message_size. */
TRPC_API int trpc_call_send(trpc_call *call, const ProtobufCMessage *msg);

/* As trpc_call_send; TRPC_SEND_NO_COMPRESS sends this message uncompressed. */
#define TRPC_SEND_NO_COMPRESS 0x1u
TRPC_API int trpc_call_send_ex(trpc_call *call, const ProtobufCMessage *msg, unsigned flags);

/* Ends the call with a status and optional message (UTF-8; percent-encoded
 * on the wire). Exactly once per call; it releases the handler's hold on
 * the call. Returns TRPC_ERR_CLOSED when the call had already ended (the
 * hold is released all the same), TRPC_ERR_INVALID for a second finish
 * (nothing happens). A status outside 0..16 is sent as UNKNOWN. */
TRPC_API int trpc_call_finish(trpc_call *call, int status, const char *message);

/* Response metadata. Initial metadata must be added before the first
 * send; trailing metadata before finish. Keys ending in "-bin" carry raw
 * bytes (base64 on the wire). */
TRPC_API int trpc_call_add_initial_metadata(trpc_call *call, const char *key, const void *value,
                                            size_t len);
TRPC_API int trpc_call_add_trailing_metadata(trpc_call *call, const char *key, const void *value,
                                             size_t len);

/* Chooses the response compression ("identity", "gzip", "deflate"); must be
 * one the client accepts. Before the first send. */
TRPC_API int trpc_call_set_compression(trpc_call *call, const char *encoding);

/* Request metadata lookup: the value (decoded for -bin keys, NUL terminated)
 * or NULL. Valid for the life of the call. */
TRPC_API const char *trpc_call_metadata(const trpc_call *call, const char *key, size_t *len);
TRPC_API size_t trpc_call_metadata_count(const trpc_call *call);
TRPC_API int trpc_call_metadata_at(const trpc_call *call, size_t i, const char **key,
                                   const char **value, size_t *len);

TRPC_API const char *trpc_call_method(const trpc_call *call);   /* "/pkg.Svc/Method" */
TRPC_API const char *trpc_call_peer(const trpc_call *call);     /* "ipv4:1.2.3.4:5" */
TRPC_API const char *trpc_call_identity(const trpc_call *call); /* NULL when anonymous */
TRPC_API int trpc_call_set_identity(trpc_call *call, const char *identity);

/*
 * Rate limiting (ratelimit.* keys). Every (service, client) pair has a
 * token bucket of ratelimit.burst tokens refilled at ratelimit.rate per
 * second (or the service's override in ratelimit.services).
 *
 * With ratelimit.key = peer the runtime itself takes a token, keyed by the
 * peer's IP address, when it dispatches a call, before the handler runs;
 * an empty bucket fails the call with RESOURCE_EXHAUSTED and the trailers
 * grpc-retry-pushback-ms (milliseconds) and retry-after (seconds).
 *
 * With ratelimit.key = identity nothing happens at dispatch: a service
 * binding calls trpc_call_rate_check() right after authentication with the
 * authenticated subject (NULL: anonymous, keyed by the peer IP). It returns
 * 0 when the call may go on, or TRPC_ERR_UNAVAILABLE after finishing the
 * call with RESOURCE_EXHAUSTED and the retry hints (the handler must then
 * not touch the call again). It is a no-op returning 0 in peer mode or when
 * rate limiting is off. Services whose binding never calls it are not
 * limited in identity mode.
 */
TRPC_API int trpc_call_rate_check(trpc_call *call, const char *identity);
TRPC_API const char *trpc_call_tls_peer_subject(const trpc_call *call); /* mTLS subject or NULL */
/* Absolute deadline on CLOCK_MONOTONIC in ns; INT64_MAX when none. */
TRPC_API int64_t trpc_call_deadline(const trpc_call *call);
/* The call's trace id: the trace-id of a valid W3C traceparent request
 * header, else a valid x-trace-id header (1..64 of [A-Za-z0-9._:-]), else
 * a fresh random 128-bit id (32 lower-case hex digits), the same for the
 * life of the call. Any thread; valid as long as the call. */
TRPC_API const char *trpc_call_trace_id(const trpc_call *call);
/* The call whose handler callback runs on this thread (log lines and
 * outgoing client calls made there carry its trace), or NULL. */
TRPC_API trpc_call *trpc_call_current(void);
/* Makes `call` (NULL: none) this thread's current call, for code that
 * continues a call's work outside its callbacks; returns the previous
 * one, to be put back when done. The caller keeps the call alive. */
TRPC_API trpc_call *trpc_call_set_current(trpc_call *call);
TRPC_API int trpc_call_is_cancelled(const trpc_call *call);
/* Encoding of the request messages ("identity" when none). */
TRPC_API const char *trpc_call_request_encoding(const trpc_call *call);
/* 1 when the client accepts `encoding` for responses. */
TRPC_API int trpc_call_accepts_encoding(const trpc_call *call, const char *encoding);

/* Per-call arena: memory that lives exactly as long as the call. Not
 * thread-safe: use it from the handler callbacks. */
TRPC_API void *trpc_call_alloc(trpc_call *call, size_t size);
TRPC_API char *trpc_call_strdup(trpc_call *call, const char *s);
TRPC_API ProtobufCAllocator *trpc_call_allocator(trpc_call *call);

/* One pointer of handler state per call. */
TRPC_API void trpc_call_set_user(trpc_call *call, void *user);
TRPC_API void *trpc_call_user(const trpc_call *call);

/* Extra references for code that keeps a call after finishing it (rare). */
TRPC_API void trpc_call_ref(trpc_call *call);
TRPC_API void trpc_call_unref(trpc_call *call);

/* ------------------------------------------------------------------ server */

/*
 * Creates a server from a config (copied). Returns NULL and sets *why on
 * failure (bad TLS files, ...). Listeners are opened by trpc_server_start.
 */
TRPC_API trpc_server *trpc_server_new(const struct trpc_server_config *cfg, const char **why);

/* Registers a service (the tables must outlive the server). Before start.
 * TRPC_ERR_EXISTS if the name is taken. */
TRPC_API int trpc_server_add_service(trpc_server *srv, const struct trpc_service *svc);

/* Names of registered services, in registration order. */
TRPC_API size_t trpc_server_service_count(const trpc_server *srv);
TRPC_API const char *trpc_server_service_name(const trpc_server *srv, size_t i);

/* Opens the listeners and starts the threads. */
TRPC_API int trpc_server_start(trpc_server *srv, const char **why);

/* The port actually bound by the i-th plaintext / TLS listener (for ":0"). */
TRPC_API int trpc_server_port(const trpc_server *srv, int tls, size_t i);

/*
 * The worker pool and its work queue: complete requests wait there for a
 * worker thread. When the depth reaches limits.queue_high_watermark the
 * server stops reading from its connections and refuses new streams
 * (RESOURCE_EXHAUSTED); it resumes once the depth is below
 * limits.queue_low_watermark. The same figures as the metrics
 * tasker_pool_queue_depth, tasker_pool_threads, tasker_pool_busy_threads
 * and tasker_backpressure_active.
 */
struct trpc_pool_status {
	size_t queue_depth;    /* requests waiting for a worker thread */
	size_t high_watermark; /* limits.queue_high_watermark */
	size_t low_watermark;  /* limits.queue_low_watermark */
	int threads;           /* worker threads (0 once the server has stopped) */
	int busy_threads;      /* threads running a handler (or about to) */
	int reading_paused;    /* 1 from the high watermark until the depth is below the low one */
};

/*
 * Fills *st with one consistent reading of the pool (taken under its lock;
 * no call waits for it). Any thread, any time between trpc_server_new and
 * trpc_server_free. Returns 0; TRPC_ERR_INVALID for a NULL argument;
 * TRPC_ERR_STATE when the pool does not run yet (before
 * trpc_server_start): *st then holds the configured watermarks and
 * thread count, and zeros.
 */
TRPC_API int trpc_server_pool_status(const trpc_server *srv, struct trpc_pool_status *st);

/*
 * Graceful shutdown: GOAWAY to every connection, stop accepting, give
 * in-flight calls up to shutdown_grace_ms, then cancel the rest and stop
 * the threads. Safe to call from any thread except the server's own.
 */
TRPC_API void trpc_server_shutdown(trpc_server *srv);

/* Splits a listen or target address, "host:port", "[v6]:port" or ":port",
 * into host (the brackets dropped; "" for ":port") and port. 0, or -1
 * when spec has no port. */
TRPC_API int trpc_split_hostport(const char *spec, char *host, size_t hsize, char *port,
                                 size_t psize);

/* Blocks SIGHUP, SIGINT and SIGTERM in the calling thread and fills *set
 * (may be NULL) with them. Call it before any thread exists: threads
 * inherit the mask, so these signals wait for whoever sigwait()s for them
 * (trpc_server_run_until_signal) instead of killing the process. */
TRPC_API void trpc_block_run_signals(sigset_t *set);

/* Blocks until SIGINT or SIGTERM, then shuts down gracefully. Installs the
 * signal mask itself (trpc_block_run_signals); call it from the main
 * thread after start. SIGHUP
 * does not stop the server: it reopens log.file (trpc_log_reopen) and
 * then runs the reload hook, if one is set, on the calling thread. */
TRPC_API int trpc_server_run_until_signal(trpc_server *srv);

/* Sets the hook SIGHUP runs (see above); NULL removes it. Before
 * trpc_server_run_until_signal. */
typedef void (*trpc_reload_fn)(trpc_server *srv, void *ud);
TRPC_API void trpc_server_set_on_reload(trpc_server *srv, trpc_reload_fn fn, void *ud);

TRPC_API void trpc_server_free(trpc_server *srv);

/*
 * The server's rate limiter outside a gRPC call (the REST side): takes one
 * token from the bucket of (service, client_key). Returns 0 when allowed
 * (also when rate limiting is off or the service is not limited), or
 * TRPC_ERR_UNAVAILABLE with *retry_ms (may be NULL) set to the wait until
 * the next token. Any thread.
 */
TRPC_API int trpc_ratelimit_take(trpc_server *srv, const char *service, const char *client_key,
                                 int64_t *retry_ms);
/* 1 when limits are on and keyed by the authenticated identity
 * (ratelimit.key = identity), 0 otherwise: then key by the peer IP. */
TRPC_API int trpc_ratelimit_by_identity(trpc_server *srv);

/*
 * Applies what can change on a running server from `new_cfg` (validated
 * by trpc_server_config_load): the TLS certificate, key and client CA (a
 * new context for new connections; open connections keep theirs), the
 * log level and format, and the rate limits. Nothing is applied unless
 * everything can be: on failure it returns TRPC_ERR_TLS, TRPC_ERR_CONFIG
 * or TRPC_ERR_NOMEM with *why (thread-local) naming the problem, and the
 * old settings stay. Every other key whose value differs from the
 * configuration the server was created with needs a restart: once the
 * rest is applied, each is logged as a warning ("reload: keepalive.timeout
 * changed from \"20s\" to \"30s\"; restart to apply", see
 * trpc_config_keys_warn_restart) and ignored. Any thread but the server's
 * own.
 */
TRPC_API int trpc_server_reload(trpc_server *srv, const struct trpc_server_config *new_cfg,
                                const char **why);

/*
 * trpc_server_reload for a program with settings of its own to apply on
 * the same reload: it checks them first, then calls this, and `applied`
 * (when not NULL) runs once the runtime's settings are in force, before
 * "reload: applied" is logged, to put its own in force; it must not fail
 * (the runtime's cannot be taken back). When the runtime refuses new_cfg,
 * `applied` is not called and nothing changed. Same returns.
 */
TRPC_API int trpc_server_reload_with(trpc_server *srv, const struct trpc_server_config *new_cfg,
                                     void (*applied)(void *ud), void *ud, const char **why);

/* Runs `fn(arg)` on the worker pool (for handlers that defer work). */
TRPC_API int trpc_server_submit(trpc_server *srv, void (*fn)(void *arg), void *arg);

/* ------------------------------------------------------ standard services */

/* grpc.health.v1.Health. Registers the service on `srv` (before start); the
 * returned object belongs to the server. The server itself ("") starts
 * SERVING; other services are unknown (NOT_FOUND) until set. */
typedef struct trpc_health trpc_health;
enum trpc_health_status {
	TRPC_HEALTH_UNKNOWN = 0,
	TRPC_HEALTH_SERVING = 1,
	TRPC_HEALTH_NOT_SERVING = 2,
	TRPC_HEALTH_SERVICE_UNKNOWN = 3
};
TRPC_API trpc_health *trpc_health_register(trpc_server *srv);
/* Sets a service's status and notifies its watchers. Any thread.
 * TRPC_ERR_INVALID for SERVICE_UNKNOWN, TRPC_ERR_CLOSED after shutdown. */
TRPC_API int trpc_health_set(trpc_health *h, const char *service, int status);
/* Sets every known service NOT_SERVING and freezes the statuses (later
 * trpc_health_set calls return TRPC_ERR_CLOSED). trpc_health_register
 * arranges for this to run when the server starts shutting down. */
TRPC_API void trpc_health_shutdown(trpc_health *h);

/* grpc.reflection.v1 and v1alpha ServerReflectionInfo over serialized
 * FileDescriptorSets (protoc --descriptor_set_out --include_imports). The
 * buffers must outlive the server. */
struct trpc_descriptor_set {
	const uint8_t *data;
	size_t len;
};
TRPC_API int trpc_reflection_register(trpc_server *srv, const struct trpc_descriptor_set *sets,
                                      size_t n_sets);

/* Runs fn(arg) when the server is freed (for objects that belong to it). */
TRPC_API int trpc_server_on_free(trpc_server *srv, void (*fn)(void *arg), void *arg);
/* Runs fn(arg) at the start of a graceful shutdown, before GOAWAY. */
TRPC_API int trpc_server_on_shutdown(trpc_server *srv, void (*fn)(void *arg), void *arg);

/* ------------------------------------------------------------------ metrics */

/*
 * Prometheus metrics in the text exposition format 0.0.4. The runtime
 * counts per thread (each I/O thread and the keepalive thread own their
 * counters; a scrape sums them), so counting takes no lock and shares no
 * cache line. The server's families:
 *   grpc_server_started_total, grpc_server_handled_total (+ grpc_code),
 *   grpc_server_msg_received_total, grpc_server_msg_sent_total and the
 *   grpc_server_handling_seconds histogram, labelled grpc_type (unary,
 *   client_stream, server_stream, bidi_stream), grpc_service and
 *   grpc_method as go-grpc-prometheus does; series of every registered
 *   method exist from the start; calls to methods the server does not
 *   have count as grpc_service="unknown", grpc_method="unknown";
 *   tasker_connections_open, tasker_streams_active,
 *   tasker_pool_queue_depth, tasker_pool_threads,
 *   tasker_pool_busy_threads, tasker_backpressure_active,
 *   tasker_keepalive_goaways_total{reason}, tasker_tls_handshakes_total,
 *   tasker_tls_handshake_failures_total; process_* (CPU, start time,
 *   memory, file descriptors); then each collector's families.
 */
#define TRPC_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Exposition text being built. Functions on it return 0, TRPC_ERR_INVALID
 * (bad metric or label name, bad type) or TRPC_ERR_NOMEM; after an
 * allocation failure the buffer stays failed. */
typedef struct trpc_metrics_buf trpc_metrics_buf;
TRPC_API trpc_metrics_buf *trpc_metrics_buf_new(void); /* NULL: out of memory */
TRPC_API void trpc_metrics_buf_free(trpc_metrics_buf *b);
/* The text (NUL terminated) and its length; NULL once an allocation failed.
 * Owned by the buffer. */
TRPC_API const char *trpc_metrics_buf_data(const trpc_metrics_buf *b, size_t *len);

/* Starts a family: "# HELP name help" (escaped; none when help is NULL)
 * and "# TYPE name type"; type is counter, gauge, histogram, summary or
 * untyped. */
TRPC_API int trpc_metrics_family(trpc_metrics_buf *b, const char *name, const char *type,
                                 const char *help);
/* One sample: name{k="v",...} value. `labels` holds n_labels pairs
 * {key, value, key, value, ...}; values are escaped (and bytes that are not
 * UTF-8 replaced). Histogram and summary series give their full name
 * ("x_bucket" with an "le" label, "x_sum", "x_count"). */
TRPC_API int trpc_metrics_sample(trpc_metrics_buf *b, const char *name, const char *const *labels,
                                 size_t n_labels, double value);

/* Programs append their own families at scrape time. Collectors run on the
 * scraping thread, one scrape at a time, in the order they were added. */
typedef void (*trpc_metrics_collect_fn)(trpc_metrics_buf *out, void *ud);
TRPC_API int trpc_server_add_metrics_collector(trpc_server *srv, trpc_metrics_collect_fn fn,
                                               void *ud);

/* Appends every family of the server (and its collectors) to `out`. Any
 * thread, any time between trpc_server_new and trpc_server_free. */
TRPC_API int trpc_server_metrics_write(trpc_server *srv, trpc_metrics_buf *out);
/* The same as one malloc'd NUL-terminated string (the caller frees it) and
 * its length in *len; NULL when out of memory. */
TRPC_API char *trpc_server_metrics_render(trpc_server *srv, size_t *len);
/* Only the process_* families, for programs that run no server. */
TRPC_API int trpc_metrics_write_process(trpc_metrics_buf *out);

/* ------------------------------------------------------------------ client */

/*
 * A channel: calls to one service spread over one or more endpoints
 * ("host:port,host:port", or "name:port" resolving to several addresses).
 * Each endpoint (subchannel) connects lazily, reconnects with exponential
 * backoff, sends keepalive PINGs, honours GOAWAY, and has a circuit
 * breaker. One I/O thread per channel runs the connections; the call API
 * below is usable from any thread.
 */
typedef struct trpc_channel trpc_channel;
typedef struct trpc_ccall trpc_ccall;

enum trpc_lb_policy {
	TRPC_LB_ROUND_ROBIN = 1,
	TRPC_LB_LEAST_LOADED = 2, /* fewest calls in flight */
	TRPC_LB_RANDOM = 3
};

enum trpc_circuit_state {
	TRPC_CIRCUIT_CLOSED = 0,
	TRPC_CIRCUIT_OPEN = 1,
	TRPC_CIRCUIT_HALF_OPEN = 2
};

struct trpc_channel_config {
	const char *target; /* required: "host:port[,host:port...]" ("[v6]:port" too) */
	int lb_policy;      /* enum trpc_lb_policy; default round robin */
	/* TLS: use_tls with verification on by default (ca_file or the system
	 * store); server_name overrides the name checked and sent as SNI. */
	int use_tls;
	const char *ca_file;
	const char *server_name;
	int insecure_skip_verify;     /* for tests only */
	const char *client_cert_file; /* mTLS */
	const char *client_key_file;
	int connect_timeout_ms;           /* default 20 s */
	int reconnect_initial_backoff_ms; /* default 1 s */
	int reconnect_max_backoff_ms;     /* default 120 s */
	int keepalive_time_ms;            /* 0 = no client PINGs (default) */
	int keepalive_timeout_ms;         /* default 20 s */
	/* Circuit breaker, per endpoint. Failures: transport errors (connect,
	 * TLS, lost connection) and the statuses UNAVAILABLE,
	 * DEADLINE_EXCEEDED, INTERNAL and RESOURCE_EXHAUSTED; other statuses
	 * are the request's fault and count as successes. OPEN becomes
	 * HALF_OPEN when open_timeout has passed (seen at the next pick). */
	int failure_threshold;   /* consecutive failures that open it; default 5 */
	int open_timeout_ms;     /* default 30 s */
	int half_open_max_calls; /* probes let through when half-open; default 3 */
	int success_threshold;   /* successes that close it again; default 2 */
	/* Retries (calls started with their whole request and
	 * TRPC_START_HALF_CLOSE): attempts = 1 + max_retries; retried on a
	 * transport failure or a status in retry_codes, never once response
	 * headers or a message arrived; the wait is the server's
	 * grpc-retry-pushback-ms (or retry-after, in seconds) when given
	 * (a negative pushback forbids retrying), else
	 * initial_backoff * multiplier^(n-1) capped at max_backoff, with jitter
	 * in [0.5, 1.0] of that; when the wait would pass the deadline the call
	 * ends at once with the last status. */
	int max_retries;           /* default 3; 0 disables */
	int initial_backoff_ms;    /* default 100 */
	double backoff_multiplier; /* default 2.0 */
	int max_backoff_ms;        /* default 10 s */
	uint32_t retry_codes;      /* bit (1u << status); default UNAVAILABLE */
	/* credentials and defaults for every call */
	const char *bearer_token;   /* "authorization: Bearer <token>" */
	const char *api_key_header; /* e.g. "x-api-key" */
	const char *api_key;
	const char *compression;   /* request compression: "gzip", "deflate" or NULL */
	int max_recv_message_size; /* default 4 MiB */
	const char *user_agent;
};

/* Fills the defaults (target left NULL). */
TRPC_API void trpc_channel_config_init(struct trpc_channel_config *cfg);

/* Creates a channel (copies what it needs from cfg). NULL and *why set
 * (thread-local text) on a bad target, unreadable TLS files, ... */
TRPC_API trpc_channel *trpc_channel_new(const struct trpc_channel_config *cfg, const char **why);
/* Cancels outstanding calls (their on_close runs with CANCELLED), closes
 * the connections and stops the thread. Not from a channel callback. */
TRPC_API void trpc_channel_free(trpc_channel *ch);

struct trpc_md {
	const char *key; /* lower case; "-bin" keys carry raw bytes */
	const void *value;
	size_t len;
};

/* The end of a call as the client sees it. */
struct trpc_call_status {
	int code;                 /* enum trpc_status */
	char *message;            /* decoded grpc-message, or a local reason; malloc'd */
	struct trpc_md *trailers; /* trailing metadata (values NUL terminated) */
	size_t n_trailers;
	int retry_pushback_ms; /* grpc-retry-pushback-ms, -1 when absent */
};
TRPC_API void trpc_call_status_clear(struct trpc_call_status *st);

struct trpc_call_options {
	int64_t timeout_ms;             /* deadline from now; 0 = none */
	const struct trpc_md *metadata; /* extra request metadata */
	size_t n_metadata;
	const char *compression; /* overrides the channel's; "identity" for none */
	const char *traceparent; /* W3C trace context, propagated when set */
	const char *trace_id;    /* sent as x-trace-id when set */
	int no_retry;            /* this call is never retried */
};

/*
 * Blocking unary call. On return *resp is the decoded response (caller
 * frees with protobuf_c_message_free_unpacked(resp, NULL)) when st->code is
 * OK, else NULL. Returns st->code (>= 0) or a negative enum trpc_error for
 * misuse; *st is filled either way, so always release it with
 * trpc_call_status_clear. Never call it from a channel callback.
 */
TRPC_API int trpc_unary(trpc_channel *ch, const char *method, const ProtobufCMessage *req,
                        const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                        const struct trpc_call_options *opts, struct trpc_call_status *st);

/*
 * Streaming (and asynchronous unary) calls. Callbacks run on the channel's
 * I/O thread and must not block; `msg` is freed when on_message returns.
 * on_close runs exactly once. trpc_ccall_start returns a reference that
 * belongs to the caller: release it with trpc_ccall_unref when done with
 * the call (before or after on_close; the call lives until both happened).
 */
struct trpc_ccall_ops {
	void (*on_headers)(trpc_ccall *call, void *ud);
	void (*on_message)(trpc_ccall *call, const ProtobufCMessage *msg, void *ud);
	void (*on_close)(trpc_ccall *call, const struct trpc_call_status *st, void *ud);
};

/* Starts a call. `first` (may be NULL) is sent as the first message and,
 * with TRPC_START_HALF_CLOSE, also closes the sending side (unary and
 * server streaming): such calls can be retried. NULL on misuse (*why). */
#define TRPC_START_HALF_CLOSE 0x1u
TRPC_API trpc_ccall *trpc_ccall_start(trpc_channel *ch, const char *method,
                                      const ProtobufCMessageDescriptor *resp_desc,
                                      const ProtobufCMessage *first, unsigned flags,
                                      const struct trpc_call_options *opts,
                                      const struct trpc_ccall_ops *ops, void *ud, const char **why);
/* Queues a message (any thread). TRPC_ERR_CLOSED after close/half-close. */
TRPC_API int trpc_ccall_send(trpc_ccall *call, const ProtobufCMessage *msg);
/* As trpc_ccall_send; TRPC_SEND_NO_COMPRESS sends this message uncompressed
 * even on a compressed call. */
TRPC_API int trpc_ccall_send_ex(trpc_ccall *call, const ProtobufCMessage *msg, unsigned flags);
/* Half-closes the sending side. */
TRPC_API int trpc_ccall_close_send(trpc_ccall *call);
/* Cancels: RST_STREAM(CANCEL), on_close with CANCELLED. Any thread. */
TRPC_API void trpc_ccall_cancel(trpc_ccall *call);
/* Response initial metadata (valid from on_headers on). */
TRPC_API const char *trpc_ccall_header(const trpc_ccall *call, const char *key, size_t *len);
/* The endpoint the call went to ("127.0.0.1:50051"), once known. */
TRPC_API const char *trpc_ccall_endpoint(const trpc_ccall *call);
TRPC_API void trpc_ccall_ref(trpc_ccall *call);
TRPC_API void trpc_ccall_unref(trpc_ccall *call);

/* Per-channel counters, readable at any time. */
struct trpc_channel_metrics {
	uint64_t calls_started, calls_succeeded, calls_failed;
	uint64_t latency_us_sum, latency_count;
	uint64_t retries;
	uint64_t circuit_opened, circuit_half_opened, circuit_closed;
	uint64_t connects, connect_failures;
};
TRPC_API void trpc_channel_metrics(trpc_channel *ch, struct trpc_channel_metrics *m);

/* Diagnostics: endpoints in target order (resolved once, when the channel
 * is created; the list does not change). endpoint_calls counts attempts
 * sent to the endpoint, retries included. */
TRPC_API size_t trpc_channel_endpoint_count(trpc_channel *ch);
TRPC_API const char *trpc_channel_endpoint_name(trpc_channel *ch, size_t i);
TRPC_API int trpc_channel_endpoint_circuit(trpc_channel *ch,
                                           size_t i); /* enum trpc_circuit_state */
TRPC_API int trpc_channel_endpoint_connected(trpc_channel *ch, size_t i);
TRPC_API uint64_t trpc_channel_endpoint_calls(trpc_channel *ch, size_t i); /* calls sent there */

/* -------------------------------------------------------------- logging */

/*
 * One line per record, to stderr or log.file, written with one write(2)
 * (records from several threads never interleave), in one of two formats:
 *   text  2026-11-22T10:00:00.123Z INFO message
 *   json  {"ts":"2026-11-22T10:00:00.123Z","level":"info","msg":"message"}
 * A record logged from a handler callback (or under trpc_call_set_current)
 * also names the call: service, method, peer and trace_id. With
 * log.access_log every finished call adds one "access" record with its
 * code (grpc-go's names: "OK", "NotFound") and duration_ms, whatever the
 * level.
 */
enum trpc_log_level {
	TRPC_LOG_ERROR = 0,
	TRPC_LOG_WARN = 1,
	TRPC_LOG_INFO = 2,
	TRPC_LOG_DEBUG = 3
};
enum trpc_log_format { TRPC_LOG_FORMAT_TEXT = 0, TRPC_LOG_FORMAT_JSON = 1 };
TRPC_API void trpc_log_set_level(int level);
TRPC_API void trpc_log_set_format(int format);
TRPC_API void trpc_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Applies log_level, log_format and log_file of a config (trpc_server_new
 * does this; programs without a server call it themselves). Returns 0, or
 * TRPC_ERR_SYSTEM with *why set (thread-local text) when the file cannot
 * be opened; logging then stays where it was. */
TRPC_API int trpc_log_configure(const struct trpc_server_config *cfg, const char **why);
/* Reopens log.file by name (after rotation): lines logged before go to the
 * old file, lines after to the new one, none is lost. 0 (also when logging
 * to stderr) or TRPC_ERR_SYSTEM (the old file stays in use). Any thread. */
TRPC_API int trpc_log_reopen(void);

#ifdef __cplusplus
}
#endif
#endif /* TASKER_RPC_H */

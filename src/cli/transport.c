/*
 * transport: requests over gRPC (libtasker-rpc) or REST (libcurl). See
 * transport.h.
 *
 * Deadlines: every unary request gets the profile's timeout_ms as its
 * deadline, retries included. Retries: gRPC uses the channel's policy
 * (UNAVAILABLE, max_retries, the server's retry-after); REST retries a
 * failed connection and HTTP 503 the same number of times, honouring
 * Retry-After, never past the deadline.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <tasker/rpc.h>

#include "config.h"
#include "cli/credential.h"
#include "cli/transport.h"
#include "web/pbjson.h"

#define USER_AGENT       "tasker-cli/" PACKAGE_VERSION
#define REST_BACKOFF_MS  100
#define MAX_BODY_SHOWN   300
#define ERROR_BODY_LIMIT (64L * 1024 * 1024)

struct cli_conn {
	trpc_channel *ch[2]; /* by enum cli_target, opened on first use */
	CURL *curl;
	char *token[2]; /* tokens signed from jwt_private_key_path, per target */
};

void cli_conn_free(struct cli_conn *conn)
{
	int t;

	if (conn == NULL) {
		return;
	}
	for (t = 0; t < 2; t++) {
		if (conn->ch[t] != NULL) {
			trpc_channel_free(conn->ch[t]);
		}
		free(conn->token[t]);
	}
	if (conn->curl != NULL) {
		curl_easy_cleanup(conn->curl);
	}
	free(conn);
}

static struct cli_conn *conn_of(struct cli *c)
{
	if (c->conn == NULL) {
		c->conn = calloc(1, sizeof *c->conn);
	}
	return c->conn;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------ exit codes */

int cli_exit_for_grpc(int status)
{
	switch (status) {
	case TRPC_STATUS_OK:
		return CLI_EXIT_OK;
	case TRPC_STATUS_NOT_FOUND:
		return CLI_EXIT_NOT_FOUND;
	case TRPC_STATUS_INVALID_ARGUMENT:
	case TRPC_STATUS_ALREADY_EXISTS:
	case TRPC_STATUS_FAILED_PRECONDITION:
	case TRPC_STATUS_OUT_OF_RANGE:
		return CLI_EXIT_REFUSED;
	case TRPC_STATUS_UNAUTHENTICATED:
	case TRPC_STATUS_PERMISSION_DENIED:
		return CLI_EXIT_AUTH;
	case TRPC_STATUS_UNAVAILABLE:
	case TRPC_STATUS_DEADLINE_EXCEEDED:
	case TRPC_STATUS_RESOURCE_EXHAUSTED:
		return CLI_EXIT_UNAVAILABLE;
	default:
		return CLI_EXIT_ERROR;
	}
}

int cli_exit_for_http(long status)
{
	if (status >= 200 && status < 300) {
		return CLI_EXIT_OK;
	}
	switch (status) {
	case 404:
		return CLI_EXIT_NOT_FOUND;
	case 400:
	case 409:
	case 422:
		return CLI_EXIT_REFUSED;
	case 401:
	case 403:
		return CLI_EXIT_AUTH;
	case 408:
	case 429:
	case 502:
	case 503:
	case 504:
		return CLI_EXIT_UNAVAILABLE;
	default:
		return CLI_EXIT_ERROR;
	}
}

/* ------------------------------------------------------------------ request paths */

void cli_request_init(struct cli_request *r, const char *rpc,
                      const ProtobufCMessageDescriptor *req_desc,
                      const ProtobufCMessageDescriptor *resp_desc, json_t *message)
{
	memset(r, 0, sizeof *r);
	r->target = CLI_TARGET_ORCHESTRATION;
	r->rpc = rpc;
	r->req_desc = req_desc;
	r->resp_desc = resp_desc;
	r->message = message;
	r->method = "GET";
}

json_t *cli_msg_str(const char *key, const char *value)
{
	json_t *m = json_object();

	if (cli_set_str(m, key, value) != 0) {
		json_decref(m);
		return NULL;
	}
	return m;
}

int cli_set(json_t *obj, const char *key, json_t *value)
{
	if (obj == NULL) {
		return -1;
	}
	return value == NULL ? 0 : json_object_set(obj, key, value);
}

int cli_set_new(json_t *obj, const char *key, json_t *value)
{
	if (obj == NULL || value == NULL) {
		json_decref(value);
		return -1;
	}
	return json_object_set_new(obj, key, value);
}

int cli_set_str(json_t *obj, const char *key, const char *value)
{
	if (obj == NULL) {
		return -1;
	}
	return value == NULL ? 0 : json_object_set_new(obj, key, json_string(value));
}

int cli_set_int(json_t *obj, const char *key, long value)
{
	return obj == NULL ? -1 : json_object_set_new(obj, key, json_integer(value));
}

int cli_set_bool(json_t *obj, const char *key, int value)
{
	return obj == NULL ? -1 : json_object_set_new(obj, key, json_boolean(value));
}

/* Appends `s` percent-encoded (RFC 3986 unreserved characters kept). */
static void append_escaped(struct cli_request *r, size_t *n, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (*n + 4 >= sizeof r->path) {
			r->failed = 1;
			return;
		}
		if (isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
			r->path[(*n)++] = (char)ch;
		} else {
			r->path[(*n)++] = '%';
			r->path[(*n)++] = hex[ch >> 4];
			r->path[(*n)++] = hex[ch & 15];
		}
	}
	r->path[*n] = '\0';
}

static void append_raw(struct cli_request *r, size_t *n, const char *s, size_t len)
{
	if (*n + len + 1 >= sizeof r->path) {
		r->failed = 1;
		return;
	}
	memcpy(r->path + *n, s, len);
	*n += len;
	r->path[*n] = '\0';
}

void cli_request_path(struct cli_request *r, const char *method, const char *fmt, ...)
{
	va_list ap;
	const char *p, *spec;
	size_t n = 0;

	r->method = method;
	r->path[0] = '\0';
	va_start(ap, fmt);
	for (p = fmt; (spec = strstr(p, "%s")) != NULL; p = spec + 2) {
		append_raw(r, &n, p, (size_t)(spec - p));
		append_escaped(r, &n, va_arg(ap, const char *));
	}
	va_end(ap);
	append_raw(r, &n, p, strlen(p));
}

void cli_request_query(struct cli_request *r, const char *name, const char *value)
{
	size_t n = strlen(r->path);

	if (value == NULL) {
		return;
	}
	append_raw(r, &n, strchr(r->path, '?') != NULL ? "&" : "?", 1);
	append_escaped(r, &n, name);
	append_raw(r, &n, "=", 1);
	append_escaped(r, &n, value);
}

/* ------------------------------------------------------------------ credentials */

/* The bearer token or API key for a target; *kind says which. NULL: none
 * (also with *kind CLI_CRED_NONE), or an error that was printed (*failed). */
static const char *credential(struct cli *c, enum cli_target t, enum cli_cred *kind, int *failed)
{
	struct cli_conn *conn = conn_of(c);
	char why[512];

	*failed = 0;
	*kind = c->prof.cred[t];
	if (*kind != CLI_CRED_JWT_KEY) {
		return c->prof.cred_value[t];
	}
	if (conn != NULL && conn->token[t] == NULL) {
		conn->token[t] = cli_credential_sign(c->prof.cred_value[t], t, why, sizeof why);
		if (conn->token[t] == NULL) {
			cli_error("cannot sign a token with %s (%s): %s", c->prof.cred_value[t],
			          c->prof.cred_source[t], why);
			*failed = 1;
			return NULL;
		}
		cli_verbose(c, 1, "* signed a short-lived token with %s", c->prof.cred_value[t]);
	}
	*kind = CLI_CRED_BEARER;
	return conn != NULL ? conn->token[t] : NULL;
}

static const char *base_url(const struct cli *c, enum cli_target t)
{
	return c->prof
	    .value[t == CLI_TARGET_WORKER ? CLI_KEY_WORKER_URL : CLI_KEY_ORCHESTRATION_URL];
}

static int timeout_of(const struct cli *c, enum cli_target t)
{
	return t == CLI_TARGET_WORKER ? c->prof.worker_timeout_ms : c->prof.timeout_ms;
}

/* ------------------------------------------------------------------ gRPC */

/*
 * Request messages decoded by pbjson come from this arena: pbjson leaves
 * partial allocations to the allocator on errors, and a list of blocks
 * freed at once has no such problem.
 */
struct arena {
	ProtobufCAllocator pa;
	void *blocks; /* each block starts with the pointer to the next */
};

static void *arena_alloc(void *ud, size_t size)
{
	struct arena *a = ud;
	size_t head = sizeof(max_align_t);
	char *b = malloc(head + size);

	if (b == NULL) {
		return NULL;
	}
	*(void **)b = a->blocks;
	a->blocks = b;
	return b + head;
}

static void arena_free(void *ud, void *p)
{
	(void)ud;
	(void)p; /* everything goes in arena_clear */
}

static void arena_init(struct arena *a)
{
	a->pa.alloc = arena_alloc;
	a->pa.free = arena_free;
	a->pa.allocator_data = a;
	a->blocks = NULL;
}

static void arena_clear(struct arena *a)
{
	while (a->blocks != NULL) {
		void *next = *(void **)a->blocks;

		free(a->blocks);
		a->blocks = next;
	}
}

/* "http://host:port/..." -> "host:port" (default port by scheme). */
static int grpc_target(const char *url, char *out, size_t size, int *tls)
{
	const char *host = url;
	size_t len;

	*tls = 0;
	if (strncmp(url, "https://", 8) == 0) {
		*tls = 1;
		host = url + 8;
	} else if (strncmp(url, "http://", 7) == 0) {
		host = url + 7;
	}
	len = strcspn(host, "/?#");
	if (len == 0 || len + 7 >= size) {
		return -1;
	}
	memcpy(out, host, len);
	out[len] = '\0';
	/* a port is there unless the host part ends in a name or "]" */
	if (strrchr(out, ':') == NULL || (out[0] == '[' && out[len - 1] == ']')) {
		snprintf(out + len, size - len, ":%d", *tls ? 443 : 80);
	}
	return 0;
}

static trpc_channel *channel(struct cli *c, enum cli_target t)
{
	struct cli_conn *conn = conn_of(c);
	struct trpc_channel_config cfg;
	const char *why = NULL, *cred;
	enum cli_cred kind;
	char target[512];
	int tls, failed;

	if (conn == NULL) {
		cli_error("out of memory");
		return NULL;
	}
	if (conn->ch[t] != NULL) {
		return conn->ch[t];
	}
	if (grpc_target(base_url(c, t), target, sizeof target, &tls) != 0) {
		cli_error("cannot use '%s' as a gRPC address", base_url(c, t));
		return NULL;
	}
	cred = credential(c, t, &kind, &failed);
	if (failed) {
		return NULL;
	}
	/* The runtime's own log is for -vv; failures reach the user as statuses. */
	trpc_log_set_level(c->verbose >= 2 ? TRPC_LOG_DEBUG : TRPC_LOG_ERROR);
	trpc_channel_config_init(&cfg);
	cfg.target = target;
	cfg.use_tls = tls;
	cfg.connect_timeout_ms = timeout_of(c, t);
	cfg.max_retries = c->prof.max_retries;
	cfg.user_agent = USER_AGENT;
	if (kind == CLI_CRED_BEARER) {
		cfg.bearer_token = cred;
	} else if (kind == CLI_CRED_API_KEY) {
		cfg.api_key = cred;
		cfg.api_key_header = c->prof.value[CLI_KEY_API_KEY_HEADER];
	}
	conn->ch[t] = trpc_channel_new(&cfg, &why);
	if (conn->ch[t] == NULL) {
		cli_error("cannot open a channel to %s: %s", target, why ? why : "failed");
	}
	return conn->ch[t];
}

/* Decodes the request JSON into a message from `a`. NULL after printing why. */
static ProtobufCMessage *grpc_request(const struct cli_request *r, struct arena *a)
{
	ProtobufCMessage *msg = NULL;
	struct tk_err err;
	json_t *empty = NULL;
	int rc;

	tk_err_clear(&err);
	if (r->message == NULL) {
		empty = json_object();
	}
	rc = pbjson_decode(r->message != NULL ? r->message : empty, r->req_desc, &a->pa,
	                   PBJSON_LENIENT_ENUMS, &msg, &err);
	json_decref(empty);
	if (rc != 0) {
		cli_error("cannot build the %s request: %s", r->rpc,
		          err.msg[0] ? err.msg : trpc_strerror(rc));
		return NULL;
	}
	return msg;
}

/*
 * The channel and the request message of a call. Returns the message
 * (from *a, which the caller clears once the call has it), or NULL after
 * printing why (nothing to clear then).
 */
static ProtobufCMessage *grpc_prepare(struct cli *c, const struct cli_request *r, struct arena *a,
                                      trpc_channel **ch)
{
	ProtobufCMessage *req;

	if ((*ch = channel(c, r->target)) == NULL) {
		return NULL;
	}
	arena_init(a);
	if ((req = grpc_request(r, a)) == NULL) {
		arena_clear(a);
	}
	return req;
}

/* -vv: the request message as sent (secrets never travel in messages). */
static void verbose_message(const struct cli *c, const struct cli_request *r)
{
	char *text;

	if (c->verbose < 2 || r->message == NULL) {
		return;
	}
	text = pbjson_dumps(r->message, NULL);
	cli_verbose(c, 2, "> %s", text != NULL ? text : "?");
	free(text);
}

static json_t *to_json(const ProtobufCMessage *msg)
{
	json_t *j = pbjson_encode(msg, PBJSON_EMIT_DEFAULTS);

	if (j == NULL) {
		cli_error("out of memory");
	}
	return j;
}

static int grpc_failed(const struct cli_request *r, const struct trpc_call_status *st)
{
	cli_error("%s (%s)", st->message != NULL && *st->message ? st->message : "request failed",
	          trpc_status_name(st->code));
	(void)r;
	return cli_exit_for_grpc(st->code);
}

static int grpc_call(struct cli *c, const struct cli_request *r, json_t **resp)
{
	struct trpc_call_options opts;
	struct trpc_call_status st;
	ProtobufCMessage *req, *out = NULL;
	trpc_channel *ch;
	struct arena a;
	int64_t t0;
	int rc;

	if ((req = grpc_prepare(c, r, &a, &ch)) == NULL) {
		return CLI_EXIT_ERROR;
	}
	memset(&opts, 0, sizeof opts);
	memset(&st, 0, sizeof st);
	opts.timeout_ms = timeout_of(c, r->target);
	cli_verbose(c, 1, "> gRPC %s at %s", r->rpc, base_url(c, r->target));
	verbose_message(c, r);
	t0 = now_ms();
	rc = trpc_unary(ch, r->rpc, req, r->resp_desc, &out, &opts, &st);
	arena_clear(&a);
	cli_verbose(c, 1, "< %s (%lld ms)", rc < 0 ? trpc_strerror(rc) : trpc_status_name(st.code),
	            (long long)(now_ms() - t0));
	if (rc < 0) {
		cli_error("%s: %s", r->rpc, trpc_strerror(rc));
		trpc_call_status_clear(&st);
		return CLI_EXIT_ERROR;
	}
	if (st.code != TRPC_STATUS_OK) {
		rc = grpc_failed(r, &st);
		trpc_call_status_clear(&st);
		return rc;
	}
	trpc_call_status_clear(&st);
	*resp = to_json(out);
	protobuf_c_message_free_unpacked(out, NULL);
	return *resp != NULL ? CLI_EXIT_OK : CLI_EXIT_ERROR;
}

/* ------------------------------------------------------------------ gRPC streams */

/* A received message, packed again: on_message runs on the channel's
 * thread and may not keep `msg`; the main thread unpacks the copy. */
struct packed {
	struct packed *next;
	size_t len;
	uint8_t data[];
};

struct stream {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct packed *head, **tail;
	int closed;
	int code;
	char *message;
	int nomem;
};

static void on_stream_message(trpc_ccall *call, const ProtobufCMessage *msg, void *ud)
{
	struct stream *s = ud;
	size_t len = protobuf_c_message_get_packed_size(msg);
	struct packed *p = malloc(sizeof *p + len);

	(void)call;
	pthread_mutex_lock(&s->mu);
	if (p == NULL) {
		s->nomem = 1;
	} else {
		p->len = protobuf_c_message_pack(msg, p->data);
		p->next = NULL;
		*s->tail = p;
		s->tail = &p->next;
	}
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void on_stream_close(trpc_ccall *call, const struct trpc_call_status *st, void *ud)
{
	struct stream *s = ud;

	(void)call;
	pthread_mutex_lock(&s->mu);
	s->closed = 1;
	s->code = st->code;
	s->message = st->message != NULL ? strdup(st->message) : NULL;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static const struct trpc_ccall_ops stream_ops = {
    .on_message = on_stream_message,
    .on_close = on_stream_close,
};

/* Waits for the next message (returned, caller frees) or the end (NULL). */
static struct packed *stream_next(struct stream *s)
{
	struct packed *p;

	pthread_mutex_lock(&s->mu);
	while (s->head == NULL && !s->closed) {
		pthread_cond_wait(&s->cv, &s->mu);
	}
	p = s->head;
	if (p != NULL) {
		s->head = p->next;
		if (s->head == NULL) {
			s->tail = &s->head;
		}
	}
	pthread_mutex_unlock(&s->mu);
	return p;
}

/* Hands one packed message to the command; returns its verdict. */
static int deliver(struct cli *c, const struct cli_request *r, struct packed *p,
                   cli_update_fn on_update, void *ud)
{
	ProtobufCMessage *msg = protobuf_c_message_unpack(r->resp_desc, NULL, p->len, p->data);
	json_t *j;
	int rc;

	if (msg == NULL) {
		cli_error("cannot decode a %s message", r->resp_desc->name);
		return CLI_EXIT_ERROR;
	}
	j = to_json(msg);
	protobuf_c_message_free_unpacked(msg, NULL);
	if (j == NULL) {
		return CLI_EXIT_ERROR;
	}
	rc = on_update(c, j, ud);
	json_decref(j);
	return rc;
}

int cli_stream(struct cli *c, const struct cli_request *r, long timeout_ms, cli_update_fn on_update,
               void *ud)
{
	struct trpc_call_options opts;
	trpc_channel *ch;
	ProtobufCMessage *req;
	struct stream s;
	struct packed *p;
	struct arena a;
	trpc_ccall *call;
	const char *why = NULL;
	int rc = CLI_EXIT_OK;

	if ((req = grpc_prepare(c, r, &a, &ch)) == NULL) {
		return CLI_EXIT_ERROR;
	}
	memset(&s, 0, sizeof s);
	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cv, NULL);
	s.tail = &s.head;
	memset(&opts, 0, sizeof opts);
	opts.timeout_ms = timeout_ms;
	cli_verbose(c, 1, "> gRPC stream %s at %s", r->rpc, base_url(c, r->target));
	call = trpc_ccall_start(ch, r->rpc, r->resp_desc, req, TRPC_START_HALF_CLOSE, &opts,
	                        &stream_ops, &s, &why);
	arena_clear(&a);
	if (call == NULL) {
		cli_error("cannot start %s: %s", r->rpc, why ? why : "failed");
		rc = CLI_EXIT_ERROR;
		goto done;
	}
	while ((p = stream_next(&s)) != NULL) {
		if (rc == CLI_EXIT_OK) {
			rc = deliver(c, r, p, on_update, ud);
			if (rc != CLI_EXIT_OK) {
				trpc_ccall_cancel(call); /* drain until on_close */
			}
		}
		free(p);
	}
	trpc_ccall_unref(call);
	cli_verbose(c, 1, "< %s", trpc_status_name(s.code));
	if (rc == CLI_EXIT_OK && s.nomem) {
		cli_error("out of memory");
		rc = CLI_EXIT_ERROR;
	} else if (rc == CLI_EXIT_OK && s.code != TRPC_STATUS_OK) {
		struct trpc_call_status st = {.code = s.code, .message = s.message};

		rc = grpc_failed(r, &st);
	}
done:
	free(s.message);
	pthread_cond_destroy(&s.cv);
	pthread_mutex_destroy(&s.mu);
	return rc;
}

/* ------------------------------------------------------------------ REST */

struct http_answer {
	char *body;
	size_t len;
	int oversized;
	long retry_after_s; /* -1: none */
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct http_answer *h = ud;
	size_t n = size * nmemb;
	char *b;

	if ((long)(h->len + n) > ERROR_BODY_LIMIT) {
		h->oversized = 1;
		return 0;
	}
	b = realloc(h->body, h->len + n + 1);
	if (b == NULL) {
		return 0;
	}
	memcpy(b + h->len, ptr, n);
	h->len += n;
	b[h->len] = '\0';
	h->body = b;
	return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct http_answer *h = ud;
	size_t n = size * nmemb;
	static const char name[] = "retry-after:";

	if (n > sizeof name && strncasecmp(ptr, name, sizeof name - 1) == 0) {
		char buf[32];
		size_t len =
		    n - (sizeof name - 1) < sizeof buf - 1 ? n - (sizeof name - 1) : sizeof buf - 1;

		memcpy(buf, ptr + sizeof name - 1, len);
		buf[len] = '\0';
		h->retry_after_s = strtol(buf, NULL, 10);
	}
	return n;
}

/* A failed connection or a 503 may be retried (nothing was done), except
 * for a health check, whose 503 is its answer. */
static int rest_retryable(const struct cli_request *r, CURLcode cc, long status)
{
	return cc == CURLE_COULDNT_CONNECT ||
	       (cc == CURLE_OK && status == 503 && !r->body_on_error);
}

static int curl_exit(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_GOT_NOTHING:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
		return CLI_EXIT_UNAVAILABLE;
	default:
		return CLI_EXIT_ERROR;
	}
}

/* Prints the failure of a non-2xx answer: the JSON error's message and
 * code when the body is one, else the start of the body. */
static void rest_failed(long status, json_t *body, const struct http_answer *h)
{
	json_t *e = json_object_get(body, "error");
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *msg = json_string_value(json_object_get(e, "message"));

	if (msg != NULL) {
		cli_error("%s (HTTP %ld%s%s)", msg, status, code ? ", " : "", code ? code : "");
	} else if (h->len != 0) {
		cli_error("HTTP %ld: %.*s", status, MAX_BODY_SHOWN, h->body);
	} else {
		cli_error("HTTP %ld", status);
	}
}

static struct curl_slist *rest_headers(struct cli *c, const struct cli_request *r, int *failed)
{
	struct curl_slist *hs = NULL, *n;
	enum cli_cred kind;
	const char *cred = credential(c, r->target, &kind, failed);
	char line[8192];

	if (*failed) {
		return NULL;
	}
	hs = curl_slist_append(hs, "Accept: application/json");
	if (hs != NULL && r->body != NULL) {
		n = curl_slist_append(hs, "Content-Type: application/json");
		hs = n != NULL ? n : (curl_slist_free_all(hs), NULL);
	}
	if (hs != NULL && cred != NULL && kind != CLI_CRED_NONE) {
		if (kind == CLI_CRED_BEARER) {
			snprintf(line, sizeof line, "Authorization: Bearer %s", cred);
		} else {
			snprintf(line, sizeof line, "%s: %s", c->prof.value[CLI_KEY_API_KEY_HEADER],
			         cred);
		}
		n = curl_slist_append(hs, line);
		hs = n != NULL ? n : (curl_slist_free_all(hs), NULL);
	}
	if (hs == NULL) {
		cli_error("out of memory");
		*failed = 1;
	}
	return hs;
}

/* One attempt; returns the curl result with the status in *status. */
static CURLcode rest_attempt(struct cli *c, CURL *curl, const char *url,
                             const struct cli_request *r, const char *body, struct curl_slist *hs,
                             int64_t remaining_ms, struct http_answer *h, long *status)
{
	CURLcode cc;

	curl_easy_reset(curl);
	free(h->body);
	memset(h, 0, sizeof *h);
	h->retry_after_s = -1;
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, r->method);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, USER_AGENT);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hs);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)remaining_ms);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, h);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, h);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	if (body != NULL) {
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	if (c->verbose >= 2) {
		curl_easy_setopt(curl, CURLOPT_VERBOSE, 1L);
	}
	*status = 0;
	cc = curl_easy_perform(curl);
	if (cc == CURLE_OK) {
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
	}
	return cc;
}

/* Parses a response body; an empty body is an empty object. */
static json_t *parse_body(const struct http_answer *h)
{
	json_error_t jerr;

	if (h->len == 0) {
		return json_object();
	}
	return json_loadb(h->body, h->len, JSON_DECODE_ANY, &jerr);
}

static int rest_call(struct cli *c, const struct cli_request *r, json_t **resp)
{
	struct cli_conn *conn = conn_of(c);
	struct http_answer h;
	struct curl_slist *hs;
	char url[4096], *body = NULL;
	const char *base = base_url(c, r->target);
	size_t blen = strlen(base);
	int64_t deadline = now_ms() + timeout_of(c, r->target), t0, wait;
	int attempt, failed, rc;
	long status = 0;
	CURLcode cc;
	json_t *j;

	if (conn == NULL || (conn->curl == NULL && (conn->curl = curl_easy_init()) == NULL)) {
		cli_error("cannot initialise libcurl");
		return CLI_EXIT_ERROR;
	}
	while (blen > 0 && base[blen - 1] == '/') {
		blen--;
	}
	if ((size_t)snprintf(url, sizeof url, "%.*s%s", (int)blen, base, r->path) >= sizeof url) {
		cli_error("URL too long");
		return CLI_EXIT_USAGE;
	}
	hs = rest_headers(c, r, &failed);
	if (failed) {
		return CLI_EXIT_ERROR;
	}
	if (r->body != NULL && (body = json_dumps(r->body, JSON_COMPACT)) == NULL) {
		curl_slist_free_all(hs);
		cli_error("out of memory");
		return CLI_EXIT_ERROR;
	}
	memset(&h, 0, sizeof h);
	for (attempt = 0;; attempt++) {
		cli_verbose(c, 1, "> %s %s%s%s", r->method, url, body ? " " : "", body ? body : "");
		t0 = now_ms();
		cc = rest_attempt(c, conn->curl, url, r, body, hs,
		                  deadline - t0 > 1 ? deadline - t0 : 1, &h, &status);
		cli_verbose(c, 1, "< %s%ld (%lld ms)", cc == CURLE_OK ? "HTTP " : "",
		            cc == CURLE_OK ? status : (long)cc, (long long)(now_ms() - t0));
		if (attempt >= c->prof.max_retries || !rest_retryable(r, cc, status)) {
			break;
		}
		wait = h.retry_after_s >= 0 ? h.retry_after_s * 1000 : REST_BACKOFF_MS << attempt;
		if (now_ms() + wait >= deadline) {
			break;
		}
		cli_verbose(c, 1, "* retrying in %lld ms", (long long)wait);
		sleep_ms(wait);
	}
	free(body);
	curl_slist_free_all(hs);
	if (cc != CURLE_OK) {
		cli_error("%s %s: %s", r->method, url,
		          h.oversized ? "response too large" : curl_easy_strerror(cc));
		free(h.body);
		return h.oversized ? CLI_EXIT_ERROR : curl_exit(cc);
	}
	j = parse_body(&h);
	rc = cli_exit_for_http(status);
	if (rc == CLI_EXIT_OK && j == NULL) {
		cli_error("%s %s: the response is not JSON: %.*s", r->method, url, MAX_BODY_SHOWN,
		          h.body);
		rc = CLI_EXIT_ERROR;
	} else if (rc != CLI_EXIT_OK) {
		if (r->body_on_error && j != NULL && json_object_get(j, "error") == NULL) {
			*resp = j;
			j = NULL;
		} else {
			rest_failed(status, j, &h);
		}
	} else {
		*resp = j;
		j = NULL;
	}
	json_decref(j);
	free(h.body);
	return rc;
}

/* ------------------------------------------------------------------ either */

int cli_call(struct cli *c, const struct cli_request *r, json_t **resp)
{
	*resp = NULL;
	if (r->failed) {
		cli_error("request path too long");
		return CLI_EXIT_USAGE;
	}
	if (c->prof.transport == CLI_TRANSPORT_REST) {
		return rest_call(c, r, resp);
	}
	return grpc_call(c, r, resp);
}

/*
 * interop-client: the client side of the gRPC interoperability suite
 * (grpc.testing.TestService), built on the libtasker-rpc client API, so that
 * the runtime's channels can be checked against any gRPC server: our
 * interop-server, grpc-go's interop_server, ...
 *
 * Each test case follows the published interop test descriptions: the same
 * requests, sizes and assertions. Every call carries a deadline and every
 * wait is bounded, and a watchdog ends the program should the runtime still
 * fail to return, so a run never hangs.
 *
 * Command line (grpc-go's interop client flags, "--flag=v" or "--flag v";
 * booleans as "--flag" or "--flag=true|false"):
 *   --server_host H           server name or address (default localhost)
 *   --server_port N           server port (default 10000)
 *   --test_case NAME          one case, or "all" (default large_unary)
 *   --use_tls[=BOOL]          connect with TLS
 *   --use_test_ca[=BOOL]      verify against --ca_file (which it requires)
 *   --ca_file F               PEM CA bundle; without it TLS uses the system store
 *   --server_host_override N  name checked in the certificate and sent as SNI
 *
 * Exit status: 0 when every selected case passed, 1 when one failed (a
 * one-line reason per failed case on stderr), 2 for a bad command line.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tasker/rpc.h>

#include "cmd/interop_flags.h"
#include "grpc/testing/empty.pb-c.h"
#include "grpc/testing/messages.pb-c.h"
#include "grpc/testing/test.pb-c.h"

#define UNUSED __attribute__((unused))

#define TEST_SERVICE                 "/grpc.testing.TestService/"
#define M_EMPTY_CALL                 TEST_SERVICE "EmptyCall"
#define M_UNARY_CALL                 TEST_SERVICE "UnaryCall"
#define M_STREAMING_INPUT_CALL       TEST_SERVICE "StreamingInputCall"
#define M_STREAMING_OUTPUT_CALL      TEST_SERVICE "StreamingOutputCall"
#define M_FULL_DUPLEX_CALL           TEST_SERVICE "FullDuplexCall"
#define M_UNIMPLEMENTED_CALL         TEST_SERVICE "UnimplementedCall"
#define M_UNIMPLEMENTED_SERVICE_CALL "/grpc.testing.UnimplementedService/UnimplementedCall"

/* The suite's sizes. */
#define LARGE_REQUEST_SIZE  271828
#define LARGE_RESPONSE_SIZE 314159

/* Request headers the server echoes (custom_metadata). */
#define ECHO_INITIAL_KEY    "x-grpc-test-echo-initial"
#define ECHO_INITIAL_VALUE  "test_initial_metadata_value"
#define ECHO_TRAILING_KEY   "x-grpc-test-echo-trailing-bin"
#define ECHO_TRAILING_VALUE "\xab\xab\xab"

/* Deadline of every call whose deadline the case does not set itself. */
#define CALL_TIMEOUT_MS 20000
/* How long past its deadline a call may take to reach on_close before the
 * client cancels it, and again after the cancel before giving up on it. */
#define CLOSE_GRACE_MS     5000
#define CONNECT_TIMEOUT_MS 10000
/* Last resort against a runtime that never returns: a case still running
 * after this long ends the program. Above every bounded wait of a case. */
#define CASE_LIMIT_S 120

#define NS_PER_MS 1000000LL
#define NS_PER_S  1000000000LL

/* Request payloads are zeros and never larger than this; one static buffer
 * serves them all. */
static uint8_t zeros[LARGE_REQUEST_SIZE];

/* ============================================================ results */

/* One test case's state: the channel and the first failure's reason. */
struct client {
	trpc_channel *ch;
	char err[1024];
};

/*
 * Records why the case failed, keeping the first reason (later ones are
 * usually consequences). Returns -1 so that callers can `return fail(...)`.
 */
static int fail(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct client *c, const char *fmt, ...)
{
	va_list ap;

	if (c->err[0] == '\0') {
		va_start(ap, fmt);
		vsnprintf(c->err, sizeof c->err, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* Renders `len` bytes printable in `out` (C escapes), for one-line reports. */
static const char *escape(const char *s, size_t len, char *out, size_t size)
{
	size_t i, n = 0;

	if (s == NULL) {
		snprintf(out, size, "(none)");
		return out;
	}
	for (i = 0; i < len && n + 5 < size; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '\\' || ch == '"') {
			n += (size_t)snprintf(out + n, size - n, "\\%c", ch);
		} else if (ch < 0x20 || ch >= 0x7f) {
			n += (size_t)snprintf(out + n, size - n, "\\x%02x", ch);
		} else {
			out[n++] = (char)ch;
		}
	}
	out[n] = '\0';
	return out;
}

/*
 * The end of a call as the case sees it: a copy of struct trpc_call_status
 * that the client owns, whichever API ran the call.
 */
struct outcome {
	int code;
	char *message;
	struct trpc_md *trailers; /* keys and values malloc'd, values NUL terminated */
	size_t n_trailers;
	int incomplete; /* out of memory while copying */
};

static void outcome_clear(struct outcome *o)
{
	size_t i;

	for (i = 0; i < o->n_trailers; i++) {
		free((void *)o->trailers[i].key);
		free((void *)o->trailers[i].value);
	}
	free(o->trailers);
	free(o->message);
	memset(o, 0, sizeof *o);
}

static void *memdup0(const void *p, size_t len)
{
	char *q = malloc(len + 1);

	if (q != NULL) {
		if (len != 0) {
			memcpy(q, p, len);
		}
		q[len] = '\0';
	}
	return q;
}

static void outcome_copy(struct outcome *o, const struct trpc_call_status *st)
{
	size_t i;

	memset(o, 0, sizeof *o);
	o->code = st->code;
	if (st->message != NULL) {
		o->message = memdup0(st->message, strlen(st->message));
		o->incomplete |= o->message == NULL;
	}
	if (st->n_trailers == 0) {
		return;
	}
	o->trailers = calloc(st->n_trailers, sizeof *o->trailers);
	if (o->trailers == NULL) {
		o->incomplete = 1;
		return;
	}
	for (i = 0; i < st->n_trailers; i++) {
		const struct trpc_md *md = &st->trailers[i];
		struct trpc_md *copy = &o->trailers[o->n_trailers];

		copy->key = memdup0(md->key, strlen(md->key));
		copy->value = memdup0(md->value, md->len);
		copy->len = md->len;
		if (copy->key == NULL || copy->value == NULL) {
			free((void *)copy->key);
			free((void *)copy->value);
			o->incomplete = 1;
			continue;
		}
		o->n_trailers++;
	}
}

static const struct trpc_md *outcome_trailer(const struct outcome *o, const char *key)
{
	size_t i;

	for (i = 0; i < o->n_trailers; i++) {
		if (strcmp(o->trailers[i].key, key) == 0) {
			return &o->trailers[i];
		}
	}
	return NULL;
}

/*
 * Passes when the call ended with `code` and, when `message` is not NULL,
 * exactly that status message.
 */
static int expect_status(struct client *c, const struct outcome *o, int code, const char *message,
                         const char *what)
{
	char got[300], want[300];
	const char *m = o->message != NULL ? o->message : "";

	if (o->incomplete) {
		return fail(c, "%s: out of memory while keeping the call's status", what);
	}
	if (o->code != code) {
		return fail(c, "%s: expected status %s, got %s: \"%s\"", what,
		            trpc_status_name(code), trpc_status_name(o->code),
		            escape(m, strlen(m), got, sizeof got));
	}
	if (message != NULL && strcmp(m, message) != 0) {
		return fail(c, "%s: expected status message \"%s\", got \"%s\"", what,
		            escape(message, strlen(message), want, sizeof want),
		            escape(m, strlen(m), got, sizeof got));
	}
	return 0;
}

static int expect_ok(struct client *c, const struct outcome *o, const char *what)
{
	return expect_status(c, o, TRPC_STATUS_OK, NULL, what);
}

/* ============================================================ messages */

static void payload_zeros(Grpc__Testing__Payload *pl, size_t size)
{
	pl->type = GRPC__TESTING__PAYLOAD_TYPE__COMPRESSABLE;
	pl->body.data = zeros;
	pl->body.len = size;
}

/* Passes when `pl` is a COMPRESSABLE payload of exactly `size` zero bytes. */
static int check_payload(struct client *c, const Grpc__Testing__Payload *pl, size_t size,
                         const char *what)
{
	size_t i;

	if (pl == NULL) {
		return fail(c, "%s: response has no payload (expected %zu bytes)", what, size);
	}
	if (pl->type != GRPC__TESTING__PAYLOAD_TYPE__COMPRESSABLE) {
		return fail(c, "%s: response payload type %d, expected COMPRESSABLE", what,
		            (int)pl->type);
	}
	if (pl->body.len != size) {
		return fail(c, "%s: response payload is %zu bytes, expected %zu", what,
		            pl->body.len, size);
	}
	for (i = 0; i < size; i++) {
		if (pl->body.data[i] != 0) {
			return fail(c, "%s: response payload byte %zu is 0x%02x, expected zeros",
			            what, i, pl->body.data[i]);
		}
	}
	return 0;
}

/* A BoolValue field: unset (NULL) for -1, else set to the value. */
static Grpc__Testing__BoolValue *bool_value(Grpc__Testing__BoolValue *bv, int value)
{
	if (value < 0) {
		return NULL;
	}
	grpc__testing__bool_value__init(bv);
	bv->value = value != 0;
	return bv;
}

/* SimpleRequest for 314159 bytes back with 271828 bytes of zeros; the
 * storage of the sub-messages is the caller's. */
static void large_request(Grpc__Testing__SimpleRequest *req, Grpc__Testing__Payload *pl)
{
	grpc__testing__simple_request__init(req);
	grpc__testing__payload__init(pl);
	payload_zeros(pl, LARGE_REQUEST_SIZE);
	req->response_type = GRPC__TESTING__PAYLOAD_TYPE__COMPRESSABLE;
	req->response_size = LARGE_RESPONSE_SIZE;
	req->payload = pl;
}

/* One response a StreamingOutputCallRequest asks for. */
struct response_spec {
	int32_t size;
	int compressed; /* -1 unset, else the ResponseParameters.compressed value */
};

#define MAX_RESPONSES 4

/* A StreamingOutputCallRequest with everything it points to. */
struct output_request {
	Grpc__Testing__StreamingOutputCallRequest req;
	Grpc__Testing__ResponseParameters params[MAX_RESPONSES];
	Grpc__Testing__ResponseParameters *param_ptrs[MAX_RESPONSES];
	Grpc__Testing__BoolValue compressed[MAX_RESPONSES];
	Grpc__Testing__Payload payload;
	Grpc__Testing__EchoStatus status;
};

/* Asks for the `n` responses of `specs` (n <= MAX_RESPONSES) and sends
 * `payload_size` zeros along (none when 0). */
static void output_request_init(struct output_request *r, const struct response_spec *specs,
                                size_t n, size_t payload_size)
{
	size_t i;

	grpc__testing__streaming_output_call_request__init(&r->req);
	r->req.response_type = GRPC__TESTING__PAYLOAD_TYPE__COMPRESSABLE;
	for (i = 0; i < n && i < MAX_RESPONSES; i++) {
		grpc__testing__response_parameters__init(&r->params[i]);
		r->params[i].size = specs[i].size;
		r->params[i].compressed = bool_value(&r->compressed[i], specs[i].compressed);
		r->param_ptrs[i] = &r->params[i];
	}
	r->req.n_response_parameters = i;
	r->req.response_parameters = i != 0 ? r->param_ptrs : NULL;
	if (payload_size != 0) {
		grpc__testing__payload__init(&r->payload);
		payload_zeros(&r->payload, payload_size);
		r->req.payload = &r->payload;
	}
}

static void output_request_status(struct output_request *r, int code, const char *message)
{
	grpc__testing__echo_status__init(&r->status);
	r->status.code = code;
	r->status.message = (char *)message;
	r->req.response_status = &r->status;
}

/* ============================================================ call options */

static struct trpc_call_options call_options(void)
{
	struct trpc_call_options o;

	memset(&o, 0, sizeof o);
	o.timeout_ms = CALL_TIMEOUT_MS;
	/* The suite checks what one attempt does; a retry would hide it. */
	o.no_retry = 1;
	return o;
}

/* The request metadata of custom_metadata. */
static const struct trpc_md echo_metadata[] = {
    {.key = ECHO_INITIAL_KEY, .value = ECHO_INITIAL_VALUE, .len = sizeof ECHO_INITIAL_VALUE - 1},
    {.key = ECHO_TRAILING_KEY, .value = ECHO_TRAILING_VALUE, .len = sizeof ECHO_TRAILING_VALUE - 1},
};

/* ============================================================ time */

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* ============================================================ blocking unary */

/*
 * Runs one call through trpc_unary(). Returns 0 when the call ran (its end
 * in *out, the response in *resp when OK; the caller frees both), -1 when
 * the runtime refused it.
 */
static int unary(struct client *c, const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *resp_desc, const struct trpc_call_options *opts,
                 ProtobufCMessage **resp, struct outcome *out, const char *what)
{
	struct trpc_call_status st;
	int rc;

	memset(&st, 0, sizeof st);
	memset(out, 0, sizeof *out);
	*resp = NULL;
	rc = trpc_unary(c->ch, method, req, resp_desc, resp, opts, &st);
	if (rc < 0) {
		trpc_call_status_clear(&st);
		return fail(c, "%s: trpc_unary refused the call: %s", what, trpc_strerror(rc));
	}
	outcome_copy(out, &st);
	trpc_call_status_clear(&st);
	if (out->code == TRPC_STATUS_OK && *resp == NULL) {
		return fail(c, "%s: status OK but no response message", what);
	}
	return 0;
}

/* UnaryCall: passes when it is OK with `size` zeros in the response. */
static int unary_expect_payload(struct client *c, const Grpc__Testing__SimpleRequest *req,
                                const struct trpc_call_options *opts, size_t size, const char *what)
{
	ProtobufCMessage *resp;
	struct outcome out;
	int rc;

	rc = unary(c, M_UNARY_CALL, &req->base, &grpc__testing__simple_response__descriptor, opts,
	           &resp, &out, what);
	if (rc == 0) {
		rc = expect_ok(c, &out, what);
	}
	if (rc == 0) {
		rc = check_payload(c, ((Grpc__Testing__SimpleResponse *)resp)->payload, size, what);
	}
	if (resp != NULL) {
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	outcome_clear(&out);
	return rc;
}

/* Passes when the call ends with `code` (and `message` unless NULL). */
static int unary_expect_status(struct client *c, const char *method, const ProtobufCMessage *req,
                               const ProtobufCMessageDescriptor *resp_desc,
                               const struct trpc_call_options *opts, int code, const char *message,
                               const char *what)
{
	ProtobufCMessage *resp;
	struct outcome out;
	int rc;

	rc = unary(c, method, req, resp_desc, opts, &resp, &out, what);
	if (rc == 0) {
		rc = expect_status(c, &out, code, message, what);
	}
	if (resp != NULL) {
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	outcome_clear(&out);
	return rc;
}

/* ============================================================ streaming calls */

/*
 * A call made with trpc_ccall_start(). The callbacks run on the channel's
 * I/O thread and only record what happened; the case's thread waits on
 * `cond` and reads. Heap allocated: should the runtime never close the call,
 * the structure is left to it rather than freed under its callbacks.
 */
struct stream {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	trpc_ccall *call; /* held past on_close by the reference on_close takes */
	const ProtobufCMessageDescriptor *resp_desc;
	ProtobufCBinaryData *msgs; /* responses in order, re-encoded */
	size_t n_msgs, cap_msgs;
	size_t taken;       /* responses handed to the case so far */
	int lost;           /* out of memory keeping a response */
	char *echo_initial; /* the ECHO_INITIAL_KEY response header, if any */
	size_t echo_initial_len;
	int closed; /* on_close ran; `end` is then final */
	struct outcome end;
};

/* Keeps the echoed initial header; lock held. */
static void stream_capture_headers(struct stream *s, trpc_ccall *call)
{
	const char *v;
	size_t len = 0;

	if (s->echo_initial != NULL) {
		return;
	}
	v = trpc_ccall_header(call, ECHO_INITIAL_KEY, &len);
	if (v != NULL) {
		s->echo_initial = memdup0(v, len);
		s->echo_initial_len = len;
		s->lost |= s->echo_initial == NULL;
	}
}

static void on_headers(trpc_ccall *call, void *ud)
{
	struct stream *s = ud;

	pthread_mutex_lock(&s->lock);
	stream_capture_headers(s, call);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void on_message(trpc_ccall *call UNUSED, const ProtobufCMessage *msg, void *ud)
{
	struct stream *s = ud;
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = malloc(len != 0 ? len : 1);

	if (buf != NULL) {
		protobuf_c_message_pack(msg, buf);
	}
	pthread_mutex_lock(&s->lock);
	if (buf != NULL && s->n_msgs == s->cap_msgs) {
		size_t cap = s->cap_msgs != 0 ? 2 * s->cap_msgs : 8;
		ProtobufCBinaryData *msgs = realloc(s->msgs, cap * sizeof *msgs);

		if (msgs != NULL) {
			s->msgs = msgs;
			s->cap_msgs = cap;
		}
	}
	if (buf == NULL || s->n_msgs == s->cap_msgs) {
		free(buf);
		s->lost = 1;
	} else {
		s->msgs[s->n_msgs].data = buf;
		s->msgs[s->n_msgs].len = len;
		s->n_msgs++;
	}
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* The case's thread owns the call's reference (from trpc_ccall_start) and
 * releases it in stream_end(). */
static void on_close(trpc_ccall *call, const struct trpc_call_status *st, void *ud)
{
	struct stream *s = ud;

	pthread_mutex_lock(&s->lock);
	stream_capture_headers(s, call);
	outcome_copy(&s->end, st);
	s->closed = 1;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static const struct trpc_ccall_ops stream_ops = {
    .on_headers = on_headers,
    .on_message = on_message,
    .on_close = on_close,
};

static void stream_free(struct stream *s)
{
	size_t i;

	for (i = 0; i < s->n_msgs; i++) {
		free(s->msgs[i].data);
	}
	free(s->msgs);
	free(s->echo_initial);
	outcome_clear(&s->end);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/*
 * Starts a call (see trpc_ccall_start for `first` and `flags`). Returns the
 * stream, or NULL after recording why.
 */
static struct stream *stream_open(struct client *c, const char *method,
                                  const ProtobufCMessageDescriptor *resp_desc,
                                  const ProtobufCMessage *first, unsigned flags,
                                  const struct trpc_call_options *opts, const char *what)
{
	struct stream *s = calloc(1, sizeof *s);
	pthread_condattr_t attr;
	const char *why = NULL;

	if (s == NULL) {
		fail(c, "%s: out of memory", what);
		return NULL;
	}
	s->resp_desc = resp_desc;
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &attr);
	pthread_condattr_destroy(&attr);
	s->call =
	    trpc_ccall_start(c->ch, method, resp_desc, first, flags, opts, &stream_ops, s, &why);
	if (s->call == NULL) {
		fail(c, "%s: trpc_ccall_start: %s", what, why != NULL ? why : "failed");
		/* A runtime that ran on_close before refusing still holds `s`. */
		if (!s->closed) {
			stream_free(s);
		}
		return NULL;
	}
	return s;
}

/*
 * Waits, lock held, until the call has closed or holds more than `n`
 * responses. Returns 0, or -1 when `deadline` (CLOCK_MONOTONIC ns) came
 * first.
 */
static int stream_wait_locked(struct stream *s, size_t n, int64_t deadline)
{
	while (!s->closed && s->n_msgs <= n) {
		struct timespec ts;

		if (now_ns() >= deadline) {
			return -1;
		}
		ts.tv_sec = (time_t)(deadline / NS_PER_S);
		ts.tv_nsec = (long)(deadline % NS_PER_S);
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	}
	return 0;
}

/*
 * The next response, decoded (the caller frees it with
 * protobuf_c_message_free_unpacked(msg, NULL)), or NULL after recording why:
 * the call ended first, or none came within `wait_ms`.
 */
static ProtobufCMessage *stream_next(struct client *c, struct stream *s, int64_t wait_ms,
                                     const char *what)
{
	ProtobufCBinaryData m = {0, NULL};
	ProtobufCMessage *msg;
	size_t index;
	int timed_out, lost;

	pthread_mutex_lock(&s->lock);
	timed_out = stream_wait_locked(s, s->taken, now_ns() + wait_ms * NS_PER_MS) < 0;
	index = s->taken;
	lost = s->lost;
	if (s->taken < s->n_msgs) {
		m = s->msgs[s->taken];
		s->msgs[s->taken].data = NULL;
		s->taken++;
	}
	pthread_mutex_unlock(&s->lock);
	if (lost) {
		free(m.data);
		fail(c, "%s: out of memory keeping a response", what);
		return NULL;
	}
	if (m.data == NULL) {
		char buf[300];
		const char *em = s->end.message != NULL ? s->end.message : "";

		if (timed_out) {
			fail(c, "%s: no response #%zu within %lld ms", what, index + 1,
			     (long long)wait_ms);
		} else {
			fail(c, "%s: the call ended with %s \"%s\" before response #%zu", what,
			     trpc_status_name(s->end.code), escape(em, strlen(em), buf, sizeof buf),
			     index + 1);
		}
		return NULL;
	}
	msg = protobuf_c_message_unpack(s->resp_desc, NULL, m.len, m.data);
	free(m.data);
	if (msg == NULL) {
		fail(c, "%s: response #%zu does not decode again", what, index + 1);
	}
	return msg;
}

/*
 * Waits up to `wait_ms` for the call to close; if it does not, cancels it
 * and waits CLOSE_GRACE_MS more. Returns 0 once closed (the end is in
 * s->end), -1 after recording why.
 */
static int stream_wait_close(struct client *c, struct stream *s, int64_t wait_ms, const char *what)
{
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = stream_wait_locked(s, SIZE_MAX, now_ns() + wait_ms * NS_PER_MS);
	pthread_mutex_unlock(&s->lock);
	if (rc == 0) {
		return 0;
	}
	trpc_ccall_cancel(s->call);
	pthread_mutex_lock(&s->lock);
	rc = stream_wait_locked(s, SIZE_MAX, now_ns() + CLOSE_GRACE_MS * NS_PER_MS);
	pthread_mutex_unlock(&s->lock);
	if (rc < 0) {
		return fail(c,
		            "%s: the call did not close within %lld ms, nor %d ms after a cancel",
		            what, (long long)wait_ms, CLOSE_GRACE_MS);
	}
	return fail(c, "%s: the call did not close within %lld ms (cancelled)", what,
	            (long long)wait_ms);
}

/* The wait that covers a call with the default deadline. */
#define STREAM_WAIT_MS ((int64_t)CALL_TIMEOUT_MS + CLOSE_GRACE_MS)

/* Responses received after the ones taken (the call must have closed). */
static size_t stream_unread(struct stream *s)
{
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = s->n_msgs - s->taken;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* Waits for the end and checks it is OK with no response left unread. */
static int stream_expect_ok_end(struct client *c, struct stream *s, const char *what)
{
	size_t extra;

	if (stream_wait_close(c, s, STREAM_WAIT_MS, what) < 0) {
		return -1;
	}
	if (expect_ok(c, &s->end, what) < 0) {
		return -1;
	}
	extra = stream_unread(s);
	if (extra != 0) {
		return fail(c, "%s: %zu more response(s) than expected", what, extra);
	}
	return 0;
}

/*
 * Releases the stream. A call that is still open is cancelled first and
 * waited for (on_close always follows a cancel); if it never closes the
 * stream is left allocated, since the runtime may still call back into it.
 */
static void stream_end(struct stream *s)
{
	int closed;

	if (s == NULL) {
		return;
	}
	pthread_mutex_lock(&s->lock);
	closed = s->closed;
	pthread_mutex_unlock(&s->lock);
	if (!closed) {
		trpc_ccall_cancel(s->call);
		pthread_mutex_lock(&s->lock);
		/* wait for close only: asking for more messages than exist */
		stream_wait_locked(s, (size_t)-1, now_ns() + 5 * NS_PER_S);
		closed = s->closed;
		pthread_mutex_unlock(&s->lock);
		if (!closed)
			return;
	}
	trpc_ccall_unref(s->call);
	stream_free(s);
}

static int stream_send(struct client *c, struct stream *s, const ProtobufCMessage *msg,
                       const char *what)
{
	int rc = trpc_ccall_send(s->call, msg);

	if (rc < 0) {
		return fail(c, "%s: trpc_ccall_send: %s", what, trpc_strerror(rc));
	}
	return 0;
}

static int stream_close_send(struct client *c, struct stream *s, const char *what)
{
	int rc = trpc_ccall_close_send(s->call);

	if (rc < 0) {
		return fail(c, "%s: trpc_ccall_close_send: %s", what, trpc_strerror(rc));
	}
	return 0;
}

/* stream_close_send() on a call the server may already have ended: that
 * counts as half-closed, the end then tells what happened. */
static int stream_close_send_if_open(struct client *c, struct stream *s, const char *what)
{
	int rc = trpc_ccall_close_send(s->call);

	if (rc < 0 && rc != TRPC_ERR_CLOSED) {
		return fail(c, "%s: trpc_ccall_close_send: %s", what, trpc_strerror(rc));
	}
	return 0;
}

/* Waits up to wait_ms for the end of the call and checks its status. */
static int stream_expect_end(struct client *c, struct stream *s, int64_t wait_ms, int code,
                             const char *message, const char *what)
{
	int rc = stream_wait_close(c, s, wait_ms, what);

	if (rc == 0) {
		rc = expect_status(c, &s->end, code, message, what);
	}
	return rc;
}

/* A FullDuplexCall, with its first request when first is not NULL. */
static struct stream *duplex_open(struct client *c, const ProtobufCMessage *first,
                                  const struct trpc_call_options *opts, const char *what)
{
	return stream_open(c, M_FULL_DUPLEX_CALL,
	                   &grpc__testing__streaming_output_call_response__descriptor, first, 0,
	                   opts, what);
}

/* Takes the next StreamingOutputCallResponse and checks its payload. */
static int stream_expect_payload(struct client *c, struct stream *s, size_t size, const char *what)
{
	ProtobufCMessage *msg = stream_next(c, s, STREAM_WAIT_MS, what);
	int rc;

	if (msg == NULL) {
		return -1;
	}
	rc = check_payload(c, ((Grpc__Testing__StreamingOutputCallResponse *)msg)->payload, size,
	                   what);
	protobuf_c_message_free_unpacked(msg, NULL);
	return rc;
}

/* ============================================================ shared procedures */

/* One request of a StreamingInputCall. */
struct input_spec {
	size_t size;
	int expect_compressed; /* -1 unset */
};

/*
 * StreamingInputCall: sends the requests, half-closes and waits for the end.
 * Returns 0 with the end in *out and the aggregated size in *aggregated (-1
 * without a response); the caller checks them and clears *out.
 */
static int input_call(struct client *c, const struct trpc_call_options *opts,
                      const struct input_spec *specs, size_t n, struct outcome *out,
                      int64_t *aggregated, const char *what)
{
	struct stream *s;
	size_t i;
	int rc = 0;

	memset(out, 0, sizeof *out);
	*aggregated = -1;
	s = stream_open(c, M_STREAMING_INPUT_CALL,
	                &grpc__testing__streaming_input_call_response__descriptor, NULL, 0, opts,
	                what);
	if (s == NULL) {
		return -1;
	}
	for (i = 0; rc == 0 && i < n; i++) {
		Grpc__Testing__StreamingInputCallRequest req =
		    GRPC__TESTING__STREAMING_INPUT_CALL_REQUEST__INIT;
		Grpc__Testing__Payload pl = GRPC__TESTING__PAYLOAD__INIT;
		Grpc__Testing__BoolValue bv;

		payload_zeros(&pl, specs[i].size);
		req.payload = &pl;
		req.expect_compressed = bool_value(&bv, specs[i].expect_compressed);
		/* A message that does not expect compression goes out plain,
		 * even on a compressed call (per-message flag). */
		rc = trpc_ccall_send_ex(s->call, &req.base,
		                        specs[i].expect_compressed ? 0 : TRPC_SEND_NO_COMPRESS);
		/* A server that rejects a request may end the call before the
		 * rest are sent: the end then tells what happened. */
		if (rc == TRPC_ERR_CLOSED) {
			rc = 0;
			break;
		}
		if (rc < 0) {
			rc = fail(c, "%s: trpc_ccall_send: %s", what, trpc_strerror(rc));
		}
	}
	if (rc == 0 && i == n) {
		rc = stream_close_send_if_open(c, s, what);
	}
	if (rc == 0) {
		rc = stream_wait_close(c, s, STREAM_WAIT_MS, what);
	}
	if (rc == 0) {
		if (s->n_msgs > 0) {
			ProtobufCMessage *msg = stream_next(c, s, 0, what);

			if (msg == NULL) {
				rc = -1;
			} else {
				*aggregated = ((Grpc__Testing__StreamingInputCallResponse *)msg)
				                  ->aggregated_payload_size;
				protobuf_c_message_free_unpacked(msg, NULL);
			}
		}
		*out = s->end;
		memset(&s->end, 0, sizeof s->end);
	}
	stream_end(s);
	return rc;
}

/* A StreamingInputCall that must succeed with `want` aggregated bytes. */
static int input_expect_sum(struct client *c, const struct trpc_call_options *opts,
                            const struct input_spec *specs, size_t n, int64_t want,
                            const char *what)
{
	struct outcome out;
	int64_t sum;
	int rc;

	rc = input_call(c, opts, specs, n, &out, &sum, what);
	if (rc == 0) {
		rc = expect_ok(c, &out, what);
	}
	if (rc == 0 && sum != want) {
		rc = sum < 0 ? fail(c, "%s: status OK but no response", what)
		             : fail(c, "%s: aggregated_payload_size %lld, expected %lld", what,
		                    (long long)sum, (long long)want);
	}
	outcome_clear(&out);
	return rc;
}

/*
 * StreamingOutputCall asking for `specs`: passes when exactly those
 * responses arrive, in order, and the call ends OK.
 */
static int output_call(struct client *c, const struct response_spec *specs, size_t n,
                       const char *what)
{
	struct trpc_call_options opts = call_options();
	struct output_request r;
	struct stream *s;
	size_t i;
	int rc = 0;

	output_request_init(&r, specs, n, 0);
	s = stream_open(c, M_STREAMING_OUTPUT_CALL,
	                &grpc__testing__streaming_output_call_response__descriptor, &r.req.base,
	                TRPC_START_HALF_CLOSE, &opts, what);
	if (s == NULL) {
		return -1;
	}
	for (i = 0; rc == 0 && i < n; i++) {
		rc = stream_expect_payload(c, s, (size_t)specs[i].size, what);
	}
	if (rc == 0) {
		rc = stream_expect_ok_end(c, s, what);
	}
	stream_end(s);
	return rc;
}

/* Checks the echoed custom metadata of a finished call. */
static int check_echo(struct client *c, struct stream *s, const char *what)
{
	const struct trpc_md *t = outcome_trailer(&s->end, ECHO_TRAILING_KEY);
	char got[300];

	if (s->echo_initial == NULL) {
		return fail(c, "%s: response headers lack %s", what, ECHO_INITIAL_KEY);
	}
	if (s->echo_initial_len != sizeof ECHO_INITIAL_VALUE - 1 ||
	    memcmp(s->echo_initial, ECHO_INITIAL_VALUE, s->echo_initial_len) != 0) {
		return fail(c, "%s: header %s is \"%s\", expected \"%s\"", what, ECHO_INITIAL_KEY,
		            escape(s->echo_initial, s->echo_initial_len, got, sizeof got),
		            ECHO_INITIAL_VALUE);
	}
	if (t == NULL) {
		return fail(c, "%s: trailers lack %s", what, ECHO_TRAILING_KEY);
	}
	if (t->len != sizeof ECHO_TRAILING_VALUE - 1 ||
	    memcmp(t->value, ECHO_TRAILING_VALUE, t->len) != 0) {
		return fail(c, "%s: trailer %s is \"%s\", expected \"\\xab\\xab\\xab\"", what,
		            ECHO_TRAILING_KEY, escape(t->value, t->len, got, sizeof got));
	}
	return 0;
}

/* ============================================================ test cases */

static int case_empty_unary(struct client *c)
{
	Grpc__Testing__Empty req = GRPC__TESTING__EMPTY__INIT;
	struct trpc_call_options opts = call_options();
	ProtobufCMessage *resp;
	struct outcome out;
	int rc;

	rc = unary(c, M_EMPTY_CALL, &req.base, &grpc__testing__empty__descriptor, &opts, &resp,
	           &out, "EmptyCall");
	if (rc == 0) {
		rc = expect_ok(c, &out, "EmptyCall");
	}
	if (resp != NULL) {
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	outcome_clear(&out);
	return rc;
}

static int case_large_unary(struct client *c)
{
	struct trpc_call_options opts = call_options();
	Grpc__Testing__SimpleRequest req;
	Grpc__Testing__Payload pl;

	large_request(&req, &pl);
	return unary_expect_payload(c, &req, &opts, LARGE_RESPONSE_SIZE, "UnaryCall");
}

static int case_client_streaming(struct client *c)
{
	static const struct input_spec specs[] = {{27182, -1}, {8, -1}, {1828, -1}, {45904, -1}};
	struct trpc_call_options opts = call_options();

	return input_expect_sum(c, &opts, specs, 4, 74922, "StreamingInputCall");
}

static int case_server_streaming(struct client *c)
{
	static const struct response_spec specs[] = {{31415, -1}, {9, -1}, {2653, -1}, {58979, -1}};

	return output_call(c, specs, 4, "StreamingOutputCall");
}

static int case_ping_pong(struct client *c)
{
	static const struct response_spec specs[] = {{31415, -1}, {9, -1}, {2653, -1}, {58979, -1}};
	static const size_t payloads[] = {27182, 8, 1828, 45904};
	struct trpc_call_options opts = call_options();
	const char *what = "FullDuplexCall";
	struct stream *s;
	size_t i;
	int rc = 0;

	s = duplex_open(c, NULL, &opts, what);
	if (s == NULL) {
		return -1;
	}
	for (i = 0; rc == 0 && i < 4; i++) {
		struct output_request r;

		output_request_init(&r, &specs[i], 1, payloads[i]);
		rc = stream_send(c, s, &r.req.base, what);
		if (rc == 0) {
			rc = stream_expect_payload(c, s, (size_t)specs[i].size, what);
		}
	}
	if (rc == 0) {
		rc = stream_close_send(c, s, what);
	}
	if (rc == 0) {
		rc = stream_expect_ok_end(c, s, what);
	}
	stream_end(s);
	return rc;
}

static int case_empty_stream(struct client *c)
{
	struct trpc_call_options opts = call_options();
	const char *what = "FullDuplexCall";
	struct stream *s;
	int rc;

	s = duplex_open(c, NULL, &opts, what);
	if (s == NULL) {
		return -1;
	}
	rc = stream_close_send(c, s, what);
	if (rc == 0) {
		rc = stream_expect_ok_end(c, s, what);
	}
	stream_end(s);
	return rc;
}

/*
 * A 1 ms deadline on a FullDuplexCall carrying 27182 bytes that asks for no
 * response: the server just waits, so the deadline must end the call. The
 * send may already find the call over, as the suite allows.
 */
static int case_timeout_on_sleeping_server(struct client *c)
{
	struct trpc_call_options opts = call_options();
	const char *what = "FullDuplexCall with a 1 ms deadline";
	struct output_request r;
	struct stream *s;
	int rc;

	opts.timeout_ms = 1;
	output_request_init(&r, NULL, 0, 27182);
	s = duplex_open(c, NULL, &opts, what);
	if (s == NULL) {
		return -1;
	}
	rc = trpc_ccall_send(s->call, &r.req.base);
	if (rc < 0 && rc != TRPC_ERR_CLOSED) {
		rc = fail(c, "%s: trpc_ccall_send: %s", what, trpc_strerror(rc));
	} else {
		rc = stream_expect_end(c, s, CLOSE_GRACE_MS, TRPC_STATUS_DEADLINE_EXCEEDED, NULL,
		                       what);
	}
	stream_end(s);
	return rc;
}

static int case_cancel_after_begin(struct client *c)
{
	struct trpc_call_options opts = call_options();
	const char *what = "StreamingInputCall cancelled before any request";
	struct stream *s;
	int rc;

	s = stream_open(c, M_STREAMING_INPUT_CALL,
	                &grpc__testing__streaming_input_call_response__descriptor, NULL, 0, &opts,
	                what);
	if (s == NULL) {
		return -1;
	}
	trpc_ccall_cancel(s->call);
	rc = stream_expect_end(c, s, CLOSE_GRACE_MS, TRPC_STATUS_CANCELLED, NULL, what);
	stream_end(s);
	return rc;
}

static int case_cancel_after_first_response(struct client *c)
{
	static const struct response_spec spec = {31415, -1};
	struct trpc_call_options opts = call_options();
	const char *what = "FullDuplexCall cancelled after the first response";
	struct output_request r;
	struct stream *s;
	int rc;

	output_request_init(&r, &spec, 1, 27182);
	s = duplex_open(c, &r.req.base, &opts, what);
	if (s == NULL) {
		return -1;
	}
	rc = stream_expect_payload(c, s, (size_t)spec.size, what);
	if (rc == 0) {
		trpc_ccall_cancel(s->call);
		rc = stream_expect_end(c, s, CLOSE_GRACE_MS, TRPC_STATUS_CANCELLED, NULL, what);
	}
	stream_end(s);
	return rc;
}

/* UnaryCall asking for status UNKNOWN with `message`, expecting it back. */
static int unary_echo_status(struct client *c, const char *message, const char *what)
{
	Grpc__Testing__SimpleRequest req = GRPC__TESTING__SIMPLE_REQUEST__INIT;
	Grpc__Testing__EchoStatus st = GRPC__TESTING__ECHO_STATUS__INIT;
	struct trpc_call_options opts = call_options();

	st.code = TRPC_STATUS_UNKNOWN;
	st.message = (char *)message;
	req.response_status = &st;
	return unary_expect_status(c, M_UNARY_CALL, &req.base,
	                           &grpc__testing__simple_response__descriptor, &opts,
	                           TRPC_STATUS_UNKNOWN, message, what);
}

#define TEST_STATUS_MESSAGE "test status message"

static int case_status_code_and_message(struct client *c)
{
	struct trpc_call_options opts = call_options();
	const char *what = "FullDuplexCall with response_status";
	struct output_request r;
	struct stream *s;
	int rc;

	rc = unary_echo_status(c, TEST_STATUS_MESSAGE, "UnaryCall with response_status");
	if (rc < 0) {
		return rc;
	}
	output_request_init(&r, NULL, 0, 0);
	output_request_status(&r, TRPC_STATUS_UNKNOWN, TEST_STATUS_MESSAGE);
	s = duplex_open(c, NULL, &opts, what);
	if (s == NULL) {
		return -1;
	}
	rc = stream_send(c, s, &r.req.base, what);
	if (rc == 0) {
		/* The server may end the call on the request, before this. */
		rc = stream_close_send_if_open(c, s, what);
	}
	if (rc == 0) {
		rc = stream_expect_end(c, s, STREAM_WAIT_MS, TRPC_STATUS_UNKNOWN,
		                       TEST_STATUS_MESSAGE, what);
	}
	stream_end(s);
	return rc;
}

static int case_special_status_message(struct client *c)
{
	return unary_echo_status(c,
	                         "\t\ntest with whitespace\r\nand Unicode BMP \xe2\x98\xba and "
	                         "non-BMP \xf0\x9f\x98\x88\t\n",
	                         "UnaryCall with a special status message");
}

static int case_custom_metadata(struct client *c)
{
	static const struct response_spec spec = {LARGE_RESPONSE_SIZE, -1};
	struct trpc_call_options opts = call_options();
	Grpc__Testing__SimpleRequest req;
	Grpc__Testing__Payload pl;
	struct output_request r;
	struct stream *s;
	const char *what;
	ProtobufCMessage *msg;
	int rc;

	opts.metadata = echo_metadata;
	opts.n_metadata = sizeof echo_metadata / sizeof echo_metadata[0];

	/* Unary, through the asynchronous API: trpc_unary() shows no headers. */
	what = "UnaryCall with custom metadata";
	large_request(&req, &pl);
	s = stream_open(c, M_UNARY_CALL, &grpc__testing__simple_response__descriptor, &req.base,
	                TRPC_START_HALF_CLOSE, &opts, what);
	if (s == NULL) {
		return -1;
	}
	msg = stream_next(c, s, STREAM_WAIT_MS, what);
	rc = msg != NULL ? 0 : -1;
	if (rc == 0) {
		rc = check_payload(c, ((Grpc__Testing__SimpleResponse *)msg)->payload,
		                   LARGE_RESPONSE_SIZE, what);
		protobuf_c_message_free_unpacked(msg, NULL);
	}
	if (rc == 0) {
		rc = stream_expect_ok_end(c, s, what);
	}
	if (rc == 0) {
		rc = check_echo(c, s, what);
	}
	stream_end(s);
	if (rc < 0) {
		return rc;
	}

	what = "FullDuplexCall with custom metadata";
	output_request_init(&r, &spec, 1, LARGE_REQUEST_SIZE);
	s = duplex_open(c, NULL, &opts, what);
	if (s == NULL) {
		return -1;
	}
	rc = stream_send(c, s, &r.req.base, what);
	if (rc == 0) {
		rc = stream_close_send(c, s, what);
	}
	if (rc == 0) {
		rc = stream_expect_payload(c, s, LARGE_RESPONSE_SIZE, what);
	}
	if (rc == 0) {
		rc = stream_expect_ok_end(c, s, what);
	}
	if (rc == 0) {
		rc = check_echo(c, s, what);
	}
	stream_end(s);
	return rc;
}

/* An Empty request to method, expecting UNIMPLEMENTED. */
static int empty_expect_unimplemented(struct client *c, const char *method, const char *what)
{
	Grpc__Testing__Empty req = GRPC__TESTING__EMPTY__INIT;
	struct trpc_call_options opts = call_options();

	return unary_expect_status(c, method, &req.base, &grpc__testing__empty__descriptor, &opts,
	                           TRPC_STATUS_UNIMPLEMENTED, NULL, what);
}

static int case_unimplemented_method(struct client *c)
{
	return empty_expect_unimplemented(c, M_UNIMPLEMENTED_CALL, "TestService/UnimplementedCall");
}

static int case_unimplemented_service(struct client *c)
{
	return empty_expect_unimplemented(c, M_UNIMPLEMENTED_SERVICE_CALL,
	                                  "UnimplementedService/UnimplementedCall");
}

/*
 * First the probe: a request that claims to be compressed, sent
 * uncompressed, which a server implementing the check refuses with
 * INVALID_ARGUMENT. Then the same request gzip-compressed, and one that
 * claims no compression sent uncompressed; both must succeed.
 */
static int case_client_compressed_unary(struct client *c)
{
	struct trpc_call_options opts = call_options();
	Grpc__Testing__SimpleRequest req;
	Grpc__Testing__Payload pl;
	Grpc__Testing__BoolValue expect;
	int rc;

	large_request(&req, &pl);
	req.expect_compressed = bool_value(&expect, 1);
	opts.compression = "identity";
	rc = unary_expect_status(c, M_UNARY_CALL, &req.base,
	                         &grpc__testing__simple_response__descriptor, &opts,
	                         TRPC_STATUS_INVALID_ARGUMENT, NULL,
	                         "probe: uncompressed UnaryCall with expect_compressed=true");
	if (rc == 0) {
		opts.compression = "gzip";
		rc = unary_expect_payload(c, &req, &opts, LARGE_RESPONSE_SIZE,
		                          "gzip UnaryCall with expect_compressed=true");
	}
	if (rc == 0) {
		req.expect_compressed = bool_value(&expect, 0);
		opts.compression = "identity";
		rc = unary_expect_payload(c, &req, &opts, LARGE_RESPONSE_SIZE,
		                          "uncompressed UnaryCall with expect_compressed=false");
	}
	return rc;
}

/*
 * response_compressed true, then false. Whether the response message was
 * compressed shows only in its frame's flag, which the client API does not
 * expose; the suite makes that check optional, so the payload is what is
 * checked.
 */
static int case_server_compressed_unary(struct client *c)
{
	struct trpc_call_options opts = call_options();
	Grpc__Testing__SimpleRequest req;
	Grpc__Testing__Payload pl;
	Grpc__Testing__BoolValue compressed;
	int rc;

	large_request(&req, &pl);
	req.response_compressed = bool_value(&compressed, 1);
	rc = unary_expect_payload(c, &req, &opts, LARGE_RESPONSE_SIZE,
	                          "UnaryCall with response_compressed=true");
	if (rc == 0) {
		req.response_compressed = bool_value(&compressed, 0);
		rc = unary_expect_payload(c, &req, &opts, LARGE_RESPONSE_SIZE,
		                          "UnaryCall with response_compressed=false");
	}
	return rc;
}

/*
 * The probe as for the unary case (half-closed after its request, so that a
 * server without the check answers OK at once instead of waiting for the
 * deadline), then a gzip call with a request that expects compression and
 * one that does not, which is sent uncompressed (TRPC_SEND_NO_COMPRESS).
 */
static int case_client_compressed_streaming(struct client *c)
{
	static const struct input_spec probe[] = {{27182, 1}};
	static const struct input_spec specs[] = {{27182, 1}, {45904, 0}};
	const char *what = "probe: uncompressed StreamingInputCall with expect_compressed=true";
	struct trpc_call_options opts = call_options();
	struct outcome out;
	int64_t sum;
	int rc;

	opts.compression = "identity";
	rc = input_call(c, &opts, probe, 1, &out, &sum, what);
	if (rc == 0) {
		rc = expect_status(c, &out, TRPC_STATUS_INVALID_ARGUMENT, NULL, what);
	}
	outcome_clear(&out);
	if (rc < 0) {
		return rc;
	}
	opts.compression = "gzip";
	return input_expect_sum(c, &opts, specs, 2, 73086, "gzip StreamingInputCall");
}

/* As server_compressed_unary: the payloads are checked, not the flags. */
static int case_server_compressed_streaming(struct client *c)
{
	static const struct response_spec specs[] = {{31415, 1}, {92653, 0}};

	return output_call(c, specs, 2, "StreamingOutputCall with compressed=true,false");
}

struct test_case {
	const char *name;
	int (*run)(struct client *c);
};

static const struct test_case test_cases[] = {
    {"empty_unary", case_empty_unary},
    {"large_unary", case_large_unary},
    {"client_streaming", case_client_streaming},
    {"server_streaming", case_server_streaming},
    {"ping_pong", case_ping_pong},
    {"empty_stream", case_empty_stream},
    {"timeout_on_sleeping_server", case_timeout_on_sleeping_server},
    {"cancel_after_begin", case_cancel_after_begin},
    {"cancel_after_first_response", case_cancel_after_first_response},
    {"status_code_and_message", case_status_code_and_message},
    {"special_status_message", case_special_status_message},
    {"custom_metadata", case_custom_metadata},
    {"unimplemented_method", case_unimplemented_method},
    {"unimplemented_service", case_unimplemented_service},
    {"client_compressed_unary", case_client_compressed_unary},
    {"server_compressed_unary", case_server_compressed_unary},
    {"client_compressed_streaming", case_client_compressed_streaming},
    {"server_compressed_streaming", case_server_compressed_streaming},
};

#define N_TEST_CASES (sizeof test_cases / sizeof test_cases[0])

/* ============================================================ command line */

struct options {
	const char *server_host;
	long server_port;
	const char *test_case;
	long use_tls;
	long use_test_ca;
	const char *ca_file;
	const char *server_host_override;
};

#define OPT(name, kind, field)                                                                     \
	{                                                                                          \
		name, INTEROP_FLAG_##kind, offsetof(struct options, field), NULL, NULL             \
	}

static const struct interop_flag opt_defs[] = {
    OPT("server_host", STRING, server_host),
    OPT("server_port", PORT, server_port),
    OPT("test_case", STRING, test_case),
    OPT("use_tls", BOOL, use_tls),
    OPT("use_test_ca", BOOL, use_test_ca),
    OPT("ca_file", STRING, ca_file),
    OPT("server_host_override", STRING, server_host_override),
};

#define N_OPT_DEFS (sizeof opt_defs / sizeof opt_defs[0])

static void usage(FILE *f, const char *prog)
{
	size_t i;

	fprintf(f,
	        "usage: %s [--server_host H] [--server_port N] [--test_case NAME|all]\n"
	        "       [--use_tls[=BOOL]] [--use_test_ca[=BOOL]] [--ca_file F]\n"
	        "       [--server_host_override NAME]\n"
	        "test cases:",
	        prog);
	for (i = 0; i < N_TEST_CASES; i++) {
		fprintf(f, "%s%s", i % 4 == 0 ? "\n  " : " ", test_cases[i].name);
	}
	fprintf(f, "\n");
}

static const struct interop_flags flags = {
    .defs = opt_defs,
    .n_defs = N_OPT_DEFS,
    .usage = usage,
    .pass_unknown = 0,
};

/* The flags (interop_flags_parse()) and their consistency. Returns 1 to
 * run, 0 after --help, -1 on a bad argument. */
static int parse_args(int argc, char **argv, struct options *o)
{
	int n = interop_flags_parse(&flags, argc, argv, o);

	if (n <= 0) {
		return n;
	}
	if (o->use_test_ca && o->ca_file == NULL) {
		fprintf(stderr,
		        "%s: --use_test_ca needs --ca_file (there is no built-in test CA)\n",
		        argv[0]);
		return -1;
	}
	return 1;
}

/* ============================================================ running */

/* The case the watchdog names; only written between cases. */
static const char *volatile current_case;

/* SIGALRM: a case outlived CASE_LIMIT_S. Async-signal-safe calls only. */
static void on_watchdog(int sig UNUSED)
{
	static const char pre[] = "interop-client: ";
	static const char post[] = ": FAILED: no result within the case time limit; "
	                           "a runtime call never returned\n";
	const char *name = current_case != NULL ? current_case : "?";
	ssize_t ignored;

	ignored = write(STDERR_FILENO, pre, sizeof pre - 1);
	ignored = write(STDERR_FILENO, name, strlen(name));
	ignored = write(STDERR_FILENO, post, sizeof post - 1);
	(void)ignored;
	_exit(1);
}

static trpc_channel *channel_open(const struct options *o, char *err, size_t errlen)
{
	struct trpc_channel_config cfg;
	char target[300];
	int bare_ipv6 = strchr(o->server_host, ':') != NULL && o->server_host[0] != '[';
	const char *why = NULL;
	trpc_channel *ch;
	int n;

	n = snprintf(target, sizeof target, bare_ipv6 ? "[%s]:%ld" : "%s:%ld", o->server_host,
	             o->server_port);
	if (n < 0 || n >= (int)sizeof target) {
		snprintf(err, errlen, "--server_host is too long");
		return NULL;
	}
	trpc_channel_config_init(&cfg);
	cfg.target = target;
	cfg.use_tls = o->use_tls != 0;
	if (cfg.use_tls) {
		cfg.ca_file = o->ca_file;
		cfg.server_name = o->server_host_override;
	}
	cfg.connect_timeout_ms = CONNECT_TIMEOUT_MS;
	/* One attempt per call: the cases check exactly what a call does. */
	cfg.max_retries = 0;
	cfg.user_agent = "tasker-interop-client";
	ch = trpc_channel_new(&cfg, &why);
	if (ch == NULL) {
		snprintf(err, errlen, "cannot create the channel to %s: %s", target,
		         why != NULL ? why : "unknown error");
	}
	return ch;
}

/* Runs one case on a channel of its own, so that no case sees the
 * connection state (or circuit breaker) another left behind. */
static int run_case(const struct options *o, const struct test_case *tc)
{
	struct client c;
	int rc;

	memset(&c, 0, sizeof c);
	current_case = tc->name;
	alarm(CASE_LIMIT_S);
	c.ch = channel_open(o, c.err, sizeof c.err);
	rc = c.ch != NULL ? tc->run(&c) : -1;
	if (c.ch != NULL) {
		trpc_channel_free(c.ch);
	}
	alarm(0);
	if (rc < 0) {
		fprintf(stderr, "interop-client: %s: FAILED: %s\n", tc->name,
		        c.err[0] != '\0' ? c.err : "no reason recorded");
		return -1;
	}
	printf("%s: passed\n", tc->name);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	struct options o = {
	    .server_host = "localhost",
	    .server_port = 10000,
	    .test_case = "large_unary",
	};
	struct sigaction sa;
	int all, failed = 0, found = 0, n;
	size_t i;

	n = parse_args(argc, argv, &o);
	if (n <= 0) {
		if (n < 0) {
			usage(stderr, argv[0]);
		}
		return n < 0 ? 2 : 0;
	}
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_watchdog;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	/* A peer closing mid-write must show up as a call error. */
	signal(SIGPIPE, SIG_IGN);
	trpc_log_set_level(TRPC_LOG_WARN);

	all = strcmp(o.test_case, "all") == 0;
	for (i = 0; i < N_TEST_CASES; i++) {
		if (all || strcmp(o.test_case, test_cases[i].name) == 0) {
			found = 1;
			failed += run_case(&o, &test_cases[i]) < 0;
		}
	}
	if (!found) {
		fprintf(stderr, "%s: unknown --test_case '%s'\n", argv[0], o.test_case);
		usage(stderr, argv[0]);
		return 2;
	}
	return failed != 0 ? 1 : 0;
}

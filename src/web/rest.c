/*
 * rest: the HTTP/1.1 REST server (rest.h).
 *
 * Life of a request: libmicrohttpd calls on_request() on the connection's
 * thread, first when the headers are in (the route is matched and the
 * credentials checked here, so that a refused request never has its body
 * read), then for each piece of the body, and once more when the request
 * is complete. The operation then runs on an op thread as a job; the
 * connection thread waits for it until the request's deadline.
 *
 * Memory: each request has an arena (struct rarena) for its path and query
 * values and for the request and response messages. The arena is shared
 * by the request and its job and freed by whichever lets go of it last, so
 * an operation that outlives its timed-out request still has its memory.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "web/openapi.h"
#include "web/pbjson.h"
#include "web/rest.h"

#define MAX_PARAMS       8
#define REQUEST_ID_MAX   128
#define QUEUE_PER_THREAD 64 /* jobs waiting per op thread before 503 */
#define NS_PER_MS        1000000LL

#define CORS_METHODS "GET, POST, PUT, PATCH, DELETE, OPTIONS"
#define CORS_HEADERS "authorization, content-type, x-api-key, x-request-id"
#define CORS_EXPOSE  "x-request-id, retry-after, x-auth-failure-reason, x-auth-failure-severity"

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ================================================================== settings */

struct cfg_row {
	const char *key;
	size_t offset;
	int min, max;
};

static const struct cfg_row cfg_rows[] = {
    {"enabled", offsetof(struct rest_config, enabled), 0, 1},
    {"request_timeout_ms", offsetof(struct rest_config, request_timeout_ms), 1, 3600000},
    {"config_endpoint_enabled", offsetof(struct rest_config, config_endpoint_enabled), 0, 1},
    {"max_body_bytes", offsetof(struct rest_config, max_body_bytes), 0, 64 * 1024 * 1024},
    {"max_connections", offsetof(struct rest_config, max_connections), 1, 100000},
    {"connection_timeout_s", offsetof(struct rest_config, connection_timeout_s), 0, 86400},
    {"threads", offsetof(struct rest_config, threads), 1, 256},
};

#define N_CFG_ROWS (sizeof(cfg_rows) / sizeof(cfg_rows[0]))

int rest_config_init(struct rest_config *c, const char *default_bind)
{
	memset(c, 0, sizeof(*c));
	c->enabled = 1;
	c->request_timeout_ms = 30000;
	c->max_body_bytes = 1024 * 1024;
	c->max_connections = 256;
	c->connection_timeout_s = 60;
	c->threads = 8;
	return rest_config_set_bind(c, default_bind);
}

void rest_config_clear(struct rest_config *c)
{
	free(c->bind);
	c->bind = NULL;
}

int rest_config_set_bind(struct rest_config *c, const char *value)
{
	char *b = strdup(value);

	if (b == NULL)
		return TRPC_ERR_NOMEM;
	free(c->bind);
	c->bind = b;
	return 0;
}

/* Integers, and true/false/yes/no/on/off for the 0..1 keys. */
static int parse_value(const struct cfg_row *r, const char *v, int *out)
{
	static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no",
	                                                                       "off"};
	char *end;
	long n;

	if (r->min == 0 && r->max == 1)
		for (size_t i = 0; i < 3; i++) {
			if (strcasecmp(v, yes[i]) == 0)
				return *out = 1, 0;
			if (strcasecmp(v, no[i]) == 0)
				return *out = 0, 0;
		}
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || n < r->min || n > r->max)
		return -1;
	*out = (int)n;
	return 0;
}

int rest_config_set(struct rest_config *c, const char *section, const char *key, const char *value,
                    const char **why)
{
	if (strcmp(section, "web") != 0)
		return TRPC_ERR_CONFIG;
	for (size_t i = 0; i < N_CFG_ROWS; i++) {
		if (strcmp(cfg_rows[i].key, key) != 0)
			continue;
		if (parse_value(&cfg_rows[i], value,
		                (int *)(void *)((char *)c + cfg_rows[i].offset)) != 0) {
			*why = cfg_rows[i].min == 0 && cfg_rows[i].max == 1
			           ? "expected true or false"
			           : "expected an integer in range";
			return TRPC_ERR_INVALID;
		}
		return 0;
	}
	return TRPC_ERR_CONFIG;
}

int rest_config_key(size_t i, const char **section, const char **key)
{
	if (i >= N_CFG_ROWS)
		return TRPC_ERR_NOT_FOUND;
	*section = "web";
	*key = cfg_rows[i].key;
	return 0;
}

/* ================================================================== arena */

/* Memory of one request, freed at once. Shared by the request and its job
 * (refs), so that an operation outliving its request keeps its memory. */
struct chunk {
	struct chunk *next;
	size_t used, size;
	max_align_t data[];
};

struct rarena {
	ProtobufCAllocator pa;
	struct chunk *head;
	atomic_int refs;
};

static void *arena_alloc(void *ud, size_t n)
{
	struct rarena *a = ud;
	struct chunk *c = a->head;
	size_t need = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);

	if (c == NULL || c->size - c->used < need) {
		size_t size = need > 8192 ? need : 8192;
		if ((c = malloc(sizeof(*c) + size)) == NULL)
			return NULL;
		c->used = 0;
		c->size = size;
		c->next = a->head;
		a->head = c;
	}
	c->used += need;
	return (char *)c->data + c->used - need;
}

static void arena_free_noop(void *ud, void *p)
{
	(void)ud;
	(void)p; /* freed with the arena */
}

static struct rarena *arena_new(void)
{
	struct rarena *a = calloc(1, sizeof(*a));

	if (a == NULL)
		return NULL;
	a->pa.alloc = arena_alloc;
	a->pa.free = arena_free_noop;
	a->pa.allocator_data = a;
	atomic_init(&a->refs, 1);
	return a;
}

static void arena_unref(struct rarena *a)
{
	struct chunk *c, *next;

	if (a == NULL || atomic_fetch_sub(&a->refs, 1) != 1)
		return;
	for (c = a->head; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	free(a);
}

static char *arena_strdup(struct rarena *a, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = arena_alloc(a, n);

	if (p != NULL)
		memcpy(p, s, n);
	return p;
}

/* ================================================================== operation threads */

/* One operation call. Lives in its request's arena; `done` and `abandoned`
 * are guarded by the pool's lock. */
struct job {
	struct job *next;
	struct rarena *arena; /* one reference held by the job */
	const struct svc_op *op;
	struct svc_env *env;
	const ProtobufCMessage *req;
	ProtobufCMessage *resp;
	struct svc_ctx ctx;
	struct svc_result res;
	int rc;
	int done;      /* the operation returned */
	int abandoned; /* the request stopped waiting */
};

struct op_pool {
	pthread_mutex_t mu;
	pthread_cond_t work_cv; /* a job was queued, or quit */
	pthread_cond_t done_cv; /* a job ended */
	struct job *head, *tail;
	int queued, max_queued;
	int quit;
	pthread_t *threads;
	int n_threads;
};

static void *op_thread(void *arg)
{
	struct op_pool *p = arg;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct job *j;
		while (p->head == NULL && !p->quit)
			pthread_cond_wait(&p->work_cv, &p->mu);
		if ((j = p->head) == NULL)
			break;
		p->head = j->next;
		if (p->head == NULL)
			p->tail = NULL;
		p->queued--;
		if (j->abandoned) { /* timed out while queued: not worth running */
			pthread_mutex_unlock(&p->mu);
			arena_unref(j->arena);
			pthread_mutex_lock(&p->mu);
			continue;
		}
		pthread_mutex_unlock(&p->mu);
		j->rc = j->op->fn(j->env, j->req, j->resp, &j->ctx, &j->res);
		pthread_mutex_lock(&p->mu);
		j->done = 1;
		if (j->abandoned) {
			pthread_mutex_unlock(&p->mu);
			arena_unref(j->arena);
			pthread_mutex_lock(&p->mu);
		} else {
			pthread_cond_broadcast(&p->done_cv);
		}
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static int pool_start(struct op_pool *p, int n)
{
	pthread_condattr_t ca;

	memset(p, 0, sizeof(*p));
	p->max_queued = n * QUEUE_PER_THREAD;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work_cv, NULL);
	pthread_cond_init(&p->done_cv, &ca);
	pthread_condattr_destroy(&ca);
	if ((p->threads = calloc((size_t)n, sizeof(*p->threads))) == NULL)
		return TRPC_ERR_NOMEM;
	for (; p->n_threads < n; p->n_threads++)
		if (pthread_create(&p->threads[p->n_threads], NULL, op_thread, p) != 0)
			return TRPC_ERR_SYSTEM;
	return 0;
}

static void pool_stop(struct op_pool *p)
{
	pthread_mutex_lock(&p->mu);
	p->quit = 1;
	/* Requests are over (the HTTP side stopped first): what is still
	 * queued was abandoned and only needs its memory back. */
	pthread_cond_broadcast(&p->work_cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->n_threads; i++)
		pthread_join(p->threads[i], NULL);
	while (p->head != NULL) {
		struct job *j = p->head;
		p->head = j->next;
		arena_unref(j->arena);
	}
	free(p->threads);
	pthread_cond_destroy(&p->work_cv);
	pthread_cond_destroy(&p->done_cv);
	pthread_mutex_destroy(&p->mu);
}

/*
 * Runs j on the pool and waits until it is done or deadline_ns passes.
 * Returns 0 (done: j->rc and j->res are set), TRPC_ERR_TIMEOUT (the job
 * is left to the pool, which frees it) or TRPC_ERR_UNAVAILABLE (queue
 * full; j was not queued).
 */
static int pool_run(struct op_pool *p, struct job *j, int64_t deadline_ns)
{
	struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000),
	                      .tv_nsec = (long)(deadline_ns % 1000000000)};
	int rc = 0;

	pthread_mutex_lock(&p->mu);
	if (p->queued >= p->max_queued || p->quit) {
		pthread_mutex_unlock(&p->mu);
		return TRPC_ERR_UNAVAILABLE;
	}
	atomic_fetch_add(&j->arena->refs, 1);
	if (p->tail != NULL)
		p->tail->next = j;
	else
		p->head = j;
	p->tail = j;
	p->queued++;
	pthread_cond_signal(&p->work_cv);
	while (!j->done) {
		if (pthread_cond_timedwait(&p->done_cv, &p->mu, &ts) == ETIMEDOUT && !j->done) {
			j->abandoned = 1;
			rc = TRPC_ERR_TIMEOUT;
			break;
		}
	}
	if (rc == 0) {
		/* The op thread saw done without abandoned: the reference is ours. */
		pthread_mutex_unlock(&p->mu);
		arena_unref(j->arena);
		return 0;
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}

/* ================================================================== routes */

/* A route with its operation found. */
struct live_route {
	const struct rest_route *r;
	const struct svc_op *op;
};

struct rest_server {
	struct MHD_Daemon *mhd;
	struct rest_config cfg;
	struct svc_env *env;
	const struct svc_table *const *tables;
	size_t n_tables;
	struct live_route *routes;
	size_t n_routes;
	struct op_pool pool;
	int port;
};

struct kv {
	const char *key, *value;
};

struct rest_request {
	struct rest_server *srv;
	struct rarena *arena; /* one reference */
	const struct live_route *route;
	char request_id[REQUEST_ID_MAX + 1];
	char method[16];
	char path[256]; /* for logs */
	struct kv params[MAX_PARAMS];
	size_t n_params;
	struct kv *query;
	size_t n_query, cap_query;
	json_t *body;
	char *upload;
	size_t upload_len, upload_cap;
	int too_large;
	int headers_done; /* routed and checked */
	int responded;    /* a response was queued */
	int64_t start_ns, deadline_ns;
	char subject[128];
	char peer[96];
	const char *authorization, *api_key; /* the credentials (arena copies), for rest_call */
};

const char *rest_param(const struct rest_request *rq, const char *name)
{
	for (size_t i = 0; i < rq->n_params; i++)
		if (strcmp(rq->params[i].key, name) == 0)
			return rq->params[i].value;
	return NULL;
}

const char *rest_query(const struct rest_request *rq, const char *name)
{
	for (size_t i = 0; i < rq->n_query; i++)
		if (strcmp(rq->query[i].key, name) == 0)
			return rq->query[i].value;
	return NULL;
}

const json_t *rest_body(const struct rest_request *rq)
{
	return rq->body;
}

ProtobufCAllocator *rest_alloc(struct rest_request *rq)
{
	return &rq->arena->pa;
}

struct svc_env *rest_env(const struct rest_request *rq)
{
	return rq->srv->env;
}

/* Matches path against pattern, capturing {params} into rq. 1 or 0. */
static int match(const char *pattern, const char *path, struct rest_request *rq)
{
	const char *p = pattern, *u = path;

	rq->n_params = 0;
	while (*p != '\0' && *u != '\0') {
		if (*p != '/' || *u != '/')
			return 0;
		p++, u++;
		size_t pl = strcspn(p, "/"), ul = strcspn(u, "/");
		if (pl > 2 && p[0] == '{' && p[pl - 1] == '}') {
			char name[64], value[256];
			if (ul == 0 || ul >= sizeof(value) || pl - 2 >= sizeof(name) ||
			    rq->n_params == MAX_PARAMS)
				return 0;
			memcpy(name, p + 1, pl - 2);
			name[pl - 2] = '\0';
			memcpy(value, u, ul);
			value[ul] = '\0';
			rq->params[rq->n_params].key = arena_strdup(rq->arena, name);
			rq->params[rq->n_params].value = arena_strdup(rq->arena, value);
			if (rq->params[rq->n_params].key == NULL ||
			    rq->params[rq->n_params].value == NULL)
				return 0;
			rq->n_params++;
		} else if (pl != ul || strncmp(p, u, pl) != 0) {
			return 0;
		}
		p += pl, u += ul;
	}
	return *p == '\0' && *u == '\0';
}

static int is_uuid(const char *s)
{
	if (strlen(s) != 36)
		return 0;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return 0;
		} else if (!isxdigit((unsigned char)s[i])) {
			return 0;
		}
	}
	return 1;
}

/* ================================================================== responses */

/* Extra response headers of one reply. */
struct headers {
	const char *k[6], *v[6];
	int n;
};

static void hdr_add(struct headers *h, const char *k, const char *v)
{
	if (v != NULL && h->n < 6) {
		h->k[h->n] = k;
		h->v[h->n] = v;
		h->n++;
	}
}

static void log_reply(const struct rest_request *rq, int status)
{
	trpc_log(TRPC_LOG_DEBUG, "REST %s %s -> %d in %" PRId64 " ms (request %s, %s)", rq->method,
	         rq->path, status, (int64_t)((now_ns() - rq->start_ns) / NS_PER_MS), rq->request_id,
	         rq->peer[0] != '\0' ? rq->peer : "?");
}

/* Queues `len` bytes of `data` (malloc'd; taken) as the response. */
static enum MHD_Result reply_raw(struct rest_request *rq, struct MHD_Connection *c, int status,
                                 char *data, size_t len, const char *content_type,
                                 const struct headers *h)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
	    len, data != NULL ? data : (char *)"",
	    data != NULL ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ok;

	if (r == NULL) {
		free(data);
		return MHD_NO;
	}
	if (content_type != NULL)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	MHD_add_response_header(r, "X-Request-Id", rq->request_id);
	MHD_add_response_header(r, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_ORIGIN, "*");
	MHD_add_response_header(r, "Access-Control-Expose-Headers", CORS_EXPOSE);
	for (int i = 0; h != NULL && i < h->n; i++)
		MHD_add_response_header(r, h->k[i], h->v[i]);
	ok = MHD_queue_response(c, (unsigned)status, r);
	MHD_destroy_response(r);
	log_reply(rq, status);
	return ok;
}

/* Queues JSON (a reference taken). */
static enum MHD_Result reply_json(struct rest_request *rq, struct MHD_Connection *c, int status,
                                  json_t *body, const struct headers *h)
{
	size_t len = 0;
	char *text = pbjson_dumps(body, &len);

	json_decref(body);
	if (text == NULL) {
		static const char oom[] =
		    "{\"error\":{\"code\":\"INTERNAL_ERROR\",\"message\":\"out of memory\"}}";
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		text = strdup(oom);
		len = text != NULL ? sizeof(oom) - 1 : 0;
	}
	return reply_raw(rq, c, status, text, len, "application/json", h);
}

static enum MHD_Result reply_error(struct rest_request *rq, struct MHD_Connection *c, int status,
                                   const char *code, const struct headers *h, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static enum MHD_Result reply_error(struct rest_request *rq, struct MHD_Connection *c, int status,
                                   const char *code, const struct headers *h, const char *fmt, ...)
{
	char msg[700];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rq->responded = 1;
	return reply_json(rq, c, status,
	                  json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", msg), h);
}

/* The HTTP status and error code of an operation's failure (§2.1). */
static void map_status(const struct svc_result *res, int *http, const char **code)
{
	switch (res->status) {
	case TRPC_STATUS_INVALID_ARGUMENT:
	case TRPC_STATUS_FAILED_PRECONDITION:
	case TRPC_STATUS_OUT_OF_RANGE:
		*http = MHD_HTTP_BAD_REQUEST, *code = "BAD_REQUEST";
		break;
	case TRPC_STATUS_NOT_FOUND:
		*http = MHD_HTTP_NOT_FOUND, *code = "NOT_FOUND";
		break;
	case TRPC_STATUS_ALREADY_EXISTS:
	case TRPC_STATUS_ABORTED:
		*http = MHD_HTTP_CONFLICT, *code = "CONFLICT";
		break;
	case TRPC_STATUS_UNAUTHENTICATED:
		*http = MHD_HTTP_UNAUTHORIZED, *code = "UNAUTHORIZED";
		break;
	case TRPC_STATUS_PERMISSION_DENIED:
		*http = MHD_HTTP_FORBIDDEN, *code = "FORBIDDEN";
		break;
	case TRPC_STATUS_DEADLINE_EXCEEDED:
	case TRPC_STATUS_CANCELLED:
		*http = MHD_HTTP_REQUEST_TIMEOUT, *code = "TIMEOUT";
		break;
	case TRPC_STATUS_UNAVAILABLE:
	case TRPC_STATUS_RESOURCE_EXHAUSTED:
		*http = MHD_HTTP_SERVICE_UNAVAILABLE, *code = "SERVICE_UNAVAILABLE";
		break;
	case TRPC_STATUS_UNIMPLEMENTED:
		*http = MHD_HTTP_NOT_IMPLEMENTED, *code = "NOT_IMPLEMENTED";
		break;
	default:
		*http = MHD_HTTP_INTERNAL_SERVER_ERROR;
		/* svc_fail_err's fixed message for a database failure */
		*code =
		    strncmp(res->message, "database", 8) == 0 ? "DATABASE_ERROR" : "INTERNAL_ERROR";
	}
	if (res->rest_code != NULL)
		*code = res->rest_code;
}

static enum MHD_Result reply_failure(struct rest_request *rq, struct MHD_Connection *c,
                                     const struct svc_result *res, json_t *body)
{
	struct headers h = {0};
	char retry[16];
	const char *code;
	int http;

	map_status(res, &http, &code);
	if (res->retry_after_s > 0) {
		snprintf(retry, sizeof(retry), "%d", res->retry_after_s);
		hdr_add(&h, MHD_HTTP_HEADER_RETRY_AFTER, retry);
	}
	if (body != NULL)
		return reply_json(rq, c, http, body, &h);
	return reply_error(rq, c, http, code, &h, "%s",
	                   res->message[0] != '\0' ? res->message : trpc_status_name(res->status));
}

/* ================================================================== requests */

static int valid_request_id(const char *s)
{
	size_t n = 0;

	for (; s[n] != '\0'; n++)
		if (n >= REQUEST_ID_MAX || !(isalnum((unsigned char)s[n]) || strchr("-_.:", s[n])))
			return 0;
	return n > 0;
}

static void new_request_id(char out[REQUEST_ID_MAX + 1])
{
	uint8_t b[16];

	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
		/* not expected on Linux; a request id need not be unguessable */
		uint64_t x = (uint64_t)now_ns() ^ (uint64_t)(uintptr_t)out;
		for (size_t i = 0; i < sizeof(b); i++, x = x * 6364136223846793005ULL + 1)
			b[i] = (uint8_t)(x >> 56);
	}
	b[6] = (uint8_t)(0x40 | (b[6] & 0x0F)); /* version 4 */
	b[8] = (uint8_t)(0x80 | (b[8] & 0x3F));
	snprintf(out, REQUEST_ID_MAX + 1,
	         "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
	         b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
	         b[15]);
}

static enum MHD_Result on_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
	struct rest_request *rq = cls;

	if (rq->n_query == rq->cap_query) {
		size_t cap = rq->cap_query ? rq->cap_query * 2 : 8;
		struct kv *q = arena_alloc(rq->arena, cap * sizeof(*q));
		if (q == NULL)
			return MHD_NO;
		if (rq->n_query > 0)
			memcpy(q, rq->query, rq->n_query * sizeof(*q));
		rq->query = q;
		rq->cap_query = cap;
	}
	rq->query[rq->n_query].key = arena_strdup(rq->arena, key);
	rq->query[rq->n_query].value = arena_strdup(rq->arena, value != NULL ? value : "");
	if (rq->query[rq->n_query].key == NULL || rq->query[rq->n_query].value == NULL)
		return MHD_NO;
	rq->n_query++;
	return MHD_YES;
}

static void peer_of(struct MHD_Connection *c, char *buf, size_t size)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	char host[64], port[16];

	buf[0] = '\0';
	if (ci == NULL || ci->client_addr == NULL)
		return;
	socklen_t len = ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
	                                                       : sizeof(struct sockaddr_in);
	if (getnameinfo(ci->client_addr, len, host, sizeof(host), port, sizeof(port),
	                NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		snprintf(buf, size, "%s:%s:%s",
		         ci->client_addr->sa_family == AF_INET6 ? "ipv6" : "ipv4", host, port);
}

static struct rest_request *request_new(struct rest_server *s, struct MHD_Connection *c,
                                        const char *url, const char *method)
{
	struct rest_request *rq = calloc(1, sizeof(*rq));
	const char *id;

	if (rq == NULL || (rq->arena = arena_new()) == NULL) {
		free(rq);
		return NULL;
	}
	rq->srv = s;
	rq->start_ns = now_ns();
	rq->deadline_ns = rq->start_ns + (int64_t)s->cfg.request_timeout_ms * NS_PER_MS;
	snprintf(rq->method, sizeof(rq->method), "%s", method);
	snprintf(rq->path, sizeof(rq->path), "%s", url);
	id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Id");
	if (id != NULL && valid_request_id(id))
		snprintf(rq->request_id, sizeof(rq->request_id), "%s", id);
	else
		new_request_id(rq->request_id);
	peer_of(c, rq->peer, sizeof(rq->peer));
	return rq;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	struct rest_request *rq = *con_cls;

	if (rq == NULL)
		return;
	json_decref(rq->body);
	free(rq->upload);
	arena_unref(rq->arena);
	free(rq);
	*con_cls = NULL;
}

/* The CORS preflight: any path, no credentials. */
static enum MHD_Result reply_preflight(struct rest_request *rq, struct MHD_Connection *c)
{
	const char *asked =
	    MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Access-Control-Request-Headers");
	struct headers h = {0};

	/* Echo the headers asked for when they are a plain token list. */
	if (asked != NULL &&
	    (strlen(asked) > 512 || strspn(asked, "abcdefghijklmnopqrstuvwxyz"
	                                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                                          "0123456789-_, ") != strlen(asked)))
		asked = NULL;
	hdr_add(&h, "Access-Control-Allow-Methods", CORS_METHODS);
	hdr_add(&h, "Access-Control-Allow-Headers", asked != NULL ? asked : CORS_HEADERS);
	hdr_add(&h, "Access-Control-Max-Age", "3600");
	rq->responded = 1;
	return reply_raw(rq, c, MHD_HTTP_NO_CONTENT, NULL, 0, NULL, &h);
}

/* Finds the route; replies 404/405 itself (returns NULL then). */
static const struct live_route *route_of(struct rest_request *rq, struct MHD_Connection *c,
                                         const char *url, const char *method, enum MHD_Result *ok)
{
	const struct rest_server *s = rq->srv;
	char path[256], allowed[128] = "";
	size_t n = strlen(url);

	/* "/v1/tasks/" is "/v1/tasks" */
	if (n >= sizeof(path)) {
		*ok = reply_error(rq, c, MHD_HTTP_NOT_FOUND, "NOT_FOUND", NULL, "no such resource");
		return NULL;
	}
	memcpy(path, url, n + 1);
	if (n > 1 && path[n - 1] == '/')
		path[n - 1] = '\0';
	if (strcmp(method, "HEAD") == 0)
		method = "GET";
	for (size_t i = 0; i < s->n_routes; i++) {
		const struct rest_route *r = s->routes[i].r;
		if (!match(r->pattern, path, rq))
			continue;
		if (strcmp(r->method, method) == 0)
			return &s->routes[i];
		if (strstr(allowed, r->method) == NULL &&
		    strlen(allowed) + strlen(r->method) + 3 < sizeof(allowed))
			snprintf(allowed + strlen(allowed), sizeof(allowed) - strlen(allowed),
			         "%s%s", allowed[0] != '\0' ? ", " : "", r->method);
	}
	if (allowed[0] != '\0') {
		struct headers h = {0};
		hdr_add(&h, MHD_HTTP_HEADER_ALLOW, allowed);
		*ok = reply_error(rq, c, MHD_HTTP_METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", &h,
		                  "%s is not allowed on %s (allowed: %s)", method, path, allowed);
		return NULL;
	}
	*ok = reply_error(rq, c, MHD_HTTP_NOT_FOUND, "NOT_FOUND", NULL, "no route for %s %s",
	                  method, path);
	return NULL;
}

/* The credential check of a route. 0, or -1 after replying 401/403. */
static int authorize(struct rest_request *rq, struct MHD_Connection *c, const char *permission,
                     enum MHD_Result *ok)
{
	struct svc_env *env = rq->srv->env;
	struct auth_result ar;
	struct headers h = {0};
	const char *authz, *key_header, *api_key;
	int unauth;

	memset(&ar, 0, sizeof(ar));
	if (env->auth == NULL) {
		*ok = reply_error(rq, c, MHD_HTTP_UNAUTHORIZED, "AUTHENTICATION_FAILED", NULL,
		                  "authentication is not configured");
		return -1;
	}
	authz = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	key_header = auth_api_key_header(env->auth);
	api_key =
	    key_header != NULL ? MHD_lookup_connection_value(c, MHD_HEADER_KIND, key_header) : NULL;
	rq->authorization = authz != NULL ? arena_strdup(rq->arena, authz) : NULL;
	rq->api_key = api_key != NULL ? arena_strdup(rq->arena, api_key) : NULL;
	if (auth_check(env->auth, authz, api_key, permission, &ar) == AUTH_OK &&
	    ar.code == AUTH_OK) {
		snprintf(rq->subject, sizeof(rq->subject), "%s",
		         ar.subject[0] != '\0' ? ar.subject : "anonymous");
		return 0;
	}
	unauth = ar.code == AUTH_UNAUTHENTICATED;
	hdr_add(&h, "x-auth-failure-reason", ar.reason);
	hdr_add(&h, "x-auth-failure-severity", ar.severity);
	if (unauth)
		hdr_add(&h, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
	trpc_log(TRPC_LOG_DEBUG, "REST %s %s from %s: %s", rq->method, rq->path, rq->peer,
	         ar.message);
	*ok = reply_error(rq, c, unauth ? MHD_HTTP_UNAUTHORIZED : MHD_HTTP_FORBIDDEN,
	                  unauth ? "AUTHENTICATION_FAILED" : "AUTHORIZATION_FAILED", &h, "%s",
	                  ar.message[0] != '\0' ? ar.message : "permission denied");
	return -1;
}

/*
 * The runtime's rate limiter, with the REST API as the service "rest":
 * keyed like gRPC calls, by the authenticated subject under
 * ratelimit.key = identity (the address for anonymous requests), else by
 * the client's address. Returns 1 after replying 429.
 */
static int rate_limited(struct rest_request *rq, struct MHD_Connection *c, enum MHD_Result *ok)
{
	trpc_server *srv = rq->srv->env->srv;
	char ip[64], retry[24];
	const char *key = ip;
	int64_t retry_ms = 0;
	struct headers h = {0};

	if (srv == NULL)
		return 0;
	if (trpc_ratelimit_by_identity(srv) && rq->subject[0] != '\0' &&
	    strcmp(rq->subject, "anonymous") != 0) {
		key = rq->subject;
	} else {
		/* rq->peer is "ipv4:HOST:PORT" or "ipv6:HOST:PORT" */
		const char *host = strchr(rq->peer, ':');
		const char *port = strrchr(rq->peer, ':');
		host = host != NULL ? host + 1 : rq->peer;
		snprintf(ip, sizeof(ip), "%.*s", port > host ? (int)(port - host) : 63, host);
	}
	if (trpc_ratelimit_take(srv, "rest", key, &retry_ms) == 0)
		return 0;
	snprintf(retry, sizeof(retry), "%lld", (long long)((retry_ms + 999) / 1000));
	hdr_add(&h, MHD_HTTP_HEADER_RETRY_AFTER, retry);
	*ok = reply_error(rq, c, MHD_HTTP_TOO_MANY_REQUESTS, "RATE_LIMITED", &h,
	                  "rate limit exceeded for %s; retry in %lld ms", key, (long long)retry_ms);
	return 1;
}

/* Routes, checks the credentials and the announced size; may reply. */
static enum MHD_Result on_headers(struct rest_request *rq, struct MHD_Connection *c,
                                  const char *url, const char *method)
{
	enum MHD_Result ok = MHD_YES;
	const char *len;

	if (strcmp(method, "OPTIONS") == 0)
		return reply_preflight(rq, c);
	if ((rq->route = route_of(rq, c, url, method, &ok)) == NULL)
		return ok;
	if (authorize(rq, c,
	              rq->route->op != NULL ? rq->route->op->permission : rq->route->r->permission,
	              &ok) != 0)
		return ok;
	if (rate_limited(rq, c, &ok))
		return ok;
	for (size_t i = 0; i < rq->n_params; i++)
		if (strlen(rq->params[i].key) >= 4 &&
		    strcmp(rq->params[i].key + strlen(rq->params[i].key) - 4, "uuid") == 0 &&
		    !is_uuid(rq->params[i].value))
			return reply_error(rq, c, MHD_HTTP_BAD_REQUEST, "INVALID_UUID", NULL,
			                   "%s is not a valid UUID: \"%.64s\"", rq->params[i].key,
			                   rq->params[i].value);
	len = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (len != NULL &&
	    strtoull(len, NULL, 10) > (unsigned long long)rq->srv->cfg.max_body_bytes)
		return reply_error(rq, c, MHD_HTTP_CONTENT_TOO_LARGE, "PAYLOAD_TOO_LARGE", NULL,
		                   "the body is larger than %d bytes", rq->srv->cfg.max_body_bytes);
	if (MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, on_query_arg, rq) < 0 ||
	    rq->n_query < (size_t)MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, NULL, NULL))
		return reply_error(rq, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", NULL,
		                   "out of memory");
	return MHD_YES;
}

static void on_body(struct rest_request *rq, const char *data, size_t n)
{
	size_t max = (size_t)rq->srv->cfg.max_body_bytes;

	if (rq->too_large || rq->upload_len + n > max) {
		rq->too_large = 1;
		return;
	}
	if (rq->upload_len + n > rq->upload_cap) {
		size_t cap = rq->upload_cap ? rq->upload_cap : 4096;
		char *p;
		while (cap < rq->upload_len + n)
			cap *= 2;
		if ((p = realloc(rq->upload, cap)) == NULL) {
			rq->too_large = 1;
			return;
		}
		rq->upload = p;
		rq->upload_cap = cap;
	}
	memcpy(rq->upload + rq->upload_len, data, n);
	rq->upload_len += n;
}

/* Sets the request field kv->key from kv->value when the message has such
 * a field. 0, or -1 after replying 400 (500 when out of memory). */
static int set_field(struct rest_request *rq, struct MHD_Connection *c, ProtobufCMessage *req,
                     const struct kv *kv, const char *what, enum MHD_Result *ok)
{
	struct tk_err err;
	int rc =
	    pbjson_set_text(req, kv->key, kv->value, &rq->arena->pa, PBJSON_LENIENT_ENUMS, &err);

	if (rc == 0 || rc == TRPC_ERR_NOT_FOUND)
		return 0;
	if (rc == TRPC_ERR_NOMEM)
		*ok = reply_error(rq, c, 500, "INTERNAL_ERROR", NULL, "out of memory");
	else
		*ok = reply_error(rq, c, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST", NULL, "%s %s: %s",
		                  what, kv->key, err.msg);
	return -1;
}

/* Generic request building: query parameters, body, then path parameters
 * (last: the path names the resource, whatever the body says). */
static enum MHD_Result build_request(struct rest_request *rq, struct MHD_Connection *c,
                                     ProtobufCMessage *req, int *failed)
{
	const struct rest_route *r = rq->route->r;
	enum MHD_Result ok = MHD_YES;
	struct svc_result res;
	struct tk_err err;

	*failed = 1;
	for (size_t i = 0; (r->flags & REST_QUERY) && i < rq->n_query; i++)
		if (set_field(rq, c, req, &rq->query[i], "query parameter", &ok) != 0)
			return ok;
	if ((r->flags & REST_BODY) && rq->body != NULL) {
		int rc = pbjson_merge(rq->body, req, &rq->arena->pa, PBJSON_LENIENT_ENUMS, &err);
		if (rc == TRPC_ERR_NOMEM)
			return reply_error(rq, c, 500, "INTERNAL_ERROR", NULL, "out of memory");
		if (rc != 0)
			return reply_error(rq, c, MHD_HTTP_BAD_REQUEST, "JSON_ERROR", NULL,
			                   "body: %s", err.msg);
	}
	for (size_t i = 0; i < rq->n_params; i++)
		if (set_field(rq, c, req, &rq->params[i], "path parameter", &ok) != 0)
			return ok;
	memset(&res, 0, sizeof(res));
	if (r->build != NULL && r->build(rq, req, &res) != 0)
		return reply_failure(rq, c, &res, NULL);
	*failed = 0;
	return MHD_YES;
}

/* A job for op over req, with a fresh response, in the request's arena. */
static struct job *job_new(struct rest_request *rq, const struct svc_op *op,
                           const ProtobufCMessage *req)
{
	ProtobufCAllocator *a = &rq->arena->pa;
	ProtobufCMessage *resp = a->alloc(a->allocator_data, op->response->sizeof_message);
	struct job *j = a->alloc(a->allocator_data, sizeof(*j));

	if (resp == NULL || j == NULL)
		return NULL;
	protobuf_c_message_init(op->response, resp);
	memset(j, 0, sizeof(*j));
	j->arena = rq->arena;
	j->op = op;
	j->env = rq->srv->env;
	j->req = req;
	j->resp = resp;
	j->ctx.alloc = a;
	j->ctx.subject = arena_strdup(rq->arena, rq->subject);
	j->ctx.peer = rq->peer[0] != '\0' ? arena_strdup(rq->arena, rq->peer) : NULL;
	j->ctx.transport = "rest";
	j->ctx.deadline_ns = rq->deadline_ns;
	return j;
}

int rest_call(struct rest_request *rq, const char *service, const char *rpc,
              const ProtobufCMessage *req, ProtobufCMessage **resp, struct svc_result *res)
{
	return rest_call_as(rq, NULL, service, rpc, req, resp, res);
}

int rest_call_as(struct rest_request *rq, const char *permission, const char *service,
                 const char *rpc, const ProtobufCMessage *req, ProtobufCMessage **resp,
                 struct svc_result *res)
{
	struct rest_server *s = rq->srv;
	const struct svc_op *op = svc_find_op(s->tables, s->n_tables, service, rpc);
	struct auth_result ar;
	struct job *j;
	int rc;

	if (op == NULL)
		return svc_fail(res, TRPC_STATUS_UNIMPLEMENTED, "%s.%s is not served here", service,
		                rpc);
	if (permission == NULL)
		permission = op->permission;
	memset(&ar, 0, sizeof(ar));
	if (s->env->auth == NULL ||
	    auth_check(s->env->auth, rq->authorization, rq->api_key, permission, &ar) != AUTH_OK ||
	    ar.code != AUTH_OK)
		return svc_fail(res,
		                ar.code == AUTH_UNAUTHENTICATED ? TRPC_STATUS_UNAUTHENTICATED
		                                                : TRPC_STATUS_PERMISSION_DENIED,
		                "%s", ar.message[0] != '\0' ? ar.message : "permission denied");
	if ((j = job_new(rq, op, req)) == NULL)
		return svc_fail(res, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	if ((rc = pool_run(&s->pool, j, rq->deadline_ns)) == TRPC_ERR_TIMEOUT)
		return svc_fail(res, TRPC_STATUS_DEADLINE_EXCEEDED,
		                "the request took longer than %d ms", s->cfg.request_timeout_ms);
	if (rc != 0)
		return svc_fail(res, TRPC_STATUS_UNAVAILABLE, "too many requests in progress");
	if (j->rc != 0) {
		*res = j->res;
		return -1;
	}
	*resp = j->resp;
	return 0;
}

static enum MHD_Result run_operation(struct rest_request *rq, struct MHD_Connection *c)
{
	const struct live_route *lr = rq->route;
	const struct svc_op *op = lr->op;
	ProtobufCAllocator *a = &rq->arena->pa;
	ProtobufCMessage *req = a->alloc(a->allocator_data, op->request->sizeof_message), *resp;
	enum MHD_Result ok;
	struct job *j;
	json_t *body;
	int failed, rc;

	if (req == NULL)
		return reply_error(rq, c, 500, "INTERNAL_ERROR", NULL, "out of memory");
	protobuf_c_message_init(op->request, req);
	if ((ok = build_request(rq, c, req, &failed)) != MHD_YES || failed)
		return ok;
	if ((j = job_new(rq, op, req)) == NULL)
		return reply_error(rq, c, 500, "INTERNAL_ERROR", NULL, "out of memory");
	resp = j->resp;
	rc = pool_run(&rq->srv->pool, j, rq->deadline_ns);
	if (rc == TRPC_ERR_TIMEOUT)
		return reply_error(rq, c, MHD_HTTP_REQUEST_TIMEOUT, "TIMEOUT", NULL,
		                   "the request took longer than %d ms",
		                   rq->srv->cfg.request_timeout_ms);
	if (rc != 0) {
		struct headers h = {0};
		hdr_add(&h, MHD_HTTP_HEADER_RETRY_AFTER, "1");
		return reply_error(rq, c, MHD_HTTP_SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", &h,
		                   "too many requests in progress; retry later");
	}
	if (j->rc != 0) {
		int with_body = (lr->r->flags & REST_BODY_ON_FAILURE) &&
		                j->res.status == TRPC_STATUS_UNAVAILABLE;
		return reply_failure(rq, c, &j->res,
		                     with_body ? pbjson_encode(resp, PBJSON_EMIT_DEFAULTS) : NULL);
	}
	if ((body = pbjson_encode(resp, PBJSON_EMIT_DEFAULTS)) == NULL)
		return reply_error(rq, c, 500, "INTERNAL_ERROR", NULL, "out of memory");
	if (lr->r->adapt != NULL) {
		struct svc_result res;
		memset(&res, 0, sizeof(res));
		if (lr->r->adapt(rq, resp, &body, &res) != 0) {
			json_decref(body);
			return reply_failure(rq, c, &res, NULL);
		}
	}
	return reply_json(rq, c, lr->r->status > 0 ? lr->r->status : MHD_HTTP_OK, body, NULL);
}

static enum MHD_Result run_handler(struct rest_request *rq, struct MHD_Connection *c)
{
	struct rest_reply out;
	struct svc_result res;

	memset(&out, 0, sizeof(out));
	memset(&res, 0, sizeof(res));
	if (rq->route->r->handler(rq, &out, &res) != 0) {
		json_decref(out.json);
		free(out.text);
		return reply_failure(rq, c, &res, NULL);
	}
	if (out.json != NULL) {
		free(out.text);
		return reply_json(rq, c, out.status > 0 ? out.status : MHD_HTTP_OK, out.json, NULL);
	}
	return reply_raw(rq, c, out.status > 0 ? out.status : MHD_HTTP_OK, out.text, out.text_len,
	                 out.content_type, NULL);
}

/* Last call: the body is in. */
static enum MHD_Result on_complete(struct rest_request *rq, struct MHD_Connection *c)
{
	if (rq->too_large)
		return reply_error(rq, c, MHD_HTTP_CONTENT_TOO_LARGE, "PAYLOAD_TOO_LARGE", NULL,
		                   "the body is larger than %d bytes", rq->srv->cfg.max_body_bytes);
	if (rq->upload_len > 0) {
		json_error_t e;
		rq->body = json_loadb(rq->upload, rq->upload_len, JSON_REJECT_DUPLICATES, &e);
		if (rq->body == NULL)
			return reply_error(rq, c, MHD_HTTP_BAD_REQUEST, "JSON_ERROR", NULL,
			                   "invalid JSON body: %s (line %d, column %d)", e.text,
			                   e.line, e.column);
	}
	rq->responded = 1;
	return rq->route->op != NULL ? run_operation(rq, c) : run_handler(rq, c);
}

/* Whether a body follows the headers. */
static int has_body(struct MHD_Connection *c)
{
	const char *len =
	    MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);

	return (len != NULL && strtoull(len, NULL, 10) > 0) ||
	       MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING) !=
	           NULL;
}

/*
 * A request with a body is routed and checked as soon as its headers are
 * in, so that a refused request never has its body read (libmicrohttpd
 * then closes the connection after the reply). One without a body is
 * handled whole at the last call: a reply queued before the request is
 * complete would cost the keep-alive connection.
 */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
	struct rest_request *rq = *con_cls;
	enum MHD_Result ok;

	if (rq == NULL) {
		if ((rq = request_new(cls, c, url, method)) == NULL)
			return MHD_NO;
		*con_cls = rq;
		if (!has_body(c))
			return MHD_YES;
		rq->headers_done = 1;
		return on_headers(rq, c, url, method);
	}
	if (rq->responded) { /* refused early: the body is dropped */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		on_body(rq, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (!rq->headers_done) {
		rq->headers_done = 1;
		ok = on_headers(rq, c, url, method);
		if (ok != MHD_YES || rq->responded)
			return ok;
	}
	return on_complete(rq, c);
}

/* ================================================================== shared handlers */

int rest_metrics_handler(struct rest_request *rq, struct rest_reply *out, struct svc_result *res)
{
	trpc_server *srv = rq->srv->env->srv;
	trpc_metrics_buf *b = NULL;
	const char *text;

	if (srv != NULL) {
		out->text = trpc_server_metrics_render(srv, &out->text_len);
	} else if ((b = trpc_metrics_buf_new()) != NULL && trpc_metrics_write_process(b) == 0 &&
	           (text = trpc_metrics_buf_data(b, &out->text_len)) != NULL) {
		out->text = strdup(text);
	}
	trpc_metrics_buf_free(b);
	if (out->text == NULL)
		return svc_fail(res, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	out->content_type = TRPC_METRICS_CONTENT_TYPE;
	return 0;
}

int rest_openapi_handler(struct rest_request *rq, struct rest_reply *out, struct svc_result *res)
{
	const struct rest_server *s = rq->srv;
	int worker = s->env->role != NULL && strcmp(s->env->role, "worker") == 0;
	struct openapi_info info = {
	    .title = worker ? "tasker-worker REST API" : "taskerd REST API",
	    .version = PACKAGE_VERSION,
	    .description = worker ? "The worker's REST routes (tasker-api.md section 2.2)."
	                          : "The orchestration REST routes (tasker-api.md section 2.1).",
	    .auth = s->env->auth,
	};
	/* the routes served: those of the table that rest_start kept */
	struct openapi_route *routes = calloc(s->n_routes + 1, sizeof(*routes));

	if (routes == NULL)
		return svc_fail(res, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	for (size_t i = 0; i < s->n_routes; i++) {
		routes[i].route = s->routes[i].r;
		routes[i].op = s->routes[i].op;
	}
	out->json = openapi_document(&info, routes, s->n_routes);
	free(routes);
	if (out->json == NULL)
		return svc_fail(res, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	return 0;
}

int rest_api_docs_ui_handler(struct rest_request *rq, struct rest_reply *out,
                             struct svc_result *res)
{
	const char *html = openapi_ui_html();

	if ((out->text = strdup(html)) == NULL)
		return svc_fail(res, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	out->text_len = strlen(html);
	out->content_type = "text/html; charset=utf-8";
	return 0;
}

/* ================================================================== server */

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	size_t n;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	trpc_log(TRPC_LOG_WARN, "REST: %s", buf);
}

/* "host:port", "[v6]:port" or ":port" into a socket address. */
static int resolve(const char *bind, struct sockaddr_storage *ss, const char **why)
{
	static __thread char msg[160];
	struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	                         .ai_socktype = SOCK_STREAM},
	                *ai = NULL;
	char host[128];
	const char *colon = strrchr(bind, ':'), *h = bind;
	size_t hl;
	int rc;

	if (colon == NULL || colon[1] == '\0') {
		*why = "the REST bind address is not host:port";
		return -1;
	}
	hl = (size_t)(colon - bind);
	if (hl >= 2 && bind[0] == '[' && bind[hl - 1] == ']')
		h++, hl -= 2;
	if (hl >= sizeof(host)) {
		*why = "the REST bind address is too long";
		return -1;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	if ((rc = getaddrinfo(hl > 0 ? host : NULL, colon + 1, &hints, &ai)) != 0) {
		snprintf(msg, sizeof(msg), "REST bind address %s: %s", bind, gai_strerror(rc));
		*why = msg;
		return -1;
	}
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	return 0;
}

/* Resolves the operation routes; leaves out what cannot be served. */
static int resolve_routes(struct rest_server *s, const struct svc_table *const *tables,
                          size_t n_tables, const struct rest_route *routes, size_t n_routes)
{
	if ((s->routes = calloc(n_routes + 1, sizeof(*s->routes))) == NULL)
		return TRPC_ERR_NOMEM;
	for (size_t i = 0; i < n_routes; i++) {
		const struct rest_route *r = &routes[i];
		const struct svc_op *op = NULL;
		if ((r->flags & REST_CONFIG_ENDPOINT) && !s->cfg.config_endpoint_enabled)
			continue;
		if (r->handler == NULL &&
		    (op = svc_find_op(tables, n_tables, r->service, r->rpc)) == NULL) {
			trpc_log(TRPC_LOG_WARN, "REST %s %s: operation %s.%s is not available here",
			         r->method, r->pattern, r->service, r->rpc);
			continue;
		}
		s->routes[s->n_routes].r = r;
		s->routes[s->n_routes].op = op;
		s->n_routes++;
	}
	return 0;
}

struct rest_server *rest_start(const struct rest_config *cfg, struct svc_env *env,
                               const struct svc_table *const *tables, size_t n_tables,
                               const struct rest_route *routes, size_t n_routes, const char **why)
{
	struct rest_server *s = calloc(1, sizeof(*s));
	struct sockaddr_storage ss;
	sigset_t all, old;
	const union MHD_DaemonInfo *di;
	char host[64];
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
	                 MHD_USE_POLL | MHD_USE_ERROR_LOG;

	if (s == NULL) {
		*why = "out of memory";
		return NULL;
	}
	s->cfg = *cfg;
	s->cfg.bind = NULL; /* not owned */
	s->env = env;
	s->tables = tables;
	s->n_tables = n_tables;
	if (resolve(cfg->bind, &ss, why) != 0)
		goto fail;
	if (resolve_routes(s, tables, n_tables, routes, n_routes) != 0) {
		*why = "out of memory";
		goto fail;
	}
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* Threads started from here block every signal: the program's main
	 * thread handles them. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	if (pool_start(&s->pool, cfg->threads) != 0) {
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		pool_stop(&s->pool);
		*why = "cannot start the REST operation threads";
		goto fail_routes;
	}
	s->mhd =
	    MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER,
	                     on_mhd_log, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	                     MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
	                     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->connection_timeout_s,
	                     MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (s->mhd == NULL) {
		static __thread char msg[160];
		snprintf(msg, sizeof(msg), "REST: cannot listen on %s (%s)", cfg->bind,
		         strerror(errno));
		*why = msg;
		pool_stop(&s->pool);
		goto fail_routes;
	}
	di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
	s->port = di != NULL ? di->port : 0;
	if (getnameinfo((struct sockaddr *)&ss,
	                ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
	                                         : sizeof(struct sockaddr_in),
	                host, sizeof(host), NULL, 0, NI_NUMERICHOST) != 0)
		snprintf(host, sizeof(host), "?");
	trpc_log(TRPC_LOG_INFO, "REST listening on %s%s%s:%d (%zu routes, request timeout %d ms)",
	         ss.ss_family == AF_INET6 ? "[" : "", host, ss.ss_family == AF_INET6 ? "]" : "",
	         s->port, s->n_routes, cfg->request_timeout_ms);
	return s;

fail_routes:
	free(s->routes);
fail:
	free(s);
	return NULL;
}

int rest_port(const struct rest_server *s)
{
	return s->port;
}

void rest_stop(struct rest_server *s)
{
	if (s == NULL)
		return;
	MHD_stop_daemon(s->mhd);
	pool_stop(&s->pool);
	free(s->routes);
	free(s);
}

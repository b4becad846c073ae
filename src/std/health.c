/*
 * grpc.health.v1.Health: a table of service statuses and the Watch calls
 * waiting on them.
 *
 * Locks. h->mu guards the status table, the watcher list and every
 * watcher's reference count. w->send_mu serialises the sends to one
 * watcher, and each send reads the status afresh under it, so a watcher
 * never gets an older status after a newer one (quick successive changes
 * may be coalesced into the latest, as the health protocol allows).
 * Order: send_mu before mu. mu is never held across trpc_call_send(),
 * which may block while the call's outbound queue is full, and on_cancel
 * takes only mu, so a blocked sender never holds up a cancellation.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tasker/rpc.h"
#include "grpc/health/v1/health.pb-c.h"

#define SAME_STATUS(ours, theirs)                                                                  \
	_Static_assert((int)TRPC_HEALTH_##ours ==                                                  \
	                   (int)GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__##theirs, \
	               "trpc_health_status must number like ServingStatus")
SAME_STATUS(UNKNOWN, UNKNOWN);
SAME_STATUS(SERVING, SERVING);
SAME_STATUS(NOT_SERVING, NOT_SERVING);
SAME_STATUS(SERVICE_UNKNOWN, SERVICE_UNKNOWN);

struct health_entry {
	char *service;
	int status;
};

/*
 * One Watch call. Allocated with malloc rather than in the call's arena
 * because notifiers on other threads may still hold it after the call has
 * been finished; it holds a reference on the call for the same reason.
 */
struct health_watcher {
	struct health_watcher *next, **pprev; /* on h->watchers while linked; h->mu */
	int refs;                             /* h->mu */
	int linked;                           /* h->mu */
	pthread_mutex_t send_mu;
	int last_sent; /* send_mu; -1 before the first send */
	trpc_call *call;
	char service[];
};

struct trpc_health {
	pthread_mutex_t mu;
	struct health_entry *entries;
	size_t n_entries, cap_entries;
	struct health_watcher *watchers;
	int shut_down; /* trpc_health_shutdown() ran: statuses are frozen */
	struct trpc_service svc;
};

/* ------------------------------------------------------------ status table */

/* Precondition: h->mu held. */
static struct health_entry *entry_find(struct trpc_health *h, const char *service)
{
	for (size_t i = 0; i < h->n_entries; i++) {
		if (strcmp(h->entries[i].service, service) == 0)
			return &h->entries[i];
	}
	return NULL;
}

/* The status of `service`, TRPC_HEALTH_SERVICE_UNKNOWN when never set.
 * Precondition: h->mu held. */
static int status_locked(struct trpc_health *h, const char *service)
{
	const struct health_entry *e = entry_find(h, service);
	return e ? e->status : TRPC_HEALTH_SERVICE_UNKNOWN;
}

/* 0 or TRPC_ERR_NOMEM. Precondition: h->mu held. */
static int set_locked(struct trpc_health *h, const char *service, int status)
{
	struct health_entry *e = entry_find(h, service);

	if (e == NULL) {
		if (h->n_entries == h->cap_entries) {
			size_t cap = h->cap_entries ? 2 * h->cap_entries : 8;
			void *p = realloc(h->entries, cap * sizeof *h->entries);
			if (p == NULL)
				return TRPC_ERR_NOMEM;
			h->entries = p;
			h->cap_entries = cap;
		}
		e = &h->entries[h->n_entries];
		e->service = strdup(service);
		if (e->service == NULL)
			return TRPC_ERR_NOMEM;
		h->n_entries++;
	}
	e->status = status;
	return 0;
}

/* ------------------------------------------------------------ watchers */

static void watcher_free(struct health_watcher *w)
{
	trpc_call_unref(w->call);
	pthread_mutex_destroy(&w->send_mu);
	free(w);
}

/* Drops one reference; returns 1 when it was the last (free the watcher
 * after unlocking). Precondition: h->mu held. */
static int watcher_unref_locked(struct health_watcher *w)
{
	return --w->refs == 0;
}

static void watcher_put(struct trpc_health *h, struct health_watcher *w)
{
	int last;

	pthread_mutex_lock(&h->mu);
	last = watcher_unref_locked(w);
	pthread_mutex_unlock(&h->mu);
	if (last)
		watcher_free(w);
}

/* Precondition: h->mu held, w linked. Drops the list's reference; returns
 * 1 when the caller must free the watcher (after unlocking). */
static int watcher_unlink_locked(struct health_watcher *w)
{
	*w->pprev = w->next;
	if (w->next)
		w->next->pprev = w->pprev;
	w->linked = 0;
	return watcher_unref_locked(w);
}

/*
 * Brings one watcher up to date: sends the service's current status unless
 * it is what the watcher last got. A failed send is left for the next
 * change to retry; a cancelled call is cleaned up by on_watch_cancel.
 */
static void watcher_push(struct trpc_health *h, struct health_watcher *w)
{
	Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	int status, linked, rc;

	pthread_mutex_lock(&w->send_mu);
	pthread_mutex_lock(&h->mu);
	status = status_locked(h, w->service);
	linked = w->linked;
	pthread_mutex_unlock(&h->mu);
	if (linked && status != w->last_sent) {
		resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
		rc = trpc_call_send(w->call, &resp.base);
		if (rc == 0)
			w->last_sent = status;
		else if (rc != TRPC_ERR_CLOSED)
			trpc_log(TRPC_LOG_WARN, "health: Watch(\"%s\") send failed: %s", w->service,
			         trpc_strerror(rc));
	}
	pthread_mutex_unlock(&w->send_mu);
}

/*
 * Pushes the current status to every watcher of `service` (every watcher
 * when NULL). The matching watchers are collected with a reference under
 * the lock and sent to outside it. 0 or TRPC_ERR_NOMEM (the watchers then
 * miss this change; they get the next one).
 */
static int notify(struct trpc_health *h, const char *service)
{
	struct health_watcher **batch = NULL, *w;
	size_t n = 0;

	pthread_mutex_lock(&h->mu);
	for (w = h->watchers; w; w = w->next)
		n += service == NULL || strcmp(w->service, service) == 0;
	if (n > 0) {
		batch = malloc(n * sizeof *batch);
		if (batch == NULL) {
			pthread_mutex_unlock(&h->mu);
			return TRPC_ERR_NOMEM;
		}
		n = 0;
		for (w = h->watchers; w; w = w->next) {
			if (service == NULL || strcmp(w->service, service) == 0) {
				w->refs++;
				batch[n++] = w;
			}
		}
	}
	pthread_mutex_unlock(&h->mu);

	for (size_t i = 0; i < n; i++) {
		watcher_push(h, batch[i]);
		watcher_put(h, batch[i]);
	}
	free(batch);
	return 0;
}

/* ------------------------------------------------------------ handlers */

static void on_check(trpc_call *call, const ProtobufCMessage *msg, void *ud)
{
	struct trpc_health *h = ud;
	const Grpc__Health__V1__HealthCheckRequest *req = (const void *)msg;
	Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	int status, rc;

	pthread_mutex_lock(&h->mu);
	status = status_locked(h, req->service);
	pthread_mutex_unlock(&h->mu);

	if (status == TRPC_HEALTH_SERVICE_UNKNOWN) {
		size_t len = strlen(req->service) + sizeof "unknown service \"\"";
		char *why = trpc_call_alloc(call, len);
		if (why)
			snprintf(why, len, "unknown service \"%s\"", req->service);
		trpc_call_finish(call, TRPC_STATUS_NOT_FOUND, why ? why : "unknown service");
		return;
	}
	resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
	rc = trpc_call_send(call, &resp.base);
	if (rc == 0 || rc == TRPC_ERR_CLOSED)
		trpc_call_finish(call, TRPC_STATUS_OK, NULL);
	else
		trpc_call_finish(call, TRPC_STATUS_INTERNAL, trpc_strerror(rc));
}

/*
 * Watch: the watcher goes on the list and the handler returns; the call
 * stays open until the client cancels it (on_watch_cancel) or the server
 * shuts down, which cancels it too.
 */
static void on_watch(trpc_call *call, const ProtobufCMessage *msg, void *ud)
{
	struct trpc_health *h = ud;
	const Grpc__Health__V1__HealthCheckRequest *req = (const void *)msg;
	size_t len = strlen(req->service);
	struct health_watcher *w = calloc(1, sizeof *w + len + 1);

	if (w == NULL)
		goto fail;
	if (pthread_mutex_init(&w->send_mu, NULL) != 0)
		goto fail_free;
	memcpy(w->service, req->service, len + 1);
	w->last_sent = -1;
	w->call = call;
	trpc_call_ref(call);
	w->refs = 2; /* the list's and this function's */
	w->linked = 1;
	trpc_call_set_user(call, w);

	pthread_mutex_lock(&h->mu);
	w->next = h->watchers;
	if (w->next)
		w->next->pprev = &w->next;
	w->pprev = &h->watchers;
	h->watchers = w;
	pthread_mutex_unlock(&h->mu);

	watcher_push(h, w);
	watcher_put(h, w);
	return;

fail_free:
	free(w);
fail:
	trpc_call_finish(call, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
}

static void on_watch_cancel(trpc_call *call, void *ud)
{
	struct trpc_health *h = ud;
	struct health_watcher *w = trpc_call_user(call);
	int last = 0;

	if (w == NULL) /* on_watch failed and finished the call itself */
		return;
	trpc_call_set_user(call, NULL);
	pthread_mutex_lock(&h->mu);
	if (w->linked)
		last = watcher_unlink_locked(w);
	pthread_mutex_unlock(&h->mu);
	if (last)
		watcher_free(w);
	trpc_call_finish(call, TRPC_STATUS_CANCELLED, NULL);
}

static const struct trpc_method health_methods[] = {
    {
        .name = "Check",
        .kind = TRPC_UNARY,
        .request = &grpc__health__v1__health_check_request__descriptor,
        .response = &grpc__health__v1__health_check_response__descriptor,
        .handler = on_check,
    },
    {
        .name = "Watch",
        .kind = TRPC_SERVER_STREAMING,
        .request = &grpc__health__v1__health_check_request__descriptor,
        .response = &grpc__health__v1__health_check_response__descriptor,
        .handler = on_watch,
        .stream = {.on_cancel = on_watch_cancel},
    },
};

/* ------------------------------------------------------------ public API */

/* Runs when the server is freed; every call, Watch calls included, has
 * been cancelled and finished by then. */
static void health_free(void *arg)
{
	struct trpc_health *h = arg;

	/* A watcher still here would mean the server freed a call it never
	 * cancelled; its call reference is gone with the server, so only the
	 * memory is released. */
	while (h->watchers) {
		struct health_watcher *w = h->watchers;
		h->watchers = w->next;
		pthread_mutex_destroy(&w->send_mu);
		free(w);
	}
	for (size_t i = 0; i < h->n_entries; i++)
		free(h->entries[i].service);
	free(h->entries);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

static void health_shutdown_hook(void *arg)
{
	trpc_health_shutdown(arg);
}

trpc_health *trpc_health_register(trpc_server *srv)
{
	struct trpc_health *h;

	if (srv == NULL)
		return NULL;
	h = calloc(1, sizeof *h);
	if (h == NULL)
		return NULL;
	if (pthread_mutex_init(&h->mu, NULL) != 0)
		goto fail_free;
	if (set_locked(h, "", TRPC_HEALTH_SERVING) != 0) /* not shared yet: no lock needed */
		goto fail_entries;
	h->svc = (struct trpc_service){
	    .name = "grpc.health.v1.Health",
	    .methods = health_methods,
	    .n_methods = sizeof health_methods / sizeof health_methods[0],
	    .ud = h,
	};
	if (trpc_server_on_free(srv, health_free, h) != 0)
		goto fail_entries;
	/* From here on the server owns h, also when adding the service fails. */
	if (trpc_server_add_service(srv, &h->svc) != 0)
		return NULL;
	/* A stopping server reports NOT_SERVING to its watchers before GOAWAY. */
	if (trpc_server_on_shutdown(srv, health_shutdown_hook, h) != 0)
		return NULL;
	return h;

fail_entries:
	for (size_t i = 0; i < h->n_entries; i++)
		free(h->entries[i].service);
	free(h->entries);
	pthread_mutex_destroy(&h->mu);
fail_free:
	free(h);
	return NULL;
}

/*
 * Returns 0; TRPC_ERR_INVALID for a NULL argument or a status other than
 * UNKNOWN, SERVING or NOT_SERVING (SERVICE_UNKNOWN is only ever reported,
 * never set); TRPC_ERR_CLOSED after trpc_health_shutdown(), which freezes
 * every status at NOT_SERVING; TRPC_ERR_NOMEM when the entry could not be
 * stored, or when it was stored but the watchers could not be notified.
 */
int trpc_health_set(trpc_health *h, const char *service, int status)
{
	int rc;

	if (h == NULL || service == NULL || status < TRPC_HEALTH_UNKNOWN ||
	    status > TRPC_HEALTH_NOT_SERVING)
		return TRPC_ERR_INVALID;
	pthread_mutex_lock(&h->mu);
	rc = h->shut_down ? TRPC_ERR_CLOSED : set_locked(h, service, status);
	pthread_mutex_unlock(&h->mu);
	if (rc != 0)
		return rc;
	return notify(h, service);
}

void trpc_health_shutdown(trpc_health *h)
{
	if (h == NULL)
		return;
	pthread_mutex_lock(&h->mu);
	h->shut_down = 1;
	for (size_t i = 0; i < h->n_entries; i++)
		h->entries[i].status = TRPC_HEALTH_NOT_SERVING;
	pthread_mutex_unlock(&h->mu);
	if (notify(h, NULL) != 0)
		trpc_log(TRPC_LOG_WARN, "health: out of memory notifying watchers of shutdown");
}

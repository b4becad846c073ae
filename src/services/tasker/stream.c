/*
 * stream: StreamTaskStatus (see stream.h).
 *
 * Locks and ownership. hub->mu guards the hash table and, for every
 * stream, the fields marked "mu" below. It is never held across a
 * database query or trpc_call_send(). The per-stream progress (what was
 * last sent) belongs to whoever runs the stream's pass, and there is one
 * at a time: `scheduled` is set, under mu, by the thread that starts a
 * pass and cleared by it when it stops; a notification for a scheduled
 * stream only sets `dirty`, which makes the running pass go round once
 * more.
 *
 * A stream is ended exactly once, by whoever sets `finished` under mu:
 * its pass (terminal state, error, or a cancellation or shutdown it saw),
 * on_cancel (when no pass runs), or the shutdown hook (idem). Ending
 * unlinks it from the table. References (mu): one for being linked, one
 * per pass or other user; the last one frees the stream and drops the
 * reference it holds on the call.
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/query.h"
#include "services/tasker/stream.h"
#include "services/tasker/task_pb.h"
#include "store/queue.h"

#define CHANNEL       "tasker_task_events"
#define N_BUCKETS     1024 /* a power of two */
#define WAIT_MS       500  /* how often the listener looks at its stop flag */
#define ERROR_MSG_MAX 480

struct sent_step {
	char uuid[37];
	char state[40];
	int attempts;
};

struct tstream {
	struct tstream *next; /* mu: bucket chain while linked */
	int linked;           /* mu */
	int refs;             /* mu */
	int scheduled, dirty; /* mu */
	int closing;          /* mu: cancelled or shutting down; close_status says which */
	int close_status;     /* mu */
	int finished;         /* mu: ended (or being ended) by someone */
	struct task_stream_hub *hub;
	trpc_call *call;        /* a reference of ours */
	struct tstream **token; /* mu: the call's user pointer (see on_stream) */
	char task_uuid[37];
	int include_steps;
	/* the pass's */
	int started;       /* the first snapshot was sent */
	int last_sort_key; /* newest task transition sent */
	char last_state[32];
	struct sent_step *steps;
	size_t n_steps;
};

struct task_stream_hub {
	trpc_server *srv;
	struct svc_env *env;
	pthread_mutex_t mu;
	struct tstream *buckets[N_BUCKETS]; /* mu */
	size_t count;                       /* mu */
	int stopping;                       /* mu */
	struct mq_listener *listener;       /* the thread's */
	pthread_t thread;
	int thread_started;
	atomic_int stop;
};

/* ------------------------------------------------------------------ table */

static size_t bucket_of(const char *uuid)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (const unsigned char *p = (const unsigned char *)uuid; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h & (N_BUCKETS - 1);
}

/* Precondition: mu held, s linked. Drops the table's reference. */
static void unlink_locked(struct task_stream_hub *h, struct tstream *s)
{
	struct tstream **pp = &h->buckets[bucket_of(s->task_uuid)];
	while (*pp != NULL && *pp != s)
		pp = &(*pp)->next;
	if (*pp == s)
		*pp = s->next;
	s->next = NULL;
	s->linked = 0;
	h->count--;
	s->refs--;
}

static void stream_free(struct tstream *s)
{
	trpc_call_unref(s->call);
	free(s->steps);
	free(s);
}

static void stream_put(struct tstream *s)
{
	struct task_stream_hub *h = s->hub;
	pthread_mutex_lock(&h->mu);
	int last = --s->refs == 0;
	pthread_mutex_unlock(&h->mu);
	if (last)
		stream_free(s);
}

/* Claims the ending of s: 1 when the caller must finish the call now.
 * Precondition: mu held, the caller holds a reference. */
static int claim_finish_locked(struct task_stream_hub *h, struct tstream *s)
{
	if (s->finished)
		return 0;
	s->finished = 1;
	if (s->token != NULL) { /* a late on_cancel finds nothing */
		*s->token = NULL;
		s->token = NULL;
	}
	if (s->linked)
		unlink_locked(h, s);
	return 1;
}

/* ------------------------------------------------------------------ sending */

static void set_time(Google__Protobuf__Timestamp *ts, int64_t us)
{
	if (us == ENG_NO_TIME) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		ts->seconds = now.tv_sec;
		ts->nanos = (int32_t)now.tv_nsec;
		return;
	}
	int64_t sec = us / 1000000, rem = us % 1000000;
	if (rem < 0) {
		sec -= 1;
		rem += 1000000;
	}
	ts->seconds = sec;
	ts->nanos = (int32_t)(rem * 1000);
}

/* Sends one update; 0, or TRPC_ERR_CLOSED (the call is over: stop
 * quietly, on_cancel or the shutdown does the rest) or another error. */
static int send_update(struct tstream *s, int type, int64_t at, const char *task_state,
                       const struct eng_step_status *step, const char *error_message)
{
	Tasker__V1__TaskStatusUpdate u = TASKER__V1__TASK_STATUS_UPDATE__INIT;
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	Tasker__V1__StepUpdate su = TASKER__V1__STEP_UPDATE__INIT;

	u.update_type = (Tasker__V1__TaskStatusUpdate__UpdateType)type;
	set_time(&ts, at);
	u.timestamp = &ts;
	if (task_state != NULL) {
		u._task_state_case = TASKER__V1__TASK_STATUS_UPDATE___TASK_STATE_TASK_STATE;
		u.task_state = tpb_task_state(task_state);
	}
	if (step != NULL) {
		su.step_uuid = (char *)step->step_uuid;
		su.name = (char *)step->name;
		su.state = tpb_step_state(step->state);
		su.attempt = step->attempts;
		u.step_update = &su;
	}
	if (error_message != NULL) {
		u._error_message_case =
		    TASKER__V1__TASK_STATUS_UPDATE___ERROR_MESSAGE_ERROR_MESSAGE;
		u.error_message = (char *)error_message;
	}
	return trpc_call_send(s->call, &u.base);
}

static int is_terminal(const char *state)
{
	return strcmp(state, "complete") == 0 || strcmp(state, "error") == 0 ||
	       strcmp(state, "cancelled") == 0 || strcmp(state, "resolved_manually") == 0;
}

/* The step record of uuid, added when new; NULL when out of memory. */
static struct sent_step *sent_step(struct tstream *s, const char *uuid)
{
	for (size_t i = 0; i < s->n_steps; i++)
		if (strcmp(s->steps[i].uuid, uuid) == 0)
			return &s->steps[i];
	struct sent_step *n = realloc(s->steps, (s->n_steps + 1) * sizeof *n);
	if (n == NULL)
		return NULL;
	s->steps = n;
	struct sent_step *r = &s->steps[s->n_steps++];
	memset(r, 0, sizeof *r);
	snprintf(r->uuid, sizeof r->uuid, "%s", uuid);
	r->attempts = -1;
	return r;
}

/* An update to send, before they are put in time order. */
struct pending {
	int64_t at;
	int is_task; /* a task transition; else a step change */
	size_t idx;  /* into st.transitions or st.steps */
};

/* By time; at the same time (one transaction), the step moves first: they
 * are what moved the task. */
static int pending_cmp(const void *a, const void *b)
{
	const struct pending *x = a, *y = b;
	if (x->at != y->at)
		return x->at < y->at ? -1 : 1;
	if (x->is_task != y->is_task)
		return x->is_task ? 1 : -1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* The terminal update's error message: the failed steps and why. */
static void error_message(const struct eng_task_status *st, const char *state, char *buf,
                          size_t size)
{
	if (strcmp(state, "cancelled") == 0) {
		snprintf(buf, size, "task cancelled");
		return;
	}
	size_t len = (size_t)snprintf(buf, size, "task ended in error");
	const char *sep = ": ";
	for (size_t i = 0; i < st->n_steps && len < size; i++) {
		const struct eng_step_status *p = &st->steps[i];
		if (strcmp(p->state, "error") != 0)
			continue;
		len += (size_t)snprintf(buf + len, size - len, "%sstep %s failed%s%s", sep, p->name,
		                        p->error[0] ? ": " : "", p->error);
		sep = "; ";
	}
}

/* Outcome of a pass. */
enum { PASS_OPEN = 0, PASS_DONE = 1, PASS_FAILED = 2 };

/*
 * One pass: reads the task, sends what changed. PASS_DONE after the
 * terminal update, PASS_FAILED with *status/msg set, else PASS_OPEN.
 */
static int run_pass(struct tstream *s, int *status, char *msg, size_t msg_size)
{
	struct eng_task_status st;
	struct tk_err err = {0};
	struct pending *ev = NULL;
	int rv = PASS_OPEN, rc = 0;

	if (eng_task_status(s->hub->env->eng, s->task_uuid, s->started ? s->last_sort_key : -1,
	                    s->include_steps, &st, &err) != 0) {
		struct svc_result res = {0};
		svc_fail_err(&res, &err);
		*status = res.status;
		snprintf(msg, msg_size, "%s", res.message);
		return PASS_FAILED;
	}
	size_t n = 0, cap = st.n_transitions + st.n_steps;
	ev = cap ? malloc(cap * sizeof *ev) : NULL;
	if (cap && ev == NULL)
		goto nomem;
	for (size_t i = 0; i < st.n_transitions; i++)
		ev[n++] = (struct pending){st.transitions[i].at, 1, i};
	for (size_t i = 0; s->include_steps && i < st.n_steps; i++) {
		const struct eng_step_status *p = &st.steps[i];
		struct sent_step *was = sent_step(s, p->step_uuid);
		if (was == NULL)
			goto nomem;
		if (strcmp(was->state, p->state) != 0 || was->attempts != p->attempts)
			ev[n++] = (struct pending){p->at, 0, i};
	}
	/* The first pass is a snapshot, not a history: the task's state
	 * first, then its steps'. */
	if (s->started && n > 1)
		qsort(ev, n, sizeof *ev, pending_cmp);
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (ev[i].is_task) {
			const struct eng_task_transition *t = &st.transitions[ev[i].idx];
			rc = send_update(
			    s,
			    TASKER__V1__TASK_STATUS_UPDATE__UPDATE_TYPE__UPDATE_TYPE_TASK_STATE_CHANGE,
			    t->at, t->state, NULL, NULL);
			if (rc == 0) {
				s->last_sort_key = t->sort_key;
				snprintf(s->last_state, sizeof s->last_state, "%s", t->state);
			}
		} else {
			const struct eng_step_status *p = &st.steps[ev[i].idx];
			rc = send_update(
			    s,
			    TASKER__V1__TASK_STATUS_UPDATE__UPDATE_TYPE__UPDATE_TYPE_STEP_STATE_CHANGE,
			    p->at, NULL, p, NULL);
			struct sent_step *was = sent_step(s, p->step_uuid);
			if (rc == 0 && was != NULL) {
				snprintf(was->state, sizeof was->state, "%s", p->state);
				was->attempts = p->attempts;
			}
		}
	}
	if (rc == 0)
		s->started = 1;
	if (rc == 0 && s->last_state[0] != '\0' && is_terminal(s->last_state)) {
		int complete = strcmp(s->last_state, "complete") == 0 ||
		               strcmp(s->last_state, "resolved_manually") == 0;
		char emsg[ERROR_MSG_MAX];
		int64_t at =
		    st.n_transitions ? st.transitions[st.n_transitions - 1].at : ENG_NO_TIME;
		if (!complete)
			error_message(&st, s->last_state, emsg, sizeof emsg);
		rc = send_update(
		    s,
		    complete
		        ? TASKER__V1__TASK_STATUS_UPDATE__UPDATE_TYPE__UPDATE_TYPE_TASK_COMPLETE
		        : TASKER__V1__TASK_STATUS_UPDATE__UPDATE_TYPE__UPDATE_TYPE_TASK_ERROR,
		    at, s->last_state, NULL, complete ? NULL : emsg);
		if (rc == 0)
			rv = PASS_DONE;
	}
	if (rc != 0 && rc != TRPC_ERR_CLOSED) {
		*status = TRPC_STATUS_INTERNAL;
		snprintf(msg, msg_size, "cannot send an update: %s", trpc_strerror(rc));
		rv = PASS_FAILED;
	}
	free(ev);
	eng_task_status_clear(&st);
	return rv;
nomem:
	free(ev);
	eng_task_status_clear(&st);
	*status = TRPC_STATUS_RESOURCE_EXHAUSTED;
	snprintf(msg, msg_size, "out of memory");
	return PASS_FAILED;
}

/*
 * Runs passes while notifications keep arriving, then ends the stream if
 * it must end. Precondition: the caller set s->scheduled and holds a
 * reference, which this function drops.
 */
static void stream_run(struct tstream *s)
{
	struct task_stream_hub *h = s->hub;
	int status = TRPC_STATUS_OK, outcome = PASS_OPEN, finish = 0;
	char msg[512] = "";

	pthread_mutex_lock(&h->mu);
	for (;;) {
		if (s->closing || s->finished)
			break;
		s->dirty = 0;
		pthread_mutex_unlock(&h->mu);
		outcome = run_pass(s, &status, msg, sizeof msg);
		pthread_mutex_lock(&h->mu);
		if (outcome != PASS_OPEN || !s->dirty)
			break;
	}
	s->scheduled = 0;
	if (outcome != PASS_OPEN) {
		finish = claim_finish_locked(h, s);
	} else if (s->closing) {
		finish = claim_finish_locked(h, s);
		status = s->close_status;
		snprintf(msg, sizeof msg, "%s",
		         status == TRPC_STATUS_UNAVAILABLE ? "the server is shutting down" : "");
	}
	pthread_mutex_unlock(&h->mu);
	if (finish)
		trpc_call_finish(s->call, status, msg[0] ? msg : NULL);
	stream_put(s);
}

static void stream_job(void *arg)
{
	stream_run(arg);
}

/* Starts a pass on the worker pool, or marks the running one dirty.
 * Precondition: mu held. Returns 1 when the caller must submit s (a
 * reference was taken for the job). */
static int poke_locked(struct tstream *s)
{
	if (s->closing || s->finished)
		return 0;
	if (s->scheduled) {
		s->dirty = 1;
		return 0;
	}
	s->scheduled = 1;
	s->refs++;
	return 1;
}

static void submit_all(struct task_stream_hub *h, struct tstream **batch, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (trpc_server_submit(h->srv, stream_job, batch[i]) == 0)
			continue;
		/* The pool refused (out of memory): the stream misses this
		 * notification and catches up at the next one. */
		pthread_mutex_lock(&h->mu);
		batch[i]->scheduled = 0;
		pthread_mutex_unlock(&h->mu);
		stream_put(batch[i]);
	}
}

/* Wakes the streams of one task (uuid) or, with uuid NULL, every stream. */
static void dispatch(struct task_stream_hub *h, const char *uuid)
{
	struct tstream *one[8], **batch = one;
	size_t n = 0, cap = sizeof one / sizeof one[0];

	pthread_mutex_lock(&h->mu);
	if (h->stopping) {
		pthread_mutex_unlock(&h->mu);
		return;
	}
	if (uuid == NULL && h->count > cap) {
		batch = malloc(h->count * sizeof *batch);
		if (batch == NULL) {
			pthread_mutex_unlock(&h->mu);
			trpc_log(TRPC_LOG_ERROR, "task streams: out of memory");
			return;
		}
		cap = h->count;
	}
	size_t b0 = uuid != NULL ? bucket_of(uuid) : 0, b1 = uuid != NULL ? b0 + 1 : N_BUCKETS;
	for (size_t b = b0; b < b1; b++) {
		for (struct tstream *s = h->buckets[b]; s != NULL; s = s->next) {
			if (uuid != NULL && strcmp(s->task_uuid, uuid) != 0)
				continue;
			if (n == cap) { /* many streams on one task */
				struct tstream **nb = malloc(2 * cap * sizeof *nb);
				if (nb == NULL)
					break;
				memcpy(nb, batch, n * sizeof *nb);
				if (batch != one)
					free(batch);
				batch = nb;
				cap *= 2;
			}
			if (poke_locked(s))
				batch[n++] = s;
		}
	}
	pthread_mutex_unlock(&h->mu);
	submit_all(h, batch, n);
	if (batch != one)
		free(batch);
}

/* ------------------------------------------------------------------ listener */

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *listener_main(void *arg)
{
	struct task_stream_hub *h = arg;
	char channel[64];

	while (!atomic_load(&h->stop)) {
		char *payload = NULL;
		struct tk_err err = {0};
		int was_up = mq_listener_connected(h->listener);
		int64_t t0 = mono_ms();
		int r =
		    mq_listener_wait(h->listener, WAIT_MS, channel, sizeof channel, &payload, &err);
		if (r == 1) {
			if (payload != NULL && strlen(payload) == 36)
				dispatch(h, payload);
			free(payload);
			continue;
		}
		if (r < 0) {
			trpc_log(TRPC_LOG_ERROR, "task streams: listener: %s", err.msg);
			free(payload);
			struct timespec pause = {0, 100 * 1000000L};
			nanosleep(&pause, NULL);
			continue;
		}
		/* 0: the wait timed out, or the connection just came back (the
		 * wait returns early then). Notifications sent while it was
		 * down are lost: every stream reads its task once. */
		int up = mq_listener_connected(h->listener);
		if (up && (!was_up || mono_ms() - t0 < WAIT_MS - 1))
			dispatch(h, NULL);
	}
	return NULL;
}

/* ------------------------------------------------------------------ hub */

/* Server shutdown: end every stream (UNAVAILABLE) and stop the listener.
 * Runs again from trpc_server_free: idempotent. */
static void hub_shutdown(void *arg)
{
	struct task_stream_hub *h = arg;
	struct tstream **batch = NULL;
	size_t n = 0;

	pthread_mutex_lock(&h->mu);
	h->stopping = 1;
	if (h->count > 0)
		batch = malloc(h->count * sizeof *batch);
	for (size_t b = 0; b < N_BUCKETS; b++) {
		for (struct tstream *s = h->buckets[b], *next; s != NULL; s = next) {
			next = s->next;
			s->closing = 1;
			s->close_status = TRPC_STATUS_UNAVAILABLE;
			if (s->scheduled || batch == NULL)
				continue; /* its pass ends it */
			s->refs++;
			if (claim_finish_locked(h, s))
				batch[n++] = s;
			else
				s->refs--;
		}
	}
	pthread_mutex_unlock(&h->mu);
	for (size_t i = 0; i < n; i++) {
		trpc_call_finish(batch[i]->call, TRPC_STATUS_UNAVAILABLE,
		                 "the server is shutting down");
		stream_put(batch[i]);
	}
	free(batch);
	if (h->thread_started) {
		atomic_store(&h->stop, 1);
		pthread_join(h->thread, NULL);
		h->thread_started = 0;
	}
}

static void hub_free(void *arg)
{
	struct task_stream_hub *h = arg;
	hub_shutdown(h);
	/* Streams still linked here never started a pass on this server
	 * (it was never started): drop them. */
	for (size_t b = 0; b < N_BUCKETS; b++) {
		while (h->buckets[b] != NULL) {
			struct tstream *s = h->buckets[b];
			unlink_locked(h, s);
			if (s->refs == 0)
				stream_free(s);
		}
	}
	mq_listener_free(h->listener);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

struct task_stream_hub *task_stream_hub_new(trpc_server *srv, struct svc_env *env,
                                            const char *conninfo, struct tk_err *err)
{
	const char *channels[] = {CHANNEL};
	struct task_stream_hub *h = calloc(1, sizeof *h);

	if (h == NULL) {
		tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
		return NULL;
	}
	h->srv = srv;
	h->env = env;
	if (pthread_mutex_init(&h->mu, NULL) != 0) {
		free(h);
		tk_err_set(err, TRPC_ERR_SYSTEM, "task streams: cannot create a mutex");
		return NULL;
	}
	h->listener = mq_listener_new(conninfo, channels, 1, err);
	if (h->listener == NULL)
		goto fail;
	if (pthread_create(&h->thread, NULL, listener_main, h) != 0) {
		tk_err_set(err, TRPC_ERR_SYSTEM, "task streams: cannot start the listener thread");
		goto fail;
	}
	h->thread_started = 1;
	/* From here the server owns h. */
	if (trpc_server_on_shutdown(srv, hub_shutdown, h) != 0 ||
	    trpc_server_on_free(srv, hub_free, h) != 0) {
		tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
		hub_free(h); /* not registered as a free hook: nobody else will */
		return NULL;
	}
	return h;
fail:
	mq_listener_free(h->listener);
	pthread_mutex_destroy(&h->mu);
	free(h);
	return NULL;
}

/* ------------------------------------------------------------------ handlers */

static void on_stream(trpc_call *call, const ProtobufCMessage *msg, void *ud)
{
	struct task_stream_hub *h = ud;
	const Tasker__V1__StreamTaskStatusRequest *req = (const void *)msg;
	struct tstream *s;

	struct tk_err err = {0};
	if (eng_check_uuid("task", req->task_uuid, &err) != 0) {
		trpc_call_finish(call, TRPC_STATUS_INVALID_ARGUMENT, err.msg);
		return;
	}
	s = calloc(1, sizeof *s);
	if (s == NULL) {
		trpc_call_finish(call, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	s->hub = h;
	s->call = call;
	trpc_call_ref(call);
	snprintf(s->task_uuid, sizeof s->task_uuid, "%s", req->task_uuid);
	for (char *p = s->task_uuid; *p; p++) /* notifications carry the canonical form */
		if (*p >= 'A' && *p <= 'F')
			*p = (char)(*p - 'A' + 'a');
	s->include_steps = req->include_steps;
	/*
	 * on_cancel finds the stream through a token in the call's arena,
	 * which lives as long as the call: a pass on another thread may end
	 * and free the stream while on_cancel is starting, so the token is
	 * cleared (under mu) when the stream ends, never left dangling.
	 */
	s->token = trpc_call_alloc(call, sizeof *s->token);
	if (s->token == NULL) {
		trpc_call_finish(call, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		stream_free(s);
		return;
	}
	*s->token = s;
	trpc_call_set_user(call, s->token);

	pthread_mutex_lock(&h->mu);
	const char *refuse = h->stopping                   ? "the server is shutting down"
	                     : h->count >= TASK_STREAM_MAX ? "too many status streams are open"
	                                                   : NULL;
	if (refuse == NULL) {
		size_t b = bucket_of(s->task_uuid);
		s->next = h->buckets[b];
		h->buckets[b] = s;
		s->linked = 1;
		h->count++;
		s->refs = 2; /* the table's and this handler's */
		s->scheduled = 1;
	}
	pthread_mutex_unlock(&h->mu);
	if (refuse != NULL) {
		*s->token = NULL;
		trpc_call_finish(
		    call, h->stopping ? TRPC_STATUS_UNAVAILABLE : TRPC_STATUS_RESOURCE_EXHAUSTED,
		    refuse);
		stream_free(s);
		return;
	}
	/* Subscribed first, then the snapshot: a change committed in between
	 * is either in the snapshot or makes the pass go round again. */
	stream_run(s);
}

static void on_stream_cancel(trpc_call *call, void *ud)
{
	struct task_stream_hub *h = ud;
	struct tstream **token = trpc_call_user(call), *s;
	int finish = 0;

	if (token == NULL)
		return;
	pthread_mutex_lock(&h->mu);
	s = *token;
	if (s == NULL) { /* already ended */
		pthread_mutex_unlock(&h->mu);
		return;
	}
	s->refs++;
	s->closing = 1;
	if (s->close_status == 0)
		s->close_status = TRPC_STATUS_CANCELLED;
	if (!s->scheduled)
		finish = claim_finish_locked(h, s);
	pthread_mutex_unlock(&h->mu);
	if (finish)
		trpc_call_finish(call, TRPC_STATUS_CANCELLED, NULL);
	stream_put(s);
}

void task_stream_method(struct task_stream_hub *hub, struct svc_grpc_extra *out)
{
	memset(out, 0, sizeof *out);
	out->service = "tasker.v1.TaskService";
	out->permission = "tasks:read";
	out->method.name = "StreamTaskStatus";
	out->method.kind = TRPC_SERVER_STREAMING;
	out->method.request = &tasker__v1__stream_task_status_request__descriptor;
	out->method.response = &tasker__v1__task_status_update__descriptor;
	out->method.handler = on_stream;
	out->method.stream.on_cancel = on_stream_cancel;
	out->ud = hub;
}

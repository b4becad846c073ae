/*
 * wsvc: the worker's state as the Worker* services see it, response
 * building helpers, and the worker's Prometheus families (wsvc.h).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/template.h"
#include "services/worker/wsvc.h"
#include "store/db.h"
#include "worker/handler.h"
#include "worker/status.h"
#include "worker/worker.h"

int wsvc_init_counters(struct wsvc *w)
{
	w->access_counts =
	    calloc(w->n_templates > 0 ? w->n_templates : 1, sizeof(*w->access_counts));
	if (w->access_counts == NULL)
		return TRPC_ERR_NOMEM;
	for (size_t i = 0; i < w->n_templates; i++)
		atomic_init(&w->access_counts[i], 0);
	atomic_init(&w->hits, 0);
	atomic_init(&w->misses, 0);
	atomic_init(&w->last_pool_errors, 0);
	return 0;
}

void wsvc_clear(struct wsvc *w)
{
	free(w->access_counts);
	w->access_counts = NULL;
}

int wsvc_serves(const struct wsvc *w, const char *namespace_name)
{
	for (size_t i = 0; i < w->n_namespaces; i++)
		if (strcmp(w->namespaces[i], namespace_name) == 0)
			return 1;
	return 0;
}

const struct tpl *wsvc_find_template(const struct wsvc *w, const char *namespace_name,
                                     const char *name, const char *version, size_t *index)
{
	if (namespace_name == NULL || name == NULL || version == NULL ||
	    !wsvc_serves(w, namespace_name))
		return NULL;
	for (size_t i = 0; i < w->n_templates; i++) {
		const struct tpl *t = w->templates[i];
		if (strcmp(t->namespace_name, namespace_name) == 0 && strcmp(t->name, name) == 0 &&
		    strcmp(t->version, version) == 0) {
			if (index != NULL)
				*index = i;
			return t;
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------ building responses */

void *wsvc_pb_alloc(struct wsvc_pb *b, size_t size)
{
	void *p = b->a->alloc(b->a->allocator_data, size > 0 ? size : 1);

	if (p == NULL)
		b->oom = 1;
	else
		memset(p, 0, size);
	return p;
}

char *wsvc_pb_strdup(struct wsvc_pb *b, const char *s)
{
	size_t n;
	char *p;

	if (s == NULL)
		s = "";
	n = strlen(s) + 1;
	if ((p = wsvc_pb_alloc(b, n)) != NULL)
		memcpy(p, s, n);
	return p;
}

Google__Protobuf__Timestamp *wsvc_pb_now(struct wsvc_pb *b)
{
	Google__Protobuf__Timestamp *t = wsvc_pb_alloc(b, sizeof(*t));
	struct timespec ts;

	if (t == NULL)
		return NULL;
	google__protobuf__timestamp__init(t);
	clock_gettime(CLOCK_REALTIME, &ts);
	t->seconds = ts.tv_sec;
	t->nanos = (int32_t)ts.tv_nsec;
	return t;
}

/* ------------------------------------------------------------------ metrics */

static void gauge(trpc_metrics_buf *out, const char *name, const char *help, double v)
{
	trpc_metrics_family(out, name, "gauge", help);
	trpc_metrics_sample(out, name, NULL, 0, v);
}

void wsvc_collect_metrics(trpc_metrics_buf *out, void *ud)
{
	const struct wsvc *w = ud;
	struct wk_worker_status st;
	struct timespec now;
	const char *info[] = {"worker_id", wk_worker_uuid(w->worker), "version", PACKAGE_VERSION};

	wk_worker_status(w->worker, &st);
	clock_gettime(CLOCK_MONOTONIC, &now);
	trpc_metrics_family(out, "tasker_worker_info", "gauge",
	                    "The worker's identity (always 1).");
	trpc_metrics_sample(out, "tasker_worker_info", info, 2, 1);
	gauge(out, "tasker_worker_uptime_seconds", "Seconds since the worker started.",
	      (double)((int64_t)now.tv_sec * 1000000000 + now.tv_nsec - w->started_ns) / 1e9);
	gauge(out, "tasker_worker_concurrency", "Handler threads configured.", st.concurrency);
	gauge(out, "tasker_worker_handler_threads", "Handler threads running.", st.handler_threads);
	gauge(out, "tasker_worker_messages_in_hand",
	      "Queue messages read and not yet finished (claimed, running or waiting for a "
	      "handler thread).",
	      st.busy);
	gauge(out, "tasker_worker_stopping", "1 once the worker no longer claims steps.",
	      st.stopping);
	gauge(out, "tasker_worker_queues", "Namespace queues the worker reads.",
	      (double)st.n_queues);
	gauge(out, "tasker_worker_templates_loaded", "Task templates loaded at start-up.",
	      (double)w->n_templates);
	trpc_metrics_family(out, "tasker_worker_template_lookups_total", "counter",
	                    "GetTemplate lookups, by result.");
	trpc_metrics_sample(out, "tasker_worker_template_lookups_total",
	                    (const char *[]){"result", "hit"}, 1, (double)atomic_load(&w->hits));
	trpc_metrics_sample(out, "tasker_worker_template_lookups_total",
	                    (const char *[]){"result", "miss"}, 1, (double)atomic_load(&w->misses));
}

static void counter(trpc_metrics_buf *out, const char *name, const char *help, long v)
{
	trpc_metrics_family(out, name, "counter", help);
	trpc_metrics_sample(out, name, NULL, 0, (double)v);
}

void wsvc_collect_event_metrics(trpc_metrics_buf *out, void *ud)
{
	const struct wsvc *w = ud;
	struct wk_worker_events ev;

	wk_worker_events(w->worker, &ev);
	counter(out, "tasker_worker_events_notifications_total",
	        "Queue notifications (LISTEN/NOTIFY) received by the dispatcher.",
	        ev.notifications);
	counter(out, "tasker_worker_events_queue_reads_total",
	        "Read-and-claim rounds over the namespace queues (after a notification, or on "
	        "the poll interval).",
	        ev.reads);
	counter(out, "tasker_worker_events_listener_connects_total",
	        "LISTEN connections made (the first one and every reconnection).",
	        ev.listener_connects);
	counter(out, "tasker_worker_events_listener_errors_total",
	        "LISTEN connections that failed or were lost (the dispatcher polls meanwhile).",
	        ev.listener_errors);
	counter(out, "tasker_worker_events_steps_claimed_total",
	        "Steps claimed on the first read of their message.", ev.claimed);
	counter(out, "tasker_worker_events_steps_reclaimed_total",
	        "Steps claimed again after their message's visibility timeout ran out.",
	        ev.reclaimed);
	counter(out, "tasker_worker_events_results_reported_total", "Step results written.",
	        ev.reported);
	counter(out, "tasker_worker_events_report_fallbacks_total",
	        "Results whose batched write failed and which were then written one by one.",
	        ev.report_fallbacks);
}

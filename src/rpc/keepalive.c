/*
 * keepalive: the keepalive and backpressure thread (see keepalive.h).
 *
 * It reads connection timestamps (atomics) under each loop's registry lock
 * and posts commands; it never touches an nghttp2 session itself. Each
 * action is posted once per connection (ka_flags) until the loop clears it.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "call.h"
#include "conn.h"
#include "keepalive.h"
#include "loop.h"
#include "pool.h"
#include "server.h"

struct keepalive {
	struct trpc_server *srv;
	pthread_t thread;
	int started;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC */
	int stop;
	int pressure_changed;
	int told_paused; /* what the loops were last told */
	struct trpc_call **heap;
	size_t len, cap;
	int64_t scan_ns;
	struct metrics_slab *slab; /* this thread's counters */
};

/* ------------------------------------------------------------------ heap */

static void heap_set(struct keepalive *k, size_t i, struct trpc_call *c)
{
	k->heap[i] = c;
	c->heap_idx = i + 1;
}

static void sift_up(struct keepalive *k, size_t i)
{
	struct trpc_call *c = k->heap[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (k->heap[parent]->deadline <= c->deadline)
			break;
		heap_set(k, i, k->heap[parent]);
		i = parent;
	}
	heap_set(k, i, c);
}

static void sift_down(struct keepalive *k, size_t i)
{
	struct trpc_call *c = k->heap[i];
	for (;;) {
		size_t l = 2 * i + 1;
		if (l >= k->len)
			break;
		size_t m =
		    l + 1 < k->len && k->heap[l + 1]->deadline < k->heap[l]->deadline ? l + 1 : l;
		if (k->heap[m]->deadline >= c->deadline)
			break;
		heap_set(k, i, k->heap[m]);
		i = m;
	}
	heap_set(k, i, c);
}

static void heap_remove_at(struct keepalive *k, size_t i)
{
	struct trpc_call *c = k->heap[i];
	c->heap_idx = 0;
	k->len--;
	if (i == k->len)
		return;
	heap_set(k, i, k->heap[k->len]);
	sift_down(k, i);
	sift_up(k, k->heap[i]->heap_idx - 1);
}

void keepalive_add_deadline(struct keepalive *k, struct trpc_call *c)
{
	pthread_mutex_lock(&k->mu);
	if (c->heap_idx != 0) {
		pthread_mutex_unlock(&k->mu);
		return;
	}
	if (k->len == k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 256;
		struct trpc_call **h = realloc(k->heap, cap * sizeof *h);
		if (h == NULL) {
			pthread_mutex_unlock(&k->mu);
			trpc_log(TRPC_LOG_ERROR,
			         "out of memory: a call's deadline is not enforced");
			return;
		}
		k->heap = h;
		k->cap = cap;
	}
	call_ref(c);
	k->heap[k->len] = c;
	k->len++;
	sift_up(k, k->len - 1);
	int earliest = k->heap[0] == c;
	if (earliest)
		pthread_cond_signal(&k->cv);
	pthread_mutex_unlock(&k->mu);
}

void keepalive_remove_deadline(struct keepalive *k, struct trpc_call *c)
{
	if (k == NULL)
		return;
	pthread_mutex_lock(&k->mu);
	int had = c->heap_idx != 0;
	if (had)
		heap_remove_at(k, c->heap_idx - 1);
	pthread_mutex_unlock(&k->mu);
	if (had)
		call_unref(c);
}

/* ------------------------------------------------------------------ scan */

/* Posts a command once per connection; a GOAWAY or close is counted under
 * `reason` (enum metrics_goaway; -1 for none). */
static void post_once(struct keepalive *k, struct conn *c, int flag, int type, uint32_t code,
                      const char *text, int reason)
{
	if (atomic_fetch_or(&c->ka_flags, flag) & flag)
		return;
	if (reason >= 0)
		metric_inc(&k->slab->counters[MC_GOAWAY + reason]);
	loop_post(c->loop, type, c, code, text);
}

static void check_conn(struct keepalive *k, struct conn *c, int64_t now)
{
	const struct trpc_server_config *cfg = &k->srv->cfg;
	const int64_t ms = 1000000;
	if (!atomic_load(&c->handshaken)) {
		if (now - c->created > cfg->handshake_timeout_ms * ms)
			post_once(k, c, KA_CLOSE_POSTED, LOOP_CMD_CLOSE, NGHTTP2_SETTINGS_TIMEOUT,
			          "connection preface/SETTINGS timeout", GOAWAY_HANDSHAKE_TIMEOUT);
		return;
	}
	int64_t ping = atomic_load(&c->ping_sent);
	if (cfg->keepalive_time_ms > 0 && ping == 0 &&
	    now - atomic_load(&c->last_read) > cfg->keepalive_time_ms * ms)
		post_once(k, c, KA_PING_POSTED, LOOP_CMD_PING, 0, NULL, -1);
	if (ping != 0 && now - ping > cfg->keepalive_timeout_ms * ms)
		post_once(k, c, KA_CLOSE_POSTED, LOOP_CMD_CLOSE, NGHTTP2_NO_ERROR,
		          "keepalive ping not acknowledged", GOAWAY_PING_TIMEOUT);
	int64_t idle = atomic_load(&c->idle_since);
	if (cfg->max_connection_idle_ms > 0 && idle != 0 && atomic_load(&c->nstreams) == 0 &&
	    now - idle > cfg->max_connection_idle_ms * ms)
		post_once(k, c, KA_GOAWAY_POSTED, LOOP_CMD_GOAWAY, NGHTTP2_NO_ERROR, "max_idle",
		          GOAWAY_IDLE);
	if (cfg->max_connection_age_ms > 0 && now - c->created > cfg->max_connection_age_ms * ms)
		post_once(k, c, KA_GOAWAY_POSTED, LOOP_CMD_GOAWAY, NGHTTP2_NO_ERROR, "max_age",
		          GOAWAY_MAX_AGE);
	int64_t goaway = atomic_load(&c->goaway_at);
	if (cfg->max_connection_age_ms > 0 && cfg->max_connection_age_grace_ms > 0 && goaway != 0 &&
	    now - goaway > cfg->max_connection_age_grace_ms * ms)
		post_once(k, c, KA_CLOSE_POSTED, LOOP_CMD_CLOSE, NGHTTP2_NO_ERROR,
		          "max_age grace period over", GOAWAY_MAX_AGE_GRACE);
}

static void scan(struct keepalive *k, int64_t now)
{
	for (int i = 0; i < k->srv->nloops; i++) {
		struct loop *l = k->srv->loops[i];
		pthread_mutex_lock(&l->reg_mu);
		for (struct conn *c = l->conns; c != NULL; c = c->reg_next)
			check_conn(k, c, now);
		pthread_mutex_unlock(&l->reg_mu);
	}
}

static void tell_loops(struct keepalive *k, int type)
{
	for (int i = 0; i < k->srv->nloops; i++)
		loop_post(k->srv->loops[i], type, NULL, 0, NULL);
}

/* ------------------------------------------------------------------ thread */

static void *keepalive_main(void *arg)
{
	struct keepalive *k = arg;
	int64_t next_scan = 0;
	pthread_mutex_lock(&k->mu);
	while (!k->stop) {
		int64_t now = now_ns();
		/* Expired deadlines: take them out under the lock, act outside. */
		struct trpc_call *expired[64];
		size_t nexp = 0;
		while (k->len > 0 && k->heap[0]->deadline <= now && nexp < 64) {
			expired[nexp++] = k->heap[0];
			heap_remove_at(k, 0);
		}
		int pressure = k->pressure_changed;
		k->pressure_changed = 0;
		pthread_mutex_unlock(&k->mu);

		for (size_t i = 0; i < nexp; i++) {
			call_fail(expired[i], TRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded",
			          NULL);
			call_unref(expired[i]);
		}
		if (pressure || k->told_paused) {
			int over = pool_overloaded(k->srv->pool);
			if (over != k->told_paused) {
				k->told_paused = over;
				trpc_log(over ? TRPC_LOG_WARN : TRPC_LOG_INFO,
				         over ? "work queue above high watermark: pausing reads"
				              : "work queue below low watermark: resuming reads");
				tell_loops(k, over ? LOOP_CMD_PAUSE : LOOP_CMD_RESUME);
			}
		}
		if (now >= next_scan) {
			scan(k, now);
			next_scan = now + k->scan_ns;
		}

		pthread_mutex_lock(&k->mu);
		if (k->stop || nexp == 64)
			continue;
		int64_t wake = next_scan;
		if (k->len > 0 && k->heap[0]->deadline < wake)
			wake = k->heap[0]->deadline;
		if (k->told_paused && wake > now + 10000000)
			wake = now + 10000000; /* watch the queue drain closely */
		struct timespec ts = {.tv_sec = wake / 1000000000, .tv_nsec = wake % 1000000000};
		if (!k->pressure_changed)
			pthread_cond_timedwait(&k->cv, &k->mu, &ts);
	}
	pthread_mutex_unlock(&k->mu);
	return NULL;
}

static int64_t min_nonzero(int64_t a, int64_t b)
{
	if (a <= 0)
		return b;
	if (b <= 0)
		return a;
	return a < b ? a : b;
}

struct keepalive *keepalive_new(struct trpc_server *srv, const char **why)
{
	struct keepalive *k = calloc(1, sizeof *k);
	if (k == NULL) {
		*why = "out of memory";
		return NULL;
	}
	k->srv = srv;
	k->slab = srv->metrics.slabs[srv->cfg.io_threads];
	pthread_mutex_init(&k->mu, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&k->cv, &attr);
	pthread_condattr_destroy(&attr);
	/* Scan often enough for the shortest configured timer to be met within
	 * a quarter of its length, between 10 ms and 1 s. */
	const struct trpc_server_config *cfg = &srv->cfg;
	int64_t m = cfg->handshake_timeout_ms;
	m = min_nonzero(m, cfg->keepalive_time_ms);
	m = min_nonzero(m, cfg->keepalive_timeout_ms);
	m = min_nonzero(m, cfg->max_connection_idle_ms);
	m = min_nonzero(m, cfg->max_connection_age_ms);
	m = min_nonzero(m, cfg->max_connection_age_grace_ms);
	m /= 4;
	if (m < 10)
		m = 10;
	if (m > 1000)
		m = 1000;
	k->scan_ns = m * 1000000;
	return k;
}

int keepalive_start(struct keepalive *k)
{
	if (pthread_create(&k->thread, NULL, keepalive_main, k) != 0)
		return TRPC_ERR_SYSTEM;
	k->started = 1;
	return 0;
}

void keepalive_pressure(void *arg, int overloaded)
{
	struct keepalive *k = arg;
	(void)overloaded; /* the thread reads the pool's current state */
	pthread_mutex_lock(&k->mu);
	k->pressure_changed = 1;
	pthread_cond_signal(&k->cv);
	pthread_mutex_unlock(&k->mu);
}

void keepalive_stop(struct keepalive *k)
{
	if (k == NULL || !k->started)
		return;
	pthread_mutex_lock(&k->mu);
	k->stop = 1;
	pthread_cond_signal(&k->cv);
	pthread_mutex_unlock(&k->mu);
	pthread_join(k->thread, NULL);
	k->started = 0;
}

void keepalive_free(struct keepalive *k)
{
	if (k == NULL)
		return;
	for (size_t i = 0; i < k->len; i++) {
		k->heap[i]->heap_idx = 0;
		call_unref(k->heap[i]);
	}
	free(k->heap);
	pthread_mutex_destroy(&k->mu);
	pthread_cond_destroy(&k->cv);
	free(k);
}

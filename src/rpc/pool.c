#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

struct pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct pool_task *head, *tail;
	size_t depth;
	atomic_size_t depth_hint; /* depth, readable without the lock */
	size_t high, low;
	int stopping;
	atomic_int overloaded;
	int nthreads;
	pthread_t *threads;
	int idle; /* threads waiting on cv: a push signals only if some wait */
	void (*on_pressure)(void *ud, int overloaded);
	void *ud;
};

static __thread int on_worker;

int pool_on_worker(void)
{
	return on_worker;
}

static void *worker_main(void *arg)
{
	struct pool *p = arg;
	on_worker = 1;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (p->head == NULL && !p->stopping) {
			p->idle++;
			pthread_cond_wait(&p->cv, &p->mu);
			p->idle--;
		}
		if (p->head == NULL)
			break; /* stopping and drained */
		struct pool_task *t = p->head;
		p->head = t->next;
		if (p->head == NULL)
			p->tail = NULL;
		p->depth--;
		atomic_store_explicit(&p->depth_hint, p->depth, memory_order_relaxed);
		int relieved = atomic_load(&p->overloaded) && p->depth < p->low;
		if (relieved)
			atomic_store(&p->overloaded, 0);
		pthread_mutex_unlock(&p->mu);
		if (relieved && p->on_pressure != NULL)
			p->on_pressure(p->ud, 0);
		t->next = NULL;
		t->run(t);
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

struct pool *pool_new(int nthreads, size_t high, size_t low,
                      void (*on_pressure)(void *ud, int overloaded), void *ud, const char **why)
{
	struct pool *p = calloc(1, sizeof *p);
	if (p == NULL)
		goto fail_alloc;
	p->threads = calloc((size_t)nthreads, sizeof *p->threads);
	if (p->threads == NULL)
		goto fail_threads;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->high = high;
	p->low = low;
	p->on_pressure = on_pressure;
	p->ud = ud;
	for (int i = 0; i < nthreads; i++) {
		if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
			*why = "cannot start worker thread";
			p->nthreads = i;
			pool_stop(p);
			pool_free(p);
			return NULL;
		}
		p->nthreads = i + 1;
	}
	return p;
fail_threads:
	free(p);
fail_alloc:
	*why = "out of memory";
	return NULL;
}

void pool_push_batch(struct pool *p, struct pool_task *head, struct pool_task *tail, size_t n)
{
	if (n == 0)
		return;
	tail->next = NULL;
	pthread_mutex_lock(&p->mu);
	if (p->tail != NULL)
		p->tail->next = head;
	else
		p->head = head;
	p->tail = tail;
	p->depth += n;
	atomic_store_explicit(&p->depth_hint, p->depth, memory_order_relaxed);
	int crossed = !atomic_load(&p->overloaded) && p->depth >= p->high;
	if (crossed)
		atomic_store(&p->overloaded, 1);
	/* Wake as many idle workers as there are new tasks, no more. */
	int wake = p->idle < (int)n ? p->idle : (int)n;
	if (wake >= p->idle && wake > 1)
		pthread_cond_broadcast(&p->cv);
	else
		for (int i = 0; i < wake; i++)
			pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	if (crossed && p->on_pressure != NULL)
		p->on_pressure(p->ud, 1);
}

void pool_push(struct pool *p, struct pool_task *t)
{
	pool_push_batch(p, t, t, 1);
}

size_t pool_depth_hint(struct pool *p)
{
	return atomic_load_explicit(&p->depth_hint, memory_order_relaxed);
}

size_t pool_high_watermark(struct pool *p)
{
	return p->high;
}

void pool_stats(struct pool *p, struct pool_stats *st)
{
	pthread_mutex_lock(&p->mu);
	st->depth = p->depth;
	st->high = p->high;
	st->low = p->low;
	st->threads = p->nthreads;
	st->busy = p->nthreads - p->idle;
	st->overloaded = atomic_load(&p->overloaded);
	pthread_mutex_unlock(&p->mu);
}

int pool_overloaded(struct pool *p)
{
	return atomic_load(&p->overloaded);
}

void pool_stop(struct pool *p)
{
	pthread_mutex_lock(&p->mu);
	p->stopping = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_mutex_lock(&p->mu); /* pool_stats reads it from any thread */
	p->nthreads = 0;
	pthread_mutex_unlock(&p->mu);
}

void pool_free(struct pool *p)
{
	if (p == NULL)
		return;
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p->threads);
	free(p);
}

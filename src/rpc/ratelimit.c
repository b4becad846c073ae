#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "call.h"
#include "conn.h"
#include "ratelimit.h"
#include "server.h"
#include "tasker/rpc.h"

#define N_SHARDS     64 /* power of two */
#define SHARD_CHAINS 256
#define SWEEP_NS     (10LL * 1000000000) /* a shard is swept at most this often */

/* ------------------------------------------------------------------ rules */

struct rl_rules {
	struct rl_rules *retired_next; /* the chain of snapshots kept until free */
	int enabled, key_mode;
	double rate, burst;
	struct rl_service *services;
	size_t n_services;
};

static void rules_free(struct rl_rules *r)
{
	for (size_t i = 0; i < r->n_services; i++)
		free(r->services[i].name);
	free(r->services);
	free(r);
}

static struct rl_rules *rules_new(const struct trpc_server_config *cfg)
{
	char why[256];
	struct rl_rules *r = calloc(1, sizeof *r);
	if (r == NULL)
		return NULL;
	r->enabled = cfg->ratelimit_enabled;
	r->key_mode = cfg->ratelimit_key;
	r->rate = cfg->ratelimit_rate;
	r->burst = cfg->ratelimit_burst > 0 ? cfg->ratelimit_burst : r->rate;
	long n = ratelimit_parse_services(cfg->ratelimit_services, NULL, why, sizeof why);
	if (n > 0) {
		r->services = calloc((size_t)n, sizeof *r->services);
		if (r->services == NULL ||
		    ratelimit_parse_services(cfg->ratelimit_services, r->services, why,
		                             sizeof why) != n) {
			r->n_services = r->services != NULL ? (size_t)n : 0;
			rules_free(r);
			return NULL;
		}
		r->n_services = (size_t)n;
	}
	return r;
}

/* The rate and burst for a service; rate 0 means "not limited". */
static void rules_for(const struct rl_rules *r, const char *svc, size_t len, double *rate,
                      double *burst)
{
	for (size_t i = 0; i < r->n_services; i++) {
		const struct rl_service *s = &r->services[i];
		if (strlen(s->name) == len && memcmp(s->name, svc, len) == 0) {
			*rate = s->rate;
			*burst = s->burst;
			return;
		}
	}
	*rate = r->rate;
	*burst = r->burst;
}

/* ------------------------------------------------------------------ buckets */

struct bucket {
	struct bucket *next;
	uint64_t hash;
	double tokens;
	int64_t last_ns;
	char key[]; /* service '\0' client '\0' */
};

struct shard {
	pthread_mutex_t mu;
	int64_t last_sweep;
	struct bucket *chains[SHARD_CHAINS];
};

struct ratelimit {
	_Atomic(struct rl_rules *) rules;
	atomic_int enabled; /* copy of rules->enabled: the one load of the fast path */
	pthread_mutex_t retire_mu;
	struct rl_rules *retired;
	struct shard shards[N_SHARDS];
};

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* FNV-1a over service '\0' client. */
static uint64_t key_hash(const char *svc, size_t slen, const char *client)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < slen; i++)
		h = (h ^ (unsigned char)svc[i]) * 1099511628211ULL;
	h = (h ^ 0) * 1099511628211ULL;
	for (const char *p = client; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	return h;
}

struct ratelimit *ratelimit_new(const struct trpc_server_config *cfg)
{
	struct ratelimit *rl = calloc(1, sizeof *rl);
	if (rl == NULL)
		return NULL;
	struct rl_rules *r = rules_new(cfg);
	if (r == NULL) {
		free(rl);
		return NULL;
	}
	atomic_init(&rl->rules, r);
	atomic_init(&rl->enabled, r->enabled);
	pthread_mutex_init(&rl->retire_mu, NULL);
	for (int i = 0; i < N_SHARDS; i++)
		pthread_mutex_init(&rl->shards[i].mu, NULL);
	return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
	if (rl == NULL)
		return;
	for (int i = 0; i < N_SHARDS; i++) {
		for (int j = 0; j < SHARD_CHAINS; j++) {
			struct bucket *b = rl->shards[i].chains[j], *next;
			for (; b != NULL; b = next) {
				next = b->next;
				free(b);
			}
		}
		pthread_mutex_destroy(&rl->shards[i].mu);
	}
	struct rl_rules *r = rl->retired, *next;
	for (; r != NULL; r = next) {
		next = r->retired_next;
		rules_free(r);
	}
	rules_free(atomic_load(&rl->rules));
	pthread_mutex_destroy(&rl->retire_mu);
	free(rl);
}

int ratelimit_set_rules(struct ratelimit *rl, const struct trpc_server_config *cfg)
{
	struct rl_rules *r = rules_new(cfg);
	if (r == NULL)
		return TRPC_ERR_NOMEM;
	/* Readers may still hold the old snapshot: retire it, free it with rl. */
	pthread_mutex_lock(&rl->retire_mu);
	struct rl_rules *old = atomic_exchange(&rl->rules, r);
	old->retired_next = rl->retired;
	rl->retired = old;
	pthread_mutex_unlock(&rl->retire_mu);
	atomic_store(&rl->enabled, r->enabled);
	return 0;
}

int ratelimit_active(struct ratelimit *rl, int mode)
{
	if (rl == NULL || !atomic_load_explicit(&rl->enabled, memory_order_relaxed))
		return 0;
	return atomic_load(&rl->rules)->key_mode == mode;
}

/* Drops buckets that would be full by now. Under the shard lock. */
static void sweep(struct shard *sh, const struct rl_rules *r, int64_t now)
{
	for (int j = 0; j < SHARD_CHAINS; j++) {
		struct bucket **pp = &sh->chains[j];
		while (*pp != NULL) {
			struct bucket *b = *pp;
			double rate, burst;
			rules_for(r, b->key, strlen(b->key), &rate, &burst);
			double idle = (double)(now - b->last_ns) / 1e9;
			if (rate <= 0 || b->tokens + idle * rate >= burst) {
				*pp = b->next;
				free(b);
			} else {
				pp = &b->next;
			}
		}
	}
	sh->last_sweep = now;
}

int ratelimit_take(struct ratelimit *rl, const char *svc, size_t slen, const char *client,
                   int64_t *retry_ms)
{
	if (rl == NULL || !atomic_load_explicit(&rl->enabled, memory_order_relaxed))
		return 0;
	const struct rl_rules *r = atomic_load(&rl->rules);
	double rate, burst;
	rules_for(r, svc, slen, &rate, &burst);
	if (rate <= 0)
		return 0;
	if (client == NULL)
		client = "";
	uint64_t h = key_hash(svc, slen, client);
	struct shard *sh = &rl->shards[h & (N_SHARDS - 1)];
	size_t chain = (size_t)((h >> 6) % SHARD_CHAINS);
	size_t clen = strlen(client);
	int64_t now = mono_ns();
	int rc = 0;

	pthread_mutex_lock(&sh->mu);
	if (now - sh->last_sweep > SWEEP_NS)
		sweep(sh, r, now);
	struct bucket *b = sh->chains[chain];
	for (; b != NULL; b = b->next)
		if (b->hash == h && strncmp(b->key, svc, slen) == 0 && b->key[slen] == '\0' &&
		    strcmp(b->key + slen + 1, client) == 0)
			break;
	if (b == NULL) {
		b = malloc(sizeof *b + slen + clen + 2);
		if (b == NULL) {
			/* Out of memory: let the call through rather than fail it. */
			pthread_mutex_unlock(&sh->mu);
			return 0;
		}
		b->hash = h;
		b->tokens = burst;
		b->last_ns = now;
		memcpy(b->key, svc, slen);
		b->key[slen] = '\0';
		memcpy(b->key + slen + 1, client, clen + 1);
		b->next = sh->chains[chain];
		sh->chains[chain] = b;
	}
	b->tokens += (double)(now - b->last_ns) / 1e9 * rate;
	if (b->tokens > burst)
		b->tokens = burst;
	b->last_ns = now;
	if (b->tokens >= 1) {
		b->tokens -= 1;
	} else {
		int64_t ms = (int64_t)((1 - b->tokens) / rate * 1000) + 1;
		if (retry_ms != NULL)
			*retry_ms = ms;
		rc = TRPC_ERR_UNAVAILABLE;
	}
	pthread_mutex_unlock(&sh->mu);
	return rc;
}

void ratelimit_peer_ip(const char *peer, char *out, size_t size)
{
	const char *p = peer != NULL ? peer : "";
	if (strncmp(p, "ipv4:", 5) == 0) {
		p += 5;
		const char *colon = strrchr(p, ':');
		snprintf(out, size, "%.*s", (int)(colon ? colon - p : (long)strlen(p)), p);
	} else if (strncmp(p, "ipv6:[", 6) == 0) {
		p += 6;
		const char *end = strchr(p, ']');
		snprintf(out, size, "%.*s", (int)(end ? end - p : (long)strlen(p)), p);
	} else {
		snprintf(out, size, "%s", p);
	}
}

/* ------------------------------------------------------------------ public API */

/* The service part of "/pkg.Svc/Method". */
static const char *path_service(const char *path, size_t *len)
{
	const char *p = path != NULL && path[0] == '/' ? path + 1 : "";
	const char *slash = strchr(p, '/');
	*len = slash != NULL ? (size_t)(slash - p) : strlen(p);
	return p;
}

void ratelimit_add_hints(struct trpc_call *call, int64_t retry_ms)
{
	char v[32];
	int n = snprintf(v, sizeof v, "%lld", (long long)retry_ms);
	trpc_call_add_trailing_metadata(call, "grpc-retry-pushback-ms", v, (size_t)n);
	n = snprintf(v, sizeof v, "%lld", (long long)((retry_ms + 999) / 1000));
	trpc_call_add_trailing_metadata(call, "retry-after", v, (size_t)n);
}

/* Adds the retry hints and finishes the call with RESOURCE_EXHAUSTED. */
static void refuse_call(trpc_call *call, const char *client, int64_t retry_ms)
{
	char msg[160];
	ratelimit_add_hints(call, retry_ms);
	snprintf(msg, sizeof msg, "rate limit exceeded for %s; retry in %lld ms", client,
	         (long long)retry_ms);
	trpc_call_finish(call, TRPC_STATUS_RESOURCE_EXHAUSTED, msg);
}

int trpc_call_rate_check(trpc_call *call, const char *identity)
{
	struct ratelimit *rl = call->srv->ratelimit;
	if (!ratelimit_active(rl, RATELIMIT_KEY_IDENTITY))
		return 0;
	char ip[64];
	const char *client = identity;
	if (client == NULL || *client == '\0') {
		ratelimit_peer_ip(call->conn->peer, ip, sizeof ip);
		client = ip;
	}
	size_t slen;
	const char *svc = path_service(call->path, &slen);
	int64_t retry_ms = 0;
	if (ratelimit_take(rl, svc, slen, client, &retry_ms) == 0)
		return 0;
	refuse_call(call, client, retry_ms);
	return TRPC_ERR_UNAVAILABLE;
}

int trpc_ratelimit_take(trpc_server *srv, const char *service, const char *client_key,
                        int64_t *retry_ms)
{
	if (srv == NULL || service == NULL)
		return 0;
	return ratelimit_take(srv->ratelimit, service, strlen(service), client_key, retry_ms);
}

int trpc_ratelimit_by_identity(trpc_server *srv)
{
	return srv != NULL && ratelimit_active(srv->ratelimit, RATELIMIT_KEY_IDENTITY);
}

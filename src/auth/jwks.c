/*
 * jwks: the JSON Web Key Set behind jwt_verification_method = jwks.
 *
 * Source: an https:// URL (libcurl, TLS peer and host verification on,
 * bounded time and size, redirects only to the same kind of URL), an
 * http:// URL when the configuration allows it, or a file (file:// URL or
 * a plain path) read the same way on every refresh.
 *
 * The cache holds one immutable, reference-counted key set. A request
 * takes a reference while it verifies, so a refresh can replace the set
 * under it. Refreshes happen on use, in the thread that needs one; no
 * timer thread:
 *   - the set is due after refresh_interval_s: the next lookup refreshes;
 *   - a kid the set does not know triggers a refresh too (key rotation);
 *   - refreshes are at most one per min_refresh_interval_s, whatever the
 *     trigger, so tokens with made-up kids cannot hammer the key server;
 *   - one refresh at a time: other threads that need the result wait for
 *     it, the rest keep using the current set;
 *   - a failed refresh keeps the old set, usable until it is
 *     max_stale_s past due; after that JWTs are refused (fail closed) until
 *     a refresh succeeds. Both events are logged once.
 * A document without a single usable key counts as a failed refresh.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "auth/auth_int.h"

#define JWKS_MAX_BYTES         (1024 * 1024)
#define JWKS_TIMEOUT_S         10L
#define JWKS_CONNECT_TIMEOUT_S 5L
#define JWKS_MAX_REDIRECTS     3L

struct auth_jwks_set {
	atomic_int refs;
	struct auth_key **keys;
	size_t n;
};

struct auth_jwks {
	char *source;
	char *shown; /* source for log lines: no user:password, no query */
	int refresh_interval_s, max_stale_s, min_refresh_interval_s;
	pthread_mutex_t mu;
	pthread_cond_t done;       /* broadcast when a refresh ends */
	struct auth_jwks_set *set; /* never NULL after auth_jwks_new() */
	int64_t fetched_at;        /* monotonic ms: when `set` was loaded */
	int64_t last_attempt;      /* monotonic ms: start of the last refresh */
	unsigned long generation;  /* refreshes finished, successful or not */
	int fetching;
	int stale_logged, expired_logged;
};

int64_t auth_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ key sets */

static void set_free(struct auth_jwks_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		auth_key_free(s->keys[i]);
	free(s->keys);
	free(s);
}

void auth_jwks_release(struct auth_jwks_set *s)
{
	if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1)
		set_free(s);
}

static const struct auth_key *set_find(const struct auth_jwks_set *s, const char *kid, int alg)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->keys[i]->kid, kid) == 0 && auth_key_fits(s->keys[i], alg))
			return s->keys[i];
	return NULL;
}

static int set_has_kid(const struct auth_jwks_set *s, const char *kid)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->keys[i]->kid, kid) == 0)
			return 1;
	return 0;
}

int auth_jwks_parse(const char *doc, size_t len, struct auth_key ***keys, char *why,
                    size_t why_size)
{
	json_error_t jerr;
	json_t *root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &jerr);
	json_t *arr = json_object_get(root, "keys");

	*keys = NULL;
	if (root == NULL) {
		snprintf(why, why_size, "not JSON: %s (line %d)", jerr.text, jerr.line);
		return -1;
	}
	if (!json_is_array(arr)) {
		json_decref(root);
		snprintf(why, why_size, "not a JWKS (no \"keys\" array)");
		return -1;
	}
	size_t total = json_array_size(arr), n = 0, i;
	struct auth_key **out = calloc(total + 1, sizeof *out);
	if (out == NULL) {
		json_decref(root);
		snprintf(why, why_size, "out of memory");
		return -1;
	}
	json_t *jwk;
	json_array_foreach(arr, i, jwk)
	{
		char skip[200];
		struct auth_key *k;
		if (auth_key_from_jwk(jwk, &k, skip, sizeof skip) != 0) {
			trpc_log(TRPC_LOG_WARN, "auth: JWKS key %zu skipped: %s", i, skip);
			continue;
		}
		int dup = 0;
		for (size_t j = 0; j < n && !dup; j++)
			dup = strcmp(out[j]->kid, k->kid) == 0 && out[j]->kind == k->kind;
		if (dup) {
			trpc_log(TRPC_LOG_WARN,
			         "auth: JWKS key \"%s\" listed twice; the first is used", k->kid);
			auth_key_free(k);
			continue;
		}
		out[n++] = k;
	}
	json_decref(root);
	*keys = out;
	return (int)n;
}

/* ------------------------------------------------------------------ fetching */

struct body {
	char *data;
	size_t len;
	int too_large;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct body *b = ud;
	size_t n = size * nmemb;

	if (b->len + n > JWKS_MAX_BYTES) {
		b->too_large = 1;
		return 0; /* aborts the transfer */
	}
	char *grown = realloc(b->data, b->len + n + 1);
	if (grown == NULL)
		return 0;
	memcpy(grown + b->len, ptr, n);
	b->data = grown;
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int is_http(const char *source)
{
	return strncasecmp(source, "https://", 8) == 0 || strncasecmp(source, "http://", 7) == 0;
}

static int fetch_url(const char *url, struct body *b, char *why, size_t why_size)
{
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK) {
		snprintf(why, why_size, "libcurl initialisation failed: %s",
		         curl_easy_strerror(curl_init_rc));
		return -1;
	}
	CURL *h = curl_easy_init();
	if (h == NULL) {
		snprintf(why, why_size, "libcurl: cannot create a handle");
		return -1;
	}
	char errbuf[CURL_ERROR_SIZE] = "";
	/* An https source never follows a redirect to plain http. */
	const char *protocols = strncasecmp(url, "https://", 8) == 0 ? "https" : "http,https";
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, protocols);
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, protocols);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(h, CURLOPT_MAXREDIRS, JWKS_MAX_REDIRECTS);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, JWKS_TIMEOUT_S);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, JWKS_CONNECT_TIMEOUT_S);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* called from many threads */
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, PACKAGE_NAME "/" PACKAGE_VERSION);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	CURLcode rc = curl_easy_perform(h);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	if (b->too_large) {
		snprintf(why, why_size, "document larger than %d bytes", JWKS_MAX_BYTES);
		return -1;
	}
	if (rc != CURLE_OK) {
		snprintf(why, why_size, "%s", errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
		return -1;
	}
	if (status != 200) {
		snprintf(why, why_size, "HTTP status %ld", status);
		return -1;
	}
	return 0;
}

static int read_file(const char *source, struct body *b, char *why, size_t why_size)
{
	const char *path = source;
	if (strncasecmp(path, "file://", 7) == 0) {
		path += 7;
		if (strncasecmp(path, "localhost/", 10) == 0)
			path += 9;
	}
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		snprintf(why, why_size, "%s: %s", path, strerror(errno));
		return -1;
	}
	char chunk[8192];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if (on_body(chunk, 1, n, b) != n) {
			snprintf(why, why_size, "%s: %s", path,
			         b->too_large ? "larger than 1 MiB" : "out of memory");
			fclose(f);
			return -1;
		}
	}
	int bad = ferror(f);
	fclose(f);
	if (bad) {
		snprintf(why, why_size, "%s: read error", path);
		return -1;
	}
	return 0;
}

/* Loads a new set from the source; NULL with why filled. */
static struct auth_jwks_set *load(const char *source, char *why, size_t why_size)
{
	struct body b = {NULL, 0, 0};
	int rc = is_http(source) ? fetch_url(source, &b, why, why_size)
	                         : read_file(source, &b, why, why_size);
	if (rc != 0) {
		free(b.data);
		return NULL;
	}
	struct auth_key **keys;
	int n = auth_jwks_parse(b.data != NULL ? b.data : "", b.len, &keys, why, why_size);
	free(b.data);
	if (n < 0)
		return NULL;
	if (n == 0) {
		free(keys);
		snprintf(why, why_size, "no usable key in the set");
		return NULL;
	}
	struct auth_jwks_set *s = calloc(1, sizeof *s);
	if (s == NULL) {
		for (int i = 0; i < n; i++)
			auth_key_free(keys[i]);
		free(keys);
		snprintf(why, why_size, "out of memory");
		return NULL;
	}
	atomic_init(&s->refs, 1);
	s->keys = keys;
	s->n = (size_t)n;
	return s;
}

/* ------------------------------------------------------------------ the cache */

/* The URL without "user:password@" and without query or fragment. */
static char *shown_source(const char *source)
{
	char *s = strdup(source);
	if (s == NULL)
		return NULL;
	char *scheme = strstr(s, "://");
	if (scheme != NULL) {
		char *host = scheme + 3, *at = strchr(host, '@'), *slash = strchr(host, '/');
		if (at != NULL && (slash == NULL || at < slash))
			memmove(host, at + 1, strlen(at + 1) + 1);
		s[strcspn(s, "?#")] = '\0';
	}
	return s;
}

struct auth_jwks *auth_jwks_new(const struct auth_jwks_params *p, struct tk_err *err)
{
	char why[256];
	struct auth_jwks *j = calloc(1, sizeof *j);

	if (j == NULL) {
		tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->done, NULL);
	if ((j->source = strdup(p->source)) == NULL ||
	    (j->shown = shown_source(p->source)) == NULL) {
		auth_jwks_free(j);
		tk_err_set(err, TRPC_ERR_NOMEM, "out of memory");
		return NULL;
	}
	j->refresh_interval_s = p->refresh_interval_s;
	j->max_stale_s = p->max_stale_s;
	j->min_refresh_interval_s = p->min_refresh_interval_s;
	j->set = load(p->source, why, sizeof why);
	if (j->set == NULL) {
		tk_err_set(err, TRPC_ERR_CONFIG,
		           "auth.jwks_url: cannot load the key set from %s: %s", j->shown, why);
		auth_jwks_free(j);
		return NULL;
	}
	j->fetched_at = j->last_attempt = auth_mono_ms();
	trpc_log(TRPC_LOG_INFO, "auth: JWKS loaded from %s: %zu key(s)", j->shown, j->set->n);
	return j;
}

void auth_jwks_free(struct auth_jwks *j)
{
	if (j == NULL)
		return;
	pthread_mutex_destroy(&j->mu);
	pthread_cond_destroy(&j->done);
	auth_jwks_release(j->set);
	free(j->source);
	free(j->shown);
	free(j);
}

/* Runs one refresh with mu held on entry and exit; the lock is dropped
 * around the I/O. */
static void refresh_locked(struct auth_jwks *j, const char *trigger)
{
	char why[256];

	j->fetching = 1;
	j->last_attempt = auth_mono_ms();
	pthread_mutex_unlock(&j->mu);
	struct auth_jwks_set *fresh = load(j->source, why, sizeof why);
	pthread_mutex_lock(&j->mu);
	j->fetching = 0;
	j->generation++;
	if (fresh != NULL) {
		struct auth_jwks_set *old = j->set;
		j->set = fresh;
		j->fetched_at = auth_mono_ms();
		j->stale_logged = j->expired_logged = 0;
		trpc_log(TRPC_LOG_INFO, "auth: JWKS refreshed from %s (%s): %zu key(s)", j->shown,
		         trigger, fresh->n);
		auth_jwks_release(old);
	} else if (!j->stale_logged) {
		j->stale_logged = 1;
		trpc_log(
		    TRPC_LOG_WARN,
		    "auth: JWKS refresh from %s failed (%s): %s; the previous keys stay in use "
		    "for up to %d s past their refresh time",
		    j->shown, trigger, why, j->max_stale_s);
	} else {
		trpc_log(TRPC_LOG_DEBUG, "auth: JWKS refresh from %s failed again: %s", j->shown,
		         why);
	}
	pthread_cond_broadcast(&j->done);
}

const struct auth_key *auth_jwks_get(struct auth_jwks *j, const char *kid, int alg,
                                     struct auth_jwks_set **hold, char *why, size_t why_size)
{
	const struct auth_key *key = NULL;
	int refreshed = 0; /* this call caused or waited for a refresh */

	*hold = NULL;
	if (kid == NULL) {
		snprintf(why, why_size, "token has no kid (required with a JWKS)");
		return NULL;
	}
	pthread_mutex_lock(&j->mu);
	for (;;) {
		int64_t now = auth_mono_ms(), age = now - j->fetched_at;
		int due = age >= (int64_t)j->refresh_interval_s * 1000;
		int expired = age >= ((int64_t)j->refresh_interval_s + j->max_stale_s) * 1000;
		int may_fetch = !refreshed && !j->fetching &&
		                now - j->last_attempt >= (int64_t)j->min_refresh_interval_s * 1000;

		key = set_find(j->set, kid, alg);
		if (key != NULL && !due)
			break;
		if (may_fetch && (due || key == NULL)) {
			refresh_locked(j, key == NULL ? "unknown kid" : "refresh interval");
			refreshed = 1;
			continue;
		}
		if (key != NULL && !expired)
			break; /* stale but tolerated */
		if (j->fetching && !refreshed) {
			/* Someone else is refreshing: its result decides. */
			unsigned long seen = j->generation;
			while (j->fetching && j->generation == seen)
				pthread_cond_wait(&j->done, &j->mu);
			refreshed = 1;
			continue;
		}
		if (key != NULL) { /* expired */
			if (!j->expired_logged) {
				j->expired_logged = 1;
				trpc_log(TRPC_LOG_ERROR,
				         "auth: JWKS keys from %s are %lld s old and could not be "
				         "refreshed; refusing JWTs until a refresh succeeds",
				         j->shown, (long long)(age / 1000));
			}
			snprintf(why, why_size, "JWKS keys expired (refresh failing)");
			key = NULL;
		} else if (set_has_kid(j->set, kid)) {
			snprintf(why, why_size, "JWKS key \"%.60s\" cannot verify %s", kid,
			         auth_alg_name(alg));
		} else {
			snprintf(why, why_size, "unknown kid \"%.60s\"", kid);
		}
		break;
	}
	if (key != NULL) {
		atomic_fetch_add(&j->set->refs, 1);
		*hold = j->set;
	}
	pthread_mutex_unlock(&j->mu);
	return key;
}

/*
 * ratelimit: per-client token buckets, one per (service, client key).
 *
 * Rules (enabled, default rate and burst, per-service overrides) are an
 * immutable snapshot swapped atomically on reload; a retired snapshot is
 * kept until the limiter is freed, so readers never lock to read rules.
 * Buckets live in a sharded hash table: one mutex per shard, never a
 * global lock. When the limiter is disabled a check is one atomic load.
 * A bucket that has been idle long enough to refill completely is
 * indistinguishable from a new one, so it is dropped by the shard sweep.
 */
#ifndef TRPC_RATELIMIT_H
#define TRPC_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

struct trpc_server_config;
struct ratelimit;

enum ratelimit_key_mode { RATELIMIT_KEY_PEER = 0, RATELIMIT_KEY_IDENTITY = 1 };

/* One override of ratelimit.services. */
struct rl_service {
	char *name;
	double rate, burst; /* rate 0: this service is not limited */
};

/* Parses ratelimit.services (NULL or "" is no item) into out[] (NULL: only
 * check; names are strdup'ed). Returns the number of items, or -1 with a
 * message in why (size bytes). Items that were parsed before an error keep
 * their names: the caller frees them. */
long ratelimit_parse_services(const char *spec, struct rl_service *out, char *why, size_t size);

/* Checks the syntax of ratelimit.services ("Svc=rate[/burst], ...").
 * Returns 0 or TRPC_ERR_CONFIG with a message in why (size bytes). */
int ratelimit_check_services(const char *spec, char *why, size_t size);

/* A limiter with the rules of cfg, or NULL (out of memory). */
struct ratelimit *ratelimit_new(const struct trpc_server_config *cfg);
void ratelimit_free(struct ratelimit *rl);

/* Replaces the rules (buckets are kept; they refill at the new rate).
 * Returns 0 or TRPC_ERR_NOMEM (the old rules stay). */
int ratelimit_set_rules(struct ratelimit *rl, const struct trpc_server_config *cfg);

/* 1 when the limiter is on and keys by `mode`. */
int ratelimit_active(struct ratelimit *rl, int mode);

/*
 * Takes one token from the bucket of (service, client). Returns 0 when
 * allowed (also when disabled or the service has no limit), or
 * TRPC_ERR_UNAVAILABLE with *retry_ms set to the time until the next token.
 */
int ratelimit_take(struct ratelimit *rl, const char *service, size_t service_len,
                   const char *client, int64_t *retry_ms);

/* Adds the trailers grpc-retry-pushback-ms (ms) and retry-after (s). */
struct trpc_call;
void ratelimit_add_hints(struct trpc_call *call, int64_t retry_ms);

/* Copies the address part of a peer string ("ipv4:1.2.3.4:5" -> "1.2.3.4",
 * "ipv6:[::1]:5" -> "::1") into out. */
void ratelimit_peer_ip(const char *peer, char *out, size_t size);

#endif

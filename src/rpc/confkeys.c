/*
 * confkeys: trpc_config_keys, a configuration as "section.key" = text, and
 * the reload warning built on two of them (see tasker/rpc.h).
 *
 * Why text: a program's own keys reach it through the loader's `extra`
 * callback as text and are parsed into structs this library never sees.
 * Comparing the text each source gave (the last one wins, as in the
 * loader) covers every key of every section without a list per key; the
 * runtime's own keys are added in their canonical spelling
 * (trpc_server_config_value), so "20s" and "20000ms" are one value and
 * their defaults are shown. What a program applies on a reload it names
 * by pattern; everything else that changed is reported, so a key added
 * later is reported until someone makes it reloadable.
 */
#include "config.h"

#include <ctype.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tasker/rpc.h"

#define MASK      "****"
#define SHOWN_MAX 512

struct kv {
	char *name; /* "section.key" */
	char *value;
};

struct trpc_config_keys {
	struct kv *v;
	size_t n, cap;
};

/* ------------------------------------------------------------------ the list */

trpc_config_keys *trpc_config_keys_new(void)
{
	return calloc(1, sizeof(struct trpc_config_keys));
}

void trpc_config_keys_free(trpc_config_keys *keys)
{
	if (keys == NULL)
		return;
	for (size_t i = 0; i < keys->n; i++) {
		free(keys->v[i].name);
		free(keys->v[i].value);
	}
	free(keys->v);
	free(keys);
}

/* The index of `name`, or keys->n. */
static size_t index_of(const trpc_config_keys *keys, const char *name)
{
	size_t i = 0;

	while (i < keys->n && strcmp(keys->v[i].name, name) != 0)
		i++;
	return i;
}

static const struct kv *find(const trpc_config_keys *keys, const char *name)
{
	size_t i = index_of(keys, name);

	return i < keys->n ? &keys->v[i] : NULL;
}

int trpc_config_keys_set(trpc_config_keys *keys, const char *section, const char *key,
                         const char *value)
{
	char *name, *copy;
	size_t len, i;

	if (keys == NULL || section == NULL || key == NULL || value == NULL)
		return TRPC_ERR_INVALID;
	len = strlen(section) + 1 + strlen(key) + 1;
	if ((name = malloc(len)) == NULL)
		return TRPC_ERR_NOMEM;
	snprintf(name, len, "%s.%s", section, key);
	if ((copy = strdup(value)) == NULL) {
		free(name);
		return TRPC_ERR_NOMEM;
	}
	if ((i = index_of(keys, name)) < keys->n) {
		free(name);
		free(keys->v[i].value);
		keys->v[i].value = copy;
		return 0;
	}
	if (keys->n == keys->cap) {
		size_t cap = keys->cap != 0 ? keys->cap * 2 : 64;
		struct kv *grown = realloc(keys->v, cap * sizeof(*grown));
		if (grown == NULL) {
			free(name);
			free(copy);
			return TRPC_ERR_NOMEM;
		}
		keys->v = grown;
		keys->cap = cap;
	}
	keys->v[keys->n++] = (struct kv){name, copy};
	return 0;
}

int trpc_config_keys_add_server(trpc_config_keys *keys, const struct trpc_server_config *cfg)
{
	const char *section, *key;
	char value[SHOWN_MAX];
	int rc;

	if (keys == NULL || cfg == NULL)
		return TRPC_ERR_INVALID;
	for (size_t i = 0; trpc_server_config_key(i, &section, &key) == 0; i++) {
		trpc_server_config_value(cfg, i, value, sizeof(value));
		if ((rc = trpc_config_keys_set(keys, section, key, value)) != 0)
			return rc;
	}
	return 0;
}

/* ------------------------------------------------------------------ masking */

/* Whether `hay` contains `needle` ignoring case (needle in lower case). */
static int contains_word(const char *hay, const char *needle)
{
	size_t n = strlen(needle);

	for (; *hay != '\0'; hay++) {
		size_t i = 0;
		while (i < n && tolower((unsigned char)hay[i]) == needle[i])
			i++;
		if (i == n)
			return 1;
	}
	return 0;
}

/* A key whose whole value is secret. */
static int secret_name(const char *name)
{
	static const char *const words[] = {"password", "secret", "key", "token"};

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (contains_word(name, words[i]))
			return 1;
	return 0;
}

struct out {
	char *buf;
	size_t size, len;
};

static void put(struct out *o, const char *s, size_t n)
{
	while (n-- > 0 && o->len + 1 < o->size)
		o->buf[o->len++] = *s++;
	o->buf[o->len] = '\0';
}

/*
 * Length of the secret at p, the value of a "password=" item: up to a
 * blank or '&', or a libpq quoted value ('it''s', 'a\'b') to its quote.
 */
static size_t secret_len(const char *p)
{
	size_t i = 0;

	if (*p != '\'')
		return strcspn(p, " \t&");
	for (i = 1; p[i] != '\0' && p[i] != '\''; i++)
		if (p[i] == '\\' && p[i + 1] != '\0')
			i++;
	return p[i] == '\'' ? i + 1 : i;
}

/* At p, "password" (any case) then optional blanks and '=': the length up to the value. */
static size_t password_item(const char *p)
{
	size_t i = strlen("password");

	if (strncasecmp(p, "password", i) != 0)
		return 0;
	i += strspn(p + i, " \t");
	if (p[i] != '=')
		return 0;
	i++;
	return i + strspn(p + i, " \t");
}

/* At p, just after "://": the length of "user:" when the authority holds "user:password@". */
static size_t url_user(const char *p, size_t *pw_len)
{
	size_t auth = strcspn(p, "/?#"), colon;
	const char *at = memchr(p, '@', auth);

	if (at == NULL)
		return 0;
	/* The last '@' ends the user information (a password may hold one). */
	for (const char *q = at; q < p + auth; q++)
		if (*q == '@')
			at = q;
	colon = strcspn(p, ":");
	if (p + colon >= at)
		return 0;
	*pw_len = (size_t)(at - (p + colon + 1));
	return colon + 1;
}

const char *trpc_config_value_shown(const char *name, const char *value, char *buf, size_t size)
{
	struct out o = {buf, size, 0};
	size_t n, pw;

	if (buf == NULL || size == 0)
		return buf;
	buf[0] = '\0';
	if (value == NULL)
		return buf;
	if (name != NULL && secret_name(name)) {
		put(&o, MASK, *value != '\0' ? strlen(MASK) : 0);
		return buf;
	}
	for (const char *p = value; *p != '\0';) {
		if (strncmp(p, "://", 3) == 0 && (n = url_user(p + 3, &pw)) != 0) {
			put(&o, p, 3 + n);
			put(&o, MASK, strlen(MASK));
			p += 3 + n + pw;
		} else if ((n = password_item(p)) != 0) {
			put(&o, p, n);
			put(&o, MASK, strlen(MASK));
			p += n + secret_len(p + n);
		} else {
			put(&o, p++, 1);
		}
	}
	return buf;
}

/* ------------------------------------------------------------------ the warning */

static int reloaded_key(const char *name, const char *const *patterns)
{
	for (size_t i = 0; patterns != NULL && patterns[i] != NULL; i++)
		if (fnmatch(patterns[i], name, 0) == 0)
			return 1;
	return 0;
}

/* "\"value\"" masked as its key needs, or "(default)" for a key not set. */
static const char *quoted(const char *name, const struct kv *kv, char *buf, size_t size)
{
	char shown[SHOWN_MAX];

	if (kv == NULL)
		snprintf(buf, size, "(default)");
	else
		snprintf(buf, size, "\"%s\"",
		         trpc_config_value_shown(name, kv->value, shown, sizeof(shown)));
	return buf;
}

/* Warns when `name` changed from a to b (either may be NULL: not set). */
static size_t warn_key(const char *name, const struct kv *a, const struct kv *b,
                       const char *const *reloaded)
{
	char from[SHOWN_MAX + 2], to[SHOWN_MAX + 2];

	if (a != NULL && b != NULL && strcmp(a->value, b->value) == 0)
		return 0;
	if (reloaded_key(name, reloaded))
		return 0;
	trpc_log(TRPC_LOG_WARN, "reload: %s changed from %s to %s; restart to apply", name,
	         quoted(name, a, from, sizeof(from)), quoted(name, b, to, sizeof(to)));
	return 1;
}

size_t trpc_config_keys_warn_restart(const trpc_config_keys *in_force,
                                     const trpc_config_keys *fresh, const char *const *reloaded)
{
	size_t lines = 0;

	if (in_force == NULL || fresh == NULL)
		return 0;
	for (size_t i = 0; i < in_force->n; i++) {
		const char *name = in_force->v[i].name;
		lines += warn_key(name, &in_force->v[i], find(fresh, name), reloaded);
	}
	for (size_t i = 0; i < fresh->n; i++)
		if (find(in_force, fresh->v[i].name) == NULL)
			lines += warn_key(fresh->v[i].name, NULL, &fresh->v[i], reloaded);
	return lines;
}

#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

struct arena_chunk {
	struct arena_chunk *next;
	/* payload follows, aligned by the allocation size rounding below */
};

#define ARENA_ALIGN 16
#define ARENA_CHUNK 4096
#define HDR_SIZE    ((sizeof(struct arena_chunk) + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1))

static void *pb_alloc(void *data, size_t size)
{
	return arena_alloc(data, size);
}

/* protobuf-c frees individual objects on error paths; the arena frees all
 * at once, so this is deliberately a no-op. */
static void pb_free(void *data, void *ptr)
{
	(void)data;
	(void)ptr;
}

void arena_init(struct arena *a)
{
	a->chunks = NULL;
	a->pb.alloc = pb_alloc;
	a->pb.free = pb_free;
	a->pb.allocator_data = a;
	uintptr_t p = (uintptr_t)a->first;
	uintptr_t aligned = (p + ARENA_ALIGN - 1) & ~(uintptr_t)(ARENA_ALIGN - 1);
	a->ptr = (char *)aligned;
	a->left = sizeof a->first - (aligned - p);
}

void *arena_alloc(struct arena *a, size_t size)
{
	size = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
	if (size == 0)
		size = ARENA_ALIGN;
	if (size <= a->left) {
		void *r = a->ptr;
		a->ptr += size;
		a->left -= size;
		return r;
	}
	/* Large requests get a chunk of their own so the current chunk's
	 * free space is not wasted. */
	size_t want = size > ARENA_CHUNK / 4 ? size : ARENA_CHUNK;
	struct arena_chunk *c = malloc(HDR_SIZE + want);
	if (c == NULL)
		return NULL;
	c->next = a->chunks;
	a->chunks = c;
	char *payload = (char *)c + HDR_SIZE;
	if (want == size)
		return payload;
	a->ptr = payload + size;
	a->left = want - size;
	return payload;
}

char *arena_strndup(struct arena *a, const char *s, size_t len)
{
	char *r = arena_alloc(a, len + 1);
	if (r == NULL)
		return NULL;
	memcpy(r, s, len);
	r[len] = '\0';
	return r;
}

void arena_clear(struct arena *a)
{
	struct arena_chunk *c = a->chunks;
	while (c != NULL) {
		struct arena_chunk *next = c->next;
		free(c);
		c = next;
	}
	a->chunks = NULL;
}

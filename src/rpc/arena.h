/*
 * arena: a bump allocator whose memory dies all at once. Each call owns one,
 * so everything a handler allocates for a call is freed with the call.
 * Not thread-safe: one user at a time.
 */
#ifndef TRPC_ARENA_H
#define TRPC_ARENA_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

struct arena_chunk;

struct arena {
	struct arena_chunk *chunks; /* malloc'd chunks, newest first */
	char *ptr;                  /* free space in the current chunk */
	size_t left;
	ProtobufCAllocator pb; /* protobuf-c allocator drawing from this arena */
	char first[512];       /* first allocations come from here: no malloc */
};

void arena_init(struct arena *a);
/* 16-byte aligned memory, or NULL when out of memory. */
void *arena_alloc(struct arena *a, size_t size);
char *arena_strndup(struct arena *a, const char *s, size_t len);
/* Frees every chunk; the arena may be reused after arena_init(). */
void arena_clear(struct arena *a);

#endif

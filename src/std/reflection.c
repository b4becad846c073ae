/*
 * grpc.reflection.v1 and v1alpha ServerReflectionInfo.
 *
 * At registration the descriptor sets are indexed once. Every file keeps
 * its original serialized bytes: a client must get the FileDescriptorProto
 * exactly as protoc wrote it, options and all, and the subset of
 * descriptor.proto used here to learn names would drop what it does not
 * know if it re-encoded. Every symbol, extension and file name points at
 * the file that defines it. The index is read-only after registration, so
 * handlers use it from any worker without locks; it is freed with the
 * server.
 *
 * The two protocol versions have wire-identical messages and protobuf-c
 * generates identical structs for them (checked below), so one
 * implementation built on the v1 structs serves both; only the
 * descriptors, which name the messages, differ per version.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tasker/rpc.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "tasker/rpc/descriptor_subset.pb-c.h"

/* ------------------------------------------------------------ v1 == v1alpha */

#define SAME_TYPE(T)                                                                               \
	_Static_assert(sizeof(Grpc__Reflection__V1__##T) ==                                        \
	                   sizeof(Grpc__Reflection__V1alpha__##T),                                 \
	               #T " differs between v1 and v1alpha")
#define SAME_FIELD(T, f)                                                                           \
	_Static_assert(offsetof(Grpc__Reflection__V1__##T, f) ==                                   \
	                   offsetof(Grpc__Reflection__V1alpha__##T, f),                            \
	               #T "." #f " differs between v1 and v1alpha")
#define SAME_CASE(c)                                                                               \
	_Static_assert((int)GRPC__REFLECTION__V1__SERVER_REFLECTION_##c ==                         \
	                   (int)GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_##c,                  \
	               #c " differs between v1 and v1alpha")

SAME_TYPE(ServerReflectionRequest);
SAME_FIELD(ServerReflectionRequest, host);
SAME_FIELD(ServerReflectionRequest, message_request_case);
SAME_FIELD(ServerReflectionRequest, file_by_filename);
SAME_TYPE(ExtensionRequest);
SAME_FIELD(ExtensionRequest, containing_type);
SAME_FIELD(ExtensionRequest, extension_number);
SAME_TYPE(ServerReflectionResponse);
SAME_FIELD(ServerReflectionResponse, valid_host);
SAME_FIELD(ServerReflectionResponse, original_request);
SAME_FIELD(ServerReflectionResponse, message_response_case);
SAME_FIELD(ServerReflectionResponse, file_descriptor_response);
SAME_TYPE(FileDescriptorResponse);
SAME_FIELD(FileDescriptorResponse, n_file_descriptor_proto);
SAME_FIELD(FileDescriptorResponse, file_descriptor_proto);
SAME_TYPE(ExtensionNumberResponse);
SAME_FIELD(ExtensionNumberResponse, base_type_name);
SAME_FIELD(ExtensionNumberResponse, n_extension_number);
SAME_FIELD(ExtensionNumberResponse, extension_number);
SAME_TYPE(ListServiceResponse);
SAME_FIELD(ListServiceResponse, n_service);
SAME_FIELD(ListServiceResponse, service);
SAME_TYPE(ServiceResponse);
SAME_FIELD(ServiceResponse, name);
SAME_TYPE(ErrorResponse);
SAME_FIELD(ErrorResponse, error_code);
SAME_FIELD(ErrorResponse, error_message);
SAME_CASE(REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME);
SAME_CASE(REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL);
SAME_CASE(REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION);
SAME_CASE(REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE);
SAME_CASE(REQUEST__MESSAGE_REQUEST_LIST_SERVICES);
SAME_CASE(RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE);
SAME_CASE(RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE);
SAME_CASE(RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE);
SAME_CASE(RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE);

/* The descriptors that name one version's messages. */
struct refl_version {
	const char *service;
	const ProtobufCMessageDescriptor *request;
	const ProtobufCMessageDescriptor *response;
	const ProtobufCMessageDescriptor *file_descriptor_response;
	const ProtobufCMessageDescriptor *extension_number_response;
	const ProtobufCMessageDescriptor *list_service_response;
	const ProtobufCMessageDescriptor *service_response;
	const ProtobufCMessageDescriptor *error_response;
	const struct trpc_method *methods;
};

/* ------------------------------------------------------------ storage */

/* Strings and pointer arrays of the index, freed all at once. */
struct pool_chunk {
	struct pool_chunk *next;
	size_t used, cap;
	_Alignas(max_align_t) char data[];
};

#define POOL_CHUNK_SIZE 16384

static void *pool_alloc(struct pool_chunk **pool, size_t size)
{
	struct pool_chunk *c = *pool;
	size_t align = sizeof(void *);
	size_t used = c ? (c->used + align - 1) & ~(align - 1) : 0;

	if (c == NULL || used > c->cap || size > c->cap - used) {
		size_t cap = size > POOL_CHUNK_SIZE ? size : POOL_CHUNK_SIZE;
		c = malloc(sizeof *c + cap);
		if (c == NULL)
			return NULL;
		c->next = *pool;
		c->cap = cap;
		*pool = c;
		used = 0;
	}
	c->used = used + size;
	return c->data + used;
}

/* "scope.name", or "name" when scope is empty. NULL when out of memory. */
static char *pool_join(struct pool_chunk **pool, const char *scope, const char *name)
{
	size_t ls = strlen(scope), ln = strlen(name);
	char *s = pool_alloc(pool, ls + ln + 2);

	if (s == NULL)
		return NULL;
	if (ls) {
		memcpy(s, scope, ls);
		s[ls++] = '.';
	}
	memcpy(s + ls, name, ln + 1);
	return s;
}

static void pool_free(struct pool_chunk *c)
{
	while (c) {
		struct pool_chunk *next = c->next;
		free(c);
		c = next;
	}
}

/* A growable array of fixed-size items. */
struct vec {
	void *items;
	size_t n, cap;
};

/* A new zeroed slot at the end, or NULL when out of memory. */
static void *vec_push(struct vec *v, size_t size)
{
	void *slot;

	if (v->n == v->cap) {
		size_t cap = v->cap ? 2 * v->cap : 16;
		void *p = realloc(v->items, cap * size);
		if (p == NULL)
			return NULL;
		v->items = p;
		v->cap = cap;
	}
	slot = (char *)v->items + v->n++ * size;
	memset(slot, 0, size);
	return slot;
}

/* ------------------------------------------------------------ the index */

enum refl_kind {
	REFL_FILE = 1,
	REFL_MESSAGE = 2,
	REFL_ENUM = 3,
	REFL_ENUM_VALUE = 4,
	REFL_FIELD = 5,
	REFL_EXTENSION = 6,
	REFL_SERVICE = 7,
	REFL_METHOD = 8
};

/* A name (file name or fully qualified symbol) and the file defining it. */
struct refl_name {
	const char *name;
	size_t file;
	enum refl_kind kind;
};

struct refl_extension {
	const char *extendee; /* fully qualified, no leading dot */
	int32_t number;
	size_t file;
};

struct refl_file {
	const char *name;
	const uint8_t *data; /* the serialized FileDescriptorProto, in the caller's set */
	size_t len;
	const char **deps;
	size_t n_deps;
};

struct refl_index;

struct refl_service {
	struct trpc_service svc;
	const struct refl_index *idx;
	const struct refl_version *ver;
};

struct refl_index {
	trpc_server *srv;
	struct pool_chunk *pool;
	struct vec files;      /* struct refl_file, in load order; file numbers index it */
	struct vec file_names; /* struct refl_name, sorted by name */
	struct vec symbols;    /* struct refl_name, sorted by name, unique */
	struct vec extensions; /* struct refl_extension, sorted by extendee and number, unique */
	struct refl_service services[2];
};

static const struct refl_file *file_at(const struct refl_index *idx, size_t i)
{
	return (const struct refl_file *)idx->files.items + i;
}

static void index_free(void *arg)
{
	struct refl_index *idx = arg;

	pool_free(idx->pool);
	free(idx->files.items);
	free(idx->file_names.items);
	free(idx->symbols.items);
	free(idx->extensions.items);
	free(idx);
}

/* Adds "scope.name" as a symbol of `file`; stores the full name in *full
 * when asked. 0, TRPC_ERR_INVALID (no name) or TRPC_ERR_NOMEM. */
static int add_symbol(struct refl_index *idx, const char *scope, const char *name,
                      enum refl_kind kind, size_t file, const char **full)
{
	struct refl_name *s;
	char *joined;

	if (name == NULL || *name == '\0')
		return TRPC_ERR_INVALID;
	joined = pool_join(&idx->pool, scope, name);
	if (joined == NULL)
		return TRPC_ERR_NOMEM;
	s = vec_push(&idx->symbols, sizeof *s);
	if (s == NULL)
		return TRPC_ERR_NOMEM;
	*s = (struct refl_name){.name = joined, .file = file, .kind = kind};
	if (full)
		*full = joined;
	return 0;
}

static int add_extension(struct refl_index *idx, const char *scope,
                         const Tasker__Rpc__Desc__FieldDescriptorProto *f, size_t file)
{
	struct refl_extension *e;
	const char *extendee = f->extendee;
	int rc;

	if (extendee == NULL || !f->has_number)
		return TRPC_ERR_INVALID;
	rc = add_symbol(idx, scope, f->name, REFL_EXTENSION, file, NULL);
	if (rc != 0)
		return rc;
	if (*extendee == '.') /* protoc writes resolved names with a leading dot */
		extendee++;
	e = vec_push(&idx->extensions, sizeof *e);
	if (e == NULL)
		return TRPC_ERR_NOMEM;
	e->extendee = pool_join(&idx->pool, "", extendee);
	if (e->extendee == NULL)
		return TRPC_ERR_NOMEM;
	e->number = f->number;
	e->file = file;
	return 0;
}

/* Enum values are scoped like C++ enumerators: siblings of their enum. */
static int add_enum(struct refl_index *idx, const char *scope,
                    const Tasker__Rpc__Desc__EnumDescriptorProto *e, size_t file)
{
	int rc = add_symbol(idx, scope, e->name, REFL_ENUM, file, NULL);

	for (size_t i = 0; rc == 0 && i < e->n_value; i++)
		rc = add_symbol(idx, scope, e->value[i]->name, REFL_ENUM_VALUE, file, NULL);
	return rc;
}

static int add_message(struct refl_index *idx, const char *scope,
                       const Tasker__Rpc__Desc__DescriptorProto *m, size_t file)
{
	const char *full;
	int rc = add_symbol(idx, scope, m->name, REFL_MESSAGE, file, &full);

	for (size_t i = 0; rc == 0 && i < m->n_field; i++)
		rc = add_symbol(idx, full, m->field[i]->name, REFL_FIELD, file, NULL);
	for (size_t i = 0; rc == 0 && i < m->n_nested_type; i++)
		rc = add_message(idx, full, m->nested_type[i], file);
	for (size_t i = 0; rc == 0 && i < m->n_enum_type; i++)
		rc = add_enum(idx, full, m->enum_type[i], file);
	for (size_t i = 0; rc == 0 && i < m->n_extension; i++)
		rc = add_extension(idx, full, m->extension[i], file);
	return rc;
}

static int add_service(struct refl_index *idx, const char *scope,
                       const Tasker__Rpc__Desc__ServiceDescriptorProto *s, size_t file)
{
	const char *full;
	int rc = add_symbol(idx, scope, s->name, REFL_SERVICE, file, &full);

	for (size_t i = 0; rc == 0 && i < s->n_method; i++)
		rc = add_symbol(idx, full, s->method[i]->name, REFL_METHOD, file, NULL);
	return rc;
}

static int add_file_contents(struct refl_index *idx,
                             const Tasker__Rpc__Desc__FileDescriptorProto *fd, const uint8_t *data,
                             size_t len)
{
	const char *pkg = fd->package ? fd->package : "";
	size_t file = idx->files.n;
	struct refl_file *f = vec_push(&idx->files, sizeof *f);
	struct refl_name *fn = vec_push(&idx->file_names, sizeof *fn);
	int rc = 0;

	if (f == NULL || fn == NULL)
		return TRPC_ERR_NOMEM;
	f->name = pool_join(&idx->pool, "", fd->name);
	f->deps = pool_alloc(&idx->pool, fd->n_dependency * sizeof *f->deps + 1);
	if (f->name == NULL || f->deps == NULL)
		return TRPC_ERR_NOMEM;
	f->data = data;
	f->len = len;
	for (size_t i = 0; i < fd->n_dependency; i++) {
		f->deps[i] = pool_join(&idx->pool, "", fd->dependency[i]);
		if (f->deps[i] == NULL)
			return TRPC_ERR_NOMEM;
	}
	f->n_deps = fd->n_dependency;
	*fn = (struct refl_name){.name = f->name, .file = file, .kind = REFL_FILE};

	for (size_t i = 0; rc == 0 && i < fd->n_message_type; i++)
		rc = add_message(idx, pkg, fd->message_type[i], file);
	for (size_t i = 0; rc == 0 && i < fd->n_enum_type; i++)
		rc = add_enum(idx, pkg, fd->enum_type[i], file);
	for (size_t i = 0; rc == 0 && i < fd->n_service; i++)
		rc = add_service(idx, pkg, fd->service[i], file);
	for (size_t i = 0; rc == 0 && i < fd->n_extension; i++)
		rc = add_extension(idx, pkg, fd->extension[i], file);
	return rc;
}

/* Indexes one serialized FileDescriptorProto. A file already seen in an
 * earlier set (a common import) is skipped. */
static int add_file(struct refl_index *idx, const uint8_t *data, size_t len)
{
	Tasker__Rpc__Desc__FileDescriptorProto *fd;
	int rc = 0;

	/* protobuf-c does not tell corrupt input from a failed allocation. */
	fd = tasker__rpc__desc__file_descriptor_proto__unpack(NULL, len, data);
	if (fd == NULL)
		return TRPC_ERR_INVALID;
	if (fd->name == NULL || *fd->name == '\0') {
		rc = TRPC_ERR_INVALID;
		goto out;
	}
	for (size_t i = 0; i < idx->files.n; i++) {
		if (strcmp(file_at(idx, i)->name, fd->name) == 0)
			goto out;
	}
	rc = add_file_contents(idx, fd, data, len);
out:
	tasker__rpc__desc__file_descriptor_proto__free_unpacked(fd, NULL);
	return rc;
}

/* ------------------------------------------------------------ wire format */

static int wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
	uint64_t v = 0;

	for (unsigned shift = 0; shift < 64; shift += 7) {
		uint8_t b;
		if (*p == end)
			return TRPC_ERR_INVALID;
		b = *(*p)++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if ((b & 0x80) == 0) {
			*out = v;
			return 0;
		}
	}
	return TRPC_ERR_INVALID;
}

/*
 * Walks a serialized FileDescriptorSet by hand, so that each `file` (field
 * 1, length-delimited) is indexed over its own original bytes; other
 * fields are skipped. 0, TRPC_ERR_INVALID or TRPC_ERR_NOMEM.
 */
static int add_set(struct refl_index *idx, const uint8_t *data, size_t len)
{
	const uint8_t *p = data, *end = data + len;
	uint64_t key, n;
	int rc;

	while (p < end) {
		if (wire_varint(&p, end, &key) != 0 || (key >> 3) == 0)
			return TRPC_ERR_INVALID;
		if ((key >> 3) == 1 && (key & 7) != 2)
			return TRPC_ERR_INVALID;
		switch (key & 7) {
		case 0: /* varint */
			if (wire_varint(&p, end, &n) != 0)
				return TRPC_ERR_INVALID;
			break;
		case 1: /* 64-bit */
			if (end - p < 8)
				return TRPC_ERR_INVALID;
			p += 8;
			break;
		case 2: /* length-delimited */
			if (wire_varint(&p, end, &n) != 0 || n > (uint64_t)(end - p))
				return TRPC_ERR_INVALID;
			if ((key >> 3) == 1) {
				rc = add_file(idx, p, (size_t)n);
				if (rc != 0)
					return rc;
			}
			p += n;
			break;
		case 5: /* 32-bit */
			if (end - p < 4)
				return TRPC_ERR_INVALID;
			p += 4;
			break;
		default: /* groups never appear in a FileDescriptorSet */
			return TRPC_ERR_INVALID;
		}
	}
	return 0;
}

/* ------------------------------------------------------------ lookups */

static int cmp_name(const void *a, const void *b)
{
	const struct refl_name *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c == 0) /* the earlier file wins a duplicate */
		c = (x->file > y->file) - (x->file < y->file);
	return c;
}

static int cmp_extension(const void *a, const void *b)
{
	const struct refl_extension *x = a, *y = b;
	int c = strcmp(x->extendee, y->extendee);

	if (c == 0)
		c = (x->number > y->number) - (x->number < y->number);
	if (c == 0)
		c = (x->file > y->file) - (x->file < y->file);
	return c;
}

/* Sorts `v` and keeps the first of each run of items `same` calls equal. */
static void sort_unique(struct vec *v, size_t size, int (*cmp)(const void *, const void *),
                        int (*same)(const void *, const void *))
{
	size_t out = 0;

	if (v->n == 0)
		return;
	qsort(v->items, v->n, size, cmp);
	for (size_t i = 1; i < v->n; i++) {
		char *cur = (char *)v->items + i * size;
		if (!same((char *)v->items + out * size, cur))
			memmove((char *)v->items + ++out * size, cur, size);
	}
	v->n = out + 1;
}

static int same_name(const void *a, const void *b)
{
	return strcmp(((const struct refl_name *)a)->name, ((const struct refl_name *)b)->name) ==
	       0;
}

static int same_extension(const void *a, const void *b)
{
	const struct refl_extension *x = a, *y = b;
	return x->number == y->number && strcmp(x->extendee, y->extendee) == 0;
}

static const struct refl_name *name_find(const struct vec *v, const char *name)
{
	size_t lo = 0, hi = v->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct refl_name *s = (const struct refl_name *)v->items + mid;
		int c = strcmp(name, s->name);
		if (c == 0)
			return s;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Index of the first extension not ordered before (extendee, number). */
static size_t extension_lower_bound(const struct refl_index *idx, const char *extendee,
                                    int32_t number)
{
	const struct refl_extension *e = idx->extensions.items;
	size_t lo = 0, hi = idx->extensions.n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(e[mid].extendee, extendee);
		if (c < 0 || (c == 0 && e[mid].number < number))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Sorts the lookup tables once every set is in, and warns about imports
 * no set provides (reflection clients will miss those files). */
static void index_finish(struct refl_index *idx)
{
	sort_unique(&idx->file_names, sizeof(struct refl_name), cmp_name, same_name);
	sort_unique(&idx->symbols, sizeof(struct refl_name), cmp_name, same_name);
	sort_unique(&idx->extensions, sizeof(struct refl_extension), cmp_extension, same_extension);
	for (size_t i = 0; i < idx->files.n; i++) {
		const struct refl_file *f = file_at(idx, i);
		for (size_t j = 0; j < f->n_deps; j++) {
			if (name_find(&idx->file_names, f->deps[j]) == NULL)
				trpc_log(TRPC_LOG_WARN,
				         "reflection: %s imports %s, which no descriptor set holds",
				         f->name, f->deps[j]);
		}
	}
}

/* ------------------------------------------------------------ answers */

/*
 * One response under construction. The messages are v1 structs whose
 * descriptors are the version's (see the layout checks at the top); the
 * arrays are malloc'd and freed right after the send, so a long-lived
 * stream does not grow the call's arena with every request.
 */
struct refl_reply {
	Grpc__Reflection__V1__ServerReflectionResponse resp;
	Grpc__Reflection__V1__FileDescriptorResponse files;
	Grpc__Reflection__V1__ExtensionNumberResponse numbers;
	Grpc__Reflection__V1__ListServiceResponse services;
	Grpc__Reflection__V1__ErrorResponse error;
	ProtobufCBinaryData *file_data;
	int32_t *number_data;
	Grpc__Reflection__V1__ServiceResponse *service_data;
	Grpc__Reflection__V1__ServiceResponse **service_ptrs;
	char message[256];
};

static void reply_init(struct refl_reply *r, const struct refl_version *ver,
                       const Grpc__Reflection__V1__ServerReflectionRequest *req)
{
	memset(r, 0, sizeof *r);
	protobuf_c_message_init(ver->response, &r->resp);
	r->resp.valid_host = req->host;
	/* The request outlives the send: it is freed when on_message returns. */
	r->resp.original_request = (Grpc__Reflection__V1__ServerReflectionRequest *)req;
}

static void reply_clear(struct refl_reply *r)
{
	free(r->file_data);
	free(r->number_data);
	free(r->service_data);
	free(r->service_ptrs);
	r->file_data = NULL;
	r->number_data = NULL;
	r->service_data = NULL;
	r->service_ptrs = NULL;
}

static int reply_error(struct refl_reply *r, const struct refl_version *ver, int code,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Makes the reply an error_response; always returns 0 (the request was
 * answered). */
static int reply_error(struct refl_reply *r, const struct refl_version *ver, int code,
                       const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->message, sizeof r->message, fmt, ap);
	va_end(ap);
	protobuf_c_message_init(ver->error_response, &r->error);
	r->error.error_code = code;
	r->error.error_message = r->message;
	r->resp.message_response_case =
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
	r->resp.error_response = &r->error;
	return 0;
}

/* Answers with `file` followed by its transitive imports, each once, in
 * breadth-first order. 0 or TRPC_ERR_NOMEM. */
static int reply_files(struct refl_reply *r, const struct refl_service *rs, size_t file)
{
	const struct refl_index *idx = rs->idx;
	size_t *queue = malloc(idx->files.n * sizeof *queue);
	unsigned char *seen = calloc(idx->files.n, 1);
	size_t n = 0;

	if (queue == NULL || seen == NULL)
		goto fail;
	queue[n++] = file;
	seen[file] = 1;
	for (size_t i = 0; i < n; i++) {
		const struct refl_file *f = file_at(idx, queue[i]);
		for (size_t j = 0; j < f->n_deps; j++) {
			const struct refl_name *d = name_find(&idx->file_names, f->deps[j]);
			if (d && !seen[d->file]) {
				seen[d->file] = 1;
				queue[n++] = d->file;
			}
		}
	}
	r->file_data = malloc(n * sizeof *r->file_data);
	if (r->file_data == NULL)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		const struct refl_file *f = file_at(idx, queue[i]);
		r->file_data[i].data = (uint8_t *)f->data;
		r->file_data[i].len = f->len;
	}
	free(queue);
	free(seen);

	protobuf_c_message_init(rs->ver->file_descriptor_response, &r->files);
	r->files.n_file_descriptor_proto = n;
	r->files.file_descriptor_proto = r->file_data;
	r->resp.message_response_case =
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
	r->resp.file_descriptor_response = &r->files;
	return 0;

fail:
	free(queue);
	free(seen);
	return TRPC_ERR_NOMEM;
}

/* Fully qualified names may come with protobuf's leading dot. */
static const char *strip_dot(const char *name)
{
	return *name == '.' ? name + 1 : name;
}

static int answer_file_by_filename(struct refl_reply *r, const struct refl_service *rs,
                                   const Grpc__Reflection__V1__ServerReflectionRequest *req)
{
	const struct refl_name *f = name_find(&rs->idx->file_names, req->file_by_filename);

	if (f == NULL)
		return reply_error(r, rs->ver, TRPC_STATUS_NOT_FOUND, "file not found: %s",
		                   req->file_by_filename);
	return reply_files(r, rs, f->file);
}

static int answer_file_containing_symbol(struct refl_reply *r, const struct refl_service *rs,
                                         const Grpc__Reflection__V1__ServerReflectionRequest *req)
{
	const char *symbol = strip_dot(req->file_containing_symbol);
	const struct refl_name *s = name_find(&rs->idx->symbols, symbol);

	if (s == NULL)
		return reply_error(r, rs->ver, TRPC_STATUS_NOT_FOUND, "symbol not found: %s",
		                   symbol);
	return reply_files(r, rs, s->file);
}

static int
answer_file_containing_extension(struct refl_reply *r, const struct refl_service *rs,
                                 const Grpc__Reflection__V1__ServerReflectionRequest *req)
{
	const struct refl_index *idx = rs->idx;
	const Grpc__Reflection__V1__ExtensionRequest *x = req->file_containing_extension;
	const char *type = strip_dot(x->containing_type);
	size_t i = extension_lower_bound(idx, type, x->extension_number);
	const struct refl_extension *e = NULL;

	if (i < idx->extensions.n)
		e = (const struct refl_extension *)idx->extensions.items + i;
	if (e == NULL || e->number != x->extension_number || strcmp(e->extendee, type) != 0)
		return reply_error(r, rs->ver, TRPC_STATUS_NOT_FOUND,
		                   "extension %d of %s not found", (int)x->extension_number, type);
	return reply_files(r, rs, e->file);
}

/* A known message with no extensions gets an empty list, as gRPC's own
 * servers answer; only a type that is neither a known message nor
 * extended anywhere is NOT_FOUND. */
static int answer_all_extension_numbers(struct refl_reply *r, const struct refl_service *rs,
                                        const Grpc__Reflection__V1__ServerReflectionRequest *req)
{
	const struct refl_index *idx = rs->idx;
	const struct refl_extension *e = idx->extensions.items;
	const char *type = strip_dot(req->all_extension_numbers_of_type);
	const struct refl_name *s = name_find(&idx->symbols, type);
	size_t first = extension_lower_bound(idx, type, INT32_MIN), end = first;

	while (end < idx->extensions.n && strcmp(e[end].extendee, type) == 0)
		end++;
	if (end == first && (s == NULL || s->kind != REFL_MESSAGE))
		return reply_error(r, rs->ver, TRPC_STATUS_NOT_FOUND, "type not found: %s", type);
	if (end > first) {
		r->number_data = malloc((end - first) * sizeof *r->number_data);
		if (r->number_data == NULL)
			return TRPC_ERR_NOMEM;
		for (size_t i = first; i < end; i++)
			r->number_data[i - first] = e[i].number;
	}
	protobuf_c_message_init(rs->ver->extension_number_response, &r->numbers);
	r->numbers.base_type_name = (char *)type;
	r->numbers.n_extension_number = end - first;
	r->numbers.extension_number = r->number_data;
	r->resp.message_response_case =
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
	r->resp.all_extension_numbers_response = &r->numbers;
	return 0;
}

/* The services the server actually offers, whether or not a descriptor
 * set describes them. */
static int answer_list_services(struct refl_reply *r, const struct refl_service *rs,
                                const Grpc__Reflection__V1__ServerReflectionRequest *req)
{
	size_t n = trpc_server_service_count(rs->idx->srv);

	(void)req;
	if (n > 0) {
		r->service_data = malloc(n * sizeof *r->service_data);
		r->service_ptrs = malloc(n * sizeof *r->service_ptrs);
		if (r->service_data == NULL || r->service_ptrs == NULL)
			return TRPC_ERR_NOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		protobuf_c_message_init(rs->ver->service_response, &r->service_data[i]);
		r->service_data[i].name = (char *)trpc_server_service_name(rs->idx->srv, i);
		r->service_ptrs[i] = &r->service_data[i];
	}
	protobuf_c_message_init(rs->ver->list_service_response, &r->services);
	r->services.n_service = n;
	r->services.service = r->service_ptrs;
	r->resp.message_response_case =
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
	r->resp.list_services_response = &r->services;
	return 0;
}

/* Fills `r` for one request: 0 (answered, possibly with an error_response)
 * or TRPC_ERR_NOMEM. */
typedef int (*refl_answer_fn)(struct refl_reply *r, const struct refl_service *rs,
                              const Grpc__Reflection__V1__ServerReflectionRequest *req);

static const refl_answer_fn refl_answers[] = {
    [GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME] =
        answer_file_by_filename,
    [GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL] =
        answer_file_containing_symbol,
    [GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION] =
        answer_file_containing_extension,
    [GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE] =
        answer_all_extension_numbers,
    [GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES] =
        answer_list_services,
};

static int answer(struct refl_reply *r, const struct refl_service *rs,
                  const Grpc__Reflection__V1__ServerReflectionRequest *req)
{
	size_t c = (size_t)req->message_request_case;
	int extension_missing =
	    req->message_request_case ==
	        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION &&
	    req->file_containing_extension == NULL;

	if (c >= sizeof refl_answers / sizeof refl_answers[0] || refl_answers[c] == NULL ||
	    extension_missing)
		return reply_error(r, rs->ver, TRPC_STATUS_INVALID_ARGUMENT,
		                   "no supported message_request set");
	return refl_answers[c](r, rs, req);
}

/* ------------------------------------------------------------ the stream */

/* trpc_call_user() is set to this once the handler has finished the call,
 * so that no later callback finishes it a second time. */
static char refl_finished;

static void refl_finish(trpc_call *call, int status, const char *message)
{
	if (trpc_call_user(call) == &refl_finished)
		return;
	trpc_call_set_user(call, &refl_finished);
	trpc_call_finish(call, status, message);
}

static int send_reply(trpc_call *call, const struct refl_service *rs, struct refl_reply *r,
                      const Grpc__Reflection__V1__ServerReflectionRequest *req)
{
	int rc = answer(r, rs, req);

	if (rc != 0)
		return rc;
	rc = trpc_call_send(call, &r->resp.base);
	if (rc == TRPC_ERR_TOO_LARGE) {
		/* A file closure bigger than the send limit: say so and keep
		 * the stream, as for any other request that cannot be met. */
		reply_clear(r);
		reply_init(r, rs->ver, req);
		reply_error(r, rs->ver, TRPC_STATUS_RESOURCE_EXHAUSTED,
		            "response exceeds the server's max_send_message_size");
		rc = trpc_call_send(call, &r->resp.base);
	}
	return rc;
}

static void refl_on_start(trpc_call *call, void *ud)
{
	(void)ud;
	trpc_call_set_user(call, NULL);
}

static void refl_on_message(trpc_call *call, const ProtobufCMessage *msg, void *ud)
{
	const struct refl_service *rs = ud;
	const Grpc__Reflection__V1__ServerReflectionRequest *req = (const void *)msg;
	struct refl_reply r;
	int rc;

	if (trpc_call_user(call) == &refl_finished)
		return;
	reply_init(&r, rs->ver, req);
	rc = send_reply(call, rs, &r, req);
	reply_clear(&r);
	if (rc == TRPC_ERR_NOMEM)
		refl_finish(call, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	else if (rc == TRPC_ERR_CLOSED)
		refl_finish(call, TRPC_STATUS_CANCELLED, NULL);
	else if (rc != 0)
		refl_finish(call, TRPC_STATUS_INTERNAL, trpc_strerror(rc));
}

static void refl_on_half_close(trpc_call *call, void *ud)
{
	(void)ud;
	refl_finish(call, TRPC_STATUS_OK, NULL);
}

static void refl_on_cancel(trpc_call *call, void *ud)
{
	(void)ud;
	refl_finish(call, TRPC_STATUS_CANCELLED, NULL);
}

#define REFL_STREAM_OPS                                                                            \
	{                                                                                          \
		.on_start = refl_on_start, .on_message = refl_on_message,                          \
		.on_half_close = refl_on_half_close, .on_cancel = refl_on_cancel,                  \
	}

static const struct trpc_method refl_v1_methods[] = {{
    .name = "ServerReflectionInfo",
    .kind = TRPC_BIDI_STREAMING,
    .request = &grpc__reflection__v1__server_reflection_request__descriptor,
    .response = &grpc__reflection__v1__server_reflection_response__descriptor,
    .stream = REFL_STREAM_OPS,
}};

static const struct trpc_method refl_v1alpha_methods[] = {{
    .name = "ServerReflectionInfo",
    .kind = TRPC_BIDI_STREAMING,
    .request = &grpc__reflection__v1alpha__server_reflection_request__descriptor,
    .response = &grpc__reflection__v1alpha__server_reflection_response__descriptor,
    .stream = REFL_STREAM_OPS,
}};

static const struct refl_version refl_versions[2] = {
    {
        .service = "grpc.reflection.v1.ServerReflection",
        .request = &grpc__reflection__v1__server_reflection_request__descriptor,
        .response = &grpc__reflection__v1__server_reflection_response__descriptor,
        .file_descriptor_response = &grpc__reflection__v1__file_descriptor_response__descriptor,
        .extension_number_response = &grpc__reflection__v1__extension_number_response__descriptor,
        .list_service_response = &grpc__reflection__v1__list_service_response__descriptor,
        .service_response = &grpc__reflection__v1__service_response__descriptor,
        .error_response = &grpc__reflection__v1__error_response__descriptor,
        .methods = refl_v1_methods,
    },
    {
        .service = "grpc.reflection.v1alpha.ServerReflection",
        .request = &grpc__reflection__v1alpha__server_reflection_request__descriptor,
        .response = &grpc__reflection__v1alpha__server_reflection_response__descriptor,
        .file_descriptor_response =
            &grpc__reflection__v1alpha__file_descriptor_response__descriptor,
        .extension_number_response =
            &grpc__reflection__v1alpha__extension_number_response__descriptor,
        .list_service_response = &grpc__reflection__v1alpha__list_service_response__descriptor,
        .service_response = &grpc__reflection__v1alpha__service_response__descriptor,
        .error_response = &grpc__reflection__v1alpha__error_response__descriptor,
        .methods = refl_v1alpha_methods,
    },
};

/* ------------------------------------------------------------ public API */

/*
 * Indexes `sets` (each a serialized FileDescriptorSet; files repeated
 * across sets count once, the first copy wins) and registers both
 * reflection services. Before start. Returns 0; TRPC_ERR_INVALID for NULL
 * arguments or a malformed set; TRPC_ERR_NOMEM; or what
 * trpc_server_on_free / trpc_server_add_service return (TRPC_ERR_EXISTS
 * when registered twice; if v1 was added and v1alpha then failed, v1
 * stays). The index belongs to the server from the first service added.
 */
int trpc_reflection_register(trpc_server *srv, const struct trpc_descriptor_set *sets,
                             size_t n_sets)
{
	struct refl_index *idx;
	int rc;

	if (srv == NULL || (n_sets > 0 && sets == NULL))
		return TRPC_ERR_INVALID;
	idx = calloc(1, sizeof *idx);
	if (idx == NULL)
		return TRPC_ERR_NOMEM;
	idx->srv = srv;
	for (size_t i = 0; i < n_sets; i++) {
		if (sets[i].len == 0)
			continue; /* an empty set is valid and holds nothing */
		rc = sets[i].data ? add_set(idx, sets[i].data, sets[i].len) : TRPC_ERR_INVALID;
		if (rc != 0)
			goto fail;
	}
	index_finish(idx);
	for (size_t i = 0; i < 2; i++) {
		struct refl_service *rs = &idx->services[i];
		rs->idx = idx;
		rs->ver = &refl_versions[i];
		rs->svc = (struct trpc_service){
		    .name = rs->ver->service,
		    .methods = rs->ver->methods,
		    .n_methods = 1,
		    .ud = rs,
		};
	}
	rc = trpc_server_on_free(srv, index_free, idx);
	if (rc != 0)
		goto fail;
	for (size_t i = 0; i < 2; i++) {
		rc = trpc_server_add_service(srv, &idx->services[i].svc);
		if (rc != 0)
			return rc;
	}
	return 0;

fail:
	index_free(idx);
	return rc;
}

/*
 * log: one line per record on stderr,
 *   2026-11-22T10:00:00.123Z INFO message
 * with the time in UTC to the millisecond.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tasker/rpc.h>

/* Relaxed is enough: a level change only needs to be seen eventually, and
 * the level guards no other data. */
static atomic_int log_level = TRPC_LOG_INFO;

static const char *const level_names[] = {
    [TRPC_LOG_ERROR] = "ERROR",
    [TRPC_LOG_WARN] = "WARN",
    [TRPC_LOG_INFO] = "INFO",
    [TRPC_LOG_DEBUG] = "DEBUG",
};

/*
 * A record is built in one buffer and written with one write(2): POSIX
 * makes writes of at most PIPE_BUF bytes to a pipe atomic, so records from
 * different threads (or processes sharing the pipe) never interleave.
 * Longer messages are cut.
 */
#define LOG_LINE_MAX PIPE_BUF

static int clamp_level(int level)
{
	if (level < TRPC_LOG_ERROR)
		return TRPC_LOG_ERROR;
	if (level > TRPC_LOG_DEBUG)
		return TRPC_LOG_DEBUG;
	return level;
}

void trpc_log_set_level(int level)
{
	atomic_store_explicit(&log_level, clamp_level(level), memory_order_relaxed);
}

/* Writes "YYYY-MM-DDTHH:MM:SS.mmmZ LEVEL " and returns its length. */
static size_t format_prefix(char *buf, size_t size, int level)
{
	struct timespec ts;
	struct tm tm;
	size_t n;
	int rc;

	if (clock_gettime(CLOCK_REALTIME, &ts) == -1)
		ts = (struct timespec){0};
	if (!gmtime_r(&ts.tv_sec, &tm))
		memset(&tm, 0, sizeof(tm));
	n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
	rc = snprintf(buf + n, size - n, ".%03dZ %s ", (int)(ts.tv_nsec / 1000000),
	              level_names[level]);
	return rc < 0 ? n : n + (size_t)rc;
}

/* Keeps a record on one line whatever the message holds. */
static size_t sanitize(char *s, size_t len)
{
	size_t i;

	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
		len--;
	for (i = 0; i < len; i++)
		if (s[i] == '\n' || s[i] == '\r')
			s[i] = ' ';
	return len;
}

static void write_all(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, buf, len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return; /* nowhere left to report it */
		}
		buf += n;
		len -= (size_t)n;
	}
}

void trpc_log(int level, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	size_t n, room;
	va_list ap;
	int rc;

	level = clamp_level(level);
	if (level > atomic_load_explicit(&log_level, memory_order_relaxed))
		return;

	/* Room is kept for the final '\n'. */
	n = format_prefix(line, sizeof(line) - 1, level);
	room = sizeof(line) - 1 - n;
	va_start(ap, fmt);
	rc = vsnprintf(line + n, room, fmt, ap);
	va_end(ap);
	if (rc < 0)
		rc = 0;
	if ((size_t)rc >= room) {
		/* Truncated: vsnprintf() left room - 1 bytes; say so. */
		rc = (int)(room - 1);
		if (room > 4)
			memcpy(line + n + rc - 3, "...", 3);
	}
	n += sanitize(line + n, (size_t)rc);
	line[n++] = '\n';
	write_all(STDERR_FILENO, line, n);
}

/*
 * exec: step handlers that are programs ("exec:<path>").
 *
 * The program runs in a process group of its own with the handler input
 * (one JSON object) on stdin, and TASKER_TASK_UUID, TASKER_STEP_UUID,
 * TASKER_STEP_NAME, TASKER_ATTEMPT and TASKER_CORRELATION_ID added to the
 * worker's environment; its working directory is the worker's. stdout
 * carries the result (at most WK_EXEC_MAX_STDOUT bytes); of stderr the last
 * WK_EXEC_MAX_STDERR bytes are kept for the error report. The outcome:
 *
 *   exit 0, stdout empty                  success, result null
 *   exit 0, stdout an object with a       an envelope (below)
 *     boolean "success"
 *   exit 0, any other JSON on stdout      success with that JSON as the result
 *   exit 0, stdout not JSON               error InvalidResult, not retryable
 *   exit N > 0                            failure ExitStatus, retryable unless N
 *                                         is 65 (EX_DATAERR: "this input can
 *                                         never succeed"); an envelope with
 *                                         "success": false on stdout supplies
 *                                         the details instead
 *   killed by a signal                    error Signal, retryable
 *   running at the step deadline          SIGTERM to the group, SIGKILL 2 s
 *                                         later; error TimeoutError, retryable
 *   more than the stdout limit            killed; error OutputTooLarge, not
 *                                         retryable
 *   cannot be started                     error SpawnError, retryable
 *
 * Envelope: {"success": true, "result": R} is success with R;
 * {"success": false, "error": "message" | {"message", "error_type",
 * "status_code", "context"}, "error_type", "retryable" (default true),
 * "backoff_seconds", "status_code", "context"} is a failure with those
 * details. Failures carry the program, its exit status or signal and the
 * kept stderr in error.context; the last lines of stderr also end
 * error.message.
 *
 * When the program exits, whatever it left running in its process group
 * is killed, before it is reaped (so the group id cannot have been reused).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tasker/rpc.h"
#include "worker/kinds.h"

#define WK_EXEC_MAX_STDOUT (16 * 1024 * 1024)
#define WK_EXEC_MAX_STDERR (16 * 1024)
#define MESSAGE_STDERR_MAX 1024         /* stderr tail quoted in error.message */
#define KILL_GRACE_NS      2000000000LL /* SIGTERM -> SIGKILL */
#define DRAIN_GRACE_NS     1000000000LL /* reading pipes after the exit */
#define TICK_MS            100          /* exit polling when pidfd_open is unavailable */
#define EXIT_NOT_RETRYABLE 65           /* EX_DATAERR */

extern char **environ;

int wk_exec_check(const char *path, struct tk_err *err)
{
	struct stat st;

	if (stat(path, &st) == -1)
		return tk_err_set(err, TRPC_ERR_CONFIG, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return tk_err_set(err, TRPC_ERR_CONFIG, "%s: not a regular file", path);
	if (access(path, X_OK) == -1)
		return tk_err_set(err, TRPC_ERR_CONFIG, "%s: not executable: %s", path,
		                  strerror(errno));
	return 0;
}

/* ================================================================== buffers */

struct buf {
	char *data;
	size_t len, cap, max;
	int keep_tail; /* over max: keep the last max bytes (else: stop, overflow) */
	int truncated; /* keep_tail dropped bytes */
	int overflow;  /* !keep_tail went over max */
};

static int buf_append(struct buf *b, const char *p, size_t n)
{
	if (b->len + n > b->max && !b->keep_tail) {
		b->overflow = 1;
		return 0;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *grown;
		while (cap < b->len + n)
			cap *= 2;
		if ((grown = realloc(b->data, cap + 1)) == NULL)
			return TRPC_ERR_NOMEM;
		b->data = grown;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	if (b->keep_tail && b->len > b->max) {
		memmove(b->data, b->data + (b->len - b->max), b->max);
		b->len = b->max;
		b->truncated = 1;
	}
	b->data[b->len] = '\0';
	return 0;
}

/* Replaces NUL bytes and invalid UTF-8 with '?', so that the text can go
 * into a JSON string and a jsonb column. */
static void utf8_sanitize(char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		size_t n = c < 0x80             ? 1
		           : (c & 0xE0) == 0xC0 ? 2
		           : (c & 0xF0) == 0xE0 ? 3
		           : (c & 0xF8) == 0xF0 ? 4
		                                : 0;
		int ok = n > 0 && i + n <= len && c != 0 && c != 0xC0 && c != 0xC1 && c <= 0xF4;
		for (size_t k = 1; ok && k < n; k++)
			ok = ((unsigned char)s[i + k] & 0xC0) == 0x80;
		if (!ok) {
			s[i++] = '?';
			continue;
		}
		i += n;
	}
}

/* ================================================================== spawning */

struct child {
	pid_t pid;
	int in, out, err; /* our ends of the pipes, non-blocking; -1 when closed */
	int pidfd;        /* -1: poll for the exit every TICK_MS */
};

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* NAME=value strings for the step, then the worker's environment without those names. */
static char **build_env(const struct wk_call *call, char *own[5])
{
	static const char *const names[5] = {"TASKER_TASK_UUID", "TASKER_STEP_UUID",
	                                     "TASKER_STEP_NAME", "TASKER_ATTEMPT",
	                                     "TASKER_CORRELATION_ID"};
	const char *keys[5] = {"task_uuid", "step_uuid", "step_name", NULL, "correlation_id"};
	size_t n = 0, k = 0;
	char **env;

	for (char **e = environ; *e != NULL; e++)
		n++;
	if ((env = calloc(n + 6, sizeof(*env))) == NULL)
		return NULL;
	for (int i = 0; i < 5; i++) {
		const char *v =
		    keys[i] ? json_string_value(json_object_get(call->input, keys[i])) : NULL;
		int rc = keys[i] ? asprintf(&own[i], "%s=%s", names[i], v ? v : "")
		                 : asprintf(&own[i], "%s=%d", names[i], call->attempt);
		if (rc == -1) {
			own[i] = NULL;
			free(env);
			return NULL;
		}
		env[k++] = own[i];
	}
	for (char **e = environ; *e != NULL; e++) {
		int ours = 0;
		for (int i = 0; i < 5 && !ours; i++) {
			size_t l = strlen(names[i]);
			ours = strncmp(*e, names[i], l) == 0 && (*e)[l] == '=';
		}
		if (!ours)
			env[k++] = *e;
	}
	return env;
}

/*
 * Starts path with pipes on fds 0-2, in a new process group, with default
 * signal dispositions and an empty signal mask (the worker blocks and
 * ignores signals the program should see). posix_spawn is safe in a
 * threaded process, unlike code between fork() and exec().
 * Returns 0 or an errno value.
 */
static int spawn(const char *path, const struct wk_call *call, struct child *c)
{
	int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, rc;
	char *argv[] = {(char *)path, NULL}, *own[5] = {NULL}, **env = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, dflt;

	if (pipe2(in, O_CLOEXEC) == -1 || pipe2(out, O_CLOEXEC) == -1 ||
	    pipe2(err, O_CLOEXEC) == -1) {
		rc = errno;
		goto out_pipes;
	}
	if ((env = build_env(call, own)) == NULL) {
		rc = ENOMEM;
		goto out_pipes;
	}
	sigemptyset(&none);
	sigfillset(&dflt);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
	                                    POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dflt);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_adddup2(&fa, err[1], 2);
	/* Our descriptors are close-on-exec; this catches any a library opened without. */
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	rc = posix_spawn(&c->pid, path, &fa, &attr, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (rc == 0) {
		c->in = in[1];
		c->out = out[0];
		c->err = err[0];
		in[1] = out[0] = err[0] = -1;
		fcntl(c->in, F_SETFL, O_NONBLOCK);
		fcntl(c->out, F_SETFL, O_NONBLOCK);
		fcntl(c->err, F_SETFL, O_NONBLOCK);
#ifdef SYS_pidfd_open
		c->pidfd = (int)syscall(SYS_pidfd_open, c->pid, 0);
#endif
	}
out_pipes:
	for (int i = 0; i < 5; i++)
		free(own[i]);
	free(env);
	for (int i = 0; i < 2; i++) {
		close_fd(&in[i]);
		close_fd(&out[i]);
		close_fd(&err[i]);
	}
	return rc;
}

/* ================================================================== running */

struct run {
	struct child c;
	const char *input;
	size_t input_len, written;
	struct buf out, err;
	int exited;      /* the child is a zombie (seen with WNOWAIT) */
	siginfo_t info;  /* its exit */
	int timed_out;   /* we sent SIGTERM at the deadline */
	int64_t kill_at; /* SIGKILL due (0: none) */
	int64_t drain_until;
	int nomem;
};

static void kill_group(struct run *r, int sig)
{
	kill(-r->c.pid, sig);
}

static void check_exit(struct run *r)
{
	if (r->exited)
		return;
	memset(&r->info, 0, sizeof(r->info));
	if (waitid(P_PID, (id_t)r->c.pid, &r->info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
	    r->info.si_pid == 0)
		return;
	r->exited = 1;
	/* The leader is a zombie, so its group id is still ours: kill what it left behind. */
	kill_group(r, SIGKILL);
	r->drain_until = wk_now_ns() + DRAIN_GRACE_NS;
}

static void on_writable(struct run *r)
{
	while (r->written < r->input_len) {
		ssize_t n = write(r->c.in, r->input + r->written, r->input_len - r->written);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			break; /* EPIPE: the program does not read its input; fine */
		}
		r->written += (size_t)n;
	}
	close_fd(&r->c.in);
}

static void on_readable(struct run *r, int *fd, struct buf *b)
{
	char chunk[65536];

	for (;;) {
		ssize_t n = read(*fd, chunk, sizeof(chunk));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;
		if (n <= 0) {
			close_fd(fd);
			return;
		}
		if (buf_append(b, chunk, (size_t)n) != 0)
			r->nomem = 1;
		if (b->overflow || r->nomem) {
			kill_group(r, SIGKILL);
			close_fd(fd);
			return;
		}
	}
}

static int poll_timeout_ms(const struct run *r, int64_t deadline)
{
	int64_t now = wk_now_ns(), next = INT64_MAX;

	if (!r->timed_out)
		next = deadline;
	if (r->kill_at != 0 && r->kill_at < next)
		next = r->kill_at;
	if (r->exited && r->drain_until < next)
		next = r->drain_until;
	if (next == INT64_MAX)
		return r->c.pidfd >= 0 ? -1 : TICK_MS;
	next = next <= now ? 0 : (next - now) / 1000000 + 1;
	if (r->c.pidfd < 0 && !r->exited && next > TICK_MS)
		next = TICK_MS;
	return (int)(next > 60000 ? 60000 : next);
}

/* Runs the child until it has exited and its pipes are drained (or the drain grace ended). */
static void supervise(struct run *r, int64_t deadline)
{
	for (;;) {
		struct pollfd p[4];
		int n = 0, i_in = -1, i_out = -1, i_err = -1, i_pid = -1;
		int64_t now;

		check_exit(r);
		if (r->exited && ((r->c.out < 0 && r->c.err < 0) || wk_now_ns() >= r->drain_until))
			return;
		if (r->c.in >= 0) {
			p[i_in = n++] = (struct pollfd){.fd = r->c.in, .events = POLLOUT};
		}
		if (r->c.out >= 0)
			p[i_out = n++] = (struct pollfd){.fd = r->c.out, .events = POLLIN};
		if (r->c.err >= 0)
			p[i_err = n++] = (struct pollfd){.fd = r->c.err, .events = POLLIN};
		if (r->c.pidfd >= 0 && !r->exited)
			p[i_pid = n++] = (struct pollfd){.fd = r->c.pidfd, .events = POLLIN};
		if (poll(p, (nfds_t)n, poll_timeout_ms(r, deadline)) == -1 && errno != EINTR)
			return; /* cannot happen with valid descriptors; the caller reaps */
		if (i_in >= 0 && p[i_in].revents != 0)
			on_writable(r);
		if (i_out >= 0 && p[i_out].revents != 0)
			on_readable(r, &r->c.out, &r->out);
		if (i_err >= 0 && p[i_err].revents != 0)
			on_readable(r, &r->c.err, &r->err);
		now = wk_now_ns();
		if (!r->timed_out && !r->exited && now >= deadline) {
			r->timed_out = 1;
			kill_group(r, SIGTERM);
			r->kill_at = now + KILL_GRACE_NS;
		}
		if (r->kill_at != 0 && now >= r->kill_at) {
			kill_group(r, SIGKILL);
			r->kill_at = 0;
		}
	}
}

/* ================================================================== outcome */

static int is_trailing_space(char c)
{
	return c == '\n' || c == '\r' || c == ' ' || c == '\t';
}

/* The end of stderr: at most MESSAGE_STDERR_MAX bytes starting at a
 * character boundary, trailing white space trimmed; *len gets its length. */
static const char *stderr_tail(const struct buf *b, size_t *len)
{
	size_t start = 0, end = b->len;

	if (b->data == NULL) {
		*len = 0;
		return "";
	}
	while (end > 0 && is_trailing_space(b->data[end - 1]))
		end--;
	if (end > MESSAGE_STDERR_MAX)
		start = end - MESSAGE_STDERR_MAX;
	while (start < end && ((unsigned char)b->data[start] & 0xC0) == 0x80)
		start++;
	*len = end - start;
	return b->data + start;
}

static void add_context(struct run *r, const char *path, struct wk_outcome *out)
{
	wk_outcome_context_set(out, "program", json_string(path));
	if (r->info.si_code == CLD_EXITED)
		wk_outcome_context_set(out, "exit_status", json_integer(r->info.si_status));
	else if (r->exited)
		wk_outcome_context_set(out, "signal", json_integer(r->info.si_status));
	wk_outcome_context_set(out, "stderr",
	                       json_stringn(r->err.data != NULL ? r->err.data : "", r->err.len));
	wk_outcome_context_set(out, "stderr_truncated", json_boolean(r->err.truncated));
}

/* Appends ": <stderr tail>" to the failure message when there is any stderr. */
static void quote_stderr(struct run *r, struct wk_outcome *out)
{
	size_t tl;
	const char *tail = stderr_tail(&r->err, &tl);
	char *msg;

	if (tl == 0 || out->error_message == NULL)
		return;
	if (asprintf(&msg, "%s: %.*s", out->error_message, (int)tl, tail) == -1)
		return;
	free(out->error_message);
	out->error_message = msg;
}

/* Failure details from an envelope: {"success": false, ...}. */
static void take_envelope_failure(const json_t *env, int retryable_default, struct wk_outcome *out)
{
	const json_t *e = json_object_get(env, "error"), *retry = json_object_get(env, "retryable");
	const json_t *ctx = json_object_get(env, "context");
	const char *type = json_string_value(json_object_get(env, "error_type"));
	const char *msg = json_string_value(e);
	json_int_t backoff = json_integer_value(json_object_get(env, "backoff_seconds"));
	json_int_t code = -1;
	const char *key;
	json_t *v;

	if (json_is_integer(json_object_get(env, "status_code")))
		code = json_integer_value(json_object_get(env, "status_code"));
	if (json_is_object(e)) {
		msg = json_string_value(json_object_get(e, "message"));
		if (type == NULL)
			type = json_string_value(json_object_get(e, "error_type"));
		if (json_is_integer(json_object_get(e, "status_code")))
			code = json_integer_value(json_object_get(e, "status_code"));
		if (!json_is_object(ctx))
			ctx = json_object_get(e, "context");
	}
	wk_outcome_fail(out, WK_FAILED, type != NULL ? type : "HandlerError",
	                json_is_boolean(retry) ? json_is_true(retry) : retryable_default, "%s",
	                msg != NULL ? msg : "handler failed");
	if (backoff > 0 && backoff <= INT32_MAX)
		out->backoff_seconds = (int)backoff;
	if (code >= 0 && code <= INT32_MAX)
		out->status_code = (int)code;
	if (json_is_object(ctx))
		json_object_foreach((json_t *)ctx, key, v)
		    wk_outcome_context_set(out, key, json_incref(v));
}

/* An object with a boolean "success" on stdout, or NULL. *parsed gets any
 * JSON value stdout held (NULL when it is empty or not JSON). */
static json_t *parse_stdout(struct run *r, json_t **parsed, json_error_t *jerr)
{
	size_t start = 0;

	*parsed = NULL;
	while (start < r->out.len && strchr(" \t\r\n", r->out.data[start]) != NULL)
		start++;
	if (start == r->out.len)
		return NULL;
	*parsed = json_loadb(r->out.data + start, r->out.len - start, JSON_DECODE_ANY, jerr);
	if (json_is_object(*parsed) && json_is_boolean(json_object_get(*parsed, "success")))
		return *parsed;
	return NULL;
}

static void outcome_of_exit0(struct run *r, const char *path, struct wk_outcome *out)
{
	json_error_t jerr;
	json_t *parsed, *env = parse_stdout(r, &parsed, &jerr);

	if (env != NULL && json_is_true(json_object_get(env, "success"))) {
		json_t *res = json_object_get(env, "result");
		wk_outcome_success(out, res != NULL ? json_incref(res) : NULL);
	} else if (env != NULL) {
		take_envelope_failure(env, 1, out);
		add_context(r, path, out);
	} else if (parsed != NULL) {
		wk_outcome_success(out, json_incref(parsed));
	} else if (r->out.len > 0 && strspn(r->out.data, " \t\r\n") < r->out.len) {
		wk_outcome_fail(out, WK_ERROR, "InvalidResult", 0,
		                "%s: stdout is not JSON: %s (line %d column %d)", path, jerr.text,
		                jerr.line, jerr.column);
		add_context(r, path, out);
		quote_stderr(r, out);
	} else {
		wk_outcome_success(out, NULL);
	}
	json_decref(parsed);
}

static void outcome_of_exit(struct run *r, const char *path, struct wk_outcome *out)
{
	int status = r->info.si_status;
	json_error_t jerr;
	json_t *parsed, *env;

	if (status == 0) {
		outcome_of_exit0(r, path, out);
		return;
	}
	env = parse_stdout(r, &parsed, &jerr);
	if (env != NULL && json_is_false(json_object_get(env, "success")))
		take_envelope_failure(env, status != EXIT_NOT_RETRYABLE, out);
	else
		wk_outcome_fail(out, WK_FAILED, "ExitStatus", status != EXIT_NOT_RETRYABLE,
		                "%s exited with status %d", path, status);
	json_decref(parsed);
	add_context(r, path, out);
	quote_stderr(r, out);
}

static void outcome(struct run *r, const char *path, const struct wk_call *call,
                    struct wk_outcome *out)
{
	utf8_sanitize(r->err.data, r->err.len);
	if (r->nomem)
		wk_outcome_fail(out, WK_ERROR, "OutOfMemory", 1, "%s: out of memory reading output",
		                path);
	else if (r->out.overflow)
		wk_outcome_fail(out, WK_ERROR, "OutputTooLarge", 0,
		                "%s: more than %d bytes on stdout; killed", path,
		                WK_EXEC_MAX_STDOUT);
	else if (r->timed_out)
		wk_outcome_fail(out, WK_ERROR, "TimeoutError", 1,
		                "%s: still running after the step timeout of %d ms; killed", path,
		                call->timeout_ms);
	else if (r->info.si_code == CLD_EXITED) {
		outcome_of_exit(r, path, out);
		return;
	} else
		wk_outcome_fail(out, WK_ERROR, "Signal", 1, "%s was killed by signal %d (%s)", path,
		                r->info.si_status, strsignal(r->info.si_status));
	add_context(r, path, out);
	if (r->timed_out)
		wk_outcome_context_set(out, "timeout_ms", json_integer(call->timeout_ms));
	quote_stderr(r, out);
}

void wk_exec_run(const char *path, const struct wk_call *call, struct wk_outcome *out)
{
	struct run r = {
	    .c = {.in = -1, .out = -1, .err = -1, .pidfd = -1},
	    .input = call->input_text,
	    .input_len = call->input_len,
	    .out = {.max = WK_EXEC_MAX_STDOUT},
	    .err = {.max = WK_EXEC_MAX_STDERR, .keep_tail = 1},
	};
	int rc = spawn(path, call, &r.c);

	if (rc != 0) {
		wk_outcome_fail(out, WK_ERROR, "SpawnError", 1, "cannot start %s: %s", path,
		                strerror(rc));
		return;
	}
	if (call->child_pgid != NULL)
		atomic_store(call->child_pgid, (int)r.c.pid);
	supervise(&r, call->deadline_ns);
	if (!r.exited) { /* poll failed: make sure it ends */
		kill_group(&r, SIGKILL);
		while (waitid(P_PID, (id_t)r.c.pid, &r.info, WEXITED | WNOWAIT) == -1 &&
		       errno == EINTR)
			;
		r.exited = 1;
	}
	if (call->child_pgid != NULL)
		atomic_store(call->child_pgid, 0);
	while (waitpid(r.c.pid, NULL, 0) == -1 && errno == EINTR)
		;
	close_fd(&r.c.in);
	close_fd(&r.c.out);
	close_fd(&r.c.err);
	close_fd(&r.c.pidfd);
	outcome(&r, path, call, out);
	if (r.err.len > 0) {
		size_t tl;
		const char *tail = stderr_tail(&r.err, &tl);
		trpc_log(TRPC_LOG_DEBUG, "step %s: %s: stderr: %.*s", call->step_name, path,
		         (int)tl, tail);
	}
	free(r.out.data);
	free(r.err.data);
}

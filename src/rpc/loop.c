/*
 * loop: an I/O thread. See loop.h for the shape; the order of one wake-up
 * is: socket events (reads feed nghttp2, which may queue handler events
 * and mark calls dirty) -> commands -> dirty calls -> one pool push for
 * the batch -> one flush per touched connection.
 */
#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "loop.h"
#include "pool.h"
#include "server.h"

/* epoll data tags: listeners and the eventfd are told apart from
 * connections by these sentinel objects' addresses. */
struct lsock {
	int fd;
	int tls;
};

static __thread struct loop *current_loop;

int64_t loop_now(struct loop *l)
{
	if (l->now == 0)
		l->now = now_ns();
	return l->now;
}

int loop_on_io_thread(void)
{
	return current_loop != NULL;
}

struct loop *loop_new(struct trpc_server *srv, int index, const char **why)
{
	struct loop *l = calloc(1, sizeof *l);
	if (l == NULL) {
		*why = "out of memory";
		return NULL;
	}
	l->srv = srv;
	l->index = index;
	l->slab = srv->metrics.slabs[index];
	l->rbuf_size = 64 * 1024;
	l->rbuf = malloc(l->rbuf_size);
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (l->rbuf == NULL || l->epfd == -1 || l->evfd == -1) {
		*why = "cannot create the I/O loop (epoll/eventfd)";
		goto fail;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) == -1) {
		*why = "epoll_ctl on the eventfd failed";
		goto fail;
	}
	pthread_mutex_init(&l->mu, NULL);
	pthread_mutex_init(&l->reg_mu, NULL);
	return l;
fail:
	if (l->epfd != -1)
		close(l->epfd);
	if (l->evfd != -1)
		close(l->evfd);
	free(l->rbuf);
	free(l);
	return NULL;
}

int loop_add_listener(struct loop *l, int fd, int tls)
{
	struct lsock *ls = malloc(sizeof *ls);
	if (ls == NULL)
		return TRPC_ERR_NOMEM;
	ls->fd = fd;
	ls->tls = tls;
	int *lfds = realloc(l->lfds, (size_t)(l->nlfds + 1) * sizeof *lfds);
	if (lfds == NULL) {
		free(ls);
		return TRPC_ERR_NOMEM;
	}
	l->lfds = lfds;
	void **tags = realloc(l->ltags, (size_t)(l->nlfds + 1) * sizeof *tags);
	if (tags == NULL) {
		free(ls);
		return TRPC_ERR_NOMEM;
	}
	l->ltags = tags;
	struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = ls};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
		free(ls);
		return TRPC_ERR_SYSTEM;
	}
	l->lfds[l->nlfds] = fd;
	l->ltags[l->nlfds] = ls;
	l->nlfds++;
	return 0;
}

static int is_listener(struct loop *l, void *ptr)
{
	for (int i = 0; i < l->nlfds; i++)
		if (l->ltags[i] == ptr)
			return 1;
	return 0;
}

static void wake(struct loop *l)
{
	uint64_t one = 1;
	ssize_t n = write(l->evfd, &one, sizeof one);
	(void)n; /* EAGAIN means the counter is already non-zero: awake anyway */
}

void loop_post(struct loop *l, int type, struct conn *conn, uint32_t error_code, const char *text)
{
	struct loop_cmd *cmd = malloc(sizeof *cmd);
	if (cmd == NULL) {
		trpc_log(TRPC_LOG_ERROR, "out of memory posting a loop command");
		return;
	}
	cmd->next = NULL;
	cmd->type = type;
	cmd->conn = conn;
	cmd->error_code = error_code;
	cmd->text = text;
	if (conn != NULL)
		conn_ref(conn);
	pthread_mutex_lock(&l->mu);
	if (l->cmd_tail != NULL)
		l->cmd_tail->next = cmd;
	else
		l->cmd_head = cmd;
	l->cmd_tail = cmd;
	int need_wake = !l->wake_pending;
	l->wake_pending = 1;
	pthread_mutex_unlock(&l->mu);
	if (need_wake)
		wake(l);
}

void loop_push_dirty(struct loop *l, struct trpc_call *c)
{
	c->dirty_next = NULL;
	pthread_mutex_lock(&l->mu);
	if (l->dirty_tail != NULL)
		l->dirty_tail->dirty_next = c;
	else
		l->dirty_head = c;
	l->dirty_tail = c;
	/* From our own thread the wake-up is already under way. */
	int need_wake = !l->wake_pending && current_loop != l;
	if (need_wake)
		l->wake_pending = 1;
	pthread_mutex_unlock(&l->mu);
	if (need_wake)
		wake(l);
}

void loop_want_flush(struct loop *l, struct conn *c)
{
	if (c->in_flush)
		return;
	c->in_flush = 1;
	conn_ref(c);
	c->flush_next = l->flush_head;
	l->flush_head = c;
}

/* ------------------------------------------------------------------ accept */

/* Refuses a connection over max_connections cleanly: the server preface
 * (empty SETTINGS) and a GOAWAY saying why, then close. */
static void refuse(int fd)
{
	static const char msg[] = "max connections reached";
	uint8_t frame[9 + 9 + 8 + sizeof msg - 1];
	memset(frame, 0, sizeof frame);
	frame[3] = NGHTTP2_SETTINGS;
	uint8_t *g = frame + 9;
	size_t glen = 8 + sizeof msg - 1;
	g[0] = (uint8_t)(glen >> 16);
	g[1] = (uint8_t)(glen >> 8);
	g[2] = (uint8_t)glen;
	g[3] = NGHTTP2_GOAWAY;
	g[9 + 7] = NGHTTP2_REFUSED_STREAM;
	memcpy(g + 9 + 8, msg, sizeof msg - 1);
	ssize_t n = write(fd, frame, sizeof frame);
	(void)n;
	close(fd);
}

static void on_accept(struct loop *l, struct lsock *ls)
{
	struct trpc_server *srv = l->srv;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage sa;
		socklen_t salen = sizeof sa;
		int fd =
		    accept4(ls->fd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				trpc_log(TRPC_LOG_WARN, "accept: %s", strerror(errno));
			return;
		}
		if (atomic_fetch_add(&srv->nconns, 1) >= srv->cfg.max_connections) {
			atomic_fetch_sub(&srv->nconns, 1);
			trpc_log(TRPC_LOG_WARN,
			         "refusing a connection: max_connections (%d) reached",
			         srv->cfg.max_connections);
			refuse(fd);
			continue;
		}
		if (conn_accept(l, fd, &sa, ls->tls) != 0)
			atomic_fetch_sub(&srv->nconns, 1);
	}
}

/* ------------------------------------------------------------------ commands */

static void for_each_conn(struct loop *l, void (*fn)(struct conn *c, void *arg), void *arg)
{
	/* The registry may shrink while we walk it (closing), so take a
	 * snapshot with references first. */
	pthread_mutex_lock(&l->reg_mu);
	size_t n = l->nconns;
	struct conn **v = n ? malloc(n * sizeof *v) : NULL;
	size_t k = 0;
	if (v != NULL)
		for (struct conn *c = l->conns; c != NULL && k < n; c = c->reg_next) {
			conn_ref(c);
			v[k++] = c;
		}
	pthread_mutex_unlock(&l->reg_mu);
	for (size_t i = 0; i < k; i++) {
		fn(v[i], arg);
		conn_unref(v[i]);
	}
	free(v);
}

static void cmd_drain(struct conn *c, void *arg)
{
	(void)arg;
	if (c->state != CONN_CLOSED && !c->goaway_sent)
		metric_inc(&c->loop->slab->counters[MC_GOAWAY + GOAWAY_SHUTDOWN]);
	conn_goaway(c, NGHTTP2_NO_ERROR, "server shutting down", 1);
}

static void cmd_close(struct conn *c, void *arg)
{
	conn_close(c, arg);
}

static void cmd_resume(struct conn *c, void *arg)
{
	(void)arg;
	if (c->read_blocked) {
		c->read_blocked = 0;
		conn_on_readable(c);
	}
}

static void stop_listening(struct loop *l)
{
	for (int i = 0; i < l->nlfds; i++) {
		/* The server owns and closes the sockets themselves. */
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, l->lfds[i], NULL);
		free(l->ltags[i]);
	}
	l->nlfds = 0;
}

static int run_cmd(struct loop *l, struct loop_cmd *cmd)
{
	int stop = 0;
	switch (cmd->type) {
	case LOOP_CMD_PING:
		conn_send_ping(cmd->conn);
		break;
	case LOOP_CMD_GOAWAY:
		conn_goaway(cmd->conn, cmd->error_code, cmd->text, 1);
		break;
	case LOOP_CMD_CLOSE:
		conn_goaway(cmd->conn, cmd->error_code, cmd->text, 0);
		break;
	case LOOP_CMD_PAUSE:
		l->paused = 1;
		break;
	case LOOP_CMD_RESUME:
		l->paused = 0;
		for_each_conn(l, cmd_resume, NULL);
		break;
	case LOOP_CMD_DRAIN:
		l->draining = 1;
		stop_listening(l);
		for_each_conn(l, cmd_drain, NULL);
		break;
	case LOOP_CMD_CLOSE_ALL:
		for_each_conn(l, cmd_close, (void *)"server stopped");
		break;
	case LOOP_CMD_STOP:
		stop = 1;
		break;
	}
	if (cmd->conn != NULL)
		conn_unref(cmd->conn);
	free(cmd);
	return stop;
}

/* ------------------------------------------------------------------ main */

static int drain_queues(struct loop *l)
{
	uint64_t v;
	ssize_t n = read(l->evfd, &v, sizeof v);
	(void)n;
	pthread_mutex_lock(&l->mu);
	struct loop_cmd *cmds = l->cmd_head;
	struct trpc_call *dirty = l->dirty_head;
	l->cmd_head = l->cmd_tail = NULL;
	l->dirty_head = l->dirty_tail = NULL;
	l->wake_pending = 0;
	pthread_mutex_unlock(&l->mu);

	int stop = 0;
	while (cmds != NULL) {
		struct loop_cmd *next = cmds->next;
		stop |= run_cmd(l, cmds);
		cmds = next;
	}
	while (dirty != NULL) {
		struct trpc_call *next = dirty->dirty_next;
		atomic_store(&dirty->dirty, 0);
		conn_process_call(dirty->conn, dirty);
		call_unref(dirty);
		dirty = next;
	}
	return stop;
}

static void flush_all(struct loop *l)
{
	while (l->flush_head != NULL) {
		struct conn *c = l->flush_head;
		l->flush_head = c->flush_next;
		c->in_flush = 0;
		conn_flush(c);
		conn_unref(c);
	}
}

static void push_batch(struct loop *l)
{
	if (l->batch.n > 0) {
		pool_push_batch(l->srv->pool, l->batch.head, l->batch.tail, l->batch.n);
		l->batch = (struct call_batch){0};
	}
}

static void *loop_main(void *arg)
{
	struct loop *l = arg;
	current_loop = l;
	struct epoll_event evs[256];
	int stop = 0;
	while (!stop) {
		int n = epoll_wait(l->epfd, evs, 256, -1);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			trpc_log(TRPC_LOG_ERROR, "epoll_wait: %s", strerror(errno));
			break;
		}
		l->now = 0; /* loop_now() reads the clock again */
		int woken = 0;
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			if (p == l) {
				woken = 1;
			} else if (is_listener(l, p)) {
				if (!l->draining)
					on_accept(l, p);
			} else {
				struct conn *c = p;
				conn_ref(c);
				if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
					conn_on_readable(c);
				if (evs[i].events & EPOLLOUT)
					conn_on_writable(c);
				conn_unref(c);
			}
		}
		/* Always look at the queues: our own reads may have marked
		 * calls dirty without writing the eventfd. */
		(void)woken;
		stop = drain_queues(l);
		push_batch(l);
		l->now = 0; /* most streams end while flushing (trailers) */
		flush_all(l);
		/* Flushing may have completed work that queued more (closing
		 * a connection cancels calls). */
		push_batch(l);
	}
	current_loop = NULL;
	return NULL;
}

int loop_start(struct loop *l)
{
	if (pthread_create(&l->thread, NULL, loop_main, l) != 0)
		return TRPC_ERR_SYSTEM;
	l->started = 1;
	return 0;
}

void loop_join(struct loop *l)
{
	if (l->started) {
		loop_post(l, LOOP_CMD_STOP, NULL, 0, NULL);
		pthread_join(l->thread, NULL);
		l->started = 0;
	}
}

void loop_free(struct loop *l)
{
	if (l == NULL)
		return;
	stop_listening(l);
	/* Anything still queued holds references: release them. */
	struct loop_cmd *cmd = l->cmd_head;
	while (cmd != NULL) {
		struct loop_cmd *next = cmd->next;
		if (cmd->conn != NULL)
			conn_unref(cmd->conn);
		free(cmd);
		cmd = next;
	}
	struct trpc_call *c = l->dirty_head;
	while (c != NULL) {
		struct trpc_call *next = c->dirty_next;
		call_unref(c);
		c = next;
	}
	free(l->lfds);
	free(l->ltags);
	close(l->epfd);
	close(l->evfd);
	free(l->rbuf);
	pthread_mutex_destroy(&l->mu);
	pthread_mutex_destroy(&l->reg_mu);
	free(l);
}

/*
 * idle-h2-client: opens many idle HTTP/2 (h2c, prior knowledge) connections
 * to one server and keeps them open, for measuring per-connection memory.
 *
 * Each connection sends the client preface and an empty SETTINGS frame,
 * waits for the server's SETTINGS (which proves the server accepted and
 * processed the connection), acknowledges it, answers PINGs, and otherwise
 * stays silent.  No stream is ever opened.
 *
 * usage: idle-h2-client [-h 127.0.0.1] -p PORT [-n 10000] [-c 256]
 *                       [-t CONNECT_TIMEOUT_S] [-H MAX_HOLD_S]
 *   -c  how many connections may be mid-handshake at once
 *
 * Output on stdout, one line each:
 *   established N failed M elapsed_ms T     once every connection is set up
 *                                           (or the connect timeout hit)
 *   final open N closed_by_peer M goaway G  on SIGTERM/SIGINT or after
 *                                           MAX_HOLD_S, then it exits
 * Exit status 0 if all N connections were established and still open at the
 * end, 1 otherwise.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum conn_state { C_NONE, C_CONNECTING, C_WAIT_SETTINGS, C_OPEN, C_CLOSED, C_FAILED };

struct conn {
	int fd;
	enum conn_state state;
	uint8_t hdr[9];
	uint8_t hdr_len;
	uint8_t payload[8]; /* first bytes of the current frame's payload */
	uint32_t payload_len;
	uint32_t payload_got;
	uint8_t type, flags;
};

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Small control writes on an idle socket; a short write is treated as an
 * error (the socket buffer is empty at that point in practice). */
static int send_all(int fd, const void *buf, size_t len)
{
	ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
	return n == (ssize_t)len ? 0 : -1;
}

static int send_frame(int fd, uint8_t type, uint8_t flags, const uint8_t *payload, uint32_t len)
{
	uint8_t buf[9 + 8];
	buf[0] = (uint8_t)(len >> 16);
	buf[1] = (uint8_t)(len >> 8);
	buf[2] = (uint8_t)len;
	buf[3] = type;
	buf[4] = flags;
	memset(buf + 5, 0, 4); /* stream 0 */
	if (len)
		memcpy(buf + 9, payload, len);
	return send_all(fd, buf, 9 + len);
}

/* Returns 1 when a non-ACK SETTINGS frame arrived, 0 otherwise, -1 on a
 * protocol-level close (GOAWAY). */
static int frame_done(struct conn *c, int *goaway)
{
	int got_settings = 0;
	if (c->type == 0x4 && !(c->flags & 0x1)) { /* SETTINGS */
		if (send_frame(c->fd, 0x4, 0x1, NULL, 0) < 0)
			return -1;
		got_settings = 1;
	} else if (c->type == 0x6 && !(c->flags & 0x1) && c->payload_len == 8) { /* PING */
		if (send_frame(c->fd, 0x6, 0x1, c->payload, 8) < 0)
			return -1;
	} else if (c->type == 0x7) { /* GOAWAY */
		(*goaway)++;
	}
	c->hdr_len = 0;
	c->payload_len = c->payload_got = 0;
	return got_settings;
}

/* Reads what is available.  Returns 1 when the server's SETTINGS was seen,
 * 0 if still fine, -1 if the connection is gone. */
static int on_readable(struct conn *c, int *goaway)
{
	uint8_t buf[16384];
	int saw_settings = 0;
	for (;;) {
		ssize_t n = recv(c->fd, buf, sizeof buf, 0);
		if (n == 0)
			return -1;
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR)
				continue;
			return -1;
		}
		ssize_t i = 0;
		while (i < n) {
			if (c->hdr_len < 9) {
				c->hdr[c->hdr_len++] = buf[i++];
				if (c->hdr_len == 9) {
					c->payload_len = ((uint32_t)c->hdr[0] << 16) |
					                 ((uint32_t)c->hdr[1] << 8) | c->hdr[2];
					c->type = c->hdr[3];
					c->flags = c->hdr[4];
					c->payload_got = 0;
					if (c->payload_len == 0) {
						int r = frame_done(c, goaway);
						if (r < 0)
							return -1;
						saw_settings |= r;
					}
				}
				continue;
			}
			uint32_t want = c->payload_len - c->payload_got;
			uint32_t take = (uint32_t)(n - i) < want ? (uint32_t)(n - i) : want;
			for (uint32_t k = 0; k < take; k++) {
				uint32_t pos = c->payload_got + k;
				if (pos < sizeof c->payload)
					c->payload[pos] = buf[i + k];
			}
			c->payload_got += take;
			i += take;
			if (c->payload_got == c->payload_len) {
				int r = frame_done(c, goaway);
				if (r < 0)
					return -1;
				saw_settings |= r;
			}
		}
	}
	return saw_settings;
}

static void usage(const char *argv0)
{
	fprintf(stderr,
	        "usage: %s [-h HOST] -p PORT [-n CONNS] [-c INFLIGHT] [-t CONNECT_TIMEOUT_S] [-H "
	        "MAX_HOLD_S]\n",
	        argv0);
	exit(2);
}

int main(int argc, char **argv)
{
	const char *host = "127.0.0.1";
	int port = 0, nconns = 10000, inflight_max = 256;
	int connect_timeout_s = 60, hold_s = 300;
	int opt;
	while ((opt = getopt(argc, argv, "h:p:n:c:t:H:")) != -1) {
		switch (opt) {
		case 'h':
			host = optarg;
			break;
		case 'p':
			port = atoi(optarg);
			break;
		case 'n':
			nconns = atoi(optarg);
			break;
		case 'c':
			inflight_max = atoi(optarg);
			break;
		case 't':
			connect_timeout_s = atoi(optarg);
			break;
		case 'H':
			hold_s = atoi(optarg);
			break;
		default:
			usage(argv[0]);
		}
	}
	if (port <= 0 || port > 65535 || nconns <= 0 || inflight_max <= 0)
		usage(argv[0]);

	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)nconns + 64) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < (rlim_t)nconns + 64) {
			fprintf(stderr,
			        "idle-h2-client: RLIMIT_NOFILE %llu too low for %d connections "
			        "(raise ulimit -n)\n",
			        (unsigned long long)rl.rlim_cur, nconns);
			return 1;
		}
	}

	struct sockaddr_in sa;
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "idle-h2-client: bad IPv4 address %s\n", host);
		return 2;
	}

	struct sigaction sact;
	memset(&sact, 0, sizeof sact);
	sact.sa_handler = on_signal;
	sigaction(SIGTERM, &sact, NULL);
	sigaction(SIGINT, &sact, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct conn *conns = calloc((size_t)nconns, sizeof *conns);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (!conns || ep < 0) {
		perror("idle-h2-client: setup");
		return 1;
	}

	int next = 0, inflight = 0, established = 0, failed = 0, open_now = 0;
	int closed_by_peer = 0, goaway = 0, reported = 0;
	long long start = now_ms();
	long long deadline_connect = start + (long long)connect_timeout_s * 1000;
	long long deadline_hold = 0;
	struct epoll_event evs[512];

	while (!stop_flag) {
		/* start new connections while the handshake window has room */
		while (!reported && next < nconns && inflight < inflight_max) {
			struct conn *c = &conns[next];
			c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			if (c->fd < 0) {
				perror("idle-h2-client: socket");
				c->state = C_FAILED;
				failed++;
				next++;
				continue;
			}
			int one = 1;
			setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
			int r = connect(c->fd, (struct sockaddr *)&sa, sizeof sa);
			if (r < 0 && errno != EINPROGRESS) {
				close(c->fd);
				c->fd = -1;
				c->state = C_FAILED;
				failed++;
				next++;
				continue;
			}
			c->state = C_CONNECTING;
			struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP,
			                         .data.u32 = (uint32_t)next};
			epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
			inflight++;
			next++;
		}

		long long t = now_ms();
		if (!reported && (established + failed == nconns || t >= deadline_connect)) {
			/* anything still mid-handshake counts as failed */
			for (int i = 0; i < next; i++) {
				if (conns[i].state == C_CONNECTING ||
				    conns[i].state == C_WAIT_SETTINGS) {
					epoll_ctl(ep, EPOLL_CTL_DEL, conns[i].fd, NULL);
					close(conns[i].fd);
					conns[i].state = C_FAILED;
					failed++;
				}
			}
			failed += nconns - next; /* never started */
			next = nconns;
			inflight = 0;
			printf("established %d failed %d elapsed_ms %lld\n", established, failed,
			       t - start);
			fflush(stdout);
			reported = 1;
			deadline_hold = t + (long long)hold_s * 1000;
		}
		if (reported && t >= deadline_hold)
			break;

		int n = epoll_wait(ep, evs, 512, 200);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("idle-h2-client: epoll_wait");
			break;
		}
		for (int k = 0; k < n; k++) {
			struct conn *c = &conns[evs[k].data.u32];
			uint32_t e = evs[k].events;
			if (c->state == C_CONNECTING) {
				int err = 0;
				socklen_t len = sizeof err;
				getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
				if (err != 0 || (e & (EPOLLERR | EPOLLHUP))) {
					goto fail;
				}
				if (!(e & EPOLLOUT))
					continue;
				static const uint8_t settings[9] = {0, 0, 0, 0x4, 0, 0, 0, 0, 0};
				uint8_t hello[sizeof preface - 1 + sizeof settings];
				memcpy(hello, preface, sizeof preface - 1);
				memcpy(hello + sizeof preface - 1, settings, sizeof settings);
				if (send_all(c->fd, hello, sizeof hello) < 0)
					goto fail;
				c->state = C_WAIT_SETTINGS;
				struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP,
				                         .data.u32 = evs[k].data.u32};
				epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
				continue;
			}
			if (c->state != C_WAIT_SETTINGS && c->state != C_OPEN)
				continue;
			int r = on_readable(c, &goaway);
			if (r < 0) {
				if (c->state == C_OPEN) {
					closed_by_peer++;
					open_now--;
					epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
					close(c->fd);
					c->state = C_CLOSED;
					continue;
				}
				goto fail;
			}
			if (r > 0 && c->state == C_WAIT_SETTINGS) {
				c->state = C_OPEN;
				inflight--;
				established++;
				open_now++;
			}
			continue;
		fail:
			epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
			close(c->fd);
			c->state = C_FAILED;
			failed++;
			inflight--;
		}
	}

	if (!reported) {
		printf("established %d failed %d elapsed_ms %lld\n", established,
		       failed + (nconns - next), now_ms() - start);
	}
	printf("final open %d closed_by_peer %d goaway %d\n", open_now, closed_by_peer, goaway);
	fflush(stdout);

	/* Abortive close (RST): leaves no TIME-WAIT sockets behind, which would
     * otherwise occupy thousands of local ports for a minute and can block
     * a later server from binding one of them. */
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	for (int i = 0; i < nconns; i++) {
		if (conns[i].state == C_OPEN || conns[i].state == C_WAIT_SETTINGS ||
		    conns[i].state == C_CONNECTING) {
			setsockopt(conns[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
			close(conns[i].fd);
		}
	}
	return (established == nconns && open_now == nconns) ? 0 : 1;
}

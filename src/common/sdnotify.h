/*
 * sdnotify: the service manager's notification protocol (sd_notify(3)) for
 * the daemons: READY=1 once they serve, STATUS= lines, STOPPING=1 when a
 * shutdown begins, and WATCHDOG=1 keep-alives from a thread of this module.
 *
 * Built with libsystemd (configure --with-systemd, HAVE_SYSTEMD) every
 * function talks to the socket named by $NOTIFY_SOCKET; without
 * libsystemd, or when the program was not started by a service manager,
 * every function does nothing and returns 0. Notifications are best
 * effort: a failure is logged once and never stops the program.
 *
 * The watchdog thread is a singleton (a service has one watchdog); it is
 * started only when $WATCHDOG_USEC is set (and $WATCHDOG_PID, when set,
 * names this process) and pings at half that interval while the program
 * reports itself healthy.
 */
#ifndef TK_SDNOTIFY_H
#define TK_SDNOTIFY_H

#include "tasker/rpc.h"

/* Sends one or more newline-separated "KEY=value" assignments as they are.
 * Returns 0, or TRPC_ERR_SYSTEM when sending failed. */
int sdn_notify(const char *state);

/* "STATUS=<text>": a one-line description shown by systemctl status. */
int sdn_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "READY=1" together with a STATUS= line. */
int sdn_ready(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * "STOPPING=1" together with a STATUS= line. Stops the watchdog thread
 * first: the service manager does not watch a stopping service, and a
 * shutdown that outlasts the watchdog interval must not look like a hang.
 */
int sdn_stopping(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Health check of the watchdog: returns nonzero while the program is
 * healthy. Runs on the watchdog thread; must not block for long.
 */
typedef int (*sdn_health_fn)(void *ud);

/*
 * Starts the watchdog thread when the service manager asked for
 * keep-alives. It sends WATCHDOG=1 at once and then every
 * WATCHDOG_USEC / 2, each time only if `healthy` (NULL: always healthy)
 * returns nonzero, so that the service manager restarts a program that
 * stopped making progress. Returns 0 (also when no watchdog was asked
 * for), TRPC_ERR_STATE when the thread already runs, TRPC_ERR_SYSTEM when
 * it cannot be started.
 */
int sdn_watchdog_start(sdn_health_fn healthy, void *ud);

/* Stops and joins the watchdog thread; a no-op when it does not run. Not
 * from the health function. */
void sdn_watchdog_stop(void);

/*
 * For a started trpc_server: READY=1 with a STATUS= line from fmt, the
 * watchdog with a health check of the server's worker pool (a probe task
 * submitted each interval must run within one full watchdog interval),
 * and STOPPING=1 from the server's shutdown hook. Returns 0 or
 * TRPC_ERR_NOMEM (nothing was sent then); a watchdog that cannot start is
 * logged, not returned.
 */
int sdn_server_ready(trpc_server *srv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

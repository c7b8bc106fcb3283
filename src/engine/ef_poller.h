/*
** ef_poller.h — the one small interface between the multi loop (ef_loop.c) and the readiness
** backend that waits on libcurl's sockets. Exactly one backend is compiled in, chosen by CMake
** (EDITFLOW_POLLER): ef_poll_epoll.c (Linux: epoll plus a timerfd, so the whole loop is one
** pollable descriptor) or ef_poll_poll.c (portable poll(2) over the socket set; no descriptor
** to hand out). Nothing outside these files includes a backend's system headers.
*/
#ifndef EF_POLLER_H
#define EF_POLLER_H

#include <stddef.h>
#include <curl/curl.h>

typedef struct ef_poller ef_poller;

/* One ready socket, as libcurl's curl_multi_socket_action wants it (CURL_CSELECT_* bits). */
typedef struct ef_ready {
  curl_socket_t fd;
  int mask;
} ef_ready;

ef_poller *ef_poller_new(void);
void ef_poller_free(ef_poller *p);
const char *ef_poller_name(void); /* "epoll" or "poll" */

/*
** Mirrors one CURLMOPT_SOCKETFUNCTION call: what is CURL_POLL_IN/OUT/INOUT/NONE or
** CURL_POLL_REMOVE; known says libcurl already told us about s (its socketp is set). Runs
** inside a libcurl callback, so it only records. 0, or -1 when the set cannot hold s.
*/
int ef_poller_watch(ef_poller *p, curl_socket_t s, int what, int known);

/*
** Waits up to wait_ms (0: not at all) until sockets are ready and copies at most max of them
** into out. The copy matters: acting on one socket may change the set. Returns the count (0
** on timeout or EINTR), or -1 with a message in err.
*/
int ef_poller_wait(ef_poller *p, int wait_ms, ef_ready *out, int max, char *err, size_t errlen);

/*
** The descriptor that becomes readable when a watched socket is ready or the wakeup set by
** ef_poller_arm is due; -1 when the backend has none. ef_poller_arm takes an absolute time
** on the CLOCK_MONOTONIC millisecond clock (-1: none); setting it also clears a wakeup that
** already fired, so the descriptor is not readable again until the next one is due.
*/
int ef_poller_fd(const ef_poller *p);
void ef_poller_arm(ef_poller *p, long long at_ms);

#endif

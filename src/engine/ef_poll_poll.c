/*
** ef_poll_poll.c — the portable backend of ef_poller.h: poll(2) over the socket set that
** libcurl hands out through CURLMOPT_SOCKETFUNCTION, for systems without epoll (macOS, the
** BSDs) or when forced with -DEDITFLOW_POLLER=poll. The set is an array of struct pollfd,
** searched linearly (poll itself is linear in the set anyway). There is no descriptor that
** stands for the whole set, so ef_poller_fd is -1 and a wakeup has nothing to arm: a host
** embedding editflow then waits on the loop's timeout alone (see ef_loop_fd in ef_engine.h).
*/
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ef_poller.h"

struct ef_poller {
  struct pollfd *set;
  size_t n, cap;
  size_t next;  /* where the next scan starts, so a busy socket cannot starve the others */
};

const char *ef_poller_name(void) { return "poll"; }

ef_poller *ef_poller_new(void) { return calloc(1, sizeof(ef_poller)); }

void ef_poller_free(ef_poller *p) {
  if (p == NULL)
    return;
  free(p->set);
  free(p);
}

static size_t find(const ef_poller *p, curl_socket_t s) {
  size_t i = 0;
  while (i < p->n && p->set[i].fd != s)
    i++;
  return i;
}

/* Order in the set does not matter: removal moves the last entry into the hole. */
static void drop(ef_poller *p, size_t i) {
  if (i >= p->n)
    return;
  p->set[i] = p->set[--p->n];
  if (p->next > p->n)
    p->next = 0;
}

int ef_poller_watch(ef_poller *p, curl_socket_t s, int what, int known) {
  size_t i = find(p, s);
  (void)known; /* the search says it better: a reused descriptor is found either way */
  if (what == CURL_POLL_REMOVE) {
    drop(p, i);
    return 0;
  }
  if (i == p->n) {
    if (p->n == p->cap) {
      size_t cap = p->cap ? p->cap * 2 : 16;
      struct pollfd *a = realloc(p->set, cap * sizeof *a);
      if (a == NULL)
        return -1;
      p->set = a;
      p->cap = cap;
    }
    p->n++;
  }
  p->set[i].fd = s;
  p->set[i].events = (short)(((what & CURL_POLL_IN) ? POLLIN : 0) |
                             ((what & CURL_POLL_OUT) ? POLLOUT : 0));
  p->set[i].revents = 0;
  return 0;
}

int ef_poller_wait(ef_poller *p, int wait_ms, ef_ready *out, int max, char *err, size_t errlen) {
  int n = poll(p->set, (nfds_t)p->n, wait_ms);
  if (n < 0) {
    if (errno == EINTR)
      return 0;
    snprintf(err, errlen, "poll: %s", strerror(errno));
    return -1;
  }
  int k = 0;
  size_t start = p->next < p->n ? p->next : 0;
  for (size_t j = 0; j < p->n && n > 0 && k < max; j++) {
    size_t i = (start + j) % p->n;
    short r = p->set[i].revents;
    if (r == 0)
      continue;
    n--;
    out[k].fd = p->set[i].fd;
    out[k].mask = ((r & POLLIN) ? CURL_CSELECT_IN : 0) | ((r & POLLOUT) ? CURL_CSELECT_OUT : 0) |
                  ((r & (POLLERR | POLLHUP | POLLNVAL)) ? CURL_CSELECT_ERR : 0);
    k++;
    p->next = i + 1;
  }
  /* a descriptor closed without CURL_POLL_REMOVE would be reported invalid forever */
  for (size_t i = 0; i < p->n;)
    if (p->set[i].revents & POLLNVAL)
      drop(p, i);
    else
      i++;
  return k;
}

int ef_poller_fd(const ef_poller *p) {
  (void)p;
  return -1;
}

void ef_poller_arm(ef_poller *p, long long at_ms) {
  (void)p;
  (void)at_ms;
}

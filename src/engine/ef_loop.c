/*
** ef_loop.c — the multi loop: starts transfers, drives libcurl, queues finished transfers.
**
** libcurl's socket interface on epoll (the pattern of curl's multi-event.c): libcurl tells us
** which sockets to watch (on_socket) and when its next timeout is due (on_timer); a step
** waits in epoll_wait and hands libcurl only the sockets that are ready, so the cost of a
** step follows the activity, not the number of transfers in flight (a thousand idle status
** streams cost nothing). Finished transfers move from the running list to the done list and
** are handed out by ef_loop_pop_done() after the step has returned, so the caller never runs
** while libcurl is inside a call. Connections stay in the multi handle's cache between
** transfers, and easy handles are reset and reused, so requests to one host reuse both.
*/
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>
#include "ef_internal.h"

#define EF_POOL_MAX 64

struct ef_loop {
  CURLM *multi;
  int epfd;
  long long deadline_ms;  /* libcurl's next timeout on the monotonic clock, -1 if none */
  CURL *pool[EF_POOL_MAX];
  int npool;
  ef_list running;
  ef_list done;
  ef_xfer **news; /* running transfers with unreported events; NULL slots were withdrawn */
  size_t nnews, capnews, nextnews;
};

/*
** Recorded from inside a write callback: must not fail loudly, so when the array cannot grow
** the transfer is simply not flagged (its events are still queued and reported when it ends).
*/
void ef_loop_note_news(ef_loop *l, ef_xfer *x) {
  if (l->nnews == l->capnews) {
    size_t cap = l->capnews ? l->capnews * 2 : 64;
    ef_xfer **a = realloc(l->news, cap * sizeof *a);
    if (a == NULL)
      return;
    l->news = a;
    l->capnews = cap;
  }
  x->news_at = l->nnews;
  l->news[l->nnews++] = x;
  x->news = 1;
}

static void withdraw_news(ef_loop *l, ef_xfer *x) {
  if (!x->news)
    return;
  if (x->news_at < l->nnews && l->news[x->news_at] == x)
    l->news[x->news_at] = NULL;
  x->news = 0;
}

ef_xfer *ef_loop_pop_news(ef_loop *l) {
  while (l->nextnews < l->nnews) {
    ef_xfer *x = l->news[l->nextnews++];
    if (x) {
      x->news = 0;
      return x;
    }
  }
  l->nnews = l->nextnews = 0;
  return NULL;
}

int ef_global_init(void) {
  static int done;
  if (!done) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      return -1;
    done = 1;
  }
  return 0;
}

const char *ef_curl_version(void) { return curl_version(); }

void ef_list_push(ef_list *l, ef_xfer *x) {
  x->on = l;
  x->next = NULL;
  x->prev = l->tail;
  if (l->tail)
    l->tail->next = x;
  else
    l->head = x;
  l->tail = x;
  l->n++;
}

void ef_list_unlink(ef_xfer *x) {
  ef_list *l = x->on;
  if (l == NULL)
    return;
  if (x->prev)
    x->prev->next = x->next;
  else
    l->head = x->next;
  if (x->next)
    x->next->prev = x->prev;
  else
    l->tail = x->prev;
  l->n--;
  x->on = NULL;
  x->prev = x->next = NULL;
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* libcurl's socket callback: mirror what it wants watched into the epoll set. */
static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp) {
  ef_loop *l = userp;
  (void)e;
  if (what == CURL_POLL_REMOVE) {
    (void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, s, NULL);
    return 0;
  }
  struct epoll_event ev = {0};
  ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
  ev.data.fd = s;
  int op = socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  if (epoll_ctl(l->epfd, op, s, &ev) != 0) {
    /* the fd may have been closed and reused behind our back: try the other operation */
    op = op == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(l->epfd, op, s, &ev) != 0 && errno != EEXIST)
      return -1;
  }
  (void)curl_multi_assign(l->multi, s, (void *)l); /* non-NULL: "already in the set" */
  return 0;
}

/* libcurl's timer callback: remember when it wants to be called with CURL_SOCKET_TIMEOUT. */
static int on_timer(CURLM *m, long timeout_ms, void *userp) {
  ef_loop *l = userp;
  (void)m;
  l->deadline_ms = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
  return 0;
}

ef_loop *ef_loop_new(void) {
  if (ef_global_init() != 0)
    return NULL;
  ef_loop *l = calloc(1, sizeof *l);
  if (l == NULL)
    return NULL;
  l->deadline_ms = -1;
  l->epfd = epoll_create1(EPOLL_CLOEXEC);
  l->multi = l->epfd >= 0 ? curl_multi_init() : NULL;
  if (l->multi == NULL) {
    if (l->epfd >= 0)
      close(l->epfd);
    free(l);
    return NULL;
  }
  curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(l->multi, CURLMOPT_SOCKETDATA, (void *)l);
  curl_multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(l->multi, CURLMOPT_TIMERDATA, (void *)l);
  return l;
}

/* A finished transfer's easy handle goes back to the pool (reset), or is freed. */
static void recycle(ef_loop *l, ef_xfer *x) {
  if (x->easy == NULL)
    return;
  if (l->npool < EF_POOL_MAX) {
    curl_easy_reset(x->easy);
    l->pool[l->npool++] = x->easy;
  } else {
    curl_easy_cleanup(x->easy);
  }
  x->easy = NULL;
}

void ef_loop_set_limits(ef_loop *l, long max_total_conns, long max_host_conns) {
  (void)curl_multi_setopt(l->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max_total_conns);
  (void)curl_multi_setopt(l->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_host_conns);
}

/* Detaches every transfer (running ones end as ABORTED), then frees the multi handle. */
void ef_loop_free(ef_loop *l) {
  if (l == NULL)
    return;
  while (l->running.head)
    ef_loop_abort(l, l->running.head);
  while (l->done.head)
    ef_loop_abort(l, l->done.head);
  curl_multi_cleanup(l->multi);
  while (l->npool > 0)
    curl_easy_cleanup(l->pool[--l->npool]);
  close(l->epfd);
  free(l->news);
  free(l);
}

int ef_loop_start(ef_loop *l, ef_xfer *x, char *err, size_t errlen) {
  if (x->state != EF_XFER_NEW) {
    snprintf(err, errlen, "transfer was already started");
    return -1;
  }
  x->easy = l->npool > 0 ? l->pool[--l->npool] : curl_easy_init();
  if (x->easy == NULL) {
    snprintf(err, errlen, "curl_easy_init failed");
    return -1;
  }
  if (ef_xfer_prepare(x, err, errlen) != 0) {
    curl_easy_cleanup(x->easy);
    x->easy = NULL;
    return -1;
  }
  CURLMcode mc = curl_multi_add_handle(l->multi, x->easy);
  if (mc != CURLM_OK) {
    snprintf(err, errlen, "%s", curl_multi_strerror(mc));
    curl_easy_cleanup(x->easy);
    x->easy = NULL;
    return -1;
  }
  x->state = EF_XFER_RUNNING;
  x->loop = l;
  ef_list_push(&l->running, x);
  return 0;
}

/* Stops x if it runs (it ends DONE with code ABORTED) and forgets it either way. */
void ef_loop_abort(ef_loop *l, ef_xfer *x) {
  if (x->loop != l)
    return;
  withdraw_news(l, x);
  if (x->on == &l->running) {
    (void)curl_multi_remove_handle(l->multi, x->easy);
    ef_xfer_finish(x, CURLE_ABORTED_BY_CALLBACK);
    recycle(l, x);
  }
  ef_list_unlink(x);
  x->loop = NULL;
}

static void drain(ef_loop *l) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(l->multi, &left)) != NULL) {
    if (m->msg != CURLMSG_DONE)
      continue;
    CURL *e = m->easy_handle;
    CURLcode rc = m->data.result; /* m is invalid once the handle is removed */
    ef_xfer *x = NULL;
    (void)curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
    (void)curl_multi_remove_handle(l->multi, e);
    if (x == NULL) {
      curl_easy_cleanup(e);
      continue;
    }
    ef_xfer_finish(x, rc);
    recycle(l, x);
    withdraw_news(l, x); /* reported once, as done */
    ef_list_unlink(x);
    ef_list_push(&l->done, x);
  }
}

/*
** One turn: waits up to timeout_ms (less when libcurl's timer is due sooner, not at all when
** finished transfers or events are waiting to be collected) for ready sockets, lets libcurl
** act on exactly those, then on its timer if due, and collects what finished.
*/
int ef_loop_step(ef_loop *l, int timeout_ms, char *err, size_t errlen) {
  struct epoll_event evs[256];
  int running = 0, wait = timeout_ms < 0 ? 0 : timeout_ms;
  if (l->done.n > 0 || l->nnews > l->nextnews)
    wait = 0;
  if (l->deadline_ms >= 0) {
    long long d = l->deadline_ms - now_ms();
    if (d < wait)
      wait = d < 0 ? 0 : (int)d;
  }
  int n = epoll_wait(l->epfd, evs, (int)(sizeof evs / sizeof evs[0]), wait);
  if (n < 0 && errno != EINTR) {
    snprintf(err, errlen, "epoll_wait: %s", strerror(errno));
    return -1;
  }
  CURLMcode mc = CURLM_OK;
  for (int i = 0; i < n && mc == CURLM_OK; i++) {
    unsigned e = evs[i].events;
    int mask = ((e & EPOLLIN) ? CURL_CSELECT_IN : 0) | ((e & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
               ((e & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
    mc = curl_multi_socket_action(l->multi, evs[i].data.fd, mask, &running);
  }
  if (mc == CURLM_OK && l->deadline_ms >= 0 && now_ms() >= l->deadline_ms) {
    l->deadline_ms = -1;
    mc = curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  }
  if (mc != CURLM_OK) {
    snprintf(err, errlen, "%s", curl_multi_strerror(mc));
    return -1;
  }
  drain(l);
  return 0;
}

ef_xfer *ef_loop_pop_done(ef_loop *l) {
  ef_xfer *x = l->done.head;
  if (x) {
    ef_list_unlink(x);
    x->loop = NULL;
  }
  return x;
}

size_t ef_loop_running(const ef_loop *l) { return l->running.n; }

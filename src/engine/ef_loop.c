/*
** ef_loop.c — the multi loop: starts transfers, drives libcurl, queues finished transfers.
**
** libcurl's socket interface (the pattern of curl's multi-event.c): libcurl tells us which
** sockets to watch (on_socket) and when its next timeout is due (on_timer); a step waits on
** the readiness backend (ef_poller.h: epoll, or poll(2) where epoll is missing) and hands
** libcurl only the sockets that are ready, so with epoll the cost of a step follows the
** activity, not the number of transfers in flight (a thousand idle status streams cost
** nothing). Finished transfers move from the running list to the done list and
** are handed out by ef_loop_pop_done() after the step has returned, so the caller never runs
** while libcurl is inside a call. Connections stay in the multi handle's cache between
** transfers, and easy handles are reset and reused, so requests to one host reuse both.
**
** The host hook (ef_loop_fd, ef_loop_arm, ef_loop_timeout_ms): the loop's due time is the
** earlier of libcurl's timer and a wakeup the caller armed. Once a host has asked for the
** descriptor, every change to either is pushed to the backend at once (rearm), and each step
** ends by pushing it again, which also drains a wakeup that fired; so the backend's
** descriptor is readable exactly while there is work.
*/
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "ef_internal.h"
#include "ef_poller.h"

#define EF_POOL_MAX 64

struct ef_loop {
  CURLM *multi;
  ef_poller *poller;
  long long deadline_ms;  /* libcurl's next timeout on the monotonic clock, -1 if none */
  long long wake_ms;      /* the caller's wakeup (ef_loop_arm), same clock, -1 if none */
  CURL *pool[EF_POOL_MAX];
  int npool;
  ef_list running;
  ef_list done;
  ef_xfer **news; /* running transfers with unreported events; NULL slots were withdrawn */
  size_t nnews, capnews, nextnews;
  ef_disk *disk;  /* the disk workers (ef_disk.c), made on first use; NULL until then */
  int hooked;     /* a host asked for the descriptor (ef_loop_fd): keep its timer armed */
  int stepping;   /* inside ef_loop_step: libcurl's timer moves are armed once, at its end */
  int held;       /* ef_loop_hold until the next ef_loop_arm: the caller arms once, then */
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

/* The loop's next due time: the earlier of libcurl's timer and the caller's wakeup. */
static long long due_ms(const ef_loop *l) {
  if (l->deadline_ms < 0)
    return l->wake_ms;
  if (l->wake_ms < 0)
    return l->deadline_ms;
  return l->deadline_ms < l->wake_ms ? l->deadline_ms : l->wake_ms;
}

/*
** The backend's timer exists for a host that waits on the loop's descriptor. Until one asked
** for it (ef_loop_fd), steps wait with the due time as their timeout and the timer is left
** alone: arming it costs a system call, and libcurl moves its timer several times a request.
*/
static void rearm(ef_loop *l) {
  if (l->hooked && !l->stepping && !l->held)
    ef_poller_arm(l->poller, due_ms(l));
}

/* libcurl's socket callback: mirror what it wants watched into the backend's set. */
static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp) {
  ef_loop *l = userp;
  (void)e;
  if (ef_poller_watch(l->poller, s, what, socketp != NULL) != 0)
    return -1;
  if (what != CURL_POLL_REMOVE)
    (void)curl_multi_assign(l->multi, s, (void *)l); /* non-NULL: "already in the set" */
  return 0;
}

/* libcurl's timer callback: remember when it wants to be called with CURL_SOCKET_TIMEOUT. */
static int on_timer(CURLM *m, long timeout_ms, void *userp) {
  ef_loop *l = userp;
  (void)m;
  l->deadline_ms = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
  rearm(l);
  return 0;
}

const char *ef_loop_backend(void) { return ef_poller_name(); }

ef_loop *ef_loop_new(void) {
  if (ef_global_init() != 0)
    return NULL;
  ef_loop *l = calloc(1, sizeof *l);
  if (l == NULL)
    return NULL;
  l->deadline_ms = l->wake_ms = -1;
  l->poller = ef_poller_new();
  l->multi = l->poller ? curl_multi_init() : NULL;
  if (l->multi == NULL) {
    ef_poller_free(l->poller);
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
  ef_disk_free(l->disk); /* finishes what it was given: durability first */
  curl_multi_cleanup(l->multi);
  while (l->npool > 0)
    curl_easy_cleanup(l->pool[--l->npool]);
  ef_poller_free(l->poller);
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
** One turn: waits up to timeout_ms (less when libcurl's timer or the caller's wakeup is due
** sooner, not at all when finished transfers or events are waiting to be collected) for
** ready sockets, lets libcurl act on exactly those, then on its timer if due, and collects
** what finished. A wakeup that came due is spent; the backend is re-armed for what is next.
*/
int ef_loop_step(ef_loop *l, int timeout_ms, char *err, size_t errlen) {
  ef_ready ready[256];
  int running = 0, wait = timeout_ms < 0 ? 0 : timeout_ms, drained = 0;
  if (l->done.n > 0 || l->nnews > l->nextnews || (l->disk && ef_disk_ready(l->disk)))
    wait = 0;
  long long due = due_ms(l);
  if (due >= 0) {
    long long d = due - now_ms();
    if (d < wait)
      wait = d < 0 ? 0 : (int)d;
  }
  int n = ef_poller_wait(l->poller, wait, ready, (int)(sizeof ready / sizeof ready[0]), err,
                         errlen);
  if (n < 0)
    return -1;
  /* libcurl moves its timer several times a turn (on_timer): the step's end arms it once */
  l->stepping = 1;
  CURLMcode mc = CURLM_OK;
  for (int i = 0; i < n && mc == CURLM_OK; i++) {
    if (l->disk && ready[i].fd == ef_disk_fd(l->disk))
      drained = 1; /* the disk workers' pipe: never libcurl's */
    else
      mc = curl_multi_socket_action(l->multi, ready[i].fd, ready[i].mask, &running);
  }
  if (l->disk)
    ef_disk_collect(l->disk, drained);
  long long t = now_ms();
  if (mc == CURLM_OK && l->deadline_ms >= 0 && t >= l->deadline_ms) {
    l->deadline_ms = -1;
    mc = curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  }
  if (l->wake_ms >= 0 && t >= l->wake_ms)
    l->wake_ms = -1;
  l->stepping = 0;
  rearm(l);
  if (mc != CURLM_OK) {
    snprintf(err, errlen, "%s", curl_multi_strerror(mc));
    return -1;
  }
  drain(l);
  return 0;
}

int ef_loop_fd(ef_loop *l) {
  int fd = ef_poller_fd(l->poller);
  if (fd >= 0 && !l->hooked) {
    l->hooked = 1;
    rearm(l); /* from now on the descriptor tells when the loop is due */
  }
  return fd;
}

void ef_loop_hold(ef_loop *l) { l->held = 1; }

void ef_loop_arm(ef_loop *l, long ms) {
  long long t = now_ms();
  l->held = 0;
  l->wake_ms = ms < 0 ? -1 : ms > LLONG_MAX - t ? LLONG_MAX : t + ms;
  rearm(l);
}

long ef_loop_timeout_ms(const ef_loop *l) {
  if (l->done.n > 0 || l->nnews > l->nextnews || (l->disk && ef_disk_ready(l->disk)))
    return 0;
  long long due = due_ms(l);
  if (due < 0)
    return -1;
  long long d = due - now_ms();
  return d <= 0 ? 0 : d > LONG_MAX ? LONG_MAX : (long)d;
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

/* ---- disk work (ef_disk.c): the pool's pipe is one more descriptor in the poller's set ---- */

int ef_loop_disk(ef_loop *l, ef_dop *d, char *err, size_t errlen) {
  if (l->disk == NULL) {
    ef_disk *k = ef_disk_new();
    if (k == NULL) {
      snprintf(err, errlen, "cannot start the disk workers");
      return -1;
    }
    if (ef_poller_watch(l->poller, ef_disk_fd(k), CURL_POLL_IN, 0) != 0) {
      ef_disk_free(k);
      snprintf(err, errlen, "cannot watch the disk workers");
      return -1;
    }
    l->disk = k;
  }
  return ef_disk_submit(l->disk, d, err, errlen);
}

ef_dop *ef_loop_pop_disk(ef_loop *l) { return l->disk ? ef_disk_pop(l->disk) : NULL; }

size_t ef_loop_disk_pending(const ef_loop *l) { return l->disk ? ef_disk_pending(l->disk) : 0; }

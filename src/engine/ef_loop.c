/*
** ef_loop.c — the multi loop: starts transfers, drives libcurl, queues finished transfers.
**
** Pattern of curl's multi examples: perform, wait (curl_multi_poll), perform, then drain
** curl_multi_info_read. Finished transfers move from the running list to the done list and
** are handed out by ef_loop_pop_done() after the step has returned, so the caller never runs
** while libcurl is inside a call. Connections stay in the multi handle's cache between
** transfers, so requests to one host reuse them.
*/
#include <stdio.h>
#include <stdlib.h>
#include "ef_internal.h"

struct ef_loop {
  CURLM *multi;
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

ef_loop *ef_loop_new(void) {
  if (ef_global_init() != 0)
    return NULL;
  ef_loop *l = calloc(1, sizeof *l);
  if (l == NULL)
    return NULL;
  l->multi = curl_multi_init();
  if (l->multi == NULL) {
    free(l);
    return NULL;
  }
  return l;
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
  free(l->news);
  free(l);
}

int ef_loop_start(ef_loop *l, ef_xfer *x, char *err, size_t errlen) {
  if (x->state != EF_XFER_NEW) {
    snprintf(err, errlen, "transfer was already started");
    return -1;
  }
  x->easy = curl_easy_init();
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
    withdraw_news(l, x); /* reported once, as done */
    ef_list_unlink(x);
    ef_list_push(&l->done, x);
  }
}

/*
** One turn: lets libcurl move every transfer, then, if nothing has finished and the caller
** allows it, waits up to timeout_ms for network activity or a libcurl timer and turns again.
** Never blocks longer than timeout_ms (curl_multi_poll caps its own wait at it).
*/
int ef_loop_step(ef_loop *l, int timeout_ms, char *err, size_t errlen) {
  int still = 0;
  CURLMcode mc = curl_multi_perform(l->multi, &still);
  if (mc == CURLM_OK) {
    drain(l);
    if (l->done.n == 0 && l->nnews == l->nextnews && timeout_ms > 0) {
      mc = curl_multi_poll(l->multi, NULL, 0, timeout_ms, NULL);
      if (mc == CURLM_OK)
        mc = curl_multi_perform(l->multi, &still);
      if (mc == CURLM_OK)
        drain(l);
    }
  }
  if (mc != CURLM_OK) {
    snprintf(err, errlen, "%s", curl_multi_strerror(mc));
    return -1;
  }
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

/*
** ef_poll_epoll.c — the Linux backend of ef_poller.h: an epoll set mirroring libcurl's
** sockets, plus a timerfd inside that set. The timerfd carries the loop's next due time
** (libcurl's timer or a caller's wakeup), so the epoll descriptor alone becomes readable
** whenever the loop has work: a host can add it to its own poll/epoll/kqueue-free loop and
** step only then. Setting the timer again (each step ends so) also drains a fired one, so the
** descriptor is never left readable with nothing to do.
*/
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include "ef_poller.h"

#define EF_EPOLL_BATCH 256
#define EF_EPOLL_FAR_MS 4000000000000LL /* ~127 years of uptime: "never", as timerfd takes it */

struct ef_poller {
  int epfd;
  int tfd;           /* timerfd in the epoll set, tagged by its own descriptor */
  long long armed;   /* what tfd is set to (absolute ms), -1 when disarmed */
};

const char *ef_poller_name(void) { return "epoll"; }

ef_poller *ef_poller_new(void) {
  ef_poller *p = calloc(1, sizeof *p);
  if (p == NULL)
    return NULL;
  p->armed = -1;
  p->epfd = epoll_create1(EPOLL_CLOEXEC);
  p->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  struct epoll_event ev = {0};
  ev.events = EPOLLIN;
  ev.data.fd = p->tfd;
  if (p->epfd < 0 || p->tfd < 0 || epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->tfd, &ev) != 0) {
    ef_poller_free(p);
    return NULL;
  }
  return p;
}

void ef_poller_free(ef_poller *p) {
  if (p == NULL)
    return;
  if (p->tfd >= 0)
    close(p->tfd);
  if (p->epfd >= 0)
    close(p->epfd);
  free(p);
}

int ef_poller_watch(ef_poller *p, curl_socket_t s, int what, int known) {
  if (what == CURL_POLL_REMOVE) {
    (void)epoll_ctl(p->epfd, EPOLL_CTL_DEL, s, NULL);
    return 0;
  }
  struct epoll_event ev = {0};
  ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
  ev.data.fd = s;
  int op = known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  if (epoll_ctl(p->epfd, op, s, &ev) != 0) {
    /* the fd may have been closed and reused behind our back: try the other operation */
    op = op == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(p->epfd, op, s, &ev) != 0 && errno != EEXIST)
      return -1;
  }
  return 0;
}

int ef_poller_wait(ef_poller *p, int wait_ms, ef_ready *out, int max, char *err, size_t errlen) {
  struct epoll_event evs[EF_EPOLL_BATCH];
  if (max > EF_EPOLL_BATCH)
    max = EF_EPOLL_BATCH;
  int n = epoll_wait(p->epfd, evs, max, wait_ms);
  if (n < 0) {
    if (errno == EINTR)
      return 0;
    snprintf(err, errlen, "epoll_wait: %s", strerror(errno));
    return -1;
  }
  int k = 0;
  for (int i = 0; i < n; i++) {
    unsigned e = evs[i].events;
    if (evs[i].data.fd == p->tfd) { /* due: the loop looks at the clock; just drain it */
      unsigned long long ticks;
      (void)!read(p->tfd, &ticks, sizeof ticks);
      continue;
    }
    out[k].fd = evs[i].data.fd;
    out[k].mask = ((e & EPOLLIN) ? CURL_CSELECT_IN : 0) | ((e & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
                  ((e & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
    k++;
  }
  return k;
}

int ef_poller_fd(const ef_poller *p) { return p->epfd; }

/*
** timerfd_settime resets the expiration count, so re-arming is also the drain. An absolute
** time already past fires at once, which is right: the work is due. it_value must not be zero
** (that would disarm), hence the nanosecond floor; nor beyond the kernel's range (EINVAL
** would leave a fired timer readable), hence the ceiling.
*/
void ef_poller_arm(ef_poller *p, long long at_ms) {
  struct itimerspec its;
  memset(&its, 0, sizeof its);
  if (at_ms < 0 && p->armed < 0)
    return; /* disarmed stays disarmed: nothing can have fired */
  if (at_ms >= 0 && at_ms == p->armed) {
    /* Armed for this very time, still ahead: it cannot have fired, so there is nothing to
    ** drain, and setting it again is a system call for nothing -- one a step, several a
    ** request, each reprogramming a hardware timer (costly under a hypervisor). */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if ((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 < at_ms)
      return;
  }
  if (at_ms > EF_EPOLL_FAR_MS)
    at_ms = EF_EPOLL_FAR_MS; /* the kernel refuses times past ~292 years of nanoseconds */
  if (at_ms >= 0) {
    its.it_value.tv_sec = (time_t)(at_ms / 1000);
    its.it_value.tv_nsec = (long)(at_ms % 1000) * 1000000L;
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
      its.it_value.tv_nsec = 1;
  }
  if (timerfd_settime(p->tfd, at_ms >= 0 ? TFD_TIMER_ABSTIME : 0, &its, NULL) == 0)
    p->armed = at_ms;
}

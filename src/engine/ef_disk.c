/*
** ef_disk.c — disk work off the loop's thread: fsync, fdatasync, a folder's fsync, a
** download's commit, an atomic write, a file's digest and a download's temporary file run on a
** few worker threads, so the thread that drives libcurl never waits on the disk (one fsync
** costs a millisecond or more; two hundred images finishing together would stop every
** transfer for the sum).
**
** Pattern: a queue under one mutex, workers started on demand (up to EF_DISK_THREADS) that
** sleep on a condition variable, and a self-pipe: a worker puts a finished op on the done
** list and writes one byte when the list was empty, so the loop's poller (and a host
** watching the loop's descriptor) wakes; the loop drains the pipe and takes the whole list.
** An op owns what it works on (its own duplicate descriptor, its paths, a copy of the bytes),
** so whoever asked for it may go away while it runs; ef_dop_free on a running op only marks
** it, and it is freed where it next stops. Workers block every signal: signals reach the
** thread that runs the loop, as before threads existed.
*/
#define _POSIX_C_SOURCE 200809L /* pthreads, F_DUPFD_CLOEXEC, pthread_sigmask: POSIX 2008 only */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ef_internal.h"

#define EF_DISK_THREADS 4

/* state is under the pool's mutex; popped is the loop's thread's alone */
typedef enum { OP_NEW, OP_QUEUED, OP_RUNNING, OP_DONE } op_state;

struct ef_dop {
  ef_dop_kind kind;
  op_state state;
  int popped;          /* handed to the caller by ef_disk_pop: finished, result readable */
  ef_disk *disk;       /* the pool it was submitted to, until popped */
  int orphan;          /* its owner freed it while it was queued, running or not yet popped */
  int fd;              /* owned: a duplicate (sync) or the download's temporary file; -1 */
  int replace;         /* commit and write: rename over final (1) or never replace (0) */
  char *path;          /* sync_dir: the folder; commit: the temporary file; write: unused;
                          tempfile: the file made, until a transfer takes it */
  char *final;         /* commit and write: where the file goes; tempfile: the folder */
  char *data;          /* write: a copy of the bytes */
  size_t len;
  int err;             /* errno of the failed step, 0 when it worked; EEXIST: name taken */
  const char *failed;  /* which path the failure names */
  unsigned char sum[32]; /* digest: the SHA-256 of the file's bytes, and its size */
  long long size;
  ef_dop *next;
};

struct ef_disk {
  pthread_mutex_t mu;
  pthread_cond_t work;
  pthread_cond_t finished;   /* broadcast whenever an op is done (ef_dop_wait) */
  ef_dop *qhead, *qtail;     /* queued, oldest first */
  ef_dop *dhead, *dtail;     /* finished, not yet taken by the loop */
  ef_dop *rhead, *rtail;     /* taken by the loop, to pop (the loop's thread only) */
  int nthreads, idle, stopping, notified;
  pthread_t threads[EF_DISK_THREADS];
  int pipe_r, pipe_w;
  size_t pending;            /* submitted and not yet popped (the loop's thread only) */
};

/* ---- ops: made on the loop's thread, worked on a worker's ---- */

static ef_dop *dop_new(ef_dop_kind kind) {
  ef_dop *d = calloc(1, sizeof *d);
  if (d) {
    d->kind = kind;
    d->fd = -1;
  }
  return d;
}

static void dop_release(ef_dop *d) {
  if (d->fd >= 0)
    (void)close(d->fd);
  /* A commit's temporary file that no one will name: it never ran, or its name was taken
  ** and the file was not taken back (ef_xfer_adopt_temp) -- no one's now. */
  if (d->kind == EF_DOP_COMMIT && d->path && (d->state == OP_NEW || d->err == EEXIST))
    (void)unlink(d->path);
  /* A temporary file made for a download no transfer took (its task went away): no one's. */
  if (d->kind == EF_DOP_TEMPFILE && d->path)
    (void)unlink(d->path);
  free(d->path);
  free(d->final);
  free(d->data);
  free(d);
}

ef_dop *ef_dop_sync(int fd, int data_only) {
  ef_dop *d = dop_new(data_only ? EF_DOP_DATASYNC : EF_DOP_SYNC);
  if (d == NULL)
    return NULL;
  d->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (d->fd < 0) {
    free(d);
    return NULL;
  }
  return d;
}

ef_dop *ef_dop_sync_dir(const char *dir) {
  ef_dop *d = dop_new(EF_DOP_SYNC_DIR);
  if (d && (d->path = ef_strdup(dir)) == NULL) {
    free(d);
    return NULL;
  }
  return d;
}

ef_dop *ef_dop_write(const char *final_path, const void *data, size_t len, int replace) {
  ef_dop *d = dop_new(EF_DOP_WRITE);
  if (d == NULL)
    return NULL;
  d->final = ef_strdup(final_path);
  d->data = malloc(len ? len : 1);
  if (d->final == NULL || d->data == NULL) {
    dop_release(d);
    return NULL;
  }
  memcpy(d->data, data, len);
  d->len = len;
  d->replace = replace;
  return d;
}

ef_dop *ef_dop_commit(int fd, char *temp_path, const char *final_path, int replace) {
  ef_dop *d = dop_new(EF_DOP_COMMIT);
  if (d == NULL)
    return NULL;
  d->final = ef_strdup(final_path);
  if (d->final == NULL) {
    free(d);
    return NULL;
  }
  d->fd = fd;
  d->path = temp_path;
  d->replace = replace;
  return d;
}

ef_dop *ef_dop_digest(const char *path) {
  ef_dop *d = dop_new(EF_DOP_DIGEST);
  if (d && (d->path = ef_strdup(path)) == NULL) {
    free(d);
    return NULL;
  }
  return d;
}

ef_dop *ef_dop_tempfile(const char *dir) {
  ef_dop *d = dop_new(EF_DOP_TEMPFILE);
  if (d && (d->final = ef_strdup(dir)) == NULL) {
    free(d);
    return NULL;
  }
  return d;
}

/* Takes the temporary file a tempfile op made (descriptor and path, the caller's from here
** on): 0, or -1 when it holds none (not finished, failed, or taken already). */
int ef_dop_take_file(ef_dop *d, int *fd, char **path) {
  if (d->kind != EF_DOP_TEMPFILE || !d->popped || d->err != 0 || d->path == NULL)
    return -1;
  *fd = d->fd;
  *path = d->path;
  d->fd = -1;
  d->path = NULL;
  return 0;
}

/* The same file ef_xfer_to_file makes, and the same failure: the folder named, its errno. */
static void run_tempfile(ef_dop *d) {
  size_t n = strlen(d->final);
  char *tmpl = malloc(n + sizeof "/.editflow-XXXXXX.part");
  if (tmpl == NULL) {
    d->err = ENOMEM;
    return;
  }
  snprintf(tmpl, n + sizeof "/.editflow-XXXXXX.part", "%s/.editflow-XXXXXX.part", d->final);
  int fd = ef_mktemp(tmpl, 5);
  if (fd < 0) {
    d->err = errno ? errno : EIO;
    d->failed = d->final;
    free(tmpl);
    return;
  }
  d->fd = fd;
  d->path = tmpl;
}

int ef_dop_digest_of(const ef_dop *d, unsigned char out[32], long long *size) {
  if (d->kind != EF_DOP_DIGEST || !d->popped || d->err != 0)
    return -1;
  memcpy(out, d->sum, sizeof d->sum);
  *size = d->size;
  return 0;
}

ef_dop_kind ef_dop_get_kind(const ef_dop *d) { return d->kind; }

/* The commit of a download: its data on disk, then its name. Folder fsyncs are the caller's
** (many files share one: see editflow.durable). */
static void run_commit(ef_dop *d) {
  if (d->fd >= 0) {
    int e = ef_sync_written(d->fd) != 0 ? errno : 0;
    if (close(d->fd) != 0 && e == 0)
      e = errno;
    d->fd = -1;
    if (e != 0) {
      d->err = e;
      d->failed = d->path;
      (void)unlink(d->path);
      return;
    }
  }
  d->err = ef_place(d->path, d->final, d->replace);
  d->failed = d->final;
  if (d->err != 0 && d->err != EEXIST)
    (void)unlink(d->path);
}

static void run_write(ef_dop *d) {
  /* no message here: strerror is not thread-safe; ef_dop_result words it on the loop's thread */
  d->err = ef_write_file(d->final, d->data, d->len, d->replace, 0, NULL, 0);
  d->failed = d->final;
}

static void run(ef_dop *d) {
  switch (d->kind) {
  case EF_DOP_SYNC:
  case EF_DOP_DATASYNC:
    d->err = ef_sync_fd(d->fd, d->kind == EF_DOP_DATASYNC);
    (void)close(d->fd);
    d->fd = -1;
    break;
  case EF_DOP_SYNC_DIR:
    d->err = ef_sync_dir(d->path);
    d->failed = d->path;
    break;
  case EF_DOP_COMMIT:
    run_commit(d);
    break;
  case EF_DOP_WRITE:
    run_write(d);
    break;
  case EF_DOP_DIGEST:
    d->err = ef_sha256_file(d->path, d->sum, &d->size) == 0 ? 0 : errno ? errno : EIO;
    d->failed = d->path;
    break;
  case EF_DOP_TEMPFILE:
    run_tempfile(d);
    break;
  }
}

int ef_dop_done(const ef_dop *d) { return d->popped; }

/* Runs an op that was never handed to a loop, here; it is then done, its result readable. */
void ef_dop_run(ef_dop *d) {
  if (d->state != OP_NEW)
    return;
  d->state = OP_RUNNING;
  run(d);
  d->state = OP_DONE;
  d->popped = 1;
}

/* Blocks until a worker has finished d (the loop still reports it as usual afterwards). */
void ef_dop_wait(ef_dop *d) {
  ef_disk *k = d->disk;
  if (k == NULL)
    return; /* never handed to a loop, or already popped: nothing runs */
  pthread_mutex_lock(&k->mu);
  while (d->state != OP_DONE)
    pthread_cond_wait(&k->finished, &k->mu);
  pthread_mutex_unlock(&k->mu);
}

int ef_dop_result(const ef_dop *d, char *err, size_t errlen) {
  if (d->err == 0)
    return 0;
  /* a name taken is an answer for a commit or a write; for a temporary file, a failure */
  int taken = d->err == EEXIST && d->kind != EF_DOP_TEMPFILE;
  if (err && errlen) {
    if (d->failed)
      snprintf(err, errlen, "%s: %s", d->failed, taken ? "exists" : strerror(d->err));
    else
      snprintf(err, errlen, "%s", strerror(d->err));
  }
  return taken ? 1 : -1;
}

char *ef_dop_take_temp(ef_dop *d) {
  char *p = NULL;
  if (d->kind == EF_DOP_COMMIT && d->err == EEXIST && d->popped) {
    p = d->path;
    d->path = NULL;
  }
  return p;
}

/* ---- the pool ---- */

static void push(ef_dop **head, ef_dop **tail, ef_dop *d) {
  d->next = NULL;
  if (*tail)
    (*tail)->next = d;
  else
    *head = d;
  *tail = d;
}

static void *worker(void *arg) {
  ef_disk *k = arg;
  pthread_mutex_lock(&k->mu);
  for (;;) {
    while (k->qhead == NULL && !k->stopping) {
      k->idle++;
      pthread_cond_wait(&k->work, &k->mu);
      k->idle--;
    }
    ef_dop *d = k->qhead;
    if (d == NULL)
      break; /* stopping, and nothing is left to do */
    k->qhead = d->next;
    if (k->qhead == NULL)
      k->qtail = NULL;
    d->state = OP_RUNNING;
    pthread_mutex_unlock(&k->mu);
    run(d);
    pthread_mutex_lock(&k->mu);
    d->state = OP_DONE;
    pthread_cond_broadcast(&k->finished);
    int was_empty = k->dhead == NULL;
    push(&k->dhead, &k->dtail, d); /* an orphan too: ef_disk_pop frees it and counts it */
    if (was_empty && !k->notified) {
      k->notified = 1;
      char c = 1;
      while (write(k->pipe_w, &c, 1) < 0 && errno == EINTR) {
      }
    }
  }
  pthread_mutex_unlock(&k->mu);
  return NULL;
}

static int set_flags(int fd) {
  int fl = fcntl(fd, F_GETFL);
  return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) != 0
             ? -1
             : 0;
}

ef_disk *ef_disk_new(void) {
  ef_disk *k = calloc(1, sizeof *k);
  int p[2];
  if (k == NULL)
    return NULL;
  if (pipe(p) != 0) {
    free(k);
    return NULL;
  }
  k->pipe_r = p[0];
  k->pipe_w = p[1];
  if (set_flags(p[0]) != 0 || set_flags(p[1]) != 0 || pthread_mutex_init(&k->mu, NULL) != 0) {
    close(p[0]);
    close(p[1]);
    free(k);
    return NULL;
  }
  if (pthread_cond_init(&k->work, NULL) != 0 || pthread_cond_init(&k->finished, NULL) != 0) {
    pthread_mutex_destroy(&k->mu);
    close(p[0]);
    close(p[1]);
    free(k);
    return NULL;
  }
  return k;
}

int ef_disk_fd(const ef_disk *k) { return k->pipe_r; }

/* A new worker with every signal blocked (it inherits the mask it is created under). */
static int start_worker(ef_disk *k) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&k->threads[k->nthreads], NULL, worker, k);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0)
    return -1;
  k->nthreads++;
  return 0;
}

int ef_disk_submit(ef_disk *k, ef_dop *d, char *err, size_t errlen) {
  if (d->state != OP_NEW) {
    snprintf(err, errlen, "disk operation was already started");
    return -1;
  }
  pthread_mutex_lock(&k->mu);
  d->state = OP_QUEUED;
  d->disk = k;
  push(&k->qhead, &k->qtail, d);
  /* one more thread while there is more queued work than idle threads to take it */
  if (k->idle == 0 && k->nthreads < EF_DISK_THREADS && start_worker(k) != 0 && k->nthreads == 0) {
    /* no thread at all can be had: do it here rather than never */
    k->qhead = k->qtail = NULL;
    pthread_mutex_unlock(&k->mu);
    d->state = OP_RUNNING;
    run(d);
    d->state = OP_DONE;
    push(&k->rhead, &k->rtail, d); /* popped by the caller's next ef_disk_pop */
    k->pending++;
    return 0;
  }
  pthread_cond_signal(&k->work);
  pthread_mutex_unlock(&k->mu);
  k->pending++;
  return 0;
}

void ef_disk_collect(ef_disk *k, int drain) {
  if (drain) {
    char buf[64];
    while (read(k->pipe_r, buf, sizeof buf) > 0) {
    }
  }
  pthread_mutex_lock(&k->mu);
  ef_dop *d = k->dhead;
  k->dhead = k->dtail = NULL;
  if (drain)
    k->notified = 0;
  pthread_mutex_unlock(&k->mu);
  while (d) {
    ef_dop *next = d->next;
    push(&k->rhead, &k->rtail, d);
    d = next;
  }
}

ef_dop *ef_disk_pop(ef_disk *k) {
  ef_dop *d;
  while ((d = k->rhead) != NULL) {
    k->rhead = d->next;
    if (k->rhead == NULL)
      k->rtail = NULL;
    k->pending--;
    if (d->orphan) {
      dop_release(d);
      continue;
    }
    d->popped = 1;
    d->disk = NULL;
    d->next = NULL;
    return d;
  }
  return NULL;
}

int ef_disk_ready(const ef_disk *k) { return k->rhead != NULL; }

size_t ef_disk_pending(const ef_disk *k) { return k->pending; }

void ef_dop_free(ef_dop *d) {
  if (d == NULL)
    return;
  ef_disk *k = d->disk; /* set from submit until popped: the pool is alive meanwhile */
  if (k != NULL) {
    pthread_mutex_lock(&k->mu);
    d->orphan = 1; /* freed where it next stops: ef_disk_pop */
    pthread_mutex_unlock(&k->mu);
    return;
  }
  dop_release(d);
}

/* Finishes every queued op (durability is the point: none is dropped), joins the workers,
** and frees what the loop's owner freed already; the ops still owned are left done. */
void ef_disk_free(ef_disk *k) {
  if (k == NULL)
    return;
  pthread_mutex_lock(&k->mu);
  k->stopping = 1;
  pthread_cond_broadcast(&k->work);
  pthread_mutex_unlock(&k->mu);
  for (int i = 0; i < k->nthreads; i++)
    pthread_join(k->threads[i], NULL);
  ef_disk_collect(k, 1);
  ef_dop *d;
  while ((d = ef_disk_pop(k)) != NULL) {
    /* popped now: its owner frees it (and finds it done) */
  }
  pthread_cond_destroy(&k->work);
  pthread_cond_destroy(&k->finished);
  pthread_mutex_destroy(&k->mu);
  close(k->pipe_r);
  close(k->pipe_w);
  free(k);
}

/*
** ef_fs.c — files that must survive a crash: mkdir -p, whole-file writes that land atomically
** (temporary name in the same directory, fsync, rename, fsync the directory), journal appends
** that leave the file on a record boundary, the per-folder lock (flock, so a dead process
** holds nothing), bounded reads of local inputs that never block on a device or a FIFO, and
** globs expanded by glob(3) into one bytewise-sorted list.
*/
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#if defined(__linux__)
#define _GNU_SOURCE /* renameat2 and RENAME_NOREPLACE (glibc 2.28, musl 1.2.?) */
#endif
#define _DARWIN_C_SOURCE /* F_FULLFSYNC and flock on macOS, hidden by _POSIX_C_SOURCE */
/* The BSDs hide flock, mkstemps, GLOB_BRACE and GLOB_TILDE under _POSIX_C_SOURCE too. */
#if defined(__FreeBSD__) || defined(__DragonFly__)
#define __BSD_VISIBLE 1
#elif defined(__NetBSD__)
#define _NETBSD_SOURCE
#elif defined(__OpenBSD__)
#define _BSD_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <glob.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "ef_internal.h"

/*
** Data (and the size) on stable storage, for journal appends and cuts. fdatasync where the
** configure check found it (EDITFLOW_HAVE_FDATASYNC); else fsync, which also writes the
** times. On macOS fsync only reaches the drive's cache: F_FULLFSYNC asks the drive to flush,
** with fsync as the fallback on filesystems that refuse it.
*/
int ef_sync_data(int fd) {
#if defined(EDITFLOW_HAVE_FDATASYNC)
  return fdatasync(fd);
#else
#if defined(F_FULLFSYNC)
  if (fcntl(fd, F_FULLFSYNC) == 0)
    return 0;
#endif
  return fsync(fd);
#endif
}

/* Data and metadata on stable storage (F_FULLFSYNC on macOS, as above). */
int ef_sync_full(int fd) {
#if defined(F_FULLFSYNC)
  if (fcntl(fd, F_FULLFSYNC) == 0)
    return 0;
#endif
  return fsync(fd);
}

/*
** A downloaded image on stable storage, then out of the page cache: editflow writes each once
** and reads it back only in the rare case of a name clash, so a long run's images would only
** push the user's own data out of memory (what `dd oflag=nocache` and `rsync --drop-cache`
** do). The pages are clean once the sync succeeded, so dropping them loses nothing; the hint
** is best-effort and its failure is ignored. It also lets the next image reuse the same pages:
** on a virtual machine whose memory the host backs on first touch, fresh page-cache pages
** cost more than the copy into them (README, Benchmark). Small files editflow reads again
** (manifests, the cache) keep their pages: ef_write_file syncs with ef_sync_full.
*/
int ef_sync_written(int fd) {
  if (ef_sync_full(fd) != 0)
    return -1;
#if defined(POSIX_FADV_DONTNEED)
  (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
#endif
  return 0;
}

static void seterr(char *err, size_t n, const char *what, int e) {
  if (err && n)
    snprintf(err, n, "%s: %s", what, strerror(e));
}

int ef_write_all(int fd, const void *data, size_t len) {
  const char *p = data;
  size_t off = 0;
  while (off < len) {
    ssize_t w = write(fd, p + off, len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return w < 0 ? errno : EIO;
    off += (size_t)w;
  }
  return 0;
}

int ef_mkdir_p(const char *path, char *err, size_t errlen) {
  size_t n = strlen(path);
  char *p = malloc(n + 1);
  if (p == NULL) {
    seterr(err, errlen, path, ENOMEM);
    return -1;
  }
  memcpy(p, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (p[i] != '/' && p[i] != '\0')
      continue;
    char c = p[i];
    p[i] = '\0';
    if (mkdir(p, 0777) != 0 && errno != EEXIST) {
      seterr(err, errlen, p, errno);
      free(p);
      return -1;
    }
    p[i] = c;
  }
  struct stat st;
  int ok = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
  if (!ok)
    seterr(err, errlen, path, ENOTDIR);
  free(p);
  return ok ? 0 : -1;
}

/*
** Like mkstemps(), but the file gets the mode a plain fopen() would (0666 less the umask,
** applied by the kernel) and close-on-exec, in one open(2): no umask(2) dance, which is not
** thread-safe now that the disk workers make files too, and three system calls fewer per
** file. The name's random part mixes the pid, the clock and a counter; O_EXCL makes a clash
** (or a planted link) a retry, never a reuse.
*/
int ef_mktemp(char *tmpl, int suffixlen) {
  static const char abc[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  static unsigned long counter;
  size_t n = strlen(tmpl);
  if (suffixlen < 0 || n < (size_t)suffixlen + 6) {
    errno = EINVAL;
    return -1;
  }
  char *x = tmpl + n - (size_t)suffixlen - 6;
  if (memcmp(x, "XXXXXX", 6) != 0) {
    errno = EINVAL;
    return -1;
  }
  for (int attempt = 0; attempt < 100; attempt++) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long seed[3] = {(unsigned long long)getpid(),
                                  (unsigned long long)ts.tv_nsec ^ ((unsigned long long)ts.tv_sec << 30),
                                  __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED)};
    unsigned long long v = ef_fnv1a64(seed, sizeof seed);
    for (int i = 0; i < 6; i++, v /= 62)
      x[i] = abc[v % 62];
    int fd = open(tmpl, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0 || errno != EEXIST)
      return fd;
  }
  errno = EEXIST;
  return -1;
}

/*
** Gives the temporary file tmp the name final: rename (replace), or never replacing a file
** that is there (EEXIST): renameat2 RENAME_NOREPLACE where the system has it (one call),
** else link then unlink, else -- filesystems without hard links -- rename. 0 or an errno;
** on EEXIST tmp is still there.
*/
int ef_place(const char *tmp, const char *final, int replace) {
  if (replace)
    return rename(tmp, final) == 0 ? 0 : errno;
#if defined(RENAME_NOREPLACE)
  if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE) == 0)
    return 0;
  if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP && errno != EOPNOTSUPP)
    return errno;
#endif
  if (link(tmp, final) == 0) {
    (void)unlink(tmp);
    return 0;
  }
  int e = errno;
  if (e == EEXIST)
    return EEXIST;
  if (e != EPERM && e != ENOTSUP && e != EOPNOTSUPP && e != EMLINK)
    return e;
  return rename(tmp, final) == 0 ? 0 : errno;
}

int ef_fsync_dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL)
    return ef_sync_dir(".") == 0 ? 0 : -1;
  size_t n = slash == path ? 1 : (size_t)(slash - path);
  char *dir = malloc(n + 1);
  if (dir == NULL)
    return -1;
  memcpy(dir, path, n);
  dir[n] = '\0';
  int e = ef_sync_dir(dir);
  free(dir);
  return e == 0 ? 0 : -1;
}

/*
** The temporary file is hidden beside the target (".name.XXXXXX.part"), so a crash mid-write
** leaves nothing that looks like a result. Data on disk before the name: a crash leaves the
** old file or the whole new one. replace 0 never replaces (link(2), EEXIST when taken).
*/
int ef_write_file(const char *path, const void *data, size_t len, int replace, int sync_dir,
                  char *err, size_t errlen) {
  size_t n = strlen(path);
  const char *slash = strrchr(path, '/');
  size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
  char *tmp = malloc(n + sizeof "..XXXXXX.part");
  if (tmp == NULL) {
    seterr(err, errlen, path, ENOMEM);
    return ENOMEM;
  }
  snprintf(tmp, n + sizeof "..XXXXXX.part", "%.*s.%s.XXXXXX.part", (int)dirlen, path, path + dirlen);
  int fd = ef_mktemp(tmp, 5);
  if (fd < 0) {
    int e = errno;
    seterr(err, errlen, path, e);
    free(tmp);
    return e;
  }
  int e = ef_write_all(fd, data, len);
  if (e == 0 && ef_sync_full(fd) != 0)
    e = errno;
  if (close(fd) != 0 && e == 0)
    e = errno;
  if (e == 0)
    e = ef_place(tmp, path, replace);
  if (e != 0) {
    (void)unlink(tmp);
    free(tmp);
    seterr(err, errlen, path, e);
    return e;
  }
  free(tmp);
  if (sync_dir)
    (void)ef_fsync_dir_of(path);
  return 0;
}

int ef_write_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen) {
  return ef_write_file(path, data, len, 1, 1, err, errlen) == 0 ? 0 : -1;
}

/* Cuts a failed append back to where it began, durably; 0 or an errno. */
static int cut_back(int fd, off_t size) {
  while (ftruncate(fd, size) != 0)
    if (errno != EINTR)
      return errno;
  return ef_sync_data(fd) != 0 ? errno : 0;
}

int ef_sync_fd(int fd, int data_only) {
  return (data_only ? ef_sync_data(fd) : ef_sync_full(fd)) != 0 ? errno : 0;
}

int ef_sync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int e = fd < 0 || ef_sync_full(fd) != 0 ? errno : 0;
  if (fd >= 0)
    (void)close(fd);
  return e;
}

/* ---- journals: append-only files of records ---- */

int ef_open_log(const char *path, char *err, size_t errlen) {
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0 && err && errlen)
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
  return fd;
}

/* Shrinks the file to size bytes, durably; never grows it (that would append zero bytes). */
int ef_cut_fd(int fd, size_t size) {
  struct stat st;
  if (fstat(fd, &st) != 0)
    return errno;
  if ((uintmax_t)st.st_size < (uintmax_t)size)
    return EINVAL;
  return cut_back(fd, (off_t)size);
}

/*
** One record: O_APPEND (ef_open_log) so concurrent writers never interleave inside a write.
** Not waited for: the caller makes it durable, one fdatasync for many records (editflow.durable).
** On any failure (short write, ENOSPC, EFBIG, EIO) the file is cut back to the length it had,
** so it still ends where the previous record ended and the next append does not glue onto a
** torn one. The cut assumes one writer per file (the folder's lock, ef_lock): a record another
** process appended meanwhile would be cut too.
** -1: failed, file as before; -2: failed and the cut failed too (the file may end torn).
*/
int ef_append_fd(int fd, const char *path, const void *data, size_t len, size_t *end, char *err,
                 size_t errlen) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    if (err && errlen)
      snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    return -1;
  }
  int e = ef_write_all(fd, data, len);
  if (e == 0) {
    if (end)
      *end = (size_t)st.st_size + len;
    return 0;
  }
  int ce = cut_back(fd, st.st_size);
  if (err && errlen && ce == 0)
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(e));
  else if (err && errlen)
    snprintf(err, errlen, "cannot write %s: %s; cutting it back to %jd bytes failed too: %s",
             path, strerror(e), (intmax_t)st.st_size, strerror(ce));
  return ce == 0 ? -1 : -2;
}

/* ---- the per-folder lock ---- */

/* The pid a holder wrote into the lock file; 0 if none is there (yet). */
static long read_holder(int fd) {
  char buf[32];
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  long pid = strtol(buf, NULL, 10);
  return pid > 0 ? pid : 0;
}

/*
** flock, not a pid file: the kernel releases it when the process ends however it ends, so a
** crash leaves no stale lock to clean up. The pid is written only to name the holder in a
** refusal; failing to write it (disk full) does not weaken the lock, so it is not an error.
** The file is never unlinked: a process that opened the old name would lock a different file.
*/
int ef_lock(const char *path, char *err, size_t errlen, long *holder) {
  *holder = 0;
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    if (err && errlen)
      snprintf(err, errlen, "cannot lock %s: %s", path, strerror(errno));
    return -1;
  }
  while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    if (e == EINTR)
      continue;
    if (e == EWOULDBLOCK)
      *holder = read_holder(fd);
    close(fd);
    if (err && errlen && e != EWOULDBLOCK)
      snprintf(err, errlen, "cannot lock %s: %s", path, strerror(e));
    else if (err && errlen && *holder > 0)
      snprintf(err, errlen, "%s: held by process %ld", path, *holder);
    else if (err && errlen)
      snprintf(err, errlen, "%s: held by another process", path);
    return e == EWOULDBLOCK ? EF_LOCKED : -1;
  }
  char line[32];
  int n = snprintf(line, sizeof line, "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) == 0)
    (void)ef_write_all(fd, line, (size_t)n);
  return fd;
}

/* Empties the pid (it would name a process that no longer holds anything), then releases. */
void ef_unlock(int fd) {
  if (fd < 0)
    return;
  (void)ftruncate(fd, 0);
  (void)close(fd);
}

/* ---- bounded reads of local inputs ---- */

static const char *kind_of(mode_t m) {
  if (S_ISDIR(m))
    return "a directory";
  if (S_ISCHR(m))
    return "a character device";
  if (S_ISBLK(m))
    return "a block device";
  if (S_ISFIFO(m))
    return "a FIFO (named pipe)";
  if (S_ISSOCK(m))
    return "a socket";
  return "not a regular file";
}

static const char *refuse(char *err, size_t errlen, const char *code, const char *fmt, ...)
  __attribute__((format(printf, 4, 5)));

static const char *refuse(char *err, size_t errlen, const char *code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && errlen)
    vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return code;
}

/* Checks a stat result: NULL if it is a regular file within max, else the refusal's code. */
static const char *check_input(const char *path, const struct stat *st, size_t max, char *err,
                               size_t errlen) {
  if (!S_ISREG(st->st_mode))
    return refuse(err, errlen, "NOT_REGULAR", "'%s' is %s, not a regular file", path,
                  kind_of(st->st_mode));
  if ((uintmax_t)st->st_size > (uintmax_t)max)
    return refuse(err, errlen, "TOO_LARGE", "'%s' is %jd bytes, over the limit of %zu bytes",
                  path, (intmax_t)st->st_size, max);
  return NULL;
}

/* Reads at most max + 1 bytes: one more than allowed is enough to know the file grew past it. */
static const char *read_bounded(int fd, const char *path, size_t max, ef_buf *out, char *err,
                                size_t errlen) {
  char chunk[65536];
  while (out->len <= max) {
    size_t want = max + 1 - out->len;
    ssize_t r = read(fd, chunk, want < sizeof chunk ? want : sizeof chunk);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return refuse(err, errlen, "READ_ERROR", "cannot read '%s': %s", path, strerror(errno));
    if (r == 0)
      return NULL;
    if (ef_buf_append(out, chunk, (size_t)r) != 0)
      return refuse(err, errlen, "READ_ERROR", "cannot read '%s': %s", path, strerror(ENOMEM));
  }
  return refuse(err, errlen, "TOO_LARGE", "'%s' grew past the limit of %zu bytes while being read",
                path, max);
}

/*
** A local input (an image to upload, a prompt file) named by a user or a glob: stat() first,
** so a device, FIFO or socket is refused without even being opened (opening a FIFO waits for
** a writer; reading /dev/zero never ends); then open O_NONBLOCK | O_NOCTTY and check again on
** the descriptor, in case the name was swapped in between; then a bounded read.
*/
static const char *read_input(const char *path, size_t max, ef_buf *out, char *err,
                              size_t errlen) {
  struct stat st;
  const char *code;
  if (stat(path, &st) != 0)
    return refuse(err, errlen, "READ_ERROR", "cannot read '%s': %s", path, strerror(errno));
  if ((code = check_input(path, &st, max, err, errlen)) != NULL)
    return code;
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0)
    return refuse(err, errlen, "READ_ERROR", "cannot read '%s': %s", path, strerror(errno));
  if (fstat(fd, &st) != 0)
    code = refuse(err, errlen, "READ_ERROR", "cannot read '%s': %s", path, strerror(errno));
  else
    code = check_input(path, &st, max, err, errlen);
  if (code == NULL)
    code = read_bounded(fd, path, max, out, err, errlen);
  (void)close(fd);
  return code;
}

int ef_file_stamp(const char *path, ef_stamp *out) {
  struct stat st;
  if (stat(path, &st) != 0)
    return -1;
  out->dev = (unsigned long long)st.st_dev;
  out->ino = (unsigned long long)st.st_ino;
  out->size = (unsigned long long)st.st_size;
#if defined(__APPLE__)
  out->mtime_s = st.st_mtimespec.tv_sec, out->mtime_ns = st.st_mtimespec.tv_nsec;
  out->ctime_s = st.st_ctimespec.tv_sec, out->ctime_ns = st.st_ctimespec.tv_nsec;
#else
  out->mtime_s = st.st_mtim.tv_sec, out->mtime_ns = st.st_mtim.tv_nsec;
  out->ctime_s = st.st_ctim.tv_sec, out->ctime_ns = st.st_ctim.tv_nsec;
#endif
  return 0;
}

const char *ef_read_file(const char *path, size_t max, ef_buf *out, char *err, size_t errlen) {
  if (max > (size_t)-1 - 1)
    max = (size_t)-1 - 1; /* room for the one byte that tells "more than max" */
  ef_buf_reset(out);
  const char *code = read_input(path, max, out, err, errlen);
  if (code != NULL)
    ef_buf_free(out);
  return code;
}

int ef_dir_each(const char *path, int (*fn)(void *ud, const char *name), void *ud, char *err,
                size_t errlen) {
  DIR *d = opendir(path);
  if (d == NULL) {
    seterr(err, errlen, path, errno);
    return -1;
  }
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    if (fn(ud, e->d_name) != 0)
      break;
  }
  closedir(d);
  return 0;
}

/* ---- globs ---- */

static int cmp_paths(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A regular file once symbolic links are followed (a dangling link is not one). */
static int is_regular(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/*
** glob(3) does the matching, with brace ({a,b}) and tilde (~, ~user) expansion where the C
** library has them (glibc, macOS and the BSDs have both, musl tilde only); without them those
** characters match themselves. GLOB_ERR is off, so a folder that cannot be read is skipped,
** as the shell skips it. glob's own order comes from strcoll(), which follows whatever locale
** the host set, and each brace alternative is sorted on its own; so the paths are sorted here
** by their bytes (GLOB_NOSORT), the same list in every locale, and a path that two
** alternatives both produced ("{a,*}.png") is kept once. The sort permutes gl_pathv in place:
** globfree() frees each entry whatever its position. globfree() follows every glob() call,
** failed ones included, since a failure may leave partial results behind.
*/
int ef_glob(const char *pattern, int flags, ef_buf *out, char *err, size_t errlen) {
  int gflags = GLOB_NOSORT;
#ifdef GLOB_BRACE
  gflags |= GLOB_BRACE;
#endif
#ifdef GLOB_TILDE
  gflags |= GLOB_TILDE;
#endif
  glob_t g;
  memset(&g, 0, sizeof g);
  ef_buf_reset(out);
  int rc = glob(pattern, gflags, NULL, &g);
  if (rc != 0 && rc != GLOB_NOMATCH) {
    if (err && errlen)
      snprintf(err, errlen, "cannot expand '%s': %s", pattern,
               rc == GLOB_NOSPACE ? strerror(ENOMEM)
               : rc == GLOB_ABORTED ? "a folder could not be read" : "glob(3) failed");
    globfree(&g);
    return -1;
  }
  size_t n = rc == 0 ? (size_t)g.gl_pathc : 0;
  if (n > 1)
    qsort(g.gl_pathv, n, sizeof *g.gl_pathv, cmp_paths);
  const char *prev = NULL;
  for (size_t i = 0; i < n; i++) {
    const char *p = g.gl_pathv[i];
    if (prev != NULL && strcmp(prev, p) == 0)
      continue;
    prev = p;
    if ((flags & EF_GLOB_FILES) && !is_regular(p))
      continue;
    if (ef_buf_append(out, p, strlen(p) + 1) != 0) {
      seterr(err, errlen, pattern, ENOMEM);
      ef_buf_free(out);
      globfree(&g);
      return -1;
    }
  }
  globfree(&g);
  return 0;
}

/*
** Descriptors 0-2 found closed get /dev/null. Left closed, the next file opened takes the
** number -- the journal, say -- and whatever is then written to "stderr" (a warning, a
** server's log line shown as progress) lands in that file. /dev/null is opened the wrong way
** round (stdin write-only, stdout and stderr read-only), so reading or writing them still fails
** with EBADF, as on a closed descriptor: a lost stdout stays an error. Filling a closed slot
** takes nothing from an embedder that it could have used.
*/
int ef_open_std_fds(void) {
  for (int fd = 0; fd <= 2; fd++) {
    if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
      continue;
    int got = open("/dev/null", fd == 0 ? O_WRONLY : O_RDONLY);
    if (got < 0)
      return fd;
    if (got != fd) /* another thread filled the slot meanwhile: it is open, as wanted */
      (void)close(got);
  }
  return -1;
}

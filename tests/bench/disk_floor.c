/*
** disk_floor.c — what saving an image durably costs this machine's kernel, with no editflow in
** it: N files of SIZE bytes, each made, written in 16 KB pieces (libcurl's download buffer),
** fsynced, dropped from the page cache, closed and renamed into place, with one fsync of the
** folder per 2 files (editflow's group commit makes 0.3-0.6 folder fsyncs per image in
** tests/bench/run). With "syncfs" (Linux), the cheapest durable save there is: 200 files
** written, one syncfs(2) for all of them, renamed, one more syncfs.
** Prints, per file: the CPU of this process (user + system, getrusage, as bench.lua counts
** editflow's), the CPU of the whole machine (Linux, /proc/stat: syncfs leaves the writeback to
** the kernel's flusher threads, which getrusage does not see), and the wall time.
**   disk_floor DIR [N [SIZE [syncfs]]]
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double cpu_s(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

static double wall_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + t.tv_nsec / 1e9;
}

/* The whole machine's busy time in seconds (Linux: /proc/stat's user, nice, system, irq,
** softirq and steal), or -1 where there is no /proc/stat. */
static double machine_s(void) {
  FILE *f = fopen("/proc/stat", "r");
  unsigned long long v[8] = {0};
  int got = f ? fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                       &v[4], &v[5], &v[6], &v[7])
              : 0;
  if (f)
    fclose(f);
  if (got != 8)
    return -1;
  long hz = sysconf(_SC_CLK_TCK);
  return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)(hz > 0 ? hz : 100);
}

static void die(const char *what, const char *path) {
  perror(path ? path : what);
  exit(1);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: disk_floor DIR [N [SIZE]]\n");
    return 2;
  }
  const char *dir = argv[1];
  int n = argc > 2 ? atoi(argv[2]) : 1000;
  if (n < 1) {
    fprintf(stderr, "disk_floor: N must be a number >= 1\n");
    return 2;
  }
  size_t size = argc > 3 ? (size_t)atol(argv[3]) : 100000;
  int grouped = argc > 4 && strcmp(argv[4], "syncfs") == 0;
#if !defined(__linux__)
  if (grouped) {
    fprintf(stderr, "disk_floor: syncfs is Linux's\n");
    return 2;
  }
#endif
  char *buf = malloc(size ? size : 1);
  if (buf == NULL)
    die("malloc", NULL);
  memset(buf, 0x5a, size);
  int dfd = open(dir, O_RDONLY | O_DIRECTORY);
  if (dfd < 0)
    die("open", dir);
  char tmp[4096], fin[4096];
  double c0 = cpu_s(), t0 = wall_s(), m0 = machine_s();
  int fds[200];
  for (int i = 0; i < n; i++) {
    snprintf(tmp, sizeof tmp, "%s/.f%d.part", dir, i);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0)
      die("open", tmp);
    for (size_t off = 0; off < size; off += 16384) {
      size_t k = size - off < 16384 ? size - off : 16384;
      ssize_t w = write(fd, buf + off, k);
      if (w != (ssize_t)k) {
        if (w >= 0)
          errno = EIO; /* a short write: the disk is full, most likely */
        die("write", tmp);
      }
    }
    int last = (i + 1) % 200 == 0 || i + 1 == n;
    if (!grouped) {
      if (fsync(fd) != 0)
        die("fsync", tmp);
#ifdef POSIX_FADV_DONTNEED
      (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
#endif
      snprintf(fin, sizeof fin, "%s/f%d.png", dir, i);
      if (close(fd) != 0)
        die("close", tmp);
      if (rename(tmp, fin) != 0)
        die("rename", fin);
      if (((i + 1) % 2 == 0 || i + 1 == n) && fsync(dfd) != 0)
        die("fsync", dir);
      continue;
    }
    fds[i % 200] = fd;
    if (!last)
      continue;
#if defined(__linux__)
    if (syncfs(dfd) != 0)
      die("syncfs", dir);
#endif
    for (int j = i - i % 200; j <= i; j++) {
      int f = fds[j % 200];
#ifdef POSIX_FADV_DONTNEED
      (void)posix_fadvise(f, 0, 0, POSIX_FADV_DONTNEED);
#endif
      snprintf(tmp, sizeof tmp, "%s/.f%d.part", dir, j);
      snprintf(fin, sizeof fin, "%s/f%d.png", dir, j);
      if (close(f) != 0)
        die("close", tmp);
      if (rename(tmp, fin) != 0)
        die("rename", fin);
    }
#if defined(__linux__)
    if (syncfs(dfd) != 0)
      die("syncfs", dir);
#endif
  }
  double cpu = cpu_s() - c0, wall = wall_s() - t0, m1 = machine_s();
  printf("%d files of %zu bytes, %s: %.3f ms CPU per file (whole machine: ", n, size,
         grouped ? "one syncfs per 200" : "an fsync each", cpu * 1000 / n);
  if (m0 >= 0 && m1 >= 0)
    printf("%.3f ms)", (m1 - m0) * 1000 / n);
  else
    printf("n/a)");
  printf(", %.3f ms wall per file\n", wall * 1000 / n);
  return 0;
}

/*
** curl_floor.c — what the benchmark's HTTP costs this machine with nothing but libcurl in the
** client: N jobs, IN_FLIGHT at a time, each making the four requests an editflow job makes
** (submit, status stream, result, the image) one after the other on one reused easy handle,
** all driven by one multi handle; bodies are counted and dropped. Prints the CPU (user +
** system, getrusage) per job. Run by tests/bench/floor. Its status stream follows a job that
** has already ended (one event, at once; editflow's carry two or three over 50 ms), so this
** part of the floor is, if anything, low.
**   curl_floor N IN_FLIGHT SUBMIT_URL BODY STREAM_URL RESULT_URL IMAGE_URL
*/
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

typedef struct job {
  CURL *easy;
  int step;     /* 0 submit, 1 stream, 2 result, 3 image */
  size_t bytes; /* received in this step */
} job;

static const char *urls[4];
static const char *body;
static struct curl_slist *hdr[4];
static long started, finished, failed, total;

static size_t sink(char *p, size_t size, size_t n, void *ud) {
  (void)p;
  ((job *)ud)->bytes += size * n;
  return size * n;
}

static void setup(job *j) {
  CURL *e = j->easy;
  curl_easy_reset(e);
  curl_easy_setopt(e, CURLOPT_URL, urls[j->step]);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdr[j->step]);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
  curl_easy_setopt(e, CURLOPT_PRIVATE, j);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L); /* a hung sandbox ends the run, not the patience */
  if (j->step == 0) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
  }
  j->bytes = 0;
}

static double cpu_s(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char **argv) {
  if (argc != 8) {
    fprintf(stderr, "usage: curl_floor N IN_FLIGHT SUBMIT_URL BODY STREAM_URL RESULT_URL IMAGE_URL\n");
    return 2;
  }
  total = atol(argv[1]);
  long in_flight = atol(argv[2]);
  if (total < 1 || in_flight < 1) {
    fprintf(stderr, "curl_floor: N and IN_FLIGHT must be numbers >= 1\n");
    return 2;
  }
  if (in_flight > total)
    in_flight = total;
  urls[0] = argv[3];
  body = argv[4];
  urls[1] = argv[5];
  urls[2] = argv[6];
  urls[3] = argv[7];
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const char *key = "Authorization: Key test-key"; /* the sandbox's fake key */
  hdr[0] = curl_slist_append(curl_slist_append(NULL, key), "Content-Type: application/json");
  hdr[1] = curl_slist_append(curl_slist_append(NULL, key), "Accept: text/event-stream");
  hdr[2] = curl_slist_append(NULL, key);
  hdr[3] = curl_slist_append(NULL, "Accept: image/*");
  CURLM *m = curl_multi_init();
  job *jobs = calloc((size_t)in_flight, sizeof *jobs);
  if (m == NULL || jobs == NULL) {
    fprintf(stderr, "curl_floor: out of memory\n");
    return 1;
  }
  double c0 = cpu_s();
  for (long i = 0; i < in_flight && started < total; i++, started++) {
    if ((jobs[i].easy = curl_easy_init()) == NULL) {
      fprintf(stderr, "curl_floor: curl_easy_init failed\n");
      return 1;
    }
    setup(&jobs[i]);
    curl_multi_add_handle(m, jobs[i].easy);
  }
  int running = 1;
  while (finished < total) {
    curl_multi_perform(m, &running);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
      if (msg->msg != CURLMSG_DONE)
        continue;
      job *j;
      long code = 0;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&j);
      curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
      curl_multi_remove_handle(m, j->easy);
      if (msg->data.result != CURLE_OK || code < 200 || code > 299 || j->bytes == 0)
        failed++;
      if (++j->step == 4) {
        finished++;
        if (started >= total)
          continue;
        started++;
        j->step = 0;
      }
      setup(j);
      curl_multi_add_handle(m, j->easy);
    }
    if (finished < total)
      curl_multi_poll(m, NULL, 0, 1000, NULL);
  }
  double cpu = cpu_s() - c0;
  printf("libcurl, 4 requests per job: %.3f ms CPU per job (%ld of %ld requests failed)\n",
         cpu * 1000 / (double)total, failed, 4 * total);
  for (long i = 0; i < in_flight; i++)
    if (jobs[i].easy)
      curl_easy_cleanup(jobs[i].easy);
  curl_multi_cleanup(m);
  for (int i = 0; i < 4; i++)
    curl_slist_free_all(hdr[i]);
  free(jobs);
  curl_global_cleanup();
  return failed ? 1 : 0;
}

/*
 * The echo benchmark's load generator in C (bench/echo.ts compiles and starts
 * it; bench/loadgen_node.mjs is the same program on Node's `net`, and this one
 * keeps its options, output and accounting exactly):
 *   cc -O2 -o loadgen bench/loadgen.c
 *   ./loadgen --port=PORT --conns=50 --size=64 --duration=5000 --warmup=500
 *   ./loadgen --port=PORT --idle=10000
 *
 * Closed loop: each of --conns connections sends one --size-byte message
 * ending in "\n", reads the echo back, checks it byte for byte, records the
 * latency and repeats until the measured window ends. It writes lines to
 * stdout, which echo.ts follows: `connected N`, then `start` and `end` at the
 * edges of the measured window, then one JSON LoadResult (bench/_report.ts).
 * With --idle=N it opens N connections, echoes one message on each, prints
 * `ready N`, holds them until a line arrives on stdin (or stdin closes, or
 * --hold ms pass), closes them and prints one JSON IdleResult.
 * Times are in ms; only loopback targets are allowed.
 *
 * One thread, one level-triggered epoll loop, non-blocking sockets with
 * TCP_NODELAY, CLOCK_MONOTONIC. Linux only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define A 'a'
#define NEWLINE '\n'
#define READ_SIZE 65536
#define MAX_EVENTS 256
/* epoll data of stdin; connections use their index, pending connects
 * PENDING_TAG | slot. */
#define STDIN_TAG UINT64_MAX
#define PENDING_TAG (UINT64_C(1) << 62)

static struct {
  const char *host;
  double port, conns, size, duration, warmup, idle, hold, connectTimeout,
      parallelConnects, drainTimeout, maxSamples, maxRtts;
} opts = {"127.0.0.1", 0, 1, 64, 5000, 500, 0, 120000, 30000, 100, 2000,
          1 << 24, 100000000};

static const struct {
  const char *name;
  double *value;
} NUMERIC[] = {
    {"port", &opts.port},
    {"conns", &opts.conns},
    {"size", &opts.size},
    {"duration", &opts.duration},
    {"warmup", &opts.warmup},
    {"idle", &opts.idle},
    {"hold", &opts.hold},
    {"connect-timeout", &opts.connectTimeout},
    {"parallel-connects", &opts.parallelConnects},
    {"drain-timeout", &opts.drainTimeout},
    {"max-samples", &opts.maxSamples},
    {"max-rtts", &opts.maxRtts},
};
#define NUMERIC_COUNT (sizeof NUMERIC / sizeof NUMERIC[0])

static void fail(const char *format, ...) {
  va_list args;
  va_start(args, format);
  fputs("loadgen: ", stderr);
  vfprintf(stderr, format, args);
  fputc('\n', stderr);
  va_end(args);
  exit(1);
}

static void *xrealloc(void *p, size_t bytes) {
  p = realloc(p, bytes ? bytes : 1);
  if (p == NULL) fail("out of memory");
  return p;
}

/* ceil() and integer tests without libm (the file builds with plain `cc`);
 * for values >= 0. */
static double ceilOf(double x) {
  if (x >= 9e15) return x;
  double t = (double)(int64_t)x;
  return t < x ? t + 1 : t;
}

static bool isFinite(double x) {
  return x - x == 0; /* NaN and infinities give NaN */
}

static bool isInteger(double x) {
  return x < 9e15 && x == (double)(int64_t)x;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void emit(const char *format, ...) {
  va_list args;
  va_start(args, format);
  vprintf(format, args);
  va_end(args);
  putchar('\n');
  fflush(stdout);
}

/* JavaScript's Number(text): surrounding blanks ignored, "" is 0. */
static double jsNumber(const char *text) {
  while (*text == ' ' || (*text >= '\t' && *text <= '\r')) text++;
  if (*text == '\0') return 0;
  char *end;
  double n = strtod(text, &end);
  while (*end == ' ' || (*end >= '\t' && *end <= '\r')) end++;
  return end == text || *end != '\0' ? strtod("nan", NULL) : n;
}

static void parseOptions(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
      fail("unexpected argument '%s'", arg);
    }
    const char *name = arg + 2;
    const char *eq = strchr(name, '=');
    size_t nameLen = eq ? (size_t)(eq - name) : strlen(name);
    const char *value = eq ? eq + 1 : NULL;
    double *target = NULL;
    bool known = nameLen == 4 && strncmp(name, "host", 4) == 0;
    for (size_t k = 0; k < NUMERIC_COUNT && !known; k++) {
      if (strlen(NUMERIC[k].name) == nameLen &&
          strncmp(NUMERIC[k].name, name, nameLen) == 0) {
        target = NUMERIC[k].value;
        known = true;
      }
    }
    if (!known) fail("unknown option '--%.*s'", (int)nameLen, name);
    if (value == NULL) {
      if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0) {
        fail("option '--%.*s <value>' argument missing", (int)nameLen, name);
      }
      value = argv[++i];
    }
    if (target == NULL) {
      opts.host = value;
      continue;
    }
    *target = jsNumber(value);
    if (!isFinite(*target) || *target < 0) {
      fail("--%.*s must be a number >= 0, got %s", (int)nameLen, name, value);
    }
  }
  if (strcmp(opts.host, "127.0.0.1") != 0 && strcmp(opts.host, "::1") != 0 &&
      strcmp(opts.host, "localhost") != 0) {
    fail("--host must be a loopback address, got %s", opts.host);
  }
  if (opts.port < 1 || opts.port > 65535) {
    fail("--port must be in 1..65535, got %.15g", opts.port);
  }
  if (!isInteger(opts.size) || opts.size < 2) {
    fail("--size must be an integer >= 2, got %.15g", opts.size);
  }
  if (!isInteger(opts.conns) || opts.conns < 1) {
    fail("--conns must be an integer >= 1, got %.15g", opts.conns);
  }
}

static void fillMessage(unsigned char *message, size_t size, size_t id) {
  for (size_t i = 0; i + 1 < size; i++) message[i] = A + (i + id) % 26;
  message[size - 1] = NEWLINE;
}

static void stampMessage(unsigned char *message, size_t size, uint64_t seq) {
  size_t digits = size - 1 < 8 ? size - 1 : 8;
  for (size_t i = digits; i-- > 0;) {
    unsigned d = seq % 36;
    message[i] = d < 10 ? '0' + d : A + d - 10;
    seq /= 36;
  }
}

/* Error samples, in the order they happened. */
static char **errorSamples;
static size_t errorSampleCount;

static void addErrorSample(const char *format, ...) {
  char line[256];
  va_list args;
  va_start(args, format);
  vsnprintf(line, sizeof line, format, args);
  va_end(args);
  errorSamples =
      xrealloc(errorSamples, (errorSampleCount + 1) * sizeof *errorSamples);
  errorSamples[errorSampleCount++] = strdup(line);
}

static int epfd;

static void watch(int op, int fd, uint32_t events, uint64_t data) {
  struct epoll_event event = {.events = events, .data.u64 = data};
  if (epoll_ctl(epfd, op, fd, &event) < 0 && op != EPOLL_CTL_DEL) {
    fail("epoll_ctl: %s", strerror(errno));
  }
}

static int waitEvents(struct epoll_event *events, double deadline) {
  double left = deadline - now();
  int timeout = left <= 0 ? 0 : left > 1e9 ? 1000000000 : (int)ceilOf(left);
  int n = epoll_wait(epfd, events, MAX_EVENTS, timeout);
  if (n < 0 && errno != EINTR) fail("epoll_wait: %s", strerror(errno));
  return n < 0 ? 0 : n;
}

/* ---- Connecting ------------------------------------------------------- */

static struct addrinfo *addresses;

/* One connected socket and its closed loop. */
struct conn {
  int fd;
  bool finished;
  bool writing;
  unsigned char *message;
  size_t sent, got;
  uint64_t seq;
  double t0;
  uint32_t perConn;
};

static struct conn *conns;
static size_t connCount;

/* A worker of openConnections(): one connect in flight at a time. */
struct worker {
  int fd; /* -1 when idle */
  struct addrinfo *address;
  bool done;
};

static double connectNext;
static double connectCount;
static double connectDeadline;

static void addConn(int fd) {
  if ((connCount & (connCount - 1)) == 0) {
    conns = xrealloc(conns, (connCount ? connCount * 2 : 1) * sizeof *conns);
  }
  conns[connCount++] = (struct conn){.fd = fd};
}

/* Starts a connect to w->address; true if it is in flight (fd >= 0), false
 * if it failed at once (errno set). */
static bool beginConnect(struct worker *w, uint64_t slot) {
  int fd = socket(w->address->ai_family,
                  SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int rc;
  do {
    rc = connect(fd, w->address->ai_addr, w->address->ai_addrlen);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0 && errno != EINPROGRESS) {
    int saved = errno;
    close(fd);
    errno = saved;
    return false;
  }
  w->fd = fd;
  watch(EPOLL_CTL_ADD, fd, EPOLLOUT, PENDING_TAG | slot);
  return true;
}

/* A connect of `w` ended with `error` (0: connected); tries the next address
 * after a failure, and starts the worker's next connect when it may. */
static void connectEnded(struct worker *w, uint64_t slot, int error) {
  for (;;) {
    if (w->fd >= 0) {
      watch(EPOLL_CTL_DEL, w->fd, 0, 0);
      if (error == 0) {
        addConn(w->fd);
      } else {
        close(w->fd);
      }
      w->fd = -1;
    }
    if (error != 0 && w->address != NULL && w->address->ai_next != NULL) {
      w->address = w->address->ai_next;
    } else {
      if (error != 0) {
        addErrorSample("connect: %s (%s port %d)", strerror(error), opts.host,
                       (int)opts.port);
        if (errorSampleCount > 20) {
          w->done = true;
          return;
        }
      }
      if (!(connectNext < connectCount && now() < connectDeadline)) {
        w->done = true;
        return;
      }
      connectNext++;
      w->address = addresses;
    }
    if (beginConnect(w, slot)) return;
    error = errno;
  }
}

/* Opens up to `count` connections, --parallel-connects at a time, starting
 * no new one after `deadline` (connects still pending then fail). Returns
 * the connect errors. */
static size_t openConnections(double count, double deadline) {
  connectNext = 0;
  connectCount = count;
  connectDeadline = deadline;
  double parallel = opts.parallelConnects < count ? opts.parallelConnects
                                                  : count;
  size_t slots = (size_t)ceilOf(parallel);
  struct worker *workers = xrealloc(NULL, slots * sizeof *workers);
  for (size_t i = 0; i < slots; i++) {
    workers[i] = (struct worker){.fd = -1};
    connectEnded(&workers[i], i, 0);
  }
  struct epoll_event events[MAX_EVENTS];
  for (;;) {
    size_t busy = 0;
    for (size_t i = 0; i < slots; i++) busy += !workers[i].done;
    if (busy == 0) break;
    if (now() >= deadline) {
      for (size_t i = 0; i < slots; i++) {
        if (workers[i].done) continue;
        workers[i].address = NULL;
        connectEnded(&workers[i], i, ETIMEDOUT);
      }
      continue;
    }
    int n = waitEvents(events, deadline);
    for (int e = 0; e < n; e++) {
      uint64_t slot = events[e].data.u64 & ~PENDING_TAG;
      struct worker *w = &workers[slot];
      int error = 0;
      socklen_t len = sizeof error;
      if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0) {
        error = errno;
      }
      connectEnded(w, slot, error);
    }
  }
  free(workers);
  return errorSampleCount;
}

/* ---- Closed-loop load -------------------------------------------------- */

static double *samples;
static size_t sampleCapacity = 1024;
static size_t kept;
static uint64_t count;
static uint64_t total;
static size_t errors;
static size_t running;
static bool stopping;
static double windowStart, windowEnd;

static void record(struct conn *c, double ms, double t1) {
  if (t1 < windowStart || t1 > windowEnd) return;
  c->perConn++;
  count++;
  if (kept == sampleCapacity) {
    if (kept >= opts.maxSamples) return;
    size_t grown = kept * 2 < opts.maxSamples ? kept * 2
                                              : (size_t)opts.maxSamples;
    samples = xrealloc(samples, grown * sizeof *samples);
    sampleCapacity = grown;
  }
  samples[kept++] = ms;
}

static void closeConn(struct conn *c) {
  if (c->fd < 0) return;
  watch(EPOLL_CTL_DEL, c->fd, 0, 0);
  close(c->fd);
  c->fd = -1;
}

/* The connection's loop ends; `reason` (NULL: none) is an error unless the
 * run is stopping. */
static void finish(struct conn *c, const char *reason) {
  if (c->finished) return;
  c->finished = true;
  if (reason != NULL && !stopping) {
    errors++;
    if (errorSampleCount < 10) {
      addErrorSample("conn %zu: %s", (size_t)(c - conns), reason);
    }
  }
  running--;
}

/* Writes what is left of the message; false when the socket failed. */
static bool flush(struct conn *c) {
  size_t size = (size_t)opts.size;
  while (c->sent < size) {
    ssize_t n = send(c->fd, c->message + c->sent, size - c->sent,
                     MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      char reason[128];
      snprintf(reason, sizeof reason, "write: %s", strerror(errno));
      finish(c, reason);
      closeConn(c);
      return false;
    }
    c->sent += (size_t)n;
  }
  bool writing = c->sent < size;
  if (writing != c->writing) {
    c->writing = writing;
    watch(EPOLL_CTL_MOD, c->fd, EPOLLIN | (writing ? EPOLLOUT : 0),
          (uint64_t)(c - conns));
  }
  return true;
}

static void sendMessage(struct conn *c) {
  stampMessage(c->message, (size_t)opts.size, c->seq++);
  c->got = 0;
  c->sent = 0;
  c->t0 = now();
  flush(c);
}

static void onReadable(struct conn *c, unsigned char *buf) {
  ssize_t n = recv(c->fd, buf, READ_SIZE, 0);
  if (n < 0) {
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) return;
    char reason[128];
    snprintf(reason, sizeof reason, "read: %s", strerror(errno));
    finish(c, reason);
    closeConn(c);
    return;
  }
  if (n == 0) {
    finish(c, "closed by the server");
    closeConn(c);
    return;
  }
  if (c->finished) return;
  size_t size = (size_t)opts.size;
  size_t len = (size_t)n;
  if (c->got + len > size) {
    finish(c, "more bytes than the message");
    return;
  }
  if (memcmp(c->message + c->got, buf, len) != 0) {
    finish(c, "echo differs from the message");
    return;
  }
  c->got += len;
  if (c->got < size) return;
  double t1 = now();
  record(c, t1 - c->t0, t1);
  if (++total >= opts.maxRtts && !stopping) {
    stopping = true;
    errors++;
    addErrorSample("stopped at the %.0f-round-trip bound", opts.maxRtts);
  }
  if (stopping) {
    finish(c, NULL);
  } else {
    sendMessage(c);
  }
}

static int compareDoubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double percentile(const double *sorted, size_t n, double p) {
  if (n == 0) return 0;
  size_t rank = (size_t)ceilOf(p * n);
  return sorted[(rank < 1 ? 1 : rank) - 1];
}

/* A JSON number as JavaScript's JSON.stringify writes one (shortest form
 * that reads back the same; null when not finite). */
static void printNumber(double value) {
  if (!isFinite(value)) {
    fputs("null", stdout);
    return;
  }
  char text[32];
  if (isInteger(value < 0 ? -value : value)) {
    printf("%.0f", value);
    return;
  }
  for (int precision = 1; precision <= 17; precision++) {
    snprintf(text, sizeof text, "%.*g", precision, value);
    if (strtod(text, NULL) == value) break;
  }
  fputs(text, stdout);
}

static void printField(const char *name, double value) {
  printf(",\"%s\":", name);
  printNumber(value);
}

static void printErrorSamples(void) {
  fputs(",\"errorSamples\":[", stdout);
  for (size_t i = 0; i < errorSampleCount; i++) {
    if (i > 0) putchar(',');
    putchar('"');
    for (const unsigned char *s = (const unsigned char *)errorSamples[i]; *s;
         s++) {
      if (*s == '"' || *s == '\\') {
        printf("\\%c", *s);
      } else if (*s < 0x20) {
        printf("\\u%04x", *s);
      } else {
        putchar(*s);
      }
    }
    putchar('"');
  }
  fputs("]}\n", stdout);
  fflush(stdout);
}

static void runLoad(void) {
  errors = openConnections(opts.conns, now() + opts.connectTimeout);
  emit("connected %zu", connCount);

  size_t size = (size_t)opts.size;
  samples = xrealloc(NULL, sampleCapacity * sizeof *samples);
  windowStart = now() + opts.warmup;
  windowEnd = windowStart + opts.duration;
  running = connCount;
  for (size_t id = 0; id < connCount; id++) {
    struct conn *c = &conns[id];
    c->message = xrealloc(NULL, size);
    fillMessage(c->message, size, id);
    watch(EPOLL_CTL_ADD, c->fd, EPOLLIN, id);
  }
  for (size_t id = 0; id < connCount; id++) sendMessage(&conns[id]);

  unsigned char *buf = xrealloc(NULL, READ_SIZE);
  struct epoll_event events[MAX_EVENTS];
  bool started = false;
  bool ended = false;
  double drainEnd = 0;
  for (;;) {
    double t = now();
    if (!started && t >= windowStart) {
      emit("start");
      started = true;
    }
    if (started && !ended && t >= windowEnd) {
      emit("end");
      ended = true;
      stopping = true;
      drainEnd = t + opts.drainTimeout;
    }
    if (ended && (running == 0 || t >= drainEnd)) break;
    double next = !started ? windowStart : !ended ? windowEnd : drainEnd;
    int n = waitEvents(events, next);
    for (int e = 0; e < n; e++) {
      struct conn *c = &conns[events[e].data.u64];
      if (c->fd < 0) continue;
      if (events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        onReadable(c, buf);
      }
      if (c->fd >= 0 && c->writing && (events[e].events & EPOLLOUT)) {
        flush(c);
      }
    }
  }
  for (size_t id = 0; id < connCount; id++) closeConn(&conns[id]);

  qsort(samples, kept, sizeof *samples, compareDoubles);
  uint32_t min = UINT32_MAX, max = 0;
  for (size_t id = 0; id < connCount; id++) {
    if (conns[id].perConn < min) min = conns[id].perConn;
    if (conns[id].perConn > max) max = conns[id].perConn;
  }
  printf("{\"kind\":\"load\",\"generator\":\"c\"");
  printField("conns", opts.conns);
  printField("connected", (double)connCount);
  printField("size", opts.size);
  printField("seconds", opts.duration / 1000);
  printField("rtts", (double)count);
  printField("rtPerSec", count / (opts.duration / 1000));
  printField("p50Us", percentile(samples, kept, 0.5) * 1000);
  printField("p99Us", percentile(samples, kept, 0.99) * 1000);
  printField("maxUs", kept > 0 ? samples[kept - 1] * 1000 : 0);
  printField("perConnMin", connCount > 0 ? min : 0);
  printField("perConnMax", max);
  printField("errors", (double)errors);
  printErrorSamples();
}

/* ---- Idle connections -------------------------------------------------- */

/* Waits for a line on stdin, its end, or `deadline`. */
static void holdUntil(double deadline) {
  char buf[4096];
  struct epoll_event event = {.events = EPOLLIN, .data.u64 = STDIN_TAG};
  bool polled = epoll_ctl(epfd, EPOLL_CTL_ADD, STDIN_FILENO, &event) == 0;
  for (;;) {
    if (polled) {
      struct epoll_event events[MAX_EVENTS];
      if (waitEvents(events, deadline) == 0) {
        if (now() >= deadline) return;
        continue;
      }
    }
    /* A file (such as /dev/null) cannot be polled, and never blocks. */
    if (!polled && now() >= deadline) return;
    ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0 || memchr(buf, NEWLINE, (size_t)n) != NULL) return;
  }
}

static void runIdle(void) {
  double openStart = now();
  errors = openConnections(opts.idle, openStart + opts.connectTimeout);
  size_t size = opts.size < 64 ? (size_t)opts.size : 64;
  size_t echoed = 0;
  size_t next = 0;
  size_t inFlight = 0;
  size_t parallel = (size_t)ceilOf(opts.parallelConnects);
  unsigned char *buf = xrealloc(NULL, READ_SIZE);
  bool *ok = xrealloc(NULL, connCount * sizeof *ok);
  double deadline = now() + opts.connectTimeout;
  struct epoll_event events[MAX_EVENTS];
  for (;;) {
    while (inFlight < parallel && next < connCount) {
      struct conn *c = &conns[next];
      ok[next] = true;
      c->message = xrealloc(NULL, size);
      fillMessage(c->message, size, 0);
      stampMessage(c->message, size, next);
      watch(EPOLL_CTL_ADD, c->fd, EPOLLIN, next);
      inFlight++;
      next++;
      while (c->sent < size) {
        ssize_t n = send(c->fd, c->message + c->sent, size - c->sent,
                         MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) break; /* a failed socket reads as failed too */
        c->sent += (size_t)n;
      }
      if (c->sent < size && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c->writing = true;
        watch(EPOLL_CTL_MOD, c->fd, EPOLLIN | EPOLLOUT, next - 1);
      }
    }
    if (inFlight == 0 || now() >= deadline) break;
    int n = waitEvents(events, deadline);
    for (int e = 0; e < n; e++) {
      size_t id = events[e].data.u64;
      struct conn *c = &conns[id];
      if (c->finished) continue;
      if (c->writing && (events[e].events & EPOLLOUT)) {
        ssize_t sent = send(c->fd, c->message + c->sent, size - c->sent,
                            MSG_NOSIGNAL);
        if (sent > 0) c->sent += (size_t)sent;
        if (c->sent == size) {
          c->writing = false;
          watch(EPOLL_CTL_MOD, c->fd, EPOLLIN, id);
        }
      }
      if (!(events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
      ssize_t got = recv(c->fd, buf, READ_SIZE, 0);
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      bool settled = got <= 0;
      if (got <= 0) {
        ok[id] = false;
      } else {
        size_t len = (size_t)got;
        if (c->got + len > size ||
            memcmp(c->message + c->got, buf, len) != 0) {
          ok[id] = false;
        }
        c->got += len;
        settled = c->got >= size;
      }
      if (!settled) continue;
      c->finished = true;
      inFlight--;
      if (ok[id]) {
        echoed++;
      } else {
        errors++;
      }
      if (got <= 0) {
        closeConn(c);
      } else {
        watch(EPOLL_CTL_DEL, c->fd, 0, 0);
      }
    }
  }
  double openMs = now() - openStart;
  emit("ready %zu", echoed);

  holdUntil(now() + opts.hold);
  for (size_t id = 0; id < connCount; id++) closeConn(&conns[id]);
  printf("{\"kind\":\"idle\",\"generator\":\"c\"");
  printField("requested", opts.idle);
  printField("opened", (double)connCount);
  printField("echoed", (double)echoed);
  printField("openMs", openMs);
  printField("errors", (double)errors);
  printErrorSamples();
}

int main(int argc, char **argv) {
  parseOptions(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICSERV};
  char port[16];
  snprintf(port, sizeof port, "%d", (int)opts.port);
  int rc = getaddrinfo(opts.host, port, &hints, &addresses);
  if (rc != 0) fail("cannot resolve %s: %s", opts.host, gai_strerror(rc));
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) fail("epoll_create1: %s", strerror(errno));
  if (opts.idle > 0) {
    runIdle();
  } else {
    runLoad();
  }
  return 0;
}

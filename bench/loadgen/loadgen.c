/*
 * loadgen: a native load generator for the bench protocol (shared/bench-protocol.md),
 * wrk-style: each thread drives its share of the connections from one epoll loop.
 *
 *   closed loop:  -c CONNS -p PIPELINE   (PIPELINE requests outstanding per connection)
 *   open loop:    --rate R               (R requests/s in total, at most PIPELINE in flight
 *                                         per connection; latency counts from the scheduled
 *                                         send time, so a stalled server is not hidden)
 *   cold start:   --hold N               (N connections, one request each, then held open
 *                                         until stdin closes; see bench/shapes.ts memory)
 *
 * Every reply is verified (K = 0: the payload echoed; K > 0: the SHA-256 chain) against
 * one expected reply computed before the run: all requests are the same message.
 * It reports req/s, latency percentiles (log-bucket histogram, < 1.6 % relative error)
 * and its own CPU use, so a cell where the generator itself was the bottleneck shows.
 * Loopback only (127.0.0.1, ::1); every phase is bounded in time.
 *
 * Built by bench/loadgen.ts (cc -O2 -pthread); `loadgen --help` lists the options.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "sha256.h"

/* A reply longer than this is a broken stream, not a reply: the connection is dropped. */
#define MAX_FRAME (64u << 20)
#define READ_CHUNK (256 * 1024)
#define MAX_EVENTS 256
#define HOUSEKEEPING_NS 10000000u
/* Open loop: the timer never fires sooner than this after now (a burst of due sends goes out together). */
#define MIN_WAKE_NS 20000u
/* A generator thread at or above this share of one core is the bottleneck of its cell. */
#define SATURATED_PERCENT 90.0

/* ------------------------------------------------------------------ configuration */

static struct {
  struct sockaddr_storage addr;
  socklen_t addrlen;
  char target[80];
  int conns, pipeline, threads;
  double duration, warmup, timeout, rate;
  size_t size;
  uint32_t k;
  int json;
  int hold;
  double hold_seconds;
} cfg = {.conns = 10, .pipeline = 1, .threads = 1, .duration = 10, .timeout = 5, .size = 64, .hold_seconds = 120};

/* The one request (repeated `pipeline` times back to back, so any run of queued requests
 * is one contiguous slice of it) and the one expected reply body. */
static uint8_t *req_blob;
static size_t req_len, blob_len;
static uint8_t *expected;
static uint32_t expected_len;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t) {
  struct timespec ts = {.tv_sec = (time_t)(t / 1000000000u), .tv_nsec = (long)(t % 1000000000u)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

static double cpu_seconds(int who) {
  struct rusage ru;
  getrusage(who, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* ------------------------------------------------------------------ histogram */

/* HDR-style log buckets of nanoseconds: values below 128 exactly, above that 64 buckets
 * per power of two. */
#define SUB_BITS 7
#define HALF (1 << (SUB_BITS - 1))
#define BUCKETS ((64 - SUB_BITS + 2) * HALF)

typedef struct {
  uint64_t counts[BUCKETS];
  uint64_t count, min, max;
  double sum;
} histogram;

static int bucket_of(uint64_t v) {
  if (v < (1u << SUB_BITS)) return (int)v;
  int msb = 63 - __builtin_clzll(v);
  int shift = msb - (SUB_BITS - 1);
  return shift * HALF + (int)(v >> shift);
}

/* The highest value that lands in bucket i. */
static uint64_t bucket_top(int i) {
  if (i < (1 << SUB_BITS)) return (uint64_t)i;
  int shift = i / HALF - 1;
  uint64_t m = (uint64_t)(i - shift * HALF);
  return ((m + 1) << shift) - 1;
}

static void hist_record(histogram *h, uint64_t v) {
  h->counts[bucket_of(v)]++;
  if (h->count == 0 || v < h->min) h->min = v;
  if (v > h->max) h->max = v;
  h->count++;
  h->sum += (double)v;
}

static void hist_merge(histogram *into, const histogram *h) {
  if (h->count == 0) return;
  for (int i = 0; i < BUCKETS; i++) into->counts[i] += h->counts[i];
  if (into->count == 0 || h->min < into->min) into->min = h->min;
  if (h->max > into->max) into->max = h->max;
  into->count += h->count;
  into->sum += h->sum;
}

static uint64_t hist_quantile(const histogram *h, double q) {
  if (h->count == 0) return 0;
  uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999);
  if (rank < 1) rank = 1;
  uint64_t seen = 0;
  for (int i = 0; i < BUCKETS; i++) {
    seen += h->counts[i];
    if (seen >= rank) {
      uint64_t v = bucket_top(i);
      return v > h->max ? h->max : v;
    }
  }
  return h->max;
}

/* ------------------------------------------------------------------ connections and threads */

enum { C_IDLE, C_CONNECTING, C_OPEN };

struct thread;

typedef struct conn {
  struct thread *t;
  int fd, state;
  int inflight;       /* requests queued or sent, not yet answered */
  int head;           /* ring index of the oldest in-flight request */
  uint64_t *sent_at;  /* ring of `pipeline` send (or scheduled) times, ns */
  size_t unsent;      /* bytes queued, not yet written */
  size_t send_off;    /* where in the request the next byte to write is */
  int want_out;       /* EPOLLOUT armed: the socket buffer was full */
  uint8_t hdr[4];
  int hdr_got;
  uint32_t body_len, body_got;
  int body_bad;
  uint64_t progress_at; /* last reply, or when requests went in flight */
  uint64_t retry_at;    /* C_IDLE: reconnect not before */
} conn;

typedef struct thread {
  pthread_t id;
  int ep, timer;
  conn *conns;
  int n, cursor;
  histogram hist;
  uint64_t sent, answered, window_ok, mismatches, timeouts, resets, connect_errors, lost;
  int connected;
  /* open loop: requests of this thread are due at t_start + i * interval */
  uint64_t interval, scheduled, due_limit;
  int blocked; /* open loop: every connection was full when a request fell due */
  uint64_t next_housekeeping, armed_at;
  double cpu_start, cpu_end;
  int cpu_started, cpu_done;
  uint8_t *buf;
} thread;

static atomic_int aborted;
static uint64_t t_start, t_measure, t_end, t_drain_end;
static pthread_barrier_t ready, go;

static void die(const char *msg) {
  fprintf(stderr, "loadgen: %s\n", msg);
  exit(2);
}

static void ep_mod(conn *c, int out) {
  struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (out ? EPOLLOUT : 0), .data.ptr = c};
  epoll_ctl(c->t->ep, EPOLL_CTL_MOD, c->fd, &ev);
  c->want_out = out;
}

static void conn_open(conn *c, uint64_t now) {
  c->inflight = c->head = 0;
  c->unsent = c->send_off = 0;
  c->hdr_got = 0;
  c->body_len = c->body_got = 0;
  c->body_bad = 0;
  c->progress_at = now;
  c->fd = socket(cfg.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    c->t->connect_errors++;
    c->state = C_IDLE;
    c->retry_at = now + 100000000u;
    return;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int r = connect(c->fd, (struct sockaddr *)&cfg.addr, cfg.addrlen);
  if (r < 0 && errno != EINPROGRESS) {
    close(c->fd);
    c->fd = -1;
    c->t->connect_errors++;
    c->state = C_IDLE;
    c->retry_at = now + 100000000u;
    return;
  }
  c->state = C_CONNECTING;
  struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.ptr = c};
  epoll_ctl(c->t->ep, EPOLL_CTL_ADD, c->fd, &ev);
  c->want_out = 1;
}

/* The connection is gone (reset, timeout, bad stream): its in-flight requests are lost. */
static void conn_drop(conn *c, uint64_t now) {
  if (c->fd >= 0) {
    epoll_ctl(c->t->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
  }
  c->fd = -1;
  c->state = C_IDLE;
  c->inflight = 0;
  c->retry_at = now + 10000000u;
}

static void flush(conn *c, uint64_t now) {
  while (c->unsent > 0) {
    size_t n = blob_len - c->send_off;
    if (n > c->unsent) n = c->unsent;
    ssize_t w = write(c->fd, req_blob + c->send_off, n);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!c->want_out) ep_mod(c, 1);
        return;
      }
      if (errno == EINTR) continue;
      c->t->resets++;
      c->t->lost += (uint64_t)c->inflight;
      conn_drop(c, now);
      return;
    }
    c->unsent -= (size_t)w;
    c->send_off = (c->send_off + (size_t)w) % req_len;
  }
  if (c->want_out) ep_mod(c, 0);
}

/* Queue one request sent (closed loop) or scheduled (open loop) at `at`; flush() writes it. */
static void queue_request(conn *c, uint64_t at) {
  if (c->inflight == 0) c->progress_at = at;
  c->sent_at[(c->head + c->inflight) % cfg.pipeline] = at;
  c->inflight++;
  c->unsent += req_len;
  c->t->sent++;
}

static int sending(uint64_t now) { return now < t_end && !atomic_load(&aborted); }

/* Open loop: hand every request now due to a connection with room; the rest wait. */
static void dispatch_due(thread *t, uint64_t now) {
  if (now < t_start) return;
  uint64_t due = (now - t_start) / t->interval + 1;
  if (due > t->due_limit) due = t->due_limit;
  t->blocked = 0;
  while (t->scheduled < due) {
    conn *c = NULL;
    for (int i = 0; i < t->n; i++) {
      conn *x = &t->conns[(t->cursor + i) % t->n];
      if (x->state == C_OPEN && x->inflight < cfg.pipeline) {
        c = x;
        t->cursor = (t->cursor + i + 1) % t->n;
        break;
      }
    }
    if (!c) { /* every connection is full: the backlog waits for a reply */
      t->blocked = 1;
      return;
    }
    queue_request(c, t_start + t->scheduled * t->interval);
    t->scheduled++;
    flush(c, now);
  }
}

static void on_reply(conn *c, int bad, uint64_t now) {
  thread *t = c->t;
  if (c->inflight == 0) { /* a reply nobody asked for: the stream is broken */
    t->mismatches++;
    conn_drop(c, now);
    return;
  }
  uint64_t at = c->sent_at[c->head];
  c->head = (c->head + 1) % cfg.pipeline;
  c->inflight--;
  c->progress_at = now;
  t->answered++;
  if (bad) {
    t->mismatches++;
  } else if (now >= t_measure && now < t_end) {
    t->window_ok++;
    hist_record(&t->hist, now > at ? now - at : 0);
  }
  if (cfg.hold) return;
  if (cfg.rate > 0) {
    /* every request of the schedule is sent, late if need be (and charged from its slot) */
    t->blocked = 0; /* a slot is free again */
    uint64_t due = (now - t_start) / t->interval + 1;
    if (due > t->due_limit) due = t->due_limit;
    if (t->scheduled < due) {
      queue_request(c, t_start + t->scheduled * t->interval);
      t->scheduled++;
    }
  } else if (sending(now)) {
    queue_request(c, now);
  }
}

/* Cut replies out of what arrived, comparing each with the expected body as it streams in. */
static int on_bytes(conn *c, const uint8_t *p, size_t n, uint64_t now) {
  while (n > 0) {
    if (c->hdr_got < 4) {
      c->hdr[c->hdr_got++] = *p++;
      n--;
      if (c->hdr_got < 4) continue;
      c->body_len = (uint32_t)c->hdr[0] << 24 | (uint32_t)c->hdr[1] << 16 | (uint32_t)c->hdr[2] << 8 | c->hdr[3];
      c->body_got = 0;
      c->body_bad = c->body_len != expected_len;
      if (c->body_len > MAX_FRAME) {
        c->t->mismatches++;
        c->t->lost += (uint64_t)(c->inflight > 0 ? c->inflight - 1 : 0);
        conn_drop(c, now);
        return -1;
      }
    }
    size_t m = c->body_len - c->body_got;
    if (m > n) m = n;
    if (!c->body_bad && m > 0 && memcmp(p, expected + c->body_got, m) != 0) c->body_bad = 1;
    c->body_got += (uint32_t)m;
    p += m;
    n -= m;
    if (c->body_got == c->body_len) {
      c->hdr_got = 0;
      on_reply(c, c->body_bad, now);
      if (c->state != C_OPEN) return -1;
    }
  }
  return 0;
}

static void on_connected(conn *c, uint64_t now) {
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    c->t->connect_errors++;
    conn_drop(c, now);
    c->retry_at = now + 100000000u;
    return;
  }
  c->state = C_OPEN;
  c->t->connected++;
  ep_mod(c, 0);
  /* a reconnect mid-run goes straight back to work */
  if (t_start != 0 && now >= t_start && sending(now) && cfg.rate == 0 && !cfg.hold) {
    for (int i = 0; i < cfg.pipeline; i++) queue_request(c, now);
    flush(c, now);
  }
}

static void on_event(conn *c, uint32_t events, uint64_t now) {
  thread *t = c->t;
  if (c->state == C_CONNECTING) {
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(c, now);
    return;
  }
  if (c->state != C_OPEN) return;
  if (events & EPOLLIN) {
    for (;;) {
      ssize_t r = read(c->fd, t->buf, READ_CHUNK);
      if (r > 0) {
        if (on_bytes(c, t->buf, (size_t)r, now) < 0) return;
        if (r < READ_CHUNK) break;
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      t->resets++; /* EOF or error: the server closed the connection */
      t->lost += (uint64_t)c->inflight;
      conn_drop(c, now);
      return;
    }
  } else if (events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
    t->resets++;
    t->lost += (uint64_t)c->inflight;
    conn_drop(c, now);
    return;
  }
  flush(c, now);
}

static int inflight_total(thread *t) {
  int n = 0;
  for (int i = 0; i < t->n; i++) n += t->conns[i].state == C_OPEN ? t->conns[i].inflight : 0;
  return n;
}

/* Housekeeping, every HOUSEKEEPING_NS: measured-window CPU marks, timeouts, reconnects. */
static void housekeeping(thread *t, uint64_t now) {
  if (!t->cpu_started && now >= t_measure) {
    t->cpu_start = cpu_seconds(RUSAGE_THREAD);
    t->cpu_started = 1;
  }
  if (!t->cpu_done && now >= t_end) {
    t->cpu_end = cpu_seconds(RUSAGE_THREAD);
    t->cpu_done = 1;
  }
  uint64_t limit = (uint64_t)(cfg.timeout * 1e9);
  for (int i = 0; i < t->n; i++) {
    conn *c = &t->conns[i];
    if (c->state == C_OPEN && c->inflight > 0 && now - c->progress_at > limit) {
      t->timeouts += (uint64_t)c->inflight;
      conn_drop(c, now);
    } else if (c->state == C_IDLE && sending(now) && now >= c->retry_at) {
      conn_open(c, now);
    }
  }
}

/*
 * When the thread's timer must fire next: the next housekeeping, or (open loop) the next
 * scheduled send, so requests leave on time rather than on a coarse tick. With every
 * connection full the backlog waits for replies instead (on_reply sends it).
 */
static uint64_t next_wake(thread *t, uint64_t now) {
  uint64_t next = t->next_housekeeping;
  if (cfg.rate > 0 && !t->blocked && t->scheduled < t->due_limit) {
    uint64_t at = t_start + t->scheduled * t->interval;
    if (at < now + MIN_WAKE_NS) at = now + MIN_WAKE_NS;
    if (at < next) next = at;
  }
  return next;
}

static void arm_timer(thread *t, uint64_t at) {
  struct itimerspec its = {.it_value = {.tv_sec = (time_t)(at / 1000000000u), .tv_nsec = (long)(at % 1000000000u)}};
  timerfd_settime(t->timer, TFD_TIMER_ABSTIME, &its, NULL);
  t->armed_at = at;
}

static void on_timer(thread *t, uint64_t now) {
  uint64_t expirations;
  if (read(t->timer, &expirations, sizeof expirations) < 0) {
    /* nothing to read: a spurious wake-up; the checks below are harmless */
  }
  if (now >= t->next_housekeeping) {
    housekeeping(t, now);
    t->next_housekeeping = now + HOUSEKEEPING_NS;
  }
  if (cfg.rate > 0 && !atomic_load(&aborted)) dispatch_due(t, now); /* due is capped at the schedule's end */
}

static void *thread_main(void *arg) {
  thread *t = arg;
  uint64_t now = now_ns();
  uint64_t connect_deadline = now + 5000000000u;
  for (int i = 0; i < t->n; i++) conn_open(&t->conns[i], now);
  struct epoll_event evs[MAX_EVENTS];
  /* connect everything before the common start */
  for (;;) {
    int pending = 0;
    for (int i = 0; i < t->n; i++) pending += t->conns[i].state == C_CONNECTING;
    now = now_ns();
    if (pending == 0 || now >= connect_deadline) break;
    int n = epoll_wait(t->ep, evs, MAX_EVENTS, 50);
    now = now_ns();
    for (int i = 0; i < n; i++)
      if (evs[i].data.ptr) on_event(evs[i].data.ptr, evs[i].events, now);
  }
  pthread_barrier_wait(&ready);
  pthread_barrier_wait(&go);
  if (atomic_load(&aborted)) return NULL;

  sleep_until(t_start);
  now = now_ns();
  t->next_housekeeping = now;
  if (cfg.rate == 0) {
    for (int i = 0; i < t->n; i++) {
      conn *c = &t->conns[i];
      if (c->state != C_OPEN) continue;
      for (int j = 0; j < cfg.pipeline; j++) queue_request(c, now);
      flush(c, now);
    }
  } else {
    dispatch_due(t, now);
  }
  arm_timer(t, next_wake(t, now));
  for (;;) {
    int n = epoll_wait(t->ep, evs, MAX_EVENTS, 100);
    for (int i = 0; i < n; i++) {
      now = now_ns(); /* per event: a reply's latency must not include the batch before it */
      if (evs[i].data.ptr) on_event(evs[i].data.ptr, evs[i].events, now);
      else on_timer(t, now);
    }
    now = now_ns();
    if (n == 0 && now >= t->next_housekeeping) on_timer(t, now);
    uint64_t wake = next_wake(t, now);
    if (wake < t->armed_at || t->armed_at <= now) arm_timer(t, wake);
    if (now >= t_end) {
      if (!t->cpu_done) housekeeping(t, now);
      if (inflight_total(t) == 0 && (cfg.rate == 0 || t->scheduled >= t->due_limit)) break;
      if (now >= t_drain_end) {
        /* never answered, or (open loop) never even sent: no free connection until the end */
        t->timeouts += (uint64_t)inflight_total(t) + (cfg.rate > 0 ? t->due_limit - t->scheduled : 0);
        break;
      }
    }
  }
  for (int i = 0; i < t->n; i++)
    if (t->conns[i].fd >= 0) close(t->conns[i].fd);
  return NULL;
}

/* ------------------------------------------------------------------ cold start: --hold */

/* Open cfg.hold connections (a few hundred at a time), one verified request each, and keep
 * them open until stdin closes: the caller weighs the server meanwhile. */
static int run_hold(void) {
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rlim_t need = (rlim_t)cfg.hold + 64;
  if (rl.rlim_max < need) rl.rlim_max = need; /* allowed as root; else setrlimit fails below */
  rl.rlim_cur = rl.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_max < need) {
      fprintf(stderr, "loadgen: --hold %d needs %lu file descriptors, the limit is %lu\n", cfg.hold, (unsigned long)need, (unsigned long)rl.rlim_max);
      return 2;
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  thread t = {0};
  t.ep = epoll_create1(EPOLL_CLOEXEC);
  t.buf = malloc(READ_CHUNK);
  t.n = cfg.hold;
  t.conns = calloc((size_t)cfg.hold, sizeof(conn));
  uint64_t *rings = calloc((size_t)cfg.hold, sizeof(uint64_t));
  if (!t.buf || !t.conns || !rings) die("out of memory");
  cfg.pipeline = 1;
  t_start = 1; /* "running": a reconnect would be wrong here, and sending() must hold */
  t_measure = 0;
  t_end = UINT64_MAX;
  for (int i = 0; i < t.n; i++) {
    t.conns[i].t = &t;
    t.conns[i].fd = -1;
    t.conns[i].sent_at = &rings[i];
  }
  const int WAVE = 256;
  uint64_t t0 = now_ns();
  uint64_t deadline = t0 + (uint64_t)(cfg.timeout * 1e9) + (uint64_t)cfg.hold * 2000000u;
  int next = 0, done = 0, opened = 0, failed = 0;
  int *busy = calloc((size_t)cfg.hold, sizeof(int)); /* 1 while connecting or awaiting its reply */
  int active = 0;
  struct epoll_event evs[MAX_EVENTS];
  while (done < t.n) {
    uint64_t now = now_ns();
    if (now >= deadline) break;
    while (active < WAVE && next < t.n) {
      conn *c = &t.conns[next];
      conn_open(c, now);
      if (c->state == C_IDLE) {
        failed++;
        done++;
      } else {
        busy[next] = 1;
        active++;
      }
      next++;
    }
    int n = epoll_wait(t.ep, evs, MAX_EVENTS, 100);
    now = now_ns();
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      int idx = (int)(c - t.conns);
      int was_connecting = c->state == C_CONNECTING;
      uint64_t answered = t.answered;
      on_event(c, evs[i].events, now);
      if (!busy[idx]) continue;
      if (was_connecting && c->state == C_OPEN) {
        queue_request(c, now);
        flush(c, now);
      }
      if (c->state == C_IDLE) {
        busy[idx] = 0;
        active--;
        failed++;
        done++;
      } else if (t.answered > answered) {
        busy[idx] = 0;
        active--;
        opened++;
        done++;
        epoll_ctl(t.ep, EPOLL_CTL_DEL, c->fd, NULL); /* held: nothing more to read */
      }
    }
  }
  failed += t.n - done;
  double ms = (double)(now_ns() - t0) / 1e6;
  printf("{\"generator\":\"loadgen\",\"mode\":\"hold\",\"target\":\"%s\",\"connections\":%d,\"opened\":%d,\"failed\":%d,"
         "\"mismatches\":%llu,\"connectErrors\":%llu,\"resets\":%llu,\"ms\":%.1f}\n",
         cfg.target, cfg.hold, opened, failed, (unsigned long long)t.mismatches, (unsigned long long)t.connect_errors, (unsigned long long)t.resets, ms);
  fflush(stdout);
  /* hold until the caller closes stdin (or a bound passes) */
  struct timeval tv = {.tv_sec = (time_t)cfg.hold_seconds, .tv_usec = 0};
  fd_set rd;
  uint8_t sink[256];
  uint64_t hold_end = now_ns() + (uint64_t)(cfg.hold_seconds * 1e9);
  for (;;) {
    FD_ZERO(&rd);
    FD_SET(0, &rd);
    int r = select(1, &rd, NULL, NULL, &tv);
    if (r <= 0 || now_ns() >= hold_end) break;
    if (read(0, sink, sizeof sink) <= 0) break;
  }
  for (int i = 0; i < t.n; i++)
    if (t.conns[i].fd >= 0) close(t.conns[i].fd);
  return failed == 0 && t.mismatches == 0 ? 0 : 1;
}

/* ------------------------------------------------------------------ options and output */

static const char *HELP =
    "Usage: loadgen [options] [HOST:]PORT     (HOST: 127.0.0.1 (default), localhost or ::1 / [::1])\n"
    "\n"
    "  -c, --connections N   connections (default 10)\n"
    "  -p, --pipeline N      requests in flight per connection (default 1; open loop: the most)\n"
    "  -t, --threads N       generator threads, each with its own epoll loop (default 1)\n"
    "  -d, --duration S      seconds measured (default 10)\n"
    "  -w, --warmup S        seconds of load before measuring (default 0)\n"
    "  -R, --rate R          open loop: R requests/s in total; latency from the scheduled send time\n"
    "  -s, --size BYTES      payload bytes (default 64)\n"
    "  -k, --k K             bench-protocol K: 0 = echo, else K chained SHA-256 (default 0)\n"
    "  -T, --timeout S       no reply for S seconds with requests in flight: timeouts, reconnect;\n"
    "                        also the most the final drain waits (default 5)\n"
    "      --hold N          cold start: open N connections, one request each, print one JSON\n"
    "                        line, hold them until stdin closes (at most --hold-seconds, 120)\n"
    "  -j, --json            one JSON object on stdout\n"
    "  -h, --help\n"
    "\n"
    "Exit status: 0 every reply verified; 1 mismatches, timeouts, resets or connect errors;\n"
    "2 bad options; 3 could not connect at all.\n";

static double num(const char *s, const char *what, double lo, double hi) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end != '\0' || !(v >= lo && v <= hi)) {
    fprintf(stderr, "loadgen: %s must be a number in [%g, %g], got \"%s\"\n", what, lo, hi, s);
    exit(2);
  }
  return v;
}

static void parse_target(const char *arg) {
  char host[64] = "127.0.0.1";
  const char *port = arg;
  const char *colon = strrchr(arg, ':');
  if (colon) {
    size_t hl = (size_t)(colon - arg);
    if (hl >= sizeof host) die("host too long");
    memcpy(host, arg, hl);
    host[hl] = '\0';
    port = colon + 1;
    if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
      memmove(host, host + 1, hl - 2);
      host[hl - 2] = '\0';
    }
  }
  int p = (int)num(port, "port", 1, 65535);
  memset(&cfg.addr, 0, sizeof cfg.addr);
  if (strcmp(host, "127.0.0.1") == 0 || strcmp(host, "localhost") == 0) {
    struct sockaddr_in *a = (struct sockaddr_in *)&cfg.addr;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)p);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cfg.addrlen = sizeof *a;
    snprintf(cfg.target, sizeof cfg.target, "127.0.0.1:%d", p);
  } else if (strcmp(host, "::1") == 0) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&cfg.addr;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)p);
    a->sin6_addr = in6addr_loopback;
    cfg.addrlen = sizeof *a;
    snprintf(cfg.target, sizeof cfg.target, "[::1]:%d", p);
  } else {
    fprintf(stderr, "loadgen: loopback only (127.0.0.1, localhost, ::1), got \"%s\"\n", host);
    exit(2);
  }
}

static void build_messages(void) {
  req_len = 8 + cfg.size;
  uint8_t *req = malloc(req_len);
  uint8_t *payload = req + 8;
  uint32_t body = (uint32_t)(4 + cfg.size);
  req[0] = (uint8_t)(body >> 24);
  req[1] = (uint8_t)(body >> 16);
  req[2] = (uint8_t)(body >> 8);
  req[3] = (uint8_t)body;
  req[4] = (uint8_t)(cfg.k >> 24);
  req[5] = (uint8_t)(cfg.k >> 16);
  req[6] = (uint8_t)(cfg.k >> 8);
  req[7] = (uint8_t)cfg.k;
  for (size_t i = 0; i < cfg.size; i++) payload[i] = (uint8_t)('a' + (i * 7 + i / 26) % 26);
  if (cfg.k == 0) {
    expected = payload;
    expected_len = (uint32_t)cfg.size;
  } else {
    expected = malloc(32);
    sha256_chain(payload, cfg.size, cfg.k, expected);
    expected_len = 32;
  }
  blob_len = req_len * (size_t)cfg.pipeline;
  req_blob = malloc(blob_len);
  if (!req_blob || !expected) die("out of memory");
  for (int i = 0; i < cfg.pipeline; i++) memcpy(req_blob + req_len * (size_t)i, req, req_len);
}

/* The reference vectors of shared/bench-protocol.md: a wrong SHA-256 must not measure anything. */
static void self_test(void) {
  static const char *p = "i am spiderman.";
  static const uint8_t k1[32] = {0xd6, 0x9f, 0xc9, 0x59, 0xdd, 0x3e, 0x23, 0xab, 0xac, 0x25, 0xfc, 0x9a, 0x7f, 0xee, 0x91, 0xae,
                                 0xf9, 0xfa, 0xd2, 0x4b, 0xfb, 0x16, 0x22, 0x27, 0x65, 0x4b, 0xca, 0x21, 0x76, 0x4c, 0x5b, 0x7d};
  static const uint8_t k2[32] = {0x3a, 0x1a, 0xf3, 0xef, 0x2f, 0xa6, 0xa9, 0xf5, 0x73, 0x27, 0x7f, 0xeb, 0x8a, 0x61, 0x65, 0x5a,
                                 0xe5, 0xd3, 0x14, 0x99, 0xd5, 0xe7, 0xbc, 0x80, 0xdf, 0xc5, 0x90, 0x04, 0x08, 0x27, 0x87, 0xac};
  uint8_t d[32];
  sha256_chain((const uint8_t *)p, 15, 1, d);
  if (memcmp(d, k1, 32) != 0) die("SHA-256 self-test failed (K=1)");
  sha256_chain((const uint8_t *)p, 15, 2, d);
  if (memcmp(d, k2, 32) != 0) die("SHA-256 self-test failed (K=2)");
}

int main(int argc, char **argv) {
  static struct option longs[] = {
      {"connections", required_argument, 0, 'c'}, {"pipeline", required_argument, 0, 'p'}, {"threads", required_argument, 0, 't'},
      {"duration", required_argument, 0, 'd'},    {"warmup", required_argument, 0, 'w'},   {"rate", required_argument, 0, 'R'},
      {"size", required_argument, 0, 's'},        {"k", required_argument, 0, 'k'},        {"timeout", required_argument, 0, 'T'},
      {"hold", required_argument, 0, 'H'},        {"hold-seconds", required_argument, 0, 'S'}, {"json", no_argument, 0, 'j'},
      {"help", no_argument, 0, 'h'},              {0, 0, 0, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "c:p:t:d:w:R:s:k:T:jh", longs, NULL)) != -1) {
    switch (o) {
      case 'c': cfg.conns = (int)num(optarg, "--connections", 1, 100000); break;
      case 'p': cfg.pipeline = (int)num(optarg, "--pipeline", 1, 100000); break;
      case 't': cfg.threads = (int)num(optarg, "--threads", 1, 256); break;
      case 'd': cfg.duration = num(optarg, "--duration", 0.01, 86400); break;
      case 'w': cfg.warmup = num(optarg, "--warmup", 0, 3600); break;
      case 'R': cfg.rate = num(optarg, "--rate", 0, 1e8); break;
      case 's': cfg.size = (size_t)num(optarg, "--size", 0, 16 << 20); break;
      case 'k': cfg.k = (uint32_t)num(optarg, "--k", 0, 1e8); break;
      case 'T': cfg.timeout = num(optarg, "--timeout", 0.01, 3600); break;
      case 'H': cfg.hold = (int)num(optarg, "--hold", 1, 1000000); break;
      case 'S': cfg.hold_seconds = num(optarg, "--hold-seconds", 0.1, 3600); break;
      case 'j': cfg.json = 1; break;
      case 'h': fputs(HELP, stdout); return 0;
      default: fputs(HELP, stderr); return 2;
    }
  }
  if (optind != argc - 1) {
    fputs("loadgen: exactly one [HOST:]PORT is needed\n", stderr);
    fputs(HELP, stderr);
    return 2;
  }
  parse_target(argv[optind]);
  self_test();
  if (cfg.threads > cfg.conns) cfg.threads = cfg.conns;
  build_messages();
  if (cfg.hold > 0) return run_hold();

  {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)cfg.conns + 64) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
    }
  }
  thread *ts = calloc((size_t)cfg.threads, sizeof(thread));
  pthread_barrier_init(&ready, NULL, (unsigned)cfg.threads + 1);
  pthread_barrier_init(&go, NULL, (unsigned)cfg.threads + 1);
  double rate_per_thread = cfg.rate / cfg.threads;
  for (int i = 0; i < cfg.threads; i++) {
    thread *t = &ts[i];
    t->n = cfg.conns / cfg.threads + (i < cfg.conns % cfg.threads);
    t->conns = calloc((size_t)t->n, sizeof(conn));
    uint64_t *rings = calloc((size_t)t->n * (size_t)cfg.pipeline, sizeof(uint64_t));
    t->buf = malloc(READ_CHUNK);
    t->ep = epoll_create1(EPOLL_CLOEXEC);
    t->timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (!t->conns || !rings || !t->buf || t->ep < 0 || t->timer < 0) die("out of memory or descriptors");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(t->ep, EPOLL_CTL_ADD, t->timer, &ev);
    for (int j = 0; j < t->n; j++) {
      t->conns[j].t = t;
      t->conns[j].fd = -1;
      t->conns[j].sent_at = rings + (size_t)j * (size_t)cfg.pipeline;
    }
    if (cfg.rate > 0) {
      t->interval = (uint64_t)(1e9 / rate_per_thread);
      if (t->interval == 0) t->interval = 1;
      t->due_limit = (uint64_t)((cfg.warmup + cfg.duration) * rate_per_thread + 0.5);
    }
    pthread_create(&t->id, NULL, thread_main, t);
  }
  pthread_barrier_wait(&ready);
  int connected = 0;
  for (int i = 0; i < cfg.threads; i++) connected += ts[i].connected;
  if (connected == 0) atomic_store(&aborted, 1);
  struct timespec wall;
  clock_gettime(CLOCK_REALTIME, &wall);
  t_start = now_ns() + 20000000u; /* 20 ms: every thread is past the barrier by then */
  double started_at_ms = (double)wall.tv_sec * 1e3 + wall.tv_nsec / 1e6 + 20;
  t_measure = t_start + (uint64_t)(cfg.warmup * 1e9);
  t_end = t_measure + (uint64_t)(cfg.duration * 1e9);
  t_drain_end = t_end + (uint64_t)(cfg.timeout * 1e9);
  pthread_barrier_wait(&go);
  if (atomic_load(&aborted)) {
    fprintf(stderr, "loadgen: could not connect to %s\n", cfg.target);
    return 3;
  }
  sleep_until(t_measure);
  double cpu0 = cpu_seconds(RUSAGE_SELF);
  uint64_t w0 = now_ns();
  sleep_until(t_end);
  double cpu1 = cpu_seconds(RUSAGE_SELF);
  uint64_t w1 = now_ns();
  for (int i = 0; i < cfg.threads; i++) pthread_join(ts[i].id, NULL);

  histogram *h = calloc(1, sizeof(histogram));
  uint64_t sent = 0, answered = 0, ok = 0, mism = 0, tmo = 0, rst = 0, cerr = 0, lost = 0;
  double thread_cpu_max = 0;
  for (int i = 0; i < cfg.threads; i++) {
    thread *t = &ts[i];
    hist_merge(h, &t->hist);
    sent += t->sent;
    answered += t->answered;
    ok += t->window_ok;
    mism += t->mismatches;
    tmo += t->timeouts;
    rst += t->resets;
    cerr += t->connect_errors;
    lost += t->lost;
  }
  double window = (double)(w1 - w0) / 1e9;
  double cpu_pct = (cpu1 - cpu0) / window * 100;
  double rps = (double)ok / cfg.duration;
  uint64_t errors = mism + tmo + rst + cerr;
  const double ms = 1e6;
  if (cfg.json) {
    printf("{\"generator\":\"loadgen\",\"target\":\"%s\",\"connections\":%d,\"pipeline\":%d,\"threads\":%d,\"size\":%zu,\"k\":%u,"
           "\"rate\":%g,\"warmup\":%g,\"duration\":%g,\"startedAtMs\":%.0f,",
           cfg.target, cfg.conns, cfg.pipeline, cfg.threads, cfg.size, cfg.k, cfg.rate, cfg.warmup, cfg.duration, started_at_ms);
    printf("\"requests\":{\"total\":%llu,\"perSecond\":%.1f,\"sent\":%llu,\"answered\":%llu},", (unsigned long long)ok, rps,
           (unsigned long long)sent, (unsigned long long)answered);
    printf("\"latency\":{\"count\":%llu,\"min\":%.4f,\"mean\":%.4f,\"p50\":%.4f,\"p90\":%.4f,\"p99\":%.4f,\"p99_9\":%.4f,\"max\":%.4f},",
           (unsigned long long)h->count, h->min / ms, h->count ? h->sum / (double)h->count / ms : 0, hist_quantile(h, 0.5) / ms,
           hist_quantile(h, 0.9) / ms, hist_quantile(h, 0.99) / ms, hist_quantile(h, 0.999) / ms, h->max / ms);
    printf("\"errors\":{\"total\":%llu,\"mismatches\":%llu,\"timeouts\":%llu,\"resets\":%llu,\"connectErrors\":%llu,\"lost\":%llu},",
           (unsigned long long)errors, (unsigned long long)mism, (unsigned long long)tmo, (unsigned long long)rst, (unsigned long long)cerr,
           (unsigned long long)lost);
    printf("\"cpu\":{\"percent\":%.1f,\"threads\":[", cpu_pct);
  } else {
    printf("loadgen %s: %d connections x %d %s, %d thread%s, %zu B payload, K=%u, %g s (+%g s warm-up)\n", cfg.target, cfg.conns,
           cfg.pipeline, cfg.rate > 0 ? "in flight at most" : "pipelined", cfg.threads, cfg.threads > 1 ? "s" : "", cfg.size, cfg.k,
           cfg.duration, cfg.warmup);
    if (cfg.rate > 0) printf("  open loop at %g req/s (latency from the scheduled send time)\n", cfg.rate);
    printf("  %.1f req/s verified (%llu in the window; %llu sent, %llu answered in all)\n", rps, (unsigned long long)ok,
           (unsigned long long)sent, (unsigned long long)answered);
    printf("  latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n", hist_quantile(h, 0.5) / ms, hist_quantile(h, 0.9) / ms,
           hist_quantile(h, 0.99) / ms, hist_quantile(h, 0.999) / ms, h->max / ms);
    printf("  errors: %llu (mismatches %llu, timeouts %llu, resets %llu, connect errors %llu, lost %llu)\n", (unsigned long long)errors,
           (unsigned long long)mism, (unsigned long long)tmo, (unsigned long long)rst, (unsigned long long)cerr, (unsigned long long)lost);
    printf("  generator CPU: %.0f%% of one core; per thread:", cpu_pct);
  }
  for (int i = 0; i < cfg.threads; i++) {
    thread *t = &ts[i];
    double pct = t->cpu_started && t->cpu_done ? (t->cpu_end - t->cpu_start) / window * 100 : 0;
    if (pct > thread_cpu_max) thread_cpu_max = pct;
    printf(cfg.json ? "%s%.1f" : "%s %.0f%%", i && cfg.json ? "," : "", pct);
  }
  int saturated = thread_cpu_max >= SATURATED_PERCENT || cpu_pct / cfg.threads >= SATURATED_PERCENT;
  if (cfg.json) {
    printf("],\"saturated\":%s}}\n", saturated ? "true" : "false");
  } else {
    printf("\n%s", saturated ? "  WARNING: the generator used >= 90% of a core: it may be the bottleneck\n" : "");
  }
  return errors == 0 && ok > 0 ? 0 : 1;
}

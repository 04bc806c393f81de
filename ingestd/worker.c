/* worker — the epoll loop: accept, read, publish, acks, timers, shutdown. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "common/clock.h"
#include "common/fault.h"
#include "common/log.h"
#include "ingestd/ingestd.h"
#include "shm/atomic.h"

extern volatile int ingestd_stop, ingestd_reload;

#define TAG_LISTEN ((uint64_t)-1)
#define TAG_EVENT ((uint64_t)-2)
#define TAG_UDP ((uint64_t)-3)

int addr_resolve(const char *key, const char *addr, int socktype, struct addrinfo **ret, char *err,
		 size_t errlen)
{
	char host[128];
	const char *colon = strrchr(addr, ':');
	if (!colon || colon == addr) {
		snprintf(err, errlen, "[server] %s = '%s': expected host:port", key, addr);
		return -EINVAL;
	}
	size_t hl = (size_t)(colon - addr);
	if (hl >= sizeof(host))
		hl = sizeof(host) - 1;
	memcpy(host, addr, hl);
	host[hl] = 0;
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = 0;
	}
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = socktype, .ai_flags = AI_PASSIVE };
	int r = getaddrinfo(host, colon + 1, &hints, ret);
	if (r) {
		snprintf(err, errlen, "[server] %s = '%s': %s", key, addr, gai_strerror(r));
		return -EINVAL;
	}
	return 0;
}

static int listen_on(const char *addr, char *err, size_t errlen)
{
	struct addrinfo *ai;
	int r = addr_resolve("listen", addr, SOCK_STREAM, &ai, err, errlen);
	if (r < 0)
		return r;
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
		r = -errno;
		snprintf(err, errlen, "listen on %s: %s", addr, strerror(-r));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return r;
	}
	freeaddrinfo(ai);
	return fd;
}

static void reap(struct worker *w, struct conn *c)
{
	w->conns[c->fd] = NULL;
	close(c->fd);
	mi_dec_reset(&c->dec);
	pool_put(w->pool, c->wbuf, c->wcap);
	pool_put(w->pool, c->line, c->line_cap);
	free(c);
}

void conn_close(struct worker *w, struct conn *c, const char *why)
{
	if (c->state == CS_CLOSING)
		return;
	if (why) {
		char peer[64];
		log_debug("%s: closed: %s", conn_peer(c, peer, sizeof(peer)), why);
	}
	c->state = CS_CLOSING;
	ack_untrack(w, c);
	session_end(w, c);
	/* still on the ready list: freed when the list is walked */
	if (!c->in_ready_list)
		reap(w, c);
	else
		epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
	w->nconns--;
	shm_store_relaxed(&w->ctr[IC_CONN_OPEN], w->nconns);
}

static void accept_all(struct worker *w)
{
	for (;;) {
		struct sockaddr_in6 sa;
		socklen_t sl = sizeof(sa);
		memset(&sa, 0, sizeof(sa));
		int fd = accept4(w->lfd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE)
				log_warn("accept on %s: %s (raise the fd limit or lower max_connections)",
					 w->s->listen, strerror(errno));
			return;
		}
		shm_count(&w->ctr[IC_CONN_ACCEPTED], 1);
		if (w->nconns >= (uint64_t)w->s->max_connections || fd >= w->nconns_max_fd) {
			shm_count(&w->ctr[IC_CONN_REFUSED], 1);
			close(fd);
			continue;
		}
		struct conn *c = calloc(1, sizeof(*c));
		if (!c) {
			shm_count(&w->ctr[IC_CONN_REFUSED], 1);
			close(fd);
			continue;
		}
		if (sa.sin6_family == AF_INET) {
			/* keep one form: v4 as v4-mapped v6 */
			struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)&sa;
			struct sockaddr_in6 m = { .sin6_family = AF_INET6, .sin6_port = s4->sin_port };
			m.sin6_addr.s6_addr[10] = m.sin6_addr.s6_addr[11] = 0xff;
			memcpy(&m.sin6_addr.s6_addr[12], &s4->sin_addr, 4);
			sa = m;
		}
		if (filter_banned(w, &sa.sin6_addr)) {
			/* without eBPF the SYN got through: refuse here (with eBPF
			 * the kernel's ban map decides, so an operator can lift a
			 * ban by deleting its key) */
			shm_count(&w->ctr[IC_BANNED_ACCEPTS], 1);
			free(c);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->slot = -1;
		c->peer = sa;
		c->state = CS_NEW;
		c->last_active_ms = c->accepted_ms = w->now_ms;
		mi_dec_init(&c->dec, w->pool, (uint32_t)w->s->max_frame);
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u64 = (uint64_t)fd };
		if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			free(c);
			close(fd);
			continue;
		}
		w->conns[fd] = c;
		w->nconns++;
		shm_store_relaxed(&w->ctr[IC_CONN_OPEN], w->nconns);
		/* bytes may already be queued: edge-triggered, so look now */
		conn_on_readable(w, c);
	}
}

/* Connections with input left over: the per-pass budget ran out or the
 * ring had no room.  Retried each pass; the rest are kept for later. */
static void run_ready(struct worker *w)
{
	struct conn *c = w->ready_head, *next;
	w->ready_head = NULL;
	for (; c; c = next) {
		next = c->ready_next;
		c->in_ready_list = 0;
		if (c->state == CS_CLOSING) {
			reap(w, c);
			continue;
		}
		conn_on_readable(w, c);
	}
}

static void publish(struct worker *w)
{
	if (w->ring.head != w->published) {
		w->published = ring_publish(&w->ring);
		fault_point("ingestd.after_publish");
		futex_seq_signal(&w->ctl->work);
	}
}

/* Idle connections, and connections without a session handshake_timeout_ms
 * after accept: PINGs must not let a peer without a key hold a slot. */
static void idle_scan(struct worker *w)
{
	for (int fd = 0; fd < w->nconns_max_fd; fd++) {
		struct conn *c = w->conns[fd];
		if (c && (c->state == CS_NEW || c->state == CS_AWAIT_HELLO || c->state == CS_AWAIT_AUTH) &&
		    w->now_ms - c->accepted_ms > (uint64_t)w->s->handshake_timeout_ms) {
			if (c->state != CS_NEW)   /* it sent something: a failed handshake */
				filter_failure(w, &c->peer.sin6_addr);
			shm_count(&w->ctr[IC_HANDSHAKE_TIMEOUTS], 1);
			conn_close(w, c, "no session within [server] handshake_timeout_ms of connecting");
			continue;
		}
		if (w->s->idle_timeout_ms > 0 && c && c->state != CS_CLOSING &&
		    w->now_ms - c->last_active_ms > (uint64_t)w->s->idle_timeout_ms && !c->in_ack_list) {
			shm_count(&w->ctr[IC_CONN_IDLE_CLOSED], 1);
			conn_close(w, c, "idle timeout");
		}
	}
}

/* Sockets are bound, filters loaded and attached, shm mapped: nothing
 * left needs root.  Supplementary groups first, then gid, then uid. */
static int drop_privileges(const char *user, char *err, size_t errlen)
{
	struct passwd *pw = getpwnam(user);
	if (!pw) {
		snprintf(err, errlen, "[server] user = '%s': no such user", user);
		return -ENOENT;
	}
	if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		int e = errno;
		snprintf(err, errlen, "[server] user = '%s': cannot switch to it: %s", user, strerror(e));
		return -e;
	}
	log_info("running as %s (uid %u)", user, (unsigned)pw->pw_uid);
	return 0;
}

static int setup(struct worker *w)
{
	char err[256];
	int r;
	struct rlimit rl;
	uint64_t want = (uint64_t)w->s->max_connections + 64;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
		rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < want)
			log_warn("fd limit %llu is below max_connections %lld; connections beyond it are refused",
				 (unsigned long long)rl.rlim_cur, (long long)w->s->max_connections);
	}
	w->nconns_max_fd = (int)(getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 1024);
	w->conns = calloc((size_t)w->nconns_max_fd, sizeof(*w->conns));
	w->by_slot = calloc(w->ctl->ndevices, sizeof(*w->by_slot));
	w->rbuf = malloc(READ_MAX);
	w->open_buf = w->keys_mode ? malloc(w->s->max_frame) : NULL;
	w->pool = pool_new();
	if (!w->conns || !w->by_slot || !w->rbuf || !w->pool || (w->keys_mode && !w->open_buf)) {
		log_error("out of memory for %d connection slots", w->nconns_max_fd);
		return -ENOMEM;
	}
	w->lfd = listen_on(w->s->listen, err, sizeof(err));
	if (w->lfd < 0) {
		log_error("%s", err);
		return w->lfd;
	}
	w->ep = epoll_create1(EPOLL_CLOEXEC);
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_LISTEN };
	struct epoll_event ev2 = { .events = EPOLLIN, .data.u64 = TAG_EVENT };
	if (w->ep < 0 || w->efd < 0 || epoll_ctl(w->ep, EPOLL_CTL_ADD, w->lfd, &ev) < 0 ||
	    epoll_ctl(w->ep, EPOLL_CTL_ADD, w->efd, &ev2) < 0) {
		log_error("epoll setup: %s", strerror(errno));
		return -errno;
	}
	if (strcmp(w->s->udp_listen, "off")) {
		const char *ua = w->s->udp_listen[0] ? w->s->udp_listen : w->s->listen;
		w->udp_fd = udp_open(w, ua, err, sizeof(err));
		if (w->udp_fd < 0) {
			log_error("%s", err);
			return w->udp_fd;
		}
		struct epoll_event ev3 = { .events = EPOLLIN, .data.u64 = TAG_UDP };
		if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->udp_fd, &ev3) < 0) {
			log_error("epoll setup: %s", strerror(errno));
			return -errno;
		}
	}
	filter_setup(w);
	shm_store_relaxed(&w->ctr[IC_FILTER_MODE], (uint64_t)w->filter_mode);
	if (w->s->user[0] && (r = drop_privileges(w->s->user, err, sizeof(err))) < 0) {
		log_error("%s", err);
		return r;
	}
	if ((r = ack_start(w)) < 0)
		return r;   /* it said why */
	return 0;
}

static void close_all(struct worker *w)
{
	for (int fd = 0; w->conns && fd < w->nconns_max_fd; fd++)
		if (w->conns[fd]) {
			struct conn *c = w->conns[fd];
			if (c->state != CS_CLOSING)
				conn_close(w, c, NULL);
			if (w->conns[fd])
				reap(w, c);
		}
}

static void teardown(struct worker *w)
{
	if (w->rbuf)
		ack_stop(w);
	close_all(w);
	if (w->lfd >= 0)
		close(w->lfd);
	if (w->ep >= 0)
		close(w->ep);
	if (w->efd >= 0)
		close(w->efd);
	if (w->udp_fd >= 0)
		close(w->udp_fd);
	filter_close(w);
	free(w->udp_buf);
	free(w->conns);
	free(w->by_slot);
	free(w->rbuf);
	if (w->open_buf)
		sodium_memzero(w->open_buf, w->s->max_frame);
	free(w->open_buf);
	pool_free(w->pool);
}

enum { EV_DURABLE = 1, EV_WORK = 2 };

/* The UDP socket is level-triggered: left unread for want of ring room it
 * would wake the loop at once, forever.  So it leaves the interest set
 * until flusherd's next publication frees space. */
static void udp_interest(struct worker *w, int on)
{
	struct epoll_event ev = { .events = on ? EPOLLIN : 0, .data.u64 = TAG_UDP };
	if (epoll_ctl(w->ep, EPOLL_CTL_MOD, w->udp_fd, &ev) < 0)
		return;   /* cannot fail on a registered fd: stay as it was */
	if (!on)
		shm_count(&w->ctr[IC_RING_FULL_STALLS], 1);
	w->udp_paused = !on;
}

/* One epoll batch: accepts, UDP, durable wake-ups, socket I/O.  Returns
 * EV_* bits (the fuzz harness drives this too). */
static int handle_events(struct worker *w, const struct epoll_event *evs, int n)
{
	int r = 0;
	for (int i = 0; i < n; i++) {
		uint64_t tag = evs[i].data.u64;
		if (tag == TAG_LISTEN) {
			if (!ingestd_stop)
				accept_all(w);
			r |= EV_WORK;
			continue;
		}
		if (tag == TAG_UDP) {
			if (!ingestd_stop && udp_on_readable(w) == -ENOBUFS)
				udp_interest(w, 0);
			r |= EV_WORK;
			continue;
		}
		if (tag == TAG_EVENT) {
			uint64_t v;
			if (read(w->efd, &v, sizeof(v)) < 0) { /* EAGAIN: already drained */ }
			r |= EV_DURABLE | EV_WORK;
			continue;
		}
		struct conn *c = w->conns[tag];
		if (!c || c->state == CS_CLOSING)
			continue;
		if (evs[i].events & EPOLLOUT) {
			if (c->wlen)
				r |= EV_WORK;
			conn_on_writable(w, c);
			if (w->conns[tag] != c)
				continue;   /* a failed flush closed it: c is freed */
		}
		if (c->state != CS_CLOSING && !ingestd_stop &&
		    (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
			r |= EV_WORK;
			conn_on_readable(w, c);
		}
	}
	return r;
}

int worker_run(struct worker *w)
{
	struct epoll_event evs[512];
	int r;
	w->lfd = w->ep = w->efd = w->udp_fd = -1;
	w->max_rec = rec_size(MI_DEVID_MAX, (uint32_t)w->s->max_frame);
	ring_prod_attach(&w->ring, shm_ring_hdr(w->ctl, w->ring_id));
	w->published = w->ring.head;
	if ((r = setup(w)) < 0) {
		teardown(w);
		return MI_EXIT_STARTUP;   /* listening failed: restarting cannot help */
	}
	log_info("listening on %s, UDP %s (ring %u, %llu bytes; max_frame %llu; ndjson %s)", w->s->listen,
		 w->udp_fd < 0 ? "off" : (w->s->udp_listen[0] ? w->s->udp_listen : w->s->listen), w->ring_id,
		 (unsigned long long)w->ring.cap, (unsigned long long)w->s->max_frame, w->s->ndjson ? "on" : "off");
	uint64_t last_tick = 0, stop_deadline = 0;
	for (;;) {
		/* input left over: go again at once, unless it waits for ring
		 * space, which only flusherd's next publication brings */
		int n = epoll_wait(w->ep, evs, 512, w->ready_head && !w->ring_full ? 0 : 200);
		w->now_ms = clock_mono_ns() / 1000000;
		w->now_ns = clock_real_ns();
		int durable_moved = handle_events(w, evs, n) & EV_DURABLE;
		durable_moved |= ack_poll(w, durable_moved);
		if (ingestd_reload) {
			ingestd_reload = 0;
			auth_reload(w);
		}
		if (durable_moved) {
			w->ring_full = 0;
			if (w->udp_paused)
				udp_interest(w, 1);
		}
		if (!ingestd_stop && w->ready_head && !w->ring_full)
			run_ready(w);
		publish(w);
		if (durable_moved || w->ack_scan)
			ack_scan(w);
		if (w->now_ms - last_tick >= 1000) {
			last_tick = w->now_ms;
			shm_stage_heartbeat(w->ctl, STAGE_INGESTD);
			struct pool_stats ps;
			pool_stats(w->pool, &ps);
			shm_store_relaxed(&w->ctr[IC_POOL_BYTES], ps.bytes_reserved);
			idle_scan(w);
			filter_tick(w);
		}
		if (ingestd_stop) {
			if (!stop_deadline) {
				/* stop taking input; give flusherd a moment to make the
				 * last frames durable so their acks go out */
				stop_deadline = w->now_ms + 3000;
				epoll_ctl(w->ep, EPOLL_CTL_DEL, w->lfd, NULL);
				close(w->lfd);
				w->lfd = -1;
				log_info("stopping: no new input, waiting up to 3 s for pending acks");
			}
			if (!w->ack_head || w->now_ms > stop_deadline)
				break;
		}
	}
	teardown(w);
	log_info("stopped");
	return 0;
}

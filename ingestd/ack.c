/* ack — cumulative, coalesced ACKs driven by flusherd's durable futex.
 *
 * A connection's ACK is min(device's last_durable, highest seq it sent):
 * seqs are strictly increasing per device and a device has one live
 * session, so a durable seq covers every lower seq the connection sent.
 * No per-frame bookkeeping: one list of connections still owed an ACK.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "ingestd/ingestd.h"
#include "shm/atomic.h"
#include "shm/devtab.h"

/* Thread mode: turns every durable publication (and a 100 ms tick) into an
 * eventfd wake-up of the epoll loop, for kernels whose io_uring cannot wait
 * on a futex. */
static void *notifier(void *arg)
{
	struct worker *w = arg;
	uint32_t last = __atomic_load_n(&w->ctl->durable.seq, __ATOMIC_ACQUIRE);
	while (!__atomic_load_n(&w->stopping, __ATOMIC_ACQUIRE)) {
		uint32_t seen = futex_seq_enter(&w->ctl->durable);
		if (seen != last)
			futex_seq_leave(&w->ctl->durable);
		else
			futex_seq_wait(&w->ctl->durable, seen, 100 * 1000 * 1000ull);
		last = __atomic_load_n(&w->ctl->durable.seq, __ATOMIC_ACQUIRE);
		uint64_t one = 1;
		if (write(w->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			break;
	}
	return NULL;
}

static int start_thread(struct worker *w)
{
	int r = pthread_create(&w->notifier, NULL, notifier, w);
	if (r)
		return -r;
	w->ack_thread = 1;
	return 0;
}

/* io_uring mode: one futex wait queued at a time, announced in the waiter
 * count like any sleeper so flusherd's signal wakes it. */
static int uring_arm(struct worker *w)
{
	uint32_t seen = futex_seq_enter(&w->ctl->durable);
	int r = futex_poll_arm(&w->fpoll, &w->ctl->durable.seq, seen);
	if (r < 0)
		futex_seq_leave(&w->ctl->durable);
	return r;
}

static void uring_close(struct worker *w)
{
	if (w->fpoll.armed)
		futex_seq_leave(&w->ctl->durable);
	futex_poll_close(&w->fpoll);
	w->ack_uring = 0;
}

int ack_start(struct worker *w)
{
	const char *mode = w->s->ack_wakeup;
	char why[96] = "[server] ack_wakeup = thread";
	w->dur_seen = __atomic_load_n(&w->ctl->durable.seq, __ATOMIC_ACQUIRE);
	if (strcmp(mode, "thread")) {
		int r = futex_poll_open(&w->fpoll, w->efd);
		if (r == 0) {
			w->ack_uring = 1;
			if ((r = uring_arm(w)) == 0) {
				log_info("durable wake-ups: io_uring futex wait");
				return 0;
			}
			uring_close(w);
		}
		if (!strcmp(mode, "io_uring")) {
			log_error("[server] ack_wakeup = io_uring: this kernel cannot (%s)", strerror(-r));
			return r;
		}
		snprintf(why, sizeof(why), "io_uring futex wait: %s", strerror(-r));
	}
	int r = start_thread(w);
	if (r < 0)
		log_error("durable wake-ups: notifier thread: %s", strerror(-r));
	else
		log_info("durable wake-ups: notifier thread (%s)", why);
	return r;
}

int ack_poll(struct worker *w, int fired)
{
	if (w->ack_uring && fired) {
		int r = futex_poll_reap(&w->fpoll);
		if (r != 0 && !w->fpoll.armed)
			futex_seq_leave(&w->ctl->durable);   /* the wait is over, well or not */
		if (r == 1)
			r = uring_arm(w);
		if (r < 0) {
			log_warn("durable wake-ups: io_uring failed (%s); a notifier thread takes over", strerror(-r));
			uring_close(w);
			if ((r = start_thread(w)) < 0)
				log_error("notifier thread: %s; acks follow the 200 ms tick", strerror(-r));
		}
	}
	/* a flusherd killed between its publication and its FUTEX_WAKE wakes
	 * nobody: the sequence still tells */
	uint32_t now = __atomic_load_n(&w->ctl->durable.seq, __ATOMIC_ACQUIRE);
	int moved = now != w->dur_seen;
	w->dur_seen = now;
	return moved;
}

void ack_stop(struct worker *w)
{
	if (w->ack_uring)
		uring_close(w);
	if (!w->ack_thread)
		return;
	__atomic_store_n(&w->stopping, 1, __ATOMIC_RELEASE);
	futex_wake(&w->ctl->durable.seq, 1 << 30);
	pthread_join(w->notifier, NULL);
	w->ack_thread = 0;
}

void ack_track(struct worker *w, struct conn *c)
{
	if (c->in_ack_list)
		return;
	c->in_ack_list = 1;
	c->ack_prev = NULL;
	c->ack_next = w->ack_head;
	if (w->ack_head)
		w->ack_head->ack_prev = c;
	w->ack_head = c;
	w->ack_scan = 1;
}

void ack_untrack(struct worker *w, struct conn *c)
{
	if (!c->in_ack_list)
		return;
	if (c->ack_prev)
		c->ack_prev->ack_next = c->ack_next;
	else
		w->ack_head = c->ack_next;
	if (c->ack_next)
		c->ack_next->ack_prev = c->ack_prev;
	c->ack_next = c->ack_prev = NULL;
	c->in_ack_list = 0;
}

void ack_scan(struct worker *w)
{
	struct conn *c = w->ack_head, *next;
	for (; c; c = next) {
		next = c->ack_next;
		if (c->slot < 0) {
			ack_untrack(w, c);
			continue;
		}
		struct shm_dev *d = shm_dev(w->ctl, (uint32_t)c->slot);
		uint64_t dur = shm_load_acquire(&d->last_durable);
		uint64_t to = dur < c->hi_seq ? dur : c->hi_seq;
		if (to > c->acked_seq || (c->ack_again && c->acked_seq)) {
			uint8_t buf[MI_HDR_LEN];
			if (to < c->acked_seq)
				to = c->acked_seq;
			mi_frame_build(buf, sizeof(buf), MI_ACK, 0, 0, to, 0, NULL, 0);
			c->acked_seq = to;
			c->ack_again = 0;
			shm_count(&w->ctr[IC_ACKS_SENT], 1);
			if (conn_send(w, c, buf, sizeof(buf)) < 0)
				continue;   /* closed: no longer in the list */
		}
		if (c->acked_seq >= c->hi_seq) {
			ack_untrack(w, c);
			if (c->eof)
				conn_close(w, c, NULL);
		}
	}
	w->ack_scan = 0;
}

/* test_futex — shared futex wait/wake and the futex_seq protocol (shm/futex.h).
 *
 * Cross-process tests use a MAP_SHARED anonymous page inherited over fork:
 * a private (FUTEX_PRIVATE_FLAG) futex would never wake the other process.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "shm/atomic.h"
#include "shm/futex.h"

#define MS (1000000ull)
#define SEC (1000000000ull)

struct shared {
	struct futex_seq a, b;
	uint32_t word;
	uint32_t pad_;
	uint64_t x;
	uint64_t child_timeouts;
};

static int setup(void **state)
{
	void *p = mmap(NULL, sizeof(struct shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	memset(p, 0, sizeof(struct shared));
	*state = p;
	return 0;
}

static int teardown(void **state)
{
	return munmap(*state, sizeof(struct shared));
}

static pid_t fork_child(void)
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	return pid;
}

static void assert_child_ok(pid_t pid)
{
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = clock_ts_from_ns(ns);
	nanosleep(&ts, NULL);
}

static void test_wait_times_out_bounded(void **state)
{
	struct shared *s = *state;
	s->word = 5;
	uint64_t t0 = clock_mono_ns();
	assert_int_equal(futex_wait(&s->word, 5, 50 * MS), -ETIMEDOUT);
	uint64_t dt = clock_mono_ns() - t0;
	assert_true(dt >= 45 * MS);
	assert_true(dt < 2 * SEC);
	/* a zero timeout returns at once */
	t0 = clock_mono_ns();
	assert_int_equal(futex_wait(&s->word, 5, 0), -ETIMEDOUT);
	assert_true(clock_mono_ns() - t0 < SEC);
}

static void test_wait_returns_at_once_when_value_differs(void **state)
{
	struct shared *s = *state;
	s->word = 5;
	uint64_t t0 = clock_mono_ns();
	assert_int_equal(futex_wait(&s->word, 4, 10 * SEC), 0);
	assert_true(clock_mono_ns() - t0 < SEC);
}

static void test_wake_without_waiters_wakes_none(void **state)
{
	struct shared *s = *state;
	assert_int_equal(futex_wake(&s->word, 1), 0);
	assert_int_equal(futex_wake(&s->word, 1 << 30), 0);
}

/* The parent's FUTEX_WAKE must find the child sleeping on the same word. */
static void test_wake_across_fork(void **state)
{
	struct shared *s = *state;
	s->word = 0;
	pid_t pid = fork_child();
	if (pid == 0) {
		uint64_t t0 = clock_mono_ns();
		int r = futex_wait(&s->word, 0, 10 * SEC);
		_exit(r == 0 && clock_mono_ns() - t0 < 8 * SEC ? 0 : 1);
	}
	int woke = 0;
	uint64_t t0 = clock_mono_ns();
	while (!woke && clock_mono_ns() - t0 < 5 * SEC) {
		woke = futex_wake(&s->word, 1);
		assert_true(woke >= 0);
		if (!woke)
			sleep_ns(MS);
	}
	assert_int_equal(woke, 1);
	assert_child_ok(pid);
}

static void test_seq_enter_leave_accounting(void **state)
{
	struct shared *s = *state;
	struct futex_seq *f = &s->a;
	assert_int_equal(f->waiters, 0);
	uint32_t s0 = futex_seq_enter(f);
	assert_int_equal(s0, f->seq);
	assert_int_equal(f->waiters, 1);
	futex_seq_enter(f);
	assert_int_equal(f->waiters, 2);
	futex_seq_leave(f);
	futex_seq_leave(f);
	assert_int_equal(f->waiters, 0);

	/* signal moves the sequence; a wait on the old value returns at once */
	s0 = futex_seq_enter(f);
	futex_seq_signal(f);
	assert_int_equal(f->seq, s0 + 1);
	uint64_t t0 = clock_mono_ns();
	assert_int_equal(futex_seq_wait(f, s0, 10 * SEC), 0);
	assert_true(clock_mono_ns() - t0 < SEC);
	assert_int_equal(f->waiters, 0);

	/* a wait that times out also leaves */
	s0 = futex_seq_enter(f);
	assert_int_equal(futex_seq_wait(f, s0, 20 * MS), -ETIMEDOUT);
	assert_int_equal(f->waiters, 0);
	assert_int_equal(f->seq, s0);

	/* signals without waiters only count */
	for (int i = 0; i < 10; i++)
		futex_seq_signal(f);
	assert_int_equal(f->seq, s0 + 10);
	assert_int_equal(f->waiters, 0);
}

static void test_seq_wraps_around(void **state)
{
	struct shared *s = *state;
	struct futex_seq *f = &s->a;
	f->seq = UINT32_MAX;
	uint32_t seen = futex_seq_enter(f);
	assert_int_equal(seen, UINT32_MAX);
	futex_seq_signal(f);
	assert_int_equal(f->seq, 0);
	assert_int_equal(futex_seq_wait(f, seen, 10 * SEC), 0);
	assert_int_equal(f->waiters, 0);
}

/* A child that announced itself and sleeps is woken by the parent's signal. */
static void test_seq_signal_wakes_across_fork(void **state)
{
	struct shared *s = *state;
	struct futex_seq *f = &s->a;
	pid_t pid = fork_child();
	if (pid == 0) {
		uint32_t seen = futex_seq_enter(f);
		uint64_t t0 = clock_mono_ns();
		int r = futex_seq_wait(f, seen, 10 * SEC);
		int moved = shm_load_acquire(&f->seq) != seen;
		_exit(r == 0 && moved && clock_mono_ns() - t0 < 8 * SEC ? 0 : 1);
	}
	uint64_t t0 = clock_mono_ns();
	while (shm_load_acquire(&f->waiters) == 0 && clock_mono_ns() - t0 < 5 * SEC)
		sleep_ns(MS);
	assert_int_equal(shm_load_acquire(&f->waiters), 1);
	sleep_ns(20 * MS);                    /* let it reach the kernel */
	futex_seq_signal(f);
	assert_child_ok(pid);
	assert_int_equal(f->waiters, 0);
}

/* Ping-pong over two futex_seq words: a lost wake-up would show as a wait
 * that times out while the other side is already done. */
static void test_seq_ping_pong_loses_no_wakeup(void **state)
{
	struct shared *s = *state;
	enum { ROUNDS = 20000 };
	const uint64_t tmo = 2 * SEC;
	pid_t pid = fork_child();
	if (pid == 0) {
		for (uint64_t i = 0; i < ROUNDS; i++) {
			while (shm_load_acquire(&s->x) != 2 * i + 1) {
				uint32_t seen = futex_seq_enter(&s->a);
				if (shm_load_acquire(&s->x) == 2 * i + 1) {
					futex_seq_leave(&s->a);
					break;
				}
				if (futex_seq_wait(&s->a, seen, tmo) == -ETIMEDOUT)
					s->child_timeouts++;
				if (s->child_timeouts > 3)
					_exit(2);
			}
			shm_store_release(&s->x, 2 * i + 2);
			futex_seq_signal(&s->b);
		}
		_exit(0);
	}
	unsigned timeouts = 0;
	for (uint64_t i = 0; i < ROUNDS && timeouts <= 3; i++) {
		shm_store_release(&s->x, 2 * i + 1);
		futex_seq_signal(&s->a);
		while (shm_load_acquire(&s->x) != 2 * i + 2) {
			uint32_t seen = futex_seq_enter(&s->b);
			if (shm_load_acquire(&s->x) == 2 * i + 2) {
				futex_seq_leave(&s->b);
				break;
			}
			if (futex_seq_wait(&s->b, seen, tmo) == -ETIMEDOUT)
				timeouts++;
			if (timeouts > 3)
				break;
		}
	}
	if (timeouts > 3)
		kill(pid, SIGKILL);
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_int_equal(timeouts, 0);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(s->child_timeouts, 0);
	assert_int_equal(s->x, 2 * ROUNDS);
	assert_int_equal(s->a.waiters, 0);
	assert_int_equal(s->b.waiters, 0);
}

static void on_alarm(int sig)
{
	(void)sig;
}

/* A signal handler (without SA_RESTART) interrupts a wait with -EINTR. */
static void test_wait_interrupted_by_signal(void **state)
{
	struct shared *s = *state;
	pid_t pid = fork_child();
	if (pid == 0) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_alarm;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGALRM, &sa, NULL);
		struct itimerval it = { .it_value = { .tv_sec = 0, .tv_usec = 50000 } };
		setitimer(ITIMER_REAL, &it, NULL);
		uint64_t t0 = clock_mono_ns();
		int r = futex_wait(&s->word, s->word, 10 * SEC);
		_exit(r == -EINTR && clock_mono_ns() - t0 < 8 * SEC ? 0 : 1);
	}
	assert_child_ok(pid);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_wait_times_out_bounded),
		T(test_wait_returns_at_once_when_value_differs),
		T(test_wake_without_waiters_wakes_none),
		T(test_wake_across_fork),
		T(test_seq_enter_leave_accounting),
		T(test_seq_wraps_around),
		T(test_seq_signal_wakes_across_fork),
		T(test_seq_ping_pong_loses_no_wakeup),
		T(test_wait_interrupted_by_signal),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}

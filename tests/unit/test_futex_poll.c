/* test_futex_poll — a futex wait that signals an eventfd (shm/futex_poll.h).
 *
 * The waker is a plain FUTEX_WAKE, from another process where it matters:
 * that is how flusherd's publication reaches ingestd's epoll loop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "shm/atomic.h"
#include "shm/futex.h"
#include "shm/futex_poll.h"

#define MS (1000000ull)

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = clock_ts_from_ns(ns);
	nanosleep(&ts, NULL);
}

struct fx {
	uint32_t *word;           /* a MAP_SHARED page: futexes across fork */
	int efd;
	struct futex_poll p;
};

static int setup(void **state)
{
	static struct fx f;
	f.word = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	f.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (f.word == MAP_FAILED || f.efd < 0)
		return -1;
	*f.word = 0;
	int r = futex_poll_open(&f.p, f.efd);
	if (r < 0) {
		/* CI runs on a kernel that has it: only a kernel without it
		 * may skip, and it says so */
		fprintf(stderr, "futex_poll_open: %s\n", strerror(-r));
		if (r != -ENOSYS && r != -EOPNOTSUPP && r != -EPERM)
			return -1;
	}
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	futex_poll_close(&f->p);
	close(f->efd);
	return munmap(f->word, 4096);
}

static int skip_unless_open(const struct fx *f)
{
	if (f->p.fd < 0) {
		skip();
		return 1;
	}
	return 0;
}

/* 1 if efd turned readable within ms (and drains it). */
static int efd_fires(int efd, int ms)
{
	struct pollfd pf = { .fd = efd, .events = POLLIN };
	if (poll(&pf, 1, ms) != 1)
		return 0;
	uint64_t v;
	assert_int_equal(read(efd, &v, sizeof(v)), (ssize_t)sizeof(v));
	return 1;
}

/* The value moved before the wait was queued: it completes at once. */
static void test_stale_value_completes_at_once(void **state)
{
	struct fx *f = *state;
	if (skip_unless_open(f))
		return;
	*f->word = 5;
	assert_int_equal(futex_poll_arm(&f->p, f->word, 4), 0);
	assert_true(efd_fires(f->efd, 5000));
	assert_int_equal(futex_poll_reap(&f->p), 1);
	assert_int_equal(futex_poll_reap(&f->p), 0);   /* nothing armed now */
}

/* Armed and not woken: no signal, reaping finds nothing, one wait at a time. */
static void test_unwoken_wait_stays_armed(void **state)
{
	struct fx *f = *state;
	if (skip_unless_open(f))
		return;
	assert_int_equal(futex_poll_arm(&f->p, f->word, 0), 0);
	assert_int_equal(futex_poll_arm(&f->p, f->word, 0), -EBUSY);
	assert_false(efd_fires(f->efd, 50));
	assert_int_equal(futex_poll_reap(&f->p), 0);
	/* a wake of the wrong word does not complete it */
	assert_int_equal(futex_wake(f->word + 1, 1), 0);
	assert_false(efd_fires(f->efd, 20));
	assert_int_equal(futex_poll_reap(&f->p), 0);
}

/* Another process changes the word and wakes it: the eventfd fires in the
 * waker's FUTEX_WAKE, with no thread of ours awake to pass it on. */
static void test_wake_from_another_process(void **state)
{
	struct fx *f = *state;
	if (skip_unless_open(f))
		return;
	for (uint32_t round = 0; round < 3; round++) {
		assert_int_equal(futex_poll_arm(&f->p, f->word, round), 0);
		fflush(NULL);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			sleep_ns(30 * MS);
			shm_fetch_add(f->word, 1);
			_exit(futex_wake(f->word, 1) == 1 ? 0 : 1);
		}
		assert_true(efd_fires(f->efd, 5000));
		int st;
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);   /* it found our waiter */
		assert_int_equal(futex_poll_reap(&f->p), 1);
		assert_false(efd_fires(f->efd, 20));   /* one wake, one signal: reaping adds none */
	}
}

/* A wait the kernel refuses (a misaligned word) is reported, not taken for
 * a wake-up to arm again forever. */
static void test_failed_wait_is_an_error(void **state)
{
	struct fx *f = *state;
	if (skip_unless_open(f))
		return;
	assert_int_equal(futex_poll_arm(&f->p, (uint32_t *)(void *)((char *)f->word + 1), 0), 0);
	assert_true(efd_fires(f->efd, 5000));
	assert_int_equal(futex_poll_reap(&f->p), -EINVAL);
	assert_int_equal(f->p.armed, 0);
}

/* Closing with a wait queued cancels it: no hang, the word is free. */
static void test_close_while_armed(void **state)
{
	struct fx *f = *state;
	if (skip_unless_open(f))
		return;
	assert_int_equal(futex_poll_arm(&f->p, f->word, 0), 0);
	futex_poll_close(&f->p);
	assert_int_equal(f->p.fd, -1);
	futex_poll_close(&f->p);                       /* idempotent */
	sleep_ns(20 * MS);                             /* the cancel runs async */
	assert_int_equal(futex_wake(f->word, 1), 0);   /* no waiter left */
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_stale_value_completes_at_once),
		T(test_unwoken_wait_stays_armed),
		T(test_wake_from_another_process),
		T(test_failed_wait_is_an_error),
		T(test_close_while_armed),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}

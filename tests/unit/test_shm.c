/* test_shm — the shared-memory region's lifecycle (shm/shm.h): who holds
 * it, when it is discarded or removed, and how a stage attaches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/atomic.h"
#include "shm/ring.h"
#include "shm/shm.h"

static const struct shm_geom G = { .nrings = 1, .ndevices = 16, .ring_bytes = 4096 };

struct fix {
	char inst[64];
	char dir[64];
};

static int counter;

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->inst, sizeof(f->inst), "test-shm-%d-%d", (int)getpid(), counter++);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-shm-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	shm_unlink_instance(f->inst);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;
	shm_unlink_instance(f->inst);
	rmdir(f->dir);
	free(f);
	return 0;
}

static int exists(const char *inst)
{
	char name[96], path[128];
	shm_region_name(inst, name, sizeof(name));
	snprintf(path, sizeof(path), "/dev/shm%s", name);
	return access(path, F_OK) == 0;
}

static void open_ok(const char *inst, const struct shm_geom *g, int create, shm_region_t *r)
{
	char err[SHM_ERR_LEN] = "";
	int rc = shm_open_region(inst, g, create, r, err);
	if (rc < 0)
		fprintf(stderr, "%s\n", err);
	assert_int_equal(rc, 0);
}

/* A child that registers as `stage` in the region, says so on a pipe, and
 * waits for a byte (or its pipe's end) before it exits; or is killed. */
static pid_t holder(const char *inst, enum shm_stage_id stage, int *ret_fd)
{
	int go[2], up[2];
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(up), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(go[1]);
		close(up[0]);
		shm_region_t r;
		char err[SHM_ERR_LEN], c = 1;
		if (shm_open_region(inst, &G, 0, &r, err) < 0)
			_exit(3);
		shm_stage_start(r.ctl, stage);
		if (write(up[1], &c, 1) != 1 || read(go[0], &c, 1) < 0) { /* parent gone */ }
		_exit(0);
	}
	close(go[0]);
	close(up[1]);
	char c;
	assert_int_equal(read(up[0], &c, 1), 1);   /* registered */
	close(up[0]);
	*ret_fd = go[1];
	return pid;
}

static void test_pid_alive_knows_reuse_and_zombies(void **state)
{
	(void)state;
	uint64_t me = shm_pid_start(getpid());
	assert_true(me > 0);
	assert_true(shm_pid_alive(getpid(), me));
	assert_true(shm_pid_alive(getpid(), 0));
	assert_false(shm_pid_alive(getpid(), me + 1));   /* the pid, reused by another process */
	assert_false(shm_pid_alive(0, 0));
	pid_t z = fork();
	if (z == 0)
		_exit(0);
	uint64_t zs = shm_pid_start(z);
	siginfo_t si;
	/* wait until it is a zombie, without reaping it */
	assert_int_equal(waitid(P_PID, (id_t)z, &si, WEXITED | WNOWAIT), 0);
	assert_false(shm_pid_alive(z, zs));
	waitpid(z, NULL, 0);
	assert_false(shm_pid_alive(z, zs));
}

static void test_last_clean_holder_removes_the_region(void **state)
{
	struct fix *f = *state;
	shm_region_t a, b;
	char msg[SHM_ERR_LEN];
	open_ok(f->inst, &G, 1, &a);
	open_ok(f->inst, &G, 0, &b);
	assert_false(b.created);
	/* b still holds it: a's release keeps it */
	assert_int_equal(shm_release(&a, msg), 0);
	assert_string_equal(msg, "");
	assert_null(a.ctl);
	assert_true(exists(f->inst));
	assert_int_equal(shm_release(&b, msg), 1);
	assert_non_null(strstr(msg, "removed"));
	assert_false(exists(f->inst));
}

static void test_release_keeps_a_region_whose_rings_hold_records(void **state)
{
	struct fix *f = *state;
	shm_region_t a;
	char msg[SHM_ERR_LEN];
	open_ok(f->inst, &G, 1, &a);
	struct ring_hdr *h = shm_ring_hdr(a.ctl, 0);
	shm_store_release(&h->head, shm_load_acquire(&h->released) + 64);
	assert_int_equal(shm_release(&a, msg), 0);
	assert_non_null(strstr(msg, "64 bytes"));
	assert_true(exists(f->inst));
}

static void test_discard_refuses_live_stages_and_names_them(void **state)
{
	struct fix *f = *state;
	shm_region_t a;
	char holders[SHM_ERR_LEN];
	open_ok(f->inst, &G, 1, &a);
	int fd;
	pid_t pid = holder(f->inst, STAGE_INGESTD, &fd);
	shm_close_region(&a);
	assert_int_equal(shm_discard(f->inst, holders), -EBUSY);
	char want[32];
	snprintf(want, sizeof(want), "ingestd %d", (int)pid);
	assert_non_null(strstr(holders, want));
	assert_true(exists(f->inst));
	/* the same holder killed: its flock goes with it, and so does the refusal */
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(fd);
	assert_int_equal(shm_discard(f->inst, holders), 0);
	assert_false(exists(f->inst));
}

static void test_discard_passes_a_dead_stage_and_unregistered_waiters(void **state)
{
	struct fix *f = *state;
	shm_region_t a, waiter;
	char holders[SHM_ERR_LEN];
	open_ok(f->inst, &G, 1, &a);
	/* a flusherd that died without a clean stop */
	int fd;
	pid_t pid = holder(f->inst, STAGE_FLUSHERD, &fd);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(fd);
	/* a stage that holds the region but never registered (still waiting) */
	open_ok(f->inst, &G, 0, &waiter);
	shm_close_region(&a);
	assert_int_equal(shm_discard(f->inst, holders), 0);
	assert_false(exists(f->inst));
	assert_true(shm_region_unlinked(&waiter));
	shm_close_region(&waiter);
}

static void test_other_geometry_is_stale(void **state)
{
	struct fix *f = *state;
	shm_region_t a, b;
	char err[SHM_ERR_LEN];
	open_ok(f->inst, &G, 1, &a);
	struct shm_geom other = G;
	other.ring_bytes = 8192;
	assert_int_equal(shm_open_region(f->inst, &other, 1, &b, err), -ESTALE);
	assert_non_null(strstr(err, "config needs"));
	shm_close_region(&a);
	assert_int_equal(shm_discard(f->inst, err), 0);
	open_ok(f->inst, &other, 1, &b);
	assert_true(b.created);
	shm_close_region(&b);
}

static int stop_never;
static int waits, wait_pipe = -1;
/* the attaching stage says it waits: the test's "flusherd" acts only then */
static void on_wait(const char *why)
{
	(void)why;
	waits++;
	char c = 1;
	if (wait_pipe >= 0 && write(wait_pipe, &c, 1) != 1) { /* child gone */ }
}

/* A child playing flusherd: once the attacher waits, it discards the
 * region if `renew`, makes or opens it, serves it and stays until killed. */
static pid_t fake_flusherd(const struct fix *f, int renew)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[1]);
		char c, h[SHM_ERR_LEN];
		shm_region_t n;
		if (read(p[0], &c, 1) != 1)
			_exit(3);
		if ((renew && shm_discard(f->inst, h) < 0) || shm_open_region(f->inst, &G, 1, &n, h) < 0)
			_exit(3);
		shm_set_ready(n.ctl, f->dir, 7);
		pause();
		_exit(0);
	}
	close(p[0]);
	wait_pipe = p[1];
	return pid;
}

static void end_fake(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(wait_pipe);
	wait_pipe = -1;
}

static void test_attach_stage_waits_for_a_live_flusherd_of_its_data_dir(void **state)
{
	struct fix *f = *state;
	shm_region_t a, got;
	char err[SHM_ERR_LEN];
	int stop = 1;
	/* no region yet, stop requested: returns at once */
	assert_int_equal(shm_attach_stage(f->inst, &G, f->dir, &stop, on_wait, &got, err), -EINTR);
	open_ok(f->inst, &G, 1, &a);
	/* served by a flusherd whose pid now names another process: not served */
	assert_int_equal(shm_set_ready(a.ctl, f->dir, 7), 0);
	shm_store_release(&a.ctl->ready_pid, 1);
	waits = 0;
	pid_t child = fake_flusherd(f, 0);
	assert_int_equal(shm_attach_stage(f->inst, &G, f->dir, &stop_never, on_wait, &got, err), 0);
	assert_int_equal(shm_load_acquire(&got.ctl->ready_pid), child);
	assert_int_equal(waits, 1);
	shm_close_region(&got);
	/* another data dir: refused, naming both and the way out */
	char other[80];
	snprintf(other, sizeof(other), "%s/other", f->dir);
	assert_int_equal(mkdir(other, 0700), 0);
	assert_int_equal(shm_attach_stage(f->inst, &G, other, &stop_never, on_wait, &got, err), -EUSERS);
	assert_non_null(strstr(err, f->dir));
	assert_non_null(strstr(err, "INGEST_INSTANCE_NAME"));
	/* another geometry while a flusherd serves it: refused too */
	struct shm_geom g2 = G;
	g2.ndevices = 32;
	assert_int_equal(shm_attach_stage(f->inst, &g2, f->dir, &stop_never, on_wait, &got, err), -EUSERS);
	assert_non_null(strstr(err, "another configuration"));
	end_fake(child);
	rmdir(other);
	shm_close_region(&a);
}

static void test_attach_stage_follows_a_region_made_anew(void **state)
{
	struct fix *f = *state;
	shm_region_t a, got;
	char err[SHM_ERR_LEN];
	open_ok(f->inst, &G, 1, &a);
	uint64_t old_id = a.ctl->shm_id;
	shm_close_region(&a);
	pid_t child = fake_flusherd(f, 1);
	assert_int_equal(shm_attach_stage(f->inst, &G, f->dir, &stop_never, on_wait, &got, err), 0);
	assert_true(got.ctl->shm_id != old_id);
	assert_int_equal(shm_load_acquire(&got.ctl->ready_pid), child);
	end_fake(child);
	shm_close_region(&got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pid_alive_knows_reuse_and_zombies),
		cmocka_unit_test_setup_teardown(test_last_clean_holder_removes_the_region, setup, teardown),
		cmocka_unit_test_setup_teardown(test_release_keeps_a_region_whose_rings_hold_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discard_refuses_live_stages_and_names_them, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discard_passes_a_dead_stage_and_unregistered_waiters, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_other_geometry_is_stale, setup, teardown),
		cmocka_unit_test_setup_teardown(test_attach_stage_waits_for_a_live_flusherd_of_its_data_dir, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_attach_stage_follows_a_region_made_anew, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

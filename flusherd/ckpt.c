#include "flusherd/ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/frame.h"
#include "common/fsync_dir.h"
#include "common/slotfile.h"
#include "shm/atomic.h"
#include "shm/devtab.h"

#define META_MAGIC 0x544d494du /* "MIMT" */
#define META_VERSION 1

int meta_load(const char *data_dir, struct meta *ret)
{
	char path[512];
	uint8_t b[SLOTFILE_MAX];
	struct slotfile f;
	snprintf(path, sizeof(path), "%s/meta", data_dir);
	if (access(path, F_OK) < 0)
		return -errno;
	int r = slotfile_open(&f, path, META_MAGIC);
	if (r < 0)
		return r;
	r = slotfile_read(&f, b, sizeof(b));
	slotfile_close(&f);
	if (r < 0)
		return r == -ENOENT ? -EBADMSG : r;
	if (r < 32 || mi_get32(b) != META_VERSION || mi_get32(b + 4) > SHM_MAX_RINGS ||
	    (size_t)r < 32 + 8 * (size_t)mi_get32(b + 4))
		return -EBADMSG;
	struct meta m;
	memset(&m, 0, sizeof(m));
	m.nrings = mi_get32(b + 4);
	m.log_id = mi_get64(b + 8);
	m.ckpt_lsn = mi_get64(b + 16);
	m.shm_id = mi_get64(b + 24);
	for (uint32_t i = 0; i < m.nrings; i++)
		m.pos[i] = mi_get64(b + 32 + 8 * i);
	*ret = m;
	return 0;
}

int meta_store(const char *data_dir, const struct meta *m)
{
	char path[512];
	uint8_t b[32 + 8 * SHM_MAX_RINGS];
	struct slotfile f;
	snprintf(path, sizeof(path), "%s/meta", data_dir);
	int r = slotfile_open(&f, path, META_MAGIC);
	if (r < 0)
		return r;
	/* learn which slot holds the newest copy so we overwrite the other */
	uint8_t tmp[SLOTFILE_MAX];
	(void)slotfile_read(&f, tmp, sizeof(tmp));
	mi_put32(b, META_VERSION);
	mi_put32(b + 4, m->nrings);
	mi_put64(b + 8, m->log_id);
	mi_put64(b + 16, m->ckpt_lsn);
	mi_put64(b + 24, m->shm_id);
	for (uint32_t i = 0; i < m->nrings; i++)
		mi_put64(b + 32 + 8 * i, m->pos[i]);
	r = slotfile_write(&f, b, 32 + 8 * (size_t)m->nrings);
	slotfile_close(&f);
	return r;
}

int devices_store(const char *data_dir, struct shm_ctl *ctl, uint64_t lsn)
{
	char tmp[512], path[512];
	snprintf(tmp, sizeof(tmp), "%s/devices.tmp", data_dir);
	snprintf(path, sizeof(path), "%s/devices", data_dir);
	size_t cap = 24 + (size_t)ctl->ndevices * (1 + MI_DEVID_MAX + 8);
	uint8_t *b = malloc(cap);
	if (!b)
		return -ENOMEM;
	size_t off = 24;
	uint32_t count = 0;
	for (uint32_t i = 0; i < ctl->ndevices; i++) {
		struct shm_dev *d = shm_dev(ctl, i);
		if (shm_load_acquire(&d->state) != DEV_READY)
			continue;
		b[off++] = d->id_len;
		memcpy(b + off, d->id, d->id_len);
		off += d->id_len;
		mi_put64(b + off, shm_load_acquire(&d->last_durable));
		off += 8;
		count++;
	}
	memcpy(b, "MIDEVCK1", 8);
	mi_put64(b + 8, lsn);
	mi_put32(b + 16, count);
	mi_put32(b + 20, mi_crc32(b + 24, off - 24));
	int r = 0;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	for (size_t done = 0; done < off;) {
		ssize_t n = write(fd, b + done, off - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			break;
		}
		done += (size_t)n;
	}
	if (r == 0 && fdatasync(fd) < 0)
		r = -errno;
	close(fd);
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r == 0)
		r = fsync_dir(data_dir);
	if (r < 0)
		unlink(tmp);
out:
	free(b);
	return r;
}

int devices_load(const char *data_dir, struct shm_ctl *ctl, uint64_t max_lsn, uint64_t *ret_lsn)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/devices", data_dir);
	FILE *f = fopen(path, "rbe");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	int r = 0;
	uint8_t *b = NULL;
	if (fseek(f, 0, SEEK_END) < 0) {
		r = -errno;
		goto out;
	}
	long sz = ftell(f);
	rewind(f);
	if (sz < 24 || !(b = malloc((size_t)sz)) || fread(b, 1, (size_t)sz, f) != (size_t)sz) {
		r = sz < 24 ? -EBADMSG : -EIO;
		goto out;
	}
	if (memcmp(b, "MIDEVCK1", 8) || mi_get32(b + 20) != mi_crc32(b + 24, (size_t)sz - 24)) {
		r = -EBADMSG;
		goto out;
	}
	if (mi_get64(b + 8) > max_lsn) {
		r = -ESTALE;
		goto out;
	}
	uint32_t count = mi_get32(b + 16);
	size_t off = 24;
	/* the count is outside the CRC: the entries must fill the file exactly,
	 * checked before any device reaches the table */
	for (uint32_t i = 0; i < count; i++) {
		if (off + 1 > (size_t)sz || !b[off] || b[off] > MI_DEVID_MAX || off + 1 + b[off] + 8 > (size_t)sz) {
			r = -EBADMSG;
			goto out;
		}
		off += 1 + (size_t)b[off] + 8;
	}
	if (off != (size_t)sz) {
		r = -EBADMSG;
		goto out;
	}
	off = 24;
	for (uint32_t i = 0; i < count; i++) {
		uint8_t len = b[off];
		uint64_t seq = mi_get64(b + off + 1 + len);
		int slot = devtab_insert(ctl, b + off + 1, len);
		if (slot < 0) {
			r = slot;
			goto out;
		}
		struct shm_dev *d = shm_dev(ctl, (uint32_t)slot);
		if (seq > d->last_durable)
			shm_store_release(&d->last_durable, seq);
		if (seq > d->last_accepted)
			shm_store_release(&d->last_accepted, seq);
		off += 1 + len + 8;
	}
	*ret_lsn = mi_get64(b + 8);
	r = (int)count;
out:
	free(b);
	fclose(f);
	return r;
}

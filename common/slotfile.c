#include "common/slotfile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "common/frame.h"

int slotfile_open(struct slotfile *f, const char *path, uint32_t magic)
{
	memset(f, 0, sizeof(*f));
	f->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (f->fd < 0)
		return -errno;
	f->magic = magic;
	f->slot = 1;   /* the first write goes to slot 0 */
	return 0;
}

static int slot_valid(const uint8_t *s, uint32_t magic, uint64_t *gen, uint32_t *len)
{
	if (mi_get32(s) != magic || mi_get32(s + 4) > SLOTFILE_MAX)
		return 0;
	if (mi_get32(s + SLOTFILE_SLOT - 4) != mi_crc32(s, SLOTFILE_SLOT - 4))
		return 0;
	*gen = mi_get64(s + 8);
	*len = mi_get32(s + 4);
	return 1;
}

int slotfile_read(struct slotfile *f, void *buf, size_t cap)
{
	uint8_t s[2][SLOTFILE_SLOT];
	uint64_t gen[2] = { 0, 0 };
	uint32_t len[2] = { 0, 0 };
	int ok[2];
	for (int i = 0; i < 2; i++) {
		ssize_t n = pread(f->fd, s[i], SLOTFILE_SLOT, (off_t)i * SLOTFILE_SLOT);
		if (n < 0)
			return -errno;
		ok[i] = n == SLOTFILE_SLOT && slot_valid(s[i], f->magic, &gen[i], &len[i]);
	}
	int best = -1;
	if (ok[0] && (!ok[1] || gen[0] >= gen[1]))
		best = 0;
	else if (ok[1])
		best = 1;
	if (best < 0)
		return -ENOENT;
	if (len[best] > cap)
		return -EOVERFLOW;
	memcpy(buf, s[best] + 16, len[best]);
	f->gen = gen[best];
	f->slot = best;
	return (int)len[best];
}

int slotfile_write(struct slotfile *f, const void *buf, size_t len)
{
	uint8_t s[SLOTFILE_SLOT];
	if (len > SLOTFILE_MAX)
		return -EOVERFLOW;
	memset(s, 0, sizeof(s));
	mi_put32(s, f->magic);
	mi_put32(s + 4, (uint32_t)len);
	mi_put64(s + 8, f->gen + 1);
	memcpy(s + 16, buf, len);
	mi_put32(s + SLOTFILE_SLOT - 4, mi_crc32(s, SLOTFILE_SLOT - 4));
	int slot = f->slot ^ 1;
	ssize_t n = pwrite(f->fd, s, SLOTFILE_SLOT, (off_t)slot * SLOTFILE_SLOT);
	if (n != SLOTFILE_SLOT)
		return n < 0 ? -errno : -EIO;
	if (fdatasync(f->fd) < 0)
		return -errno;
	f->gen++;
	f->slot = slot;
	return 0;
}

void slotfile_close(struct slotfile *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
}

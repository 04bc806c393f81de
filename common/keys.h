/* keys — the device registry (keys file) for keys mode.
 *
 * A text file a human can read and diff: one device per line.  Byte by byte:
 *
 *   file    = *( line LF ) [ line ]          ; the last LF may be missing
 *   line    = blank / comment / device       ; at most KEYS_LINE_MAX bytes, LF excluded;
 *                                            ; one CR right before the LF is ignored
 *   blank   = *WS
 *   comment = *WS "#" *( any byte but LF )   ; '#' only starts a comment at line start
 *   device  = *WS devid 1*( 1*WS attr ) *WS
 *   WS      = SP / HTAB
 *   devid   = 1*64 ( ALPHA / DIGIT / "." / "_" / ":" / "-" )     ; mi_devid_valid()
 *   attr    = "key=" key64 / "topics=" topics / "fpr=" hex64 / "require=" req / "disabled"
 *   key64   = the 32-byte key, standard base64 with padding (RFC 4648 section 4,
 *             libsodium sodium_base64_VARIANT_ORIGINAL): exactly 44 characters
 *   topics  = "*" / topic *( "," topic )     ; "*": every topic; at most
 *             KEYS_TOPICS_MAX names, no repeats, the list at most KEYS_TOPICS_LEN-1 bytes
 *   topic   = 1*32 ( ALPHA / DIGIT / "." / "_" / "-" )
 *   hex64   = 64 hex digits (either case): the 32-byte hardware fingerprint
 *   req     = "mac" / "seal"   ; every DATA frame must carry a MAC (or be
 *                              ; sealed) / must be sealed
 *
 * Each device line holds key= and topics= exactly once, fpr=, require= and
 * disabled at most once, in any order.  A device id appears on one line only.  Without
 * fpr= the device may present any fingerprint (or none); without disabled it
 * is enabled.  Example:
 *
 *   # line 1 is a comment
 *   sensor-0001 key=q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA= topics=*
 *   gw.lab:7 key=...= topics=telemetry,logs fpr=00ff...(64 hex) disabled
 *
 * The file must not be readable or writable by group or others (st_mode &
 * 077 == 0): it holds every device's secret.  keys_write() rewrites the whole
 * file in the canonical form (a header comment, then each device in
 * registry order as "id key= topics= [fpr=] [require=] [disabled]", single spaces, hex
 * in lower case); comments and blank lines of a hand-edited file are not kept.
 * It writes a temp file in the same directory (mode 0600 whatever the umask),
 * fsyncs it, renames it over the file and fsyncs the directory, so a crash
 * leaves the old file or the new one, never a mix.
 *
 * In memory: a bounded array of devices (file order) and an open-addressing
 * hash of their ids; keys_find() allocates nothing.  Keys are wiped
 * (sodium_memzero) when a registry grows or is freed, and line buffers that
 * held base64 keys are wiped after parsing.
 *
 * Errors: 0 or -errno.  -EINVAL malformed file or argument, -EPERM file mode
 * too open, -EEXIST device already present, -ENOENT no such device or file,
 * -E2BIG more than KEYS_MAX devices; I/O errors as the syscall gave them.
 * Functions taking (err, errlen) write one line of text naming the file, line
 * and device at fault there (no trailing newline).  Nothing here logs.
 */
#ifndef MI_KEYS_H
#define MI_KEYS_H
#include <stddef.h>
#include <stdint.h>

#include "common/frame.h"

#define KEYS_KEY_LEN 32
#define KEYS_KEY_B64_LEN 44          /* base64 of 32 bytes, with padding */
#define KEYS_FPR_LEN MI_FPR_LEN      /* 32 */
#define KEYS_TOPIC_NAME_MAX 32
#define KEYS_TOPICS_MAX 16           /* names per device */
#define KEYS_TOPICS_LEN 128          /* canonical list incl. its NUL */
#define KEYS_LINE_MAX 1024
#define KEYS_MAX (1u << 20)          /* devices per registry */

enum keys_require { KEYS_REQ_NONE, KEYS_REQ_MAC, KEYS_REQ_SEAL };

struct keys_device {
	uint8_t key[KEYS_KEY_LEN];
	uint16_t topic_ids[KEYS_TOPICS_MAX]; /* topics resolved by keys_resolve_topics */
	uint8_t require;                /* enum keys_require */
	uint8_t fpr[KEYS_FPR_LEN];      /* valid when has_fpr */
	uint8_t has_fpr;
	uint8_t enabled;
	uint8_t all_topics;             /* topics == "*" */
	uint8_t ntopics;                /* names in topics (0 with all_topics) */
	uint8_t id_len;
	uint32_t line;                  /* its line in the loaded file; 0 if added since */
	char id[MI_DEVID_MAX + 1];      /* NUL-terminated */
	char topics[KEYS_TOPICS_LEN];   /* canonical: "*" or "a,b,c", NUL-terminated */
};

typedef struct keys keys_t;

/* An empty registry.  Returns 0 or -ENOMEM. */
int keys_new(keys_t **ret);
/* Loads and validates path (mode, then every line).  Returns 0 or -errno;
 * *ret is set only on success. */
int keys_load(const char *path, keys_t **ret, char *err, size_t errlen);
/* Writes the registry to path atomically (see above).  Returns 0 or -errno. */
int keys_write(const keys_t *k, const char *path, char *err, size_t errlen);
/* Wipes every key and frees; NULL is fine. */
void keys_free(keys_t *k);

size_t keys_count(const keys_t *k);
/* The i-th device in file order (i < keys_count), for listing. */
const struct keys_device *keys_at(const keys_t *k, size_t i);
/* The device with this id, or NULL.  No allocation.  The pointer stays valid
 * until the registry is next changed or freed. */
const struct keys_device *keys_find(const keys_t *k, const char *id, size_t id_len);
/* 1 when the device may send to the topic named name[0..len), else 0. */
int keys_topic_allowed(const struct keys_device *d, const char *name, size_t len);

/* Maps every device's topic names to ids with lookup (-1: unknown name, an
 * error naming the keys file path, line, device and topic).  Returns 0 or
 * -EINVAL. */
int keys_resolve_topics(keys_t *k, int (*lookup)(void *ctx, const char *name, size_t len), void *ctx,
			const char *path, char *err, size_t errlen);
/* 1 when the device may send to topic id (after keys_resolve_topics). */
int keys_topic_id_allowed(const struct keys_device *d, uint16_t topic);
/* "mac", "seal" or "none" -> enum keys_require, or -EINVAL; and back. */
int keys_require_parse(const char *s, size_t len);
const char *keys_require_name(int req);

/* Adds an enabled device.  topics: the "topics=" grammar; fpr: NULL or
 * KEYS_FPR_LEN bytes.  Returns 0, -EINVAL, -EEXIST or -E2BIG. */
int keys_add(keys_t *k, const char *id, const char *topics, const uint8_t *fpr,
	     const uint8_t key[KEYS_KEY_LEN], char *err, size_t errlen);
/* Each returns 0 or -ENOENT (no such device). */
int keys_remove(keys_t *k, const char *id);
int keys_set_enabled(keys_t *k, const char *id, int enabled);
int keys_set_key(keys_t *k, const char *id, const uint8_t key[KEYS_KEY_LEN]);
int keys_set_require(keys_t *k, const char *id, int req);
/* -ENOENT, or -EINVAL with the reason in err (a bad "topics=" value). */
int keys_set_topics(keys_t *k, const char *id, const char *topics, char *err, size_t errlen);

/* Fresh random key (randombytes_buf).  Returns 0, or -EIO if libsodium
 * cannot initialise. */
int keys_generate(uint8_t key[KEYS_KEY_LEN]);
/* key -> base64 (ORIGINAL variant), out holds KEYS_KEY_B64_LEN + 1 bytes. */
void keys_key_to_base64(const uint8_t key[KEYS_KEY_LEN], char out[KEYS_KEY_B64_LEN + 1]);
/* Parses 64 hex digits (no more, no less) into KEYS_FPR_LEN bytes.
 * Returns 0 or -EINVAL. */
int keys_fpr_parse(const char *hex, size_t len, uint8_t fpr[KEYS_FPR_LEN]);
/* Validates a "topics=" value.  Returns 0 or -EINVAL with the reason in err. */
int keys_topics_valid(const char *topics, size_t len, char *err, size_t errlen);
#endif

/* The snapshot state file: libfdt nodes, shared field tables, checks (vmm/snapshot/format.h). */
#include "vmm/snapshot/format.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libfdt.h>

#define WRITER_INITIAL_CAP (64 * 1024)
#define PROP_NAME_MAX      31   /* Devicetree spec 2.2.4.1: 1 to 31 characters */
#define PATH_MAX_LEN       96

/* ---- CRC-64/XZ -------------------------------------------------------------------- */

static uint64_t crc64_table[256];
static pthread_once_t crc64_once = PTHREAD_ONCE_INIT;

static void crc64_init(void)
{
	for (unsigned i = 0; i < 256; i++) {
		uint64_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0xc96c5795d7870f42ULL : c >> 1;
		crc64_table[i] = c;
	}
}

uint64_t snap_crc64(uint64_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	pthread_once(&crc64_once, crc64_init);
	crc = ~crc;
	while (len--)
		crc = crc64_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* The checksum of a whole blob whose 8-byte checksum value lies at sum_off, read as zero. */
static uint64_t blob_checksum(const uint8_t *blob, size_t len, size_t sum_off)
{
	static const uint8_t zero[8];
	uint64_t crc = snap_crc64(0, blob, sum_off);

	crc = snap_crc64(crc, zero, sizeof(zero));
	return snap_crc64(crc, blob + sum_off + 8, len - sum_off - 8);
}

/* ---- integers: host order in the struct, big-endian in the file ------------------- */

static uint64_t load_host(const uint8_t *p, unsigned n)
{
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;

	switch (n) {
	case 1: memcpy(&u8, p, 1); return u8;
	case 2: memcpy(&u16, p, 2); return u16;
	case 4: memcpy(&u32, p, 4); return u32;
	default: memcpy(&u64, p, 8); return u64;
	}
}

static void store_host(uint8_t *p, unsigned n, uint64_t v)
{
	uint8_t u8 = (uint8_t)v;
	uint16_t u16 = (uint16_t)v;
	uint32_t u32 = (uint32_t)v;

	switch (n) {
	case 1: memcpy(p, &u8, 1); break;
	case 2: memcpy(p, &u16, 2); break;
	case 4: memcpy(p, &u32, 4); break;
	default: memcpy(p, &v, 8); break;
	}
}

static void put_be(uint8_t *p, unsigned n, uint64_t v)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static uint64_t get_be(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/* ---- descriptions ----------------------------------------------------------------- */

static bool valid_name(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > PROP_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == ',' || c == '.' || c == '_' || c == '+' || c == '-'))
			return false;
	}
	return true;
}

static bool valid_width(unsigned n)
{
	return n == 1 || n == 2 || n == 4 || n == 8;
}

static bool overlaps(size_t a, size_t alen, size_t b, size_t blen)
{
	return a < b + blen && b < a + alen;
}

bool snap_desc_valid(const struct snap_desc *d, char *err, size_t errlen)
{
	if (!d->name || !d->fields || d->nfields == 0 || d->min_version == 0 ||
	    d->min_version > d->version) {
		snprintf(err, errlen, "%s: bad name, table or versions", d->name ? d->name : "?");
		return false;
	}
	for (const char *const *e = d->extra; e && *e; e++) {
		for (size_t i = 0; i < d->nfields && valid_name(*e); i++) {
			if (!strcmp(*e, d->fields[i].name)) {
				snprintf(err, errlen, "%s: %s is a field and an extra", d->name, *e);
				return false;
			}
		}
		if (!valid_name(*e)) {
			snprintf(err, errlen, "%s: bad extra property name", d->name);
			return false;
		}
	}
	for (size_t i = 0; i < d->nfields; i++) {
		const struct snap_field *f = &d->fields[i];

		if (!valid_name(f->name) || !strcmp(f->name, "version")) {
			snprintf(err, errlen, "%s: field %zu: bad name '%s'", d->name, i,
				 f->name ? f->name : "");
			return false;
		}
		if (f->size == 0 || f->off > d->size || f->size > d->size - f->off ||
		    !valid_width(f->elem) || f->size % f->elem ||
		    (f->kind == SNAP_UINT && f->size != f->elem) || f->kind > SNAP_VARRAY) {
			snprintf(err, errlen, "%s: %s: bad offset, size or kind", d->name, f->name);
			return false;
		}
		if (f->min > f->max || f->max > SNAP_UMAX(f->elem) || f->since > d->version) {
			snprintf(err, errlen, "%s: %s: bad range or version", d->name, f->name);
			return false;
		}
		if (f->kind == SNAP_VARRAY &&
		    (f->count_off > d->size || d->size - f->count_off < sizeof(uint32_t))) {
			snprintf(err, errlen, "%s: %s: count outside the struct", d->name, f->name);
			return false;
		}
		for (size_t j = 0; j < d->nfields; j++) {
			const struct snap_field *g = &d->fields[j];

			if (j != i && !strcmp(f->name, g->name)) {
				snprintf(err, errlen, "%s: two fields named %s", d->name, f->name);
				return false;
			}
			if (j != i && overlaps(f->off, f->size, g->off, g->size)) {
				snprintf(err, errlen, "%s: %s overlaps %s", d->name, f->name, g->name);
				return false;
			}
			if (f->kind == SNAP_VARRAY &&
			    overlaps(f->count_off, sizeof(uint32_t), g->off, g->size)) {
				snprintf(err, errlen, "%s: the count of %s overlaps %s", d->name, f->name,
					 g->name);
				return false;
			}
		}
	}
	return true;
}

/* ---- writing ---------------------------------------------------------------------- */

static int fdt_errno(int fdt_err)
{
	switch (fdt_err) {
	case 0: return 0;
	case -FDT_ERR_NOSPACE: return -E2BIG;
	default: return -EINVAL;
	}
}

static int grow(struct snap_writer *w)
{
	size_t ncap = w->cap * 2;
	void *n;

	if (ncap > SNAP_MAX_FILE)
		return -E2BIG;
	n = malloc(ncap);
	if (!n)
		return -ENOMEM;
	if (fdt_resize(w->fdt, n, (int)ncap)) {
		free(n);
		return -EINVAL;
	}
	free(w->fdt);
	w->fdt = n;
	w->cap = ncap;
	return 0;
}

enum sw_op { SW_BEGIN, SW_END, SW_PLACEHOLDER, SW_FINISH };

/* One sequential-write step, growing the buffer until it fits (libfdt rolls a failed step back). */
static int sw(struct snap_writer *w, enum sw_op op, const char *name, size_t len, void **valp)
{
	int r;

	if (w->err)
		return w->err;
	if (w->finished || len > SNAP_MAX_FILE)
		return w->err = -EINVAL;
	for (;;) {
		switch (op) {
		case SW_BEGIN: r = fdt_begin_node(w->fdt, name); break;
		case SW_END: r = fdt_end_node(w->fdt); break;
		case SW_PLACEHOLDER: r = fdt_property_placeholder(w->fdt, name, (int)len, valp); break;
		default: r = fdt_finish(w->fdt); break;
		}
		if (r != -FDT_ERR_NOSPACE)
			break;
		r = grow(w);
		if (r)
			return w->err = r;
	}
	if (r)
		w->err = fdt_errno(r);
	return w->err;
}

int snap_writer_init(struct snap_writer *w)
{
	int ret;

	memset(w, 0, sizeof(*w));
	w->cap = WRITER_INITIAL_CAP;
	w->fdt = malloc(w->cap);
	if (!w->fdt)
		return -ENOMEM;
	if (fdt_create(w->fdt, (int)w->cap) || fdt_finish_reservemap(w->fdt)) {
		snap_writer_free(w);
		return -EINVAL;
	}
	ret = sw(w, SW_BEGIN, "", 0, NULL);
	if (!ret)
		ret = snap_write_string(w, "magic", SNAP_MAGIC);
	if (!ret)
		ret = snap_write_u32(w, "format-version", SNAP_FORMAT_VERSION);
	/* Filled in by snap_writer_finish(), over the blob with this value zero. */
	if (!ret)
		ret = snap_write_u64(w, "checksum", 0);
	if (!ret)
		ret = snap_write_string(w, "arch", SNAP_ARCH);
	if (ret)
		snap_writer_free(w);
	return ret;
}

void snap_writer_free(struct snap_writer *w)
{
	free(w->fdt);
	w->fdt = NULL;
	w->cap = 0;
}

int snap_begin_node(struct snap_writer *w, const char *name)
{
	/* A node name is a property name plus an optional @unit-address. */
	char base[PROP_NAME_MAX + 1];
	const char *at = name ? strchr(name, '@') : NULL;
	size_t n = at ? (size_t)(at - name) : (name ? strlen(name) : 0);

	if (w->err)
		return w->err;
	if (!name || n == 0 || n > PROP_NAME_MAX)
		return w->err = -EINVAL;
	memcpy(base, name, n);
	base[n] = '\0';
	if (!valid_name(base) || (at && (!at[1] || strchr(at + 1, '@') || strchr(at + 1, '/'))))
		return w->err = -EINVAL;
	if (sw(w, SW_BEGIN, name, 0, NULL))
		return w->err;
	w->depth++;
	return 0;
}

int snap_end_node(struct snap_writer *w)
{
	if (!w->err && w->depth == 0)
		return w->err = -EINVAL;
	if (sw(w, SW_END, NULL, 0, NULL))
		return w->err;
	w->depth--;
	return 0;
}

int snap_write_prop(struct snap_writer *w, const char *name, const void *val, size_t len)
{
	void *p;

	if (!w->err && (!valid_name(name) && strcmp(name, "version")))
		return w->err = -EINVAL;
	if (sw(w, SW_PLACEHOLDER, name, len, &p))
		return w->err;
	if (len)
		memcpy(p, val, len);
	return 0;
}

int snap_write_string(struct snap_writer *w, const char *name, const char *s)
{
	return snap_write_prop(w, name, s, strlen(s) + 1);
}

int snap_write_u32(struct snap_writer *w, const char *name, uint32_t v)
{
	uint8_t be[4];

	put_be(be, 4, v);
	return snap_write_prop(w, name, be, sizeof(be));
}

int snap_write_u64(struct snap_writer *w, const char *name, uint64_t v)
{
	uint8_t be[8];

	put_be(be, 8, v);
	return snap_write_prop(w, name, be, sizeof(be));
}

int snap_write(struct snap_writer *w, const struct snap_desc *d, const void *obj)
{
	const uint8_t *base = obj;

	if (snap_write_u32(w, "version", d->version))
		return w->err;
	for (size_t i = 0; i < d->nfields; i++) {
		const struct snap_field *f = &d->fields[i];
		size_t n = f->size / f->elem;
		uint8_t *p;

		if (f->kind == SNAP_VARRAY) {
			uint32_t count;

			memcpy(&count, base + f->count_off, sizeof(count));
			if (count > n) /* the caller's state is inconsistent: never write it */
				return w->err = -EINVAL;
			n = count;
		}
		if (sw(w, SW_PLACEHOLDER, f->name, n * f->elem, (void **)&p))
			return w->err;
		for (size_t k = 0; k < n; k++)
			put_be(p + k * f->elem, f->elem, load_host(base + f->off + k * f->elem, f->elem));
	}
	return 0;
}

int snap_writer_finish(struct snap_writer *w, const void **blob, size_t *len)
{
	const uint8_t *sum;
	uint64_t crc;
	int plen;

	if (!w->err && w->depth != 0)
		w->err = -EINVAL;
	if (sw(w, SW_END, NULL, 0, NULL) || sw(w, SW_FINISH, NULL, 0, NULL))
		return w->err;
	w->finished = true;
	sum = fdt_getprop(w->fdt, 0, "checksum", &plen);
	if (!sum || plen != 8)
		return w->err = -EINVAL;
	crc = blob_checksum(w->fdt, fdt_totalsize(w->fdt), (size_t)(sum - (const uint8_t *)w->fdt));
	put_be((uint8_t *)w->fdt + (sum - (const uint8_t *)w->fdt), 8, crc);
	*blob = w->fdt;
	*len = fdt_totalsize(w->fdt);
	return 0;
}

/* ---- reading ---------------------------------------------------------------------- */

static void node_path(struct snap_reader *r, int node, char *buf, size_t len)
{
	if (node < 0 || fdt_get_path(r->fdt, node, buf, (int)len))
		snprintf(buf, len, "?");
}

static int vfail(struct snap_reader *r, int node, const char *fmt, va_list ap)
{
	char path[PATH_MAX_LEN];
	int n = 0;

	if (node >= 0 && r->fdt) {
		node_path(r, node, path, sizeof(path));
		n = snprintf(r->err, sizeof(r->err), "%s: ", path);
		if (n < 0 || (size_t)n >= sizeof(r->err))
			n = 0;
	}
	vsnprintf(r->err + n, sizeof(r->err) - (size_t)n, fmt, ap);
	return -EINVAL;
}

int snap_fail(struct snap_reader *r, int node, const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = vfail(r, node, fmt, ap);
	va_end(ap);
	return ret;
}

int snap_read_blob(struct snap_reader *r, int node, const char *name, const void **val,
		   size_t *len)
{
	int plen;
	const void *p = fdt_getprop(r->fdt, node, name, &plen);

	if (!p)
		return snap_fail(r, node, "missing property %s", name);
	*val = p;
	*len = (size_t)plen;
	return 0;
}

int snap_read_string(struct snap_reader *r, int node, const char *name, const char **s)
{
	const void *p = NULL;
	size_t len = 0;
	int ret = snap_read_blob(r, node, name, &p, &len);

	if (ret)
		return ret;
	if (len == 0 || memchr(p, '\0', len) != (const char *)p + len - 1)
		return snap_fail(r, node, "%s: not one NUL-terminated string", name);
	*s = p;
	return 0;
}

static int read_be(struct snap_reader *r, int node, const char *name, unsigned n, uint64_t *v)
{
	const void *p = NULL;
	size_t len = 0;
	int ret = snap_read_blob(r, node, name, &p, &len);

	if (ret)
		return ret;
	if (len != n)
		return snap_fail(r, node, "%s: %zu bytes, expected %u", name, len, n);
	*v = get_be(p, n);
	return 0;
}

int snap_read_u32(struct snap_reader *r, int node, const char *name, uint32_t *v)
{
	uint64_t x = 0;
	int ret = read_be(r, node, name, 4, &x);

	if (!ret)
		*v = (uint32_t)x;
	return ret;
}

int snap_read_u64(struct snap_reader *r, int node, const char *name, uint64_t *v)
{
	return read_be(r, node, name, 8, v);
}

/*
 * libfdt 1.6's fdt_next_tag() adds a property's length to its offset
 * unchecked: a length near 4 GiB wraps the offset back onto the same tag
 * and fdt_check_full() loops for ever (found by fuzz_snapshot_load; dtc
 * fixed it later). Walk the structure block once first, in 64-bit offsets,
 * checking only that every tag lies inside the block and moves forward;
 * fdt_check_full() then checks all the rest. true: it ends in FDT_END.
 */
bool snap_fdt_struct_walks(const void *fdt, size_t total)
{
	uint64_t off = fdt_off_dt_struct(fdt), size = fdt_size_dt_struct(fdt), pos = 0;
	const uint8_t *p = (const uint8_t *)fdt + off;

	if (off > total || size > total - off)
		return false;
	while (pos + 4 <= size) {
		uint32_t tag = (uint32_t)get_be(p + pos, 4);
		const uint8_t *nul;

		pos += 4;
		switch (tag) {
		case FDT_BEGIN_NODE:
			nul = memchr(p + pos, '\0', size - pos);
			if (!nul)
				return false;
			pos = ALIGN_UP((uint64_t)(nul - p) + 1, FDT_TAGSIZE);
			break;
		case FDT_PROP:
			if (pos + 8 > size)
				return false;
			pos = ALIGN_UP(pos + 8 + get_be(p + pos, 4), FDT_TAGSIZE);
			break;
		case FDT_END_NODE:
		case FDT_NOP:
			break;
		case FDT_END:
			return true;
		default:
			return false;
		}
	}
	return false;
}

int snap_reader_open(struct snap_reader *r, const void *buf, size_t len)
{
	const char *s;
	const uint8_t *sum;
	uint32_t version;
	uint64_t want;
	size_t total;
	int ret, plen;

	memset(r, 0, sizeof(*r));
	/* Whole header first: fdt_check_full() reads header fields past its minimum size. */
	if (len < sizeof(struct fdt_header))
		return snap_fail(r, -1, "truncated: %zu bytes, not even a device tree header", len);
	if (len > SNAP_MAX_FILE)
		return snap_fail(r, -1, "%zu bytes: larger than any snapshot state (%u MiB)", len,
				 SNAP_MAX_FILE >> 20);
	/* Our own copy: libfdt wants 8-byte alignment, and nobody can change it underneath us. */
	r->fdt = malloc(len);
	if (!r->fdt)
		return -ENOMEM;
	memcpy(r->fdt, buf, len);
	r->len = len;

	if (fdt_magic(r->fdt) != FDT_MAGIC) {
		ret = snap_fail(r, -1, "not a vmm snapshot: no device tree magic");
		goto err;
	}
	total = fdt_totalsize(r->fdt);
	if (total > len) {
		ret = snap_fail(r, -1, "truncated: the tree is %zu bytes, the file %zu", total, len);
		goto err;
	}
	if (total < len) {
		ret = snap_fail(r, -1, "%zu bytes of garbage after the tree", len - total);
		goto err;
	}
	/*
	 * We write version 17 trees only. Older versions store node names as
	 * paths, and libfdt 1.6's fdt_check_full() dereferences NULL on such a
	 * root node (found by fuzz_snapshot_load): never hand it one.
	 */
	if (fdt_version(r->fdt) != 17 || fdt_last_comp_version(r->fdt) > 17) {
		ret = snap_fail(r, -1, "device tree version %u (compatible with %u); vmm writes 17",
				fdt_version(r->fdt), fdt_last_comp_version(r->fdt));
		goto err;
	}
	if (!snap_fdt_struct_walks(r->fdt, total)) {
		ret = snap_fail(r, -1, "corrupt device tree: a tag runs past the structure block");
		goto err;
	}
	ret = fdt_check_full(r->fdt, len);
	if (ret) {
		ret = snap_fail(r, -1, "corrupt device tree: %s", fdt_strerror(ret));
		goto err;
	}
	/*
	 * Magic and version before the checksum: they say whether this is our
	 * format and which checksum rule applies, so a future version's file is
	 * "version N", not "corrupt".
	 */
	if (snap_read_string(r, 0, "magic", &s) || strcmp(s, SNAP_MAGIC)) {
		ret = snap_fail(r, -1, "not a vmm snapshot (no magic \"%s\")", SNAP_MAGIC);
		goto err;
	}
	ret = snap_read_u32(r, 0, "format-version", &version);
	if (ret)
		goto err;
	if (version != SNAP_FORMAT_VERSION) {
		ret = snap_fail(r, -1, "format version %u; this vmm reads version %u", version,
				SNAP_FORMAT_VERSION);
		goto err;
	}
	sum = fdt_getprop(r->fdt, 0, "checksum", &plen);
	if (!sum || plen != 8) {
		ret = snap_fail(r, 0, "checksum: missing or not 8 bytes");
		goto err;
	}
	want = get_be(sum, 8);
	if (blob_checksum(r->fdt, len, (size_t)(sum - (const uint8_t *)r->fdt)) != want) {
		ret = snap_fail(r, -1, "checksum mismatch: the state file is corrupt");
		goto err;
	}
	ret = snap_read_string(r, 0, "arch", &s);
	if (ret)
		goto err;
	if (strcmp(s, SNAP_ARCH)) {
		ret = snap_fail(r, -1, "a snapshot of an %.32s machine; this vmm runs %s guests", s,
				SNAP_ARCH);
		goto err;
	}
	return 0;

err:
	free(r->fdt);
	r->fdt = NULL;
	r->len = 0;
	return ret;
}

void snap_reader_close(struct snap_reader *r)
{
	free(r->fdt);
	r->fdt = NULL;
	r->len = 0;
}

int snap_node(struct snap_reader *r, int parent, const char *name)
{
	int off = fdt_subnode_offset(r->fdt, parent, name);

	if (off < 0)
		return snap_fail(r, parent, "missing node %s", name);
	return off;
}

bool snap_has_node(struct snap_reader *r, int parent, const char *name)
{
	return fdt_subnode_offset(r->fdt, parent, name) >= 0;
}

/* Decode one property into the staging copy; counts[] remembers VARRAY lengths already read. */
static int decode_field(struct snap_reader *r, int node, const struct snap_desc *d, size_t idx,
			const uint8_t *val, size_t len, uint8_t *stage, const bool *seen)
{
	const struct snap_field *f = &d->fields[idx];
	size_t n = f->size / f->elem;

	if (f->kind == SNAP_VARRAY) {
		uint32_t count;

		if (len % f->elem || len > f->size)
			return snap_fail(r, node, "%s: %zu bytes, expected a multiple of %u up to %u",
					 f->name, len, f->elem, f->size);
		n = len / f->elem;
		/* Two arrays sharing one count (index and data of a list) must agree. */
		for (size_t j = 0; j < d->nfields; j++) {
			const struct snap_field *g = &d->fields[j];

			if (j == idx || !seen[j] || g->kind != SNAP_VARRAY || g->count_off != f->count_off)
				continue;
			memcpy(&count, stage + f->count_off, sizeof(count));
			if (count != n)
				return snap_fail(r, node, "%s: %zu entries, but %s has %u", f->name, n,
						 g->name, count);
		}
		count = (uint32_t)n;
		memcpy(stage + f->count_off, &count, sizeof(count));
		memset(stage + f->off + n * f->elem, 0, f->size - n * f->elem);
	} else if (len != f->size) {
		return snap_fail(r, node, "%s: %zu bytes, expected %u", f->name, len, f->size);
	}
	for (size_t k = 0; k < n; k++) {
		uint64_t v = get_be(val + k * f->elem, f->elem);

		if (v < f->min || v > f->max) {
			if (f->kind == SNAP_UINT)
				return snap_fail(r, node, "%s: %#llx is out of range [%#llx, %#llx]",
						 f->name, (unsigned long long)v,
						 (unsigned long long)f->min, (unsigned long long)f->max);
			return snap_fail(r, node, "%s[%zu]: %#llx is out of range [%#llx, %#llx]", f->name,
					 k, (unsigned long long)v, (unsigned long long)f->min,
					 (unsigned long long)f->max);
		}
		store_host(stage + f->off + k * f->elem, f->elem, v);
	}
	return 0;
}

static bool is_extra(const struct snap_desc *d, const char *name)
{
	for (const char *const *e = d->extra; e && *e; e++)
		if (!strcmp(*e, name))
			return true;
	return false;
}

int snap_read(struct snap_reader *r, int node, const struct snap_desc *d, void *obj)
{
	uint8_t *stage = NULL;
	bool *seen = NULL, seen_version = false;
	char msg[SNAP_ERR_LEN];
	uint32_t version;
	int prop, ret;

	ret = snap_read_u32(r, node, "version", &version);
	if (ret)
		return ret;
	if (version < d->min_version || version > d->version)
		return snap_fail(r, node, "version %u; this vmm reads %s versions %u to %u", version,
				 d->name, d->min_version, d->version);
	stage = malloc(d->size);
	seen = calloc(d->nfields, sizeof(*seen));
	if (!stage || !seen) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(stage, obj, d->size);

	fdt_for_each_property_offset(prop, r->fdt, node) {
		const char *name;
		int plen;
		const void *val = fdt_getprop_by_offset(r->fdt, prop, &name, &plen);
		size_t i;

		if (!val || !name || plen < 0) {
			ret = snap_fail(r, node, "unreadable property");
			goto out;
		}
		if (!strcmp(name, "version")) {
			if (seen_version) {
				ret = snap_fail(r, node, "version: twice");
				goto out;
			}
			seen_version = true;
			continue;
		}
		for (i = 0; i < d->nfields && strcmp(name, d->fields[i].name); i++)
			;
		if (i == d->nfields && is_extra(d, name))
			continue;
		if (i == d->nfields) {
			ret = snap_fail(r, node, "unexpected property %.40s (not in %s version %u)", name,
					d->name, version);
			goto out;
		}
		if (seen[i]) {
			ret = snap_fail(r, node, "%s: twice", name);
			goto out;
		}
		if (d->fields[i].since > version) {
			ret = snap_fail(r, node, "%s: not in %s version %u", name, d->name, version);
			goto out;
		}
		ret = decode_field(r, node, d, i, val, (size_t)plen, stage, seen);
		if (ret)
			goto out;
		seen[i] = true;
	}
	if (prop != -FDT_ERR_NOTFOUND) {
		ret = snap_fail(r, node, "corrupt property list: %s", fdt_strerror(prop));
		goto out;
	}
	for (size_t i = 0; i < d->nfields; i++) {
		if (!seen[i] && d->fields[i].since <= version) {
			ret = snap_fail(r, node, "missing property %s", d->fields[i].name);
			goto out;
		}
	}
	if (d->check) {
		msg[0] = '\0';
		ret = d->check(stage, msg, sizeof(msg));
		if (ret) {
			ret = snap_fail(r, node, "%s", msg[0] ? msg : "inconsistent fields");
			goto out;
		}
	}
	memcpy(obj, stage, d->size);
	ret = 0;
out:
	free(stage);
	free(seen);
	return ret;
}

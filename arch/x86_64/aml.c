/* AML encoder: see aml.h. Encodings from ACPI 6.4, chapter 20 and section 6.4. */
#include <errno.h>
#include <string.h>

#include "arch/x86_64/aml.h"

void aml_init(struct aml *a, void *buf, size_t cap)
{
	memset(a, 0, sizeof(*a));
	a->buf = buf;
	a->cap = cap;
}

int aml_finish(const struct aml *a, size_t *len)
{
	if (a->err)
		return a->err;
	if (a->depth)
		return -EINVAL; /* an object was never closed */
	*len = a->len;
	return 0;
}

static void fail(struct aml *a, int err)
{
	if (!a->err)
		a->err = err;
}

static struct aml_open *innermost(struct aml *a)
{
	return a->depth ? &a->open[a->depth - 1] : NULL;
}

static void emit(struct aml *a, const void *p, size_t n)
{
	if (a->err || n == 0)
		return;
	if (n > a->cap - a->len) {
		fail(a, -ENOSPC);
		return;
	}
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

static void emit_byte(struct aml *a, uint8_t b)
{
	emit(a, &b, 1);
}

static void emit_le(struct aml *a, uint64_t v, unsigned nbytes)
{
	uint8_t b[8];

	for (unsigned i = 0; i < nbytes; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	emit(a, b, nbytes);
}

/* Insert n bytes at offset pos (<= len), shifting the tail; used to prepend PkgLengths. */
static void insert(struct aml *a, size_t pos, const uint8_t *p, size_t n)
{
	if (a->err)
		return;
	if (n > a->cap - a->len) {
		fail(a, -ENOSPC);
		return;
	}
	memmove(a->buf + pos + n, a->buf + pos, a->len - pos);
	memcpy(a->buf + pos, p, n);
	a->len += n;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
	emit(a, p, n);
}

/*
 * A data object was started. Inside a Package it is one more element; inside
 * a ResourceTemplate only descriptors may appear.
 */
static void element(struct aml *a)
{
	struct aml_open *o = innermost(a);

	if (!o)
		return;
	if (o->kind == AML_KIND_RESTEMPLATE)
		fail(a, -EINVAL);
	else if (o->kind == AML_KIND_PACKAGE)
		o->count++;
}

/* ---- PkgLength, integers, strings ---------------------------------------- */

int aml_pkglen_encode(uint8_t out[4], uint32_t total)
{
	/* ACPI 6.4, 20.2.4: bits 7-6 of the lead byte count the follow bytes. */
	if (total <= 0x3f) {
		out[0] = (uint8_t)total;
		return 1;
	}
	if (total > AML_PKGLEN_MAX)
		return -EINVAL;
	unsigned n = total <= 0xfff ? 2 : total <= 0xfffff ? 3 : 4;

	out[0] = (uint8_t)(((n - 1) << 6) | (total & 0xf));
	for (unsigned i = 1; i < n; i++)
		out[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	return (int)n;
}

/* PkgLength for a body of body bytes: the value counts the PkgLength's own bytes too. */
static int pkglen_for_body(uint8_t out[4], size_t body)
{
	for (uint32_t n = 1; n <= 4; n++) {
		if (body > AML_PKGLEN_MAX - n)
			return -EINVAL;
		int r = aml_pkglen_encode(out, (uint32_t)(body + n));

		if (r < 0)
			return r;
		if ((uint32_t)r == n)
			return r;
	}
	return -EINVAL;
}

static size_t integer_encode(uint8_t out[9], uint64_t v)
{
	unsigned n;

	if (v == 0) {
		out[0] = AML_ZERO_OP;
		return 1;
	}
	if (v == 1) {
		out[0] = AML_ONE_OP;
		return 1;
	}
	if (v <= 0xff) {
		out[0] = AML_BYTE_PREFIX;
		n = 1;
	} else if (v <= 0xffff) {
		out[0] = AML_WORD_PREFIX;
		n = 2;
	} else if (v <= 0xffffffff) {
		out[0] = AML_DWORD_PREFIX;
		n = 4;
	} else {
		out[0] = AML_QWORD_PREFIX;
		n = 8;
	}
	for (unsigned i = 0; i < n; i++)
		out[1 + i] = (uint8_t)(v >> (8 * i));
	return 1 + n;
}

void aml_integer(struct aml *a, uint64_t v)
{
	uint8_t b[9];

	element(a);
	emit(a, b, integer_encode(b, v));
}

void aml_string(struct aml *a, const char *s)
{
	element(a);
	for (const char *c = s; *c; c++) {
		if ((unsigned char)*c > 0x7f) {
			fail(a, -EINVAL); /* AsciiCharList is 0x01-0x7f */
			return;
		}
	}
	emit_byte(a, AML_STRING_PREFIX);
	emit(a, s, strlen(s) + 1);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int aml_eisaid_encode(const char *id, uint32_t *out)
{
	/* Three 5-bit letters ('A' = 1) and four hex digits, stored big-endian (ACPI 6.4, 19.6.44). */
	if (strlen(id) != 7)
		return -EINVAL;
	for (int i = 0; i < 3; i++)
		if (id[i] < 'A' || id[i] > 'Z')
			return -EINVAL;
	uint32_t v = (uint32_t)(id[0] - 0x40) << 26 | (uint32_t)(id[1] - 0x40) << 21 |
		     (uint32_t)(id[2] - 0x40) << 16;

	for (int i = 3; i < 7; i++) {
		int h = hexval(id[i]);

		if (h < 0)
			return -EINVAL;
		v |= (uint32_t)h << (4 * (6 - i));
	}
	*out = __builtin_bswap32(v);
	return 0;
}

void aml_eisaid(struct aml *a, const char *id)
{
	uint32_t v;

	element(a);
	if (aml_eisaid_encode(id, &v) < 0) {
		fail(a, -EINVAL);
		return;
	}
	emit_byte(a, AML_DWORD_PREFIX);
	emit_le(a, v, 4);
}

void aml_buffer(struct aml *a, const void *data, size_t n)
{
	uint8_t pl[4], sz[9];
	size_t szlen = integer_encode(sz, n);
	int r;

	element(a);
	r = pkglen_for_body(pl, szlen + n);
	if (r < 0) {
		fail(a, r);
		return;
	}
	emit_byte(a, AML_BUFFER_OP);
	emit(a, pl, (size_t)r);
	emit(a, sz, szlen);
	emit(a, data, n);
}

/* ---- names ---------------------------------------------------------------- */

static int is_lead(char c)
{
	return (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_namechar(char c)
{
	return is_lead(c) || (c >= '0' && c <= '9');
}

static void emit_namestring(struct aml *a, const char *path)
{
	const char *p = path;
	uint8_t segs[255][4];
	unsigned nseg = 0;

	if (*p == '\\') {
		emit_byte(a, AML_ROOT_CHAR);
		p++;
	} else {
		for (; *p == '^'; p++)
			emit_byte(a, AML_PARENT_CHAR);
	}

	while (*p) {
		unsigned n = 0;

		if (nseg == ARRAY_SIZE(segs) || !is_lead(*p))
			goto bad;
		memset(segs[nseg], '_', 4);
		while (*p && *p != '.') {
			if (n == 4 || !is_namechar(*p))
				goto bad;
			segs[nseg][n++] = (uint8_t)*p++;
		}
		nseg++;
		if (*p == '.' && !*++p)
			goto bad; /* trailing dot */
	}

	/* ACPI 6.4, 20.2.2: NullName, NameSeg, DualNamePath or MultiNamePath. */
	if (nseg == 0) {
		emit_byte(a, 0x00);
	} else if (nseg == 1) {
		emit(a, segs[0], 4);
	} else if (nseg == 2) {
		emit_byte(a, AML_DUAL_NAME_PREFIX);
		emit(a, segs, 8);
	} else {
		emit_byte(a, AML_MULTI_NAME_PREFIX);
		emit_byte(a, (uint8_t)nseg);
		emit(a, segs, 4 * (size_t)nseg);
	}
	return;
bad:
	fail(a, -EINVAL);
}

void aml_namestring(struct aml *a, const char *path)
{
	element(a);
	emit_namestring(a, path);
}

void aml_name_begin(struct aml *a, const char *path)
{
	struct aml_open *o = innermost(a);

	if (o && (o->kind == AML_KIND_PACKAGE || o->kind == AML_KIND_RESTEMPLATE)) {
		fail(a, -EINVAL); /* Name is a term, not a data object */
		return;
	}
	emit_byte(a, AML_NAME_OP);
	emit_namestring(a, path);
}

void aml_name_integer(struct aml *a, const char *path, uint64_t v)
{
	aml_name_begin(a, path);
	aml_integer(a, v);
}

void aml_name_string(struct aml *a, const char *path, const char *s)
{
	aml_name_begin(a, path);
	aml_string(a, s);
}

void aml_name_eisaid(struct aml *a, const char *path, const char *id)
{
	aml_name_begin(a, path);
	aml_eisaid(a, id);
}

void aml_return(struct aml *a)
{
	struct aml_open *o = innermost(a);

	if (!o || o->kind != AML_KIND_METHOD) {
		fail(a, -EINVAL);
		return;
	}
	emit_byte(a, AML_RETURN_OP);
}

/* ---- objects with a PkgLength --------------------------------------------- */

static void push(struct aml *a, enum aml_kind kind)
{
	if (a->err)
		return;
	if (a->depth == AML_MAX_DEPTH) {
		fail(a, -EINVAL);
		return;
	}
	a->open[a->depth++] = (struct aml_open){ .mark = a->len, .kind = kind };
}

/* Terms that may not appear inside a Package or a ResourceTemplate. */
static int term_allowed(struct aml *a)
{
	struct aml_open *o = innermost(a);

	if (o && (o->kind == AML_KIND_PACKAGE || o->kind == AML_KIND_RESTEMPLATE)) {
		fail(a, -EINVAL);
		return 0;
	}
	return 1;
}

void aml_scope_begin(struct aml *a, const char *path)
{
	if (!term_allowed(a))
		return;
	emit_byte(a, AML_SCOPE_OP);
	push(a, AML_KIND_SCOPE);
	emit_namestring(a, path);
}

void aml_device_begin(struct aml *a, const char *path)
{
	if (!term_allowed(a))
		return;
	emit_byte(a, AML_EXT_OP_PREFIX);
	emit_byte(a, AML_DEVICE_OP);
	push(a, AML_KIND_DEVICE);
	emit_namestring(a, path);
}

void aml_method_begin(struct aml *a, const char *path, unsigned nargs, int serialized)
{
	if (!term_allowed(a))
		return;
	if (nargs > 7) {
		fail(a, -EINVAL);
		return;
	}
	emit_byte(a, AML_METHOD_OP);
	push(a, AML_KIND_METHOD);
	emit_namestring(a, path);
	/* MethodFlags: bits 0-2 ArgCount, bit 3 SerializeFlag, bits 4-7 SyncLevel 0. */
	emit_byte(a, (uint8_t)(nargs | (serialized ? 0x08 : 0)));
}

void aml_package_begin(struct aml *a)
{
	element(a);
	emit_byte(a, AML_PACKAGE_OP);
	push(a, AML_KIND_PACKAGE);
}

void aml_restemplate_begin(struct aml *a)
{
	element(a);
	emit_byte(a, AML_BUFFER_OP);
	push(a, AML_KIND_RESTEMPLATE);
}

void aml_end(struct aml *a)
{
	uint8_t prefix[4 + 9];
	size_t plen = 0, extra = 0;
	uint8_t tail[9];
	struct aml_open o;
	int r;

	if (a->err)
		return;
	if (!a->depth) {
		fail(a, -EINVAL);
		return;
	}
	o = a->open[--a->depth];

	if (o.kind == AML_KIND_RESTEMPLATE) {
		/* EndTag; checksum 0 means "treat as correct" (ACPI 6.4, 6.4.2.9). */
		static const uint8_t end_tag[2] = { 0x79, 0x00 };

		emit(a, end_tag, sizeof(end_tag));
		extra = integer_encode(tail, a->len - o.mark); /* BufferSize */
	} else if (o.kind == AML_KIND_PACKAGE) {
		if (o.count > 0xff) {
			fail(a, -EINVAL); /* NumElements is a ByteData */
			return;
		}
		tail[0] = (uint8_t)o.count;
		extra = 1;
	}
	if (a->err)
		return;

	r = pkglen_for_body(prefix, a->len - o.mark + extra);
	if (r < 0) {
		fail(a, r);
		return;
	}
	plen = (size_t)r;
	memcpy(prefix + plen, tail, extra);
	insert(a, o.mark, prefix, plen + extra);
}

/* ---- resource descriptors ------------------------------------------------- */

static int in_restemplate(struct aml *a)
{
	struct aml_open *o = innermost(a);

	if (!o || o->kind != AML_KIND_RESTEMPLATE) {
		fail(a, -EINVAL);
		return 0;
	}
	return 1;
}

void aml_res_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len)
{
	if (!in_restemplate(a))
		return;
	if (min > max) {
		fail(a, -EINVAL);
		return;
	}
	/* Small item 0x08, length 7; information bit 0: 16-bit decode. */
	emit_byte(a, 0x47);
	emit_byte(a, 0x01);
	emit_le(a, min, 2);
	emit_le(a, max, 2);
	emit_byte(a, align);
	emit_byte(a, len);
}

void aml_res_irq_noflags(struct aml *a, uint16_t irq_mask)
{
	if (!in_restemplate(a))
		return;
	/* Small item 0x04, length 2: no information byte means edge, active high, exclusive. */
	emit_byte(a, 0x22);
	emit_le(a, irq_mask, 2);
}

void aml_res_memory32_fixed(struct aml *a, int rw, uint32_t base, uint32_t len)
{
	if (!in_restemplate(a))
		return;
	/* Large item 0x06, length 9. */
	emit_byte(a, 0x86);
	emit_le(a, 9, 2);
	emit_byte(a, rw ? 1 : 0);
	emit_le(a, base, 4);
	emit_le(a, len, 4);
}

/* General flags for a bridge window: MaxFixed | MinFixed, positive decode, producer. */
#define ADDR_GFLAGS_WINDOW 0x0c

/* Word/DWord/QWord address space descriptor (ACPI 6.4, 6.4.3.5.1-3). */
static void addr_space(struct aml *a, uint8_t tag, unsigned width, uint8_t rtype,
		       uint8_t tflags, uint64_t min, uint64_t max)
{
	if (!in_restemplate(a))
		return;
	/* The length field must hold max - min + 1 too. */
	if (min > max || (width < 8 && (max >> (8 * width) || (max - min + 1) >> (8 * width)))) {
		fail(a, -EINVAL);
		return;
	}
	emit_byte(a, tag);
	emit_le(a, 3 + 5 * width, 2); /* flags (3 bytes) + 5 fields */
	emit_byte(a, rtype);
	emit_byte(a, ADDR_GFLAGS_WINDOW);
	emit_byte(a, tflags);
	emit_le(a, 0, width);             /* granularity */
	emit_le(a, min, width);
	emit_le(a, max, width);
	emit_le(a, 0, width);             /* translation offset */
	emit_le(a, max - min + 1, width); /* length; max-min+1 cannot wrap below 64 bits */
}

void aml_res_word_bus_number(struct aml *a, uint16_t min, uint16_t max)
{
	addr_space(a, 0x88, 2, 2, 0, min, max);
}

void aml_res_word_io(struct aml *a, uint16_t min, uint16_t max)
{
	/* Type-specific flags: _RNG = 3, entire range (ISA and non-ISA). */
	addr_space(a, 0x88, 2, 1, 0x03, min, max);
}

void aml_res_dword_memory(struct aml *a, int cacheable, uint32_t min, uint32_t max)
{
	/* Type-specific flags: bit 0 read-write, bits 1-2 _MEM. */
	addr_space(a, 0x87, 4, 0, (uint8_t)(1 | (cacheable ? 2 : 0)), min, max);
}

void aml_res_qword_memory(struct aml *a, int cacheable, uint64_t min, uint64_t max)
{
	if (min == 0 && max == UINT64_MAX) {
		fail(a, -EINVAL); /* the length would not fit in 64 bits */
		return;
	}
	addr_space(a, 0x8a, 8, 0, (uint8_t)(1 | (cacheable ? 2 : 0)), min, max);
}

/* _plain.c: a replicated object as a PUT left it, opened in one call
 * (zerocloud.object.diskfiles.open_plain).
 *
 * A batch opens one object per node.  In Python that was os.listdir, os.open,
 * os.fstat, os.getxattr twice (three system calls: CPython tries a 128-byte
 * buffer first, Swift's metadata is larger), hashlib's MD5 of the metadata,
 * Swift's restricted unpickler, then a pass decoding every key and value:
 * ~20 us of the object server's CPU a node, two thirds of it Python.  Here
 * the system calls are made once each, without the GIL, and the metadata as a
 * Python 3 Swift pickles it (protocol 2, each bytes as _codecs.encode(<str>,
 * 'latin1')) is decoded straight to what Swift's read_metadata gives.  Any
 * other directory, file or pickle is left to Swift's DiskFile (open_data()
 * says None): this file only ever answers for the common case, and as Swift.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "md5.h"

#define XATTR_MAX 65536         /* XATTR_SIZE_MAX: no chunk of the metadata is longer */
#define XATTR_FIRST 4096        /* the size asked for first */
#define METADATA_KEY "user.swift.metadata"
#define CHECKSUM_KEY "user.swift.metadata_checksum"
#define NAME_MAX_PLAIN 38       /* <10 digits>.<5 digits>_<16 hex>.data */

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static int digits(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* A data file Swift takes as the object's (parse_on_disk_filename): the whole name
 * [0-9]{10}\.[0-9]{5}(_[0-9a-f]{16})?\.data */
static int plain_name(const char *s, size_t n)
{
    if ((n != 21 && n != NAME_MAX_PLAIN) || !digits(s, 10) || s[10] != '.'
            || !digits(s + 11, 5))
        return 0;
    if (n == NAME_MAX_PLAIN) {
        if (s[16] != '_')
            return 0;
        for (int i = 17; i < 33; i++)
            if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                return 0;
    }
    return memcmp(s + n - 5, ".data", 5) == 0;
}

/* The descriptor of directory dir open, if it holds one entry (but . and ..) whose
 * name is plain_name's (copied to name); else -1. */
static int lone_data(const char *dir, char name[NAME_MAX_PLAIN + 1])
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    int found = 0;
    for (;;) {
        char buf[2048] __attribute__((aligned(8)));
        long got = syscall(SYS_getdents64, dfd, buf, sizeof buf);
        if (got == 0)
            break;
        if (got < 0)
            goto no;
        for (long at = 0; at < got;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + at);
            const char *s = d->d_name;
            at += d->d_reclen;
            if (s[0] == '.' && (s[1] == '\0' || (s[1] == '.' && s[2] == '\0')))
                continue;
            size_t n = strlen(s);
            if (found++ || !plain_name(s, n))
                goto no;
            memcpy(name, s, n + 1);
        }
    }
    if (found)
        return dfd;
no:
    close(dfd);
    return -1;
}

/* The metadata of the open file fd into *raw (malloc'd, *len bytes), read as Swift's
 * _read_file_metadata reads it (user.swift.metadata, ...1, ... up to the first
 * missing one; its checksum checked when there is one): 0, or -1 for any error,
 * which Swift's DiskFile then meets itself.  No chunk is looked for after one of
 * another size than Swift cuts them in (254 bytes in older Swifts, else 65536): a
 * system call per object that found none; a writer that cut them otherwise leaves a
 * pickle cut short here, which decode() does not take (or a checksum that does not
 * match), and Swift's DiskFile reads it whole. */
static int read_metadata(int fd, char **raw, size_t *len)
{
    size_t cap = XATTR_MAX, have = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        return -1;
    for (int key = 0;; key++) {
        char attr[sizeof METADATA_KEY + 12];
        if (key)
            snprintf(attr, sizeof attr, METADATA_KEY "%d", key);
        else
            memcpy(attr, METADATA_KEY, sizeof METADATA_KEY);
        if (cap - have < XATTR_MAX) {
            char *more = realloc(buf, cap * 2);
            if (more == NULL)
                goto fail;
            buf = more;
            cap *= 2;
        }
        /* the kernel zeroes a buffer of the size asked first: 64 KiB cost more than
         * the system call itself, and most metadata fits in a page */
        ssize_t got = fgetxattr(fd, attr, buf + have, XATTR_FIRST);
        if (got < 0 && errno == ERANGE)
            got = fgetxattr(fd, attr, buf + have, XATTR_MAX);
        if (got < 0) {
            if (errno == ENODATA && key)
                break;
            goto fail;
        }
        have += (size_t)got;
        if (got != 254 && got != XATTR_MAX)        /* the last chunk */
            break;
    }
    char sum[64];
    ssize_t got = fgetxattr(fd, CHECKSUM_KEY, sum, sizeof sum);
    if (got < 0 && errno != ENODATA)
        goto fail;
    if (got > 0) {
        struct md5 m;
        unsigned char digest[16];
        char hex[32];
        md5_init(&m);
        md5_update(&m, buf, have);
        md5_digest(&m, digest);
        for (int i = 0; i < 16; i++) {
            hex[2 * i] = "0123456789abcdef"[digest[i] >> 4];
            hex[2 * i + 1] = "0123456789abcdef"[digest[i] & 15];
        }
        if (got != 32 || memcmp(sum, hex, 32) != 0)
            goto fail;
    }
    *raw = buf;
    *len = have;
    return 0;
fail:
    free(buf);
    return -1;
}

/* ---- the metadata's pickle ---------------------------------------------------------- */

enum kind { K_UNSET, K_ENCODE, K_BYTES_TYPE, K_TEXT, K_PAIR, K_EMPTY_TUPLE, K_VALUE, K_DICT };

struct item {
    enum kind kind;
    const char *text;           /* K_TEXT, K_PAIR's first: UTF-8 as pickled */
    Py_ssize_t size;
    const char *text2;          /* K_PAIR's second */
    Py_ssize_t size2;
    PyObject *value;            /* K_VALUE: the decoded str (a reference held by values) */
};

#define STACK 64               /* items on the stack before it grows (a SETITEMS has 2000) */
#define MEMO_MAX (1 << 20)

/* _codecs.encode(<text>, 'latin1').decode('utf8', 'surrogateescape'): a new str, or
 * NULL with no error set when <text> (UTF-8) holds a code point over U+00FF or is no
 * UTF-8 (Swift's unpickler raises then). */
static PyObject *latin1_value(const char *text, Py_ssize_t size)
{
    Py_ssize_t i = 0;
    while (i < size && !(text[i] & 0x80))
        i++;
    if (i == size)
        return PyUnicode_DecodeASCII(text, size, NULL);
    char *bytes = PyMem_Malloc(size ? size : 1);
    if (bytes == NULL)
        return NULL;
    memcpy(bytes, text, i);
    Py_ssize_t n = i;
    for (; i < size; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x80) {
            bytes[n++] = (char)c;
        } else if ((c == 0xc2 || c == 0xc3) && i + 1 < size
                   && ((unsigned char)text[i + 1] & 0xc0) == 0x80) {
            bytes[n++] = (char)(((c & 0x1f) << 6) | ((unsigned char)text[++i] & 0x3f));
        } else {
            PyMem_Free(bytes);
            return NULL;
        }
    }
    PyObject *value = PyUnicode_DecodeUTF8(bytes, n, "surrogateescape");
    PyMem_Free(bytes);
    return value;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Set key/value pairs stack[from..top) into dict (all K_VALUE): 0, or -1 (not ours). */
static int set_items(PyObject *dict, struct item *stack, int from, int top)
{
    if ((top - from) % 2)
        return -1;
    for (int i = from; i < top; i += 2) {
        if (stack[i].kind != K_VALUE || stack[i + 1].kind != K_VALUE)
            return -1;
        if (PyDict_SetItem(dict, stack[i].value, stack[i + 1].value) < 0) {
            PyErr_Clear();
            return -1;
        }
    }
    return 0;
}

/* The metadata dict of pickle data[0..size), as Swift's _read_file_metadata gives it
 * (unpickle, then _decode_metadata of metadata a Python 3 Swift wrote): a new dict,
 * or None for anything but what a Python 3 Swift writes (left to Swift's unpickler). */
static PyObject *decode(const char *data, Py_ssize_t size)
{
    const unsigned char *p = (const unsigned char *)data, *end = p + size;
    struct item small[STACK], *stack = small, *memo = NULL;
    Py_ssize_t memo_size = 0;
    int top = 0, mark = -1, room = STACK;   /* one mark: SETITEMS's */
    PyObject *dict = NULL, *values = PyList_New(0), *result = NULL;
    static const char encode_global[] = "_codecs\nencode\n";

    if (values == NULL)
        return NULL;
    /* written_by_py3 (Swift's test): else _decode_metadata reads values as latin-1 */
    if (memmem(data, size < 32 ? (size_t)size : 32, "_codecs\nencode", 14) == NULL
            || size < 2 || p[0] != 0x80 || p[1] != 2)
        goto other;
    p += 2;
    while (p < end) {
        unsigned char op = *p++;
        Py_ssize_t left = end - p;
        uint32_t index;
        if (top == room) {          /* every opcode pushes one item at most */
            if (room >= size)       /* each item took a byte of the pickle */
                goto other;
            struct item *grown = PyMem_Malloc(2 * room * sizeof *stack);
            if (grown == NULL) {
                PyErr_NoMemory();
                goto fail;
            }
            memcpy(grown, stack, room * sizeof *stack);
            if (stack != small)
                PyMem_Free(stack);
            stack = grown;
            room *= 2;
        }
        switch (op) {
        case '}':                                       /* EMPTY_DICT */
            if (dict != NULL)
                goto other;
            dict = PyDict_New();
            if (dict == NULL)
                goto fail;
            stack[top++] = (struct item){.kind = K_DICT};
            break;
        case '(':                                       /* MARK */
            if (mark >= 0)
                goto other;
            mark = top;
            break;
        case 'c': {                                     /* GLOBAL */
            if (left >= 15 && memcmp(p, encode_global, 15) == 0) {
                stack[top++] = (struct item){.kind = K_ENCODE};
                p += 15;
            } else if (left >= 18 && memcmp(p, "__builtin__\nbytes\n", 18) == 0) {
                stack[top++] = (struct item){.kind = K_BYTES_TYPE};
                p += 18;
            } else if (left >= 15 && memcmp(p, "builtins\nbytes\n", 15) == 0) {
                stack[top++] = (struct item){.kind = K_BYTES_TYPE};
                p += 15;
            } else {
                goto other;
            }
            break;
        }
        case 'X': {                                     /* BINUNICODE */
            if (left < 4)
                goto other;
            uint32_t n = le32(p);
            if ((Py_ssize_t)n > left - 4)
                goto other;
            stack[top++] = (struct item){.kind = K_TEXT, .text = (const char *)p + 4,
                                         .size = n};
            p += 4 + n;
            break;
        }
        case 'q':                                       /* BINPUT */
        case 'r':                                       /* LONG_BINPUT */
            if (left < (op == 'q' ? 1 : 4) || top <= (mark < 0 ? 0 : mark))
                goto other;
            index = op == 'q' ? *p : le32(p);
            p += op == 'q' ? 1 : 4;
            if (index >= MEMO_MAX || index > size)     /* a BINPUT takes two bytes */
                goto other;
            if ((Py_ssize_t)index >= memo_size) {
                Py_ssize_t more = index < 64 ? 128 : (Py_ssize_t)index * 2;
                struct item *grown = PyMem_Realloc(memo, more * sizeof *memo);
                if (grown == NULL) {
                    PyErr_NoMemory();
                    goto fail;
                }
                for (Py_ssize_t i = memo_size; i < more; i++)
                    grown[i].kind = K_UNSET;
                memo = grown;
                memo_size = more;
            }
            memo[index] = stack[top - 1];
            break;
        case 'h':                                       /* BINGET */
        case 'j':                                       /* LONG_BINGET */
            if (left < (op == 'h' ? 1 : 4))
                goto other;
            index = op == 'h' ? *p : le32(p);
            p += op == 'h' ? 1 : 4;
            if ((Py_ssize_t)index >= memo_size || memo[index].kind == K_UNSET
                    || memo[index].kind == K_DICT)  /* the dict in itself: Swift's */
                goto other;
            stack[top++] = memo[index];
            break;
        case 0x86:                                      /* TUPLE2 */
            if (top - 2 < (mark < 0 ? 0 : mark) || stack[top - 1].kind != K_TEXT
                    || stack[top - 2].kind != K_TEXT)
                goto other;
            stack[top - 2].kind = K_PAIR;
            stack[top - 2].text2 = stack[top - 1].text;
            stack[top - 2].size2 = stack[top - 1].size;
            top--;
            break;
        case ')':                                       /* EMPTY_TUPLE */
            stack[top++] = (struct item){.kind = K_EMPTY_TUPLE};
            break;
        case 'R': {                                     /* REDUCE */
            if (top - 2 < (mark < 0 ? 0 : mark))
                goto other;
            struct item *f = &stack[top - 2], *args = &stack[top - 1];
            PyObject *value;
            if (f->kind == K_ENCODE && args->kind == K_PAIR && args->size2 == 6
                    && memcmp(args->text2, "latin1", 6) == 0)
                value = latin1_value(args->text, args->size);
            else if (f->kind == K_BYTES_TYPE && args->kind == K_EMPTY_TUPLE)
                value = PyUnicode_New(0, 0);
            else
                goto other;
            if (value == NULL) {
                if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_UnicodeError))
                    goto fail;
                PyErr_Clear();
                goto other;
            }
            int appended = PyList_Append(values, value);
            Py_DECREF(value);           /* values holds it */
            if (appended < 0)
                goto fail;
            top--;
            *f = (struct item){.kind = K_VALUE, .value = value};
            break;
        }
        case 's':                                       /* SETITEM */
            if (top < 3 || mark >= 0 || stack[top - 3].kind != K_DICT
                    || set_items(dict, stack, top - 2, top) < 0)
                goto other;
            top -= 2;
            break;
        case 'u':                                       /* SETITEMS */
            if (mark < 1 || stack[mark - 1].kind != K_DICT
                    || set_items(dict, stack, mark, top) < 0)
                goto other;
            top = mark;
            mark = -1;
            break;
        case '.':                                       /* STOP: what follows is not read */
            if (top != 1 || mark >= 0 || stack[0].kind != K_DICT)
                goto other;
            result = dict;
            dict = NULL;
            goto done;
        default:
            goto other;
        }
    }
other:
    result = Py_NewRef(Py_None);
    goto done;
fail:
    result = NULL;
done:
    Py_XDECREF(dict);
    Py_DECREF(values);
    PyMem_Free(memo);
    if (stack != small)
        PyMem_Free(stack);
    return result;
}

static PyObject *plain_decode(PyObject *module, PyObject *arg)
{
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "decode() takes bytes");
        return NULL;
    }
    return decode(PyBytes_AS_STRING(arg), PyBytes_GET_SIZE(arg));
}

static PyObject *plain_open_data(PyObject *module, PyObject *arg)
{
    PyObject *path = NULL;
    if (!PyUnicode_FSConverter(arg, &path))
        return NULL;
    char name[NAME_MAX_PLAIN + 1], *raw = NULL;     /* the pickle: decode()'s texts */
    size_t len = 0;
    int fd = -1;
    struct stat st;
    Py_BEGIN_ALLOW_THREADS
    int dfd = lone_data(PyBytes_AS_STRING(path), name);
    if (dfd >= 0) {
        fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
        close(dfd);
    }
    if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)
                    || read_metadata(fd, &raw, &len) < 0)) {
        close(fd);
        fd = -1;
    }
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    if (fd < 0)
        Py_RETURN_NONE;
    PyObject *metadata = decode(raw, (Py_ssize_t)len), *result = metadata;
    free(raw);
    if (metadata != NULL && metadata != Py_None) {
        result = Py_BuildValue("(iLO)", fd, (long long)st.st_size, metadata);
        Py_DECREF(metadata);
    }
    if (result == NULL || result == Py_None)
        close(fd);
    return result;
}

static PyMethodDef methods[] = {
    {"open_data", plain_open_data, METH_O,
     "open_data(datadir) -> (fd, size, metadata) or None: the lone plain .data\n"
     "file of hash directory datadir opened (O_CLOEXEC), its size and its metadata\n"
     "as Swift's read_metadata gives it (checksum checked); None for any other\n"
     "directory or file, or metadata that does not read back or that a Python 3\n"
     "Swift did not pickle."},
    {"decode", plain_decode, METH_O,
     "decode(metadata bytes) -> dict or None: Swift's read_metadata's dict of\n"
     "metadata a Python 3 Swift pickled; None for any other pickle."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "zerocloud.object._plain",
    "An object as a PUT left it, opened in one call (diskfiles.open_plain).", -1, methods,
};

PyMODINIT_FUNC PyInit__plain(void)
{
    return PyModule_Create(&module_def);
}

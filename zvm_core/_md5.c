/* _md5.c: zvm_core._md5.MD5, a channel's running MD5 (md5.h) as a Python object.
 *
 * hashlib's MD5 is opaque to C and needs the GIL; this one's state is md5.h's
 * struct, which the native engine's C loop (fastcall.c, which finds the type
 * here) updates without the GIL, on a helper thread, while no Python code
 * runs.  update() never releases the GIL: a GIL taken back under contention
 * reads the clock with rdtsc, which faults in a thread serving a guest.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "md5.h"

static PyObject *md5_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"data", NULL};
    Py_buffer data = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|y*:MD5", keywords, &data))
        return NULL;
    MD5Object *self = (MD5Object *)type->tp_alloc(type, 0);
    if (self != NULL) {
        md5_init(&self->md5);
        if (data.buf != NULL)
            md5_update(&self->md5, data.buf, (size_t)data.len);
    }
    if (data.buf != NULL)
        PyBuffer_Release(&data);
    return (PyObject *)self;
}

static PyObject *md5_py_update(MD5Object *self, PyObject *arg)
{
    Py_buffer data;
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) < 0)
        return NULL;
    md5_update(&self->md5, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
}

static PyObject *md5_py_digest(MD5Object *self, PyObject *unused)
{
    unsigned char out[16];
    md5_digest(&self->md5, out);
    return PyBytes_FromStringAndSize((const char *)out, 16);
}

static PyObject *md5_py_hexdigest(MD5Object *self, PyObject *unused)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char out[16];
    char text[32];
    md5_digest(&self->md5, out);
    for (int i = 0; i < 16; i++) {
        text[2 * i] = hex[out[i] >> 4];
        text[2 * i + 1] = hex[out[i] & 15];
    }
    return PyUnicode_FromStringAndSize(text, 32);
}

static PyObject *md5_py_copy(MD5Object *self, PyObject *unused)
{
    MD5Object *copy = (MD5Object *)Py_TYPE(self)->tp_alloc(Py_TYPE(self), 0);
    if (copy != NULL)
        copy->md5 = self->md5;
    return (PyObject *)copy;
}

static PyMethodDef md5_methods[] = {
    {"update", (PyCFunction)md5_py_update, METH_O, "update(data): hash these bytes next."},
    {"digest", (PyCFunction)md5_py_digest, METH_NOARGS, "digest() -> the 16 bytes so far."},
    {"hexdigest", (PyCFunction)md5_py_hexdigest, METH_NOARGS,
     "hexdigest() -> the digest so far in lower-case hex."},
    {"copy", (PyCFunction)md5_py_copy, METH_NOARGS, "copy() -> an MD5 with this state."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject MD5Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "zvm_core._md5.MD5",
    .tp_basicsize = sizeof(MD5Object),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "MD5(data=b'') -> a running MD5 (RFC 1321), hashlib.md5's interface "
              "(update, digest, hexdigest, copy), with a state the native engine's C "
              "loop updates without the GIL.",
    .tp_new = md5_new,
    .tp_methods = md5_methods,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_md5",
                                    "A channel's running MD5 (md5.h).", -1, NULL};

PyMODINIT_FUNC PyInit__md5(void)
{
    if (PyType_Ready(&MD5Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL || PyModule_AddObjectRef(m, "MD5", (PyObject *)&MD5Type) < 0) {
        Py_XDECREF(m);
        return NULL;
    }
    return m;
}

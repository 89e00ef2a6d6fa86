/* Optional compiled speedups for the few measured hot functions of wshub.protocol.
 *
 * The pure-Python versions in wshub/protocol/mask.py are the reference; this module
 * must compute exactly the same results (the test suite runs against both paths, and
 * WSHUB_NO_EXTENSIONS=1 forces the pure one). Built by `pip install` when a C compiler
 * is present; setup.py marks it optional, so installation never fails without one.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* apply_mask(data, mask, offset=0) -> bytes: RFC 6455 section 5.3 masking. */
static PyObject *
apply_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, mask;
    Py_ssize_t offset = 0;
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "apply_mask(data, mask, offset=0)");
        return NULL;
    }
    if (nargs == 3) {
        offset = PyLong_AsSsize_t(args[2]);
        if (offset == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &mask, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (mask.len != 4) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&mask);
        PyErr_SetString(PyExc_ValueError, "mask must be 4 bytes");
        return NULL;
    }
    const unsigned char *in = (const unsigned char *)data.buf;
    const unsigned char *mk = (const unsigned char *)mask.buf;
    Py_ssize_t n = data.len;
    unsigned char m[8];
    for (int k = 0; k < 8; k++) {
        m[k] = mk[(k + offset) & 3];
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, n);
    if (result != NULL) {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        uint64_t m64;
        memcpy(&m64, m, 8);
        Py_ssize_t i = 0;
        for (; i + 8 <= n; i += 8) {
            uint64_t x;
            memcpy(&x, in + i, 8);
            x ^= m64;
            memcpy(out + i, &x, 8);
        }
        for (; i < n; i++) {
            out[i] = in[i] ^ m[i & 7];
        }
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&mask);
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL,
     "apply_mask(data, mask, offset=0) -> bytes\n\nMask or unmask a payload (RFC 6455 5.3)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "wshub._speedups",
    "Compiled versions of wshub's hottest protocol functions (optional).", -1,
    speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}

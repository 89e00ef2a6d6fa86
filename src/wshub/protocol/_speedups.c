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

/* ---- receive: whole, simple data frames ------------------------------------------------- */

/* scan_frames(data, expect_mask, max_size, callback) -> int
 *
 * Delivers, in order, every complete data frame at the start of `data` that is a whole
 * message by itself (FIN set, RSV bits clear, opcode text or binary), masked as
 * `expect_mask` says, not longer than `max_size` (-1: no limit), and (text) valid UTF-8:
 * callback(str) for text, callback(bytes) for binary. Stops at the first frame that is
 * anything else -- incomplete, a control frame, a fragment, compressed, invalid -- and
 * returns how many bytes it consumed, so that the pure-Python parser (the reference)
 * handles the rest with every rule of RFC 6455. It never decides that input is invalid.
 */
static PyObject *
scan_frames(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "scan_frames(data, expect_mask, max_size, callback)");
        return NULL;
    }
    int expect_mask = PyObject_IsTrue(args[1]);
    if (expect_mask < 0) {
        return NULL;
    }
    long long max_size = PyLong_AsLongLong(args[2]);
    if (max_size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *callback = args[3];
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)view.buf;
    Py_ssize_t n = view.len, pos = 0;
    unsigned char stack[512];
    while (n - pos >= 2) {
        unsigned char b0 = p[pos], b1 = p[pos + 1];
        if ((b0 & 0xF0) != 0x80) {
            break; /* a fragment, or RSV bits: the reference parser decides */
        }
        int opcode = b0 & 0x0F;
        if (opcode != 1 && opcode != 2) {
            break;
        }
        int masked = (b1 & 0x80) != 0;
        if (masked != expect_mask) {
            break;
        }
        unsigned long long length = b1 & 0x7F;
        Py_ssize_t head = 2;
        if (length == 126) {
            if (n - pos < 4) {
                break;
            }
            length = ((unsigned long long)p[pos + 2] << 8) | p[pos + 3];
            head = 4;
        }
        else if (length == 127) {
            if (n - pos < 10) {
                break;
            }
            length = 0;
            for (int k = 2; k < 10; k++) {
                length = (length << 8) | p[pos + k];
            }
            if (length >> 62) {
                break;
            }
            head = 10;
        }
        if (max_size >= 0 && length > (unsigned long long)max_size) {
            break;
        }
        Py_ssize_t start = pos + head + (masked ? 4 : 0);
        if (start > n || (unsigned long long)(n - start) < length) {
            break; /* incomplete: the reference parser streams it */
        }
        Py_ssize_t len = (Py_ssize_t)length;
        const unsigned char *payload = p + start;
        PyObject *message;
        if (masked) {
            const unsigned char *key = p + start - 4;
            unsigned char m8[8];
            for (int k = 0; k < 8; k++) {
                m8[k] = key[k & 3];
            }
            uint64_t m64;
            memcpy(&m64, m8, 8);
            unsigned char *buf;
            PyObject *bytes = NULL;
            if (opcode == 2) {
                bytes = PyBytes_FromStringAndSize(NULL, len);
                if (bytes == NULL) {
                    PyBuffer_Release(&view);
                    return NULL;
                }
                buf = (unsigned char *)PyBytes_AS_STRING(bytes);
            }
            else if (len <= (Py_ssize_t)sizeof(stack)) {
                buf = stack;
            }
            else {
                buf = (unsigned char *)PyMem_Malloc(len);
                if (buf == NULL) {
                    PyBuffer_Release(&view);
                    return PyErr_NoMemory();
                }
            }
            Py_ssize_t i = 0;
            for (; i + 8 <= len; i += 8) {
                uint64_t x;
                memcpy(&x, payload + i, 8);
                x ^= m64;
                memcpy(buf + i, &x, 8);
            }
            for (; i < len; i++) {
                buf[i] = payload[i] ^ m8[i & 7];
            }
            if (opcode == 2) {
                message = bytes;
            }
            else {
                message = PyUnicode_DecodeUTF8((const char *)buf, len, NULL);
                if (buf != stack) {
                    PyMem_Free(buf);
                }
            }
        }
        else if (opcode == 2) {
            message = PyBytes_FromStringAndSize((const char *)payload, len);
        }
        else {
            message = PyUnicode_DecodeUTF8((const char *)payload, len, NULL);
        }
        if (message == NULL) {
            if (opcode == 1 && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                PyErr_Clear();
                break; /* invalid UTF-8: the reference parser fails the connection (1007) */
            }
            PyBuffer_Release(&view);
            return NULL;
        }
        pos = start + len;
        PyObject *result = PyObject_CallOneArg(callback, message);
        Py_DECREF(message);
        if (result == NULL) {
            PyBuffer_Release(&view);
            return NULL;
        }
        Py_DECREF(result);
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(pos);
}

/* ---- send: one whole message in one frame ------------------------------------------------ */

static unsigned char mask_pool[4096];
static Py_ssize_t mask_pool_pos = sizeof(mask_pool);
static PyObject *urandom_func = NULL;

static int
next_mask(unsigned char *key)
{
    if (mask_pool_pos + 4 > (Py_ssize_t)sizeof(mask_pool)) {
        if (urandom_func == NULL) {
            PyObject *os = PyImport_ImportModule("os");
            if (os == NULL) {
                return -1;
            }
            urandom_func = PyObject_GetAttrString(os, "urandom");
            Py_DECREF(os);
            if (urandom_func == NULL) {
                return -1;
            }
        }
        PyObject *fresh = PyObject_CallFunction(urandom_func, "n", (Py_ssize_t)sizeof(mask_pool));
        if (fresh == NULL) {
            return -1;
        }
        if (!PyBytes_Check(fresh) || PyBytes_GET_SIZE(fresh) != (Py_ssize_t)sizeof(mask_pool)) {
            Py_DECREF(fresh);
            PyErr_SetString(PyExc_RuntimeError, "os.urandom returned an unexpected value");
            return -1;
        }
        memcpy(mask_pool, PyBytes_AS_STRING(fresh), sizeof(mask_pool));
        Py_DECREF(fresh);
        mask_pool_pos = 0;
    }
    memcpy(key, mask_pool + mask_pool_pos, 4);
    mask_pool_pos += 4;
    return 0;
}

/* reset_mask_pool(): a forked child must not reuse its parent's pooled keys. */
static PyObject *
reset_mask_pool(PyObject *module, PyObject *unused)
{
    mask_pool_pos = sizeof(mask_pool);
    Py_RETURN_NONE;
}

static PyObject *
build_message_frame(PyObject *message, int masked)
{
    PyObject *owned = NULL;
    const char *data;
    Py_ssize_t len;
    int opcode;
    Py_buffer view;
    int have_view = 0;
    if (PyUnicode_Check(message)) {
        opcode = 1;
        data = PyUnicode_AsUTF8AndSize(message, &len);
        if (data == NULL) {
            return NULL;
        }
    }
    else if (PyBytes_CheckExact(message)) {
        opcode = 2;
        data = PyBytes_AS_STRING(message);
        len = PyBytes_GET_SIZE(message);
    }
    else {
        opcode = 2;
        if (PyObject_GetBuffer(message, &view, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
        have_view = 1;
        data = (const char *)view.buf;
        len = view.len;
    }
    unsigned char head[14];
    Py_ssize_t hl;
    head[0] = (unsigned char)(0x80 | opcode);
    unsigned char m = masked ? 0x80 : 0;
    if (len < 126) {
        head[1] = (unsigned char)(m | len);
        hl = 2;
    }
    else if (len < 65536) {
        head[1] = m | 126;
        head[2] = (unsigned char)(len >> 8);
        head[3] = (unsigned char)len;
        hl = 4;
    }
    else {
        head[1] = m | 127;
        unsigned long long l = (unsigned long long)len;
        for (int k = 9; k >= 2; k--) {
            head[k] = (unsigned char)l;
            l >>= 8;
        }
        hl = 10;
    }
    if (masked) {
        if (next_mask(head + hl) < 0) {
            if (have_view) {
                PyBuffer_Release(&view);
            }
            return NULL;
        }
        hl += 4;
    }
    PyObject *frame = PyBytes_FromStringAndSize(NULL, hl + len);
    if (frame != NULL) {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(frame);
        memcpy(out, head, hl);
        if (!masked) {
            memcpy(out + hl, data, len);
        }
        else {
            const unsigned char *key = head + hl - 4;
            unsigned char m8[8];
            for (int k = 0; k < 8; k++) {
                m8[k] = key[k & 3];
            }
            uint64_t m64;
            memcpy(&m64, m8, 8);
            const unsigned char *in = (const unsigned char *)data;
            unsigned char *dst = out + hl;
            Py_ssize_t i = 0;
            for (; i + 8 <= len; i += 8) {
                uint64_t x;
                memcpy(&x, in + i, 8);
                x ^= m64;
                memcpy(dst + i, &x, 8);
            }
            for (; i < len; i++) {
                dst[i] = in[i] ^ m8[i & 7];
            }
        }
    }
    if (have_view) {
        PyBuffer_Release(&view);
    }
    Py_XDECREF(owned);
    return frame;
}

/* frame_message(message) -> bytes: an unmasked frame (server), text for str. */
static PyObject *
frame_message(PyObject *module, PyObject *message)
{
    return build_message_frame(message, 0);
}

/* frame_message_masked(message) -> bytes: a masked frame with a fresh key (client). */
static PyObject *
frame_message_masked(PyObject *module, PyObject *message)
{
    return build_message_frame(message, 1);
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL,
     "apply_mask(data, mask, offset=0) -> bytes\n\nMask or unmask a payload (RFC 6455 5.3)."},
    {"scan_frames", (PyCFunction)(void (*)(void))scan_frames, METH_FASTCALL,
     "scan_frames(data, expect_mask, max_size, callback) -> int\n\n"
     "Deliver the leading whole, simple data frames; return the bytes consumed."},
    {"frame_message", (PyCFunction)frame_message, METH_O,
     "frame_message(message) -> bytes\n\nOne unmasked frame holding the whole message."},
    {"frame_message_masked", (PyCFunction)frame_message_masked, METH_O,
     "frame_message_masked(message) -> bytes\n\nOne masked frame with a fresh key."},
    {"reset_mask_pool", (PyCFunction)reset_mask_pool, METH_NOARGS,
     "reset_mask_pool()\n\nForget pooled masking keys (after fork)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "wshub.protocol._speedups",
    "Compiled versions of wshub's hottest protocol functions (optional).", -1,
    speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}

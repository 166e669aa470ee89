/* gateway._sendall: write one byte string to many non-blocking sockets in one call.
 *
 * Why: a fanout hands the same frame to thousands of sockets. In Python each send costs a
 * bytecode loop iteration plus a system call made with the GIL held; here the loop is C, the
 * GIL is released for all the system calls (the event loop's other threads, if any, run), and
 * with threads >= 2 the sockets are split over pthreads so one fanout uses more than one core.
 *
 * Each fd gets exactly one send(2) (retried on EINTR only). A partial write is NOT completed
 * here: the caller gives the remainder to its event loop transport, which waits for the socket
 * to become writable instead of spinning on it.
 *
 * Results per fd: bytes sent (0..len), 0 for EAGAIN/EWOULDBLOCK (nothing sent), -errno for any
 * other error. MSG_NOSIGNAL: a peer that has gone away gives -EPIPE, never SIGPIPE.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Threads are started per call: more than a few would cost more to start than they save,
 * and a chunk under ~128 sockets is cheaper to send than a thread is to create and join. */
#define MAX_THREADS 4
#define MIN_FDS_PER_THREAD 128

/* One contiguous slice of the fd array, and where its results go. */
typedef struct {
    const int *fds;
    Py_ssize_t *results;
    Py_ssize_t count;
    const char *buf;
    size_t len;
} chunk_t;

static Py_ssize_t
send_one(int fd, const char *buf, size_t len)
{
    for (;;) {
        ssize_t sent = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (sent >= 0)
            return (Py_ssize_t)sent;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0; /* buffer full: nothing sent, the transport will wait for it */
        return -(Py_ssize_t)errno;
    }
}

static void *
send_chunk(void *arg)
{
    chunk_t *chunk = arg;
    for (Py_ssize_t i = 0; i < chunk->count; i++)
        chunk->results[i] = send_one(chunk->fds[i], chunk->buf, chunk->len);
    return NULL;
}

/* Send on `nthreads` threads, the calling one included. Runs without the GIL. */
static void
send_all_threads(const int *fds, Py_ssize_t *results, Py_ssize_t n, const char *buf,
                 size_t len, int nthreads)
{
    chunk_t chunks[MAX_THREADS];
    pthread_t tids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    sigset_t all, old;

    if (nthreads == 1) { /* the common small fanout: no thread, no signal mask calls */
        chunks[0] = (chunk_t){fds, results, n, buf, len};
        send_chunk(&chunks[0]);
        return;
    }
    for (int t = 0; t < nthreads; t++) {
        Py_ssize_t lo = n * t / nthreads, hi = n * (t + 1) / nthreads;
        chunks[t] = (chunk_t){fds + lo, results + lo, hi - lo, buf, len};
    }

    /* Workers start with every signal blocked (they inherit the mask), so signals keep going
     * to threads Python knows about; the caller's own mask is restored at once. */
    sigfillset(&all);
    int masked = pthread_sigmask(SIG_SETMASK, &all, &old) == 0;
    for (int t = 1; t < nthreads; t++)
        started[t] = pthread_create(&tids[t], NULL, send_chunk, &chunks[t]) == 0;
    if (masked)
        pthread_sigmask(SIG_SETMASK, &old, NULL);

    send_chunk(&chunks[0]);
    for (int t = 1; t < nthreads; t++) {
        if (started[t])
            pthread_join(tids[t], NULL);
        else
            send_chunk(&chunks[t]); /* no thread to be had: this one does it, still once */
    }
}

/* Copy the fds of a PySequence_Fast into a C array, validating every one before anything is
 * sent: a bad argument must not leave half the sockets written. No Python code runs here
 * (the values of int objects are read directly), so the sequence cannot change under us. */
static int
copy_fds(PyObject *seq, int *fds)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        int overflow;
        long fd;
        if (!PyLong_Check(items[i])) {
            PyErr_Format(PyExc_TypeError, "fds[%zd] must be an int, not %.100s", i,
                         Py_TYPE(items[i])->tp_name);
            return -1;
        }
        fd = PyLong_AsLongAndOverflow(items[i], &overflow);
        if (overflow || fd < 0 || fd > INT_MAX) {
            PyErr_Format(PyExc_ValueError, "fds[%zd] is not a valid file descriptor", i);
            return -1;
        }
        fds[i] = (int)fd;
    }
    return 0;
}

/* What both entry points share: parse, copy the fds, send. On success sets *out_results
 * (PyMem_Malloc'd, *out_n entries, freed by the caller) and *out_len, and returns 0. */
static int
parse_and_send(PyObject *args, PyObject *kwargs, const char *fname, Py_ssize_t **out_results,
               Py_ssize_t *out_n, Py_ssize_t *out_len)
{
    static char *kwlist[] = {"fds", "data", "threads", NULL};
    char format[64];
    PyObject *fds_arg, *seq = NULL;
    Py_buffer data;
    Py_ssize_t threads = 1, n = 0, *results = NULL;
    int *fds, nthreads;

    /* "y*": any bytes-like object (buffer protocol), held until PyBuffer_Release below, so a
     * bytearray cannot be resized while the threads read it. str is refused (TypeError). */
    PyOS_snprintf(format, sizeof format, "Oy*|n:%s", fname);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, format, kwlist, &fds_arg, &data, &threads))
        return -1;
    if (threads < 1) {
        PyErr_SetString(PyExc_ValueError, "threads must be >= 1");
        goto fail;
    }
    if ((seq = PySequence_Fast(fds_arg, "fds must be a sequence of ints")) == NULL)
        goto fail;
    n = PySequence_Fast_GET_SIZE(seq);
    /* One allocation: the results, then the fds (ints need no more alignment than ssize_t). */
    results = PyMem_Malloc((size_t)(n ? n : 1) * (sizeof(Py_ssize_t) + sizeof(int)));
    if (results == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    fds = (int *)(results + n);
    if (copy_fds(seq, fds) < 0)
        goto fail;
    Py_CLEAR(seq);

    /* At most what was asked, MAX_THREADS, and one thread per MIN_FDS_PER_THREAD fds. */
    nthreads = (int)Py_MIN(Py_MIN(threads, MAX_THREADS), n / MIN_FDS_PER_THREAD);
    if (nthreads < 1)
        nthreads = 1;

    Py_BEGIN_ALLOW_THREADS
    send_all_threads(fds, results, n, data.buf, (size_t)data.len, nthreads);
    Py_END_ALLOW_THREADS

    *out_results = results;
    *out_n = n;
    *out_len = data.len;
    PyBuffer_Release(&data);
    return 0;

fail:
    PyMem_Free(results);
    Py_XDECREF(seq);
    PyBuffer_Release(&data);
    return -1;
}

PyDoc_STRVAR(send_all_doc,
"send_all(fds, data, threads=1) -> list[int]\n\n"
"send(fd, data, MSG_DONTWAIT | MSG_NOSIGNAL) once on each fd, with the GIL released.\n"
"Result per fd, in the order of fds: bytes sent (0..len(data); 0 when the socket buffer is\n"
"full) or -errno. threads >= 2 splits the fds over that many threads (at most 4, and only\n"
"with at least 128 fds per thread).");

static PyObject *
send_all(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwargs)
{
    Py_ssize_t *results, n, len;
    if (parse_and_send(args, kwargs, "send_all", &results, &n, &len) < 0)
        return NULL;

    PyObject *list = PyList_New(n);
    /* The common result is "all sent": one int object for it, shared by every entry, instead
     * of one allocation per socket when len(data) is past the small-int cache. */
    PyObject *full = list ? PyLong_FromSsize_t(len) : NULL;
    if (full == NULL) {
        Py_XDECREF(list);
        PyMem_Free(results);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value;
        if (results[i] == len) {
            value = Py_NewRef(full);
        } else if ((value = PyLong_FromSsize_t(results[i])) == NULL) {
            Py_DECREF(list);
            list = NULL;
            break;
        }
        PyList_SET_ITEM(list, i, value);
    }
    Py_DECREF(full);
    PyMem_Free(results);
    return list;
}

PyDoc_STRVAR(send_all_failures_doc,
"send_all_failures(fds, data, threads=1) -> list[tuple[int, int]]\n\n"
"As send_all, but returns only the (index, result) pairs whose result != len(data):\n"
"the sockets with a partial write (result >= 0) or an error (-errno). Usually empty.");

static PyObject *
send_all_failures(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwargs)
{
    Py_ssize_t *results, n, len;
    if (parse_and_send(args, kwargs, "send_all_failures", &results, &n, &len) < 0)
        return NULL;

    PyObject *list = PyList_New(0);
    for (Py_ssize_t i = 0; list != NULL && i < n; i++) {
        if (results[i] == len)
            continue;
        PyObject *pair = Py_BuildValue("(nn)", i, results[i]);
        if (pair == NULL || PyList_Append(list, pair) < 0)
            Py_CLEAR(list);
        Py_XDECREF(pair);
    }
    PyMem_Free(results);
    return list;
}

static PyMethodDef methods[] = {
    {"send_all", (PyCFunction)(void (*)(void))send_all, METH_VARARGS | METH_KEYWORDS,
     send_all_doc},
    {"send_all_failures", (PyCFunction)(void (*)(void))send_all_failures,
     METH_VARARGS | METH_KEYWORDS, send_all_failures_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "gateway._sendall",
    .m_doc = "One byte string to many non-blocking sockets, GIL released (see gateway.sendall).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__sendall(void)
{
    return PyModuleDef_Init(&module);
}

/*
 * The arithmetic of features/engineering.py's build_features: raw numbers in, model rows out.
 *
 * Training and serving both call this one function, so it is still the one feature
 * function; it is C because a single prediction is one row, and a numpy formulation pays
 * about a microsecond of call overhead for each of its ~20 array operations (35-50 us a
 * row here), where this loop takes well under one. The order of the columns written below
 * is FEATURE_NAMES in features/engineering.py; tests/test_schema_and_features.py checks
 * every column by name against its formula.
 *
 * build(numbers, hardware, out)
 *   numbers   float64 (rows, N_NUMBERS) row-major, in NUMBER_FIELDS order (see below)
 *   hardware  float64 (1 or rows, 4): TFLOP/s, GB/s, GB, known flag; one row is shared
 *   out       float64 (rows, N_FEATURES) row-major, every column written
 *
 * gather(records, names, out)
 *   records   a sequence of objects (validated records: observations, route candidates)
 *   names     a tuple of attribute names, each read off every record as a number (an
 *             attribute of None reads as NaN); a name of None leaves its column as it is
 *   out       float64 (len(records), len(names)) row-major
 *
 * gather is how records become the raw numbers: a Python loop building a tuple of
 * attributes per record costs ~0.5 us a record, which a router pays for every candidate
 * of every call; reading the attributes here costs ~25 ns each.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

/* NUMBER_FIELDS of features/engineering.py. */
enum { INPUT, CACHED, MAX_TOKENS, RUNNING, WAITING, KV_CACHE, PREFILL, DECODE, ROLE, N_NUMBERS };
enum { N_HARDWARE = 4, N_FEATURES = 21 };
/* ROLE_CODES of features/engineering.py. */
enum { ROLE_PREFILL = 1, ROLE_DECODE = 2 };

/* A hardware row as the features use it: the logged spec-sheet figures and the known flag. */
typedef struct {
    double log_tflops, log_hbm_gbps, log_memory_gb, known;
} Hardware;

static Hardware logged(const double *hw) {
    return (Hardware){log(hw[0]), log(hw[1]), log(hw[2]), hw[3]};
}

static void build_row(const double *x, const Hardware *hw, double *f) {
    const double uncached = fmax(x[INPUT] - x[CACHED], 0.0);
    const double queued = x[PREFILL] + uncached;
    f[0] = log1p(x[INPUT]);                            /* log_input_tokens */
    f[1] = log1p(x[CACHED]);                           /* log_cached_tokens */
    f[2] = log1p(uncached);                            /* log_uncached_tokens */
    f[3] = x[CACHED] / fmax(x[INPUT], 1.0);            /* prefix_hit_fraction */
    f[4] = x[RUNNING];                                 /* running_requests */
    f[5] = x[WAITING];                                 /* waiting_requests */
    f[6] = log1p(x[RUNNING]);                          /* log_running_requests */
    f[7] = log1p(x[WAITING]);                          /* log_waiting_requests */
    f[8] = x[KV_CACHE];                                /* kv_cache_usage */
    f[9] = log1p(x[PREFILL]);                          /* log_prefill_in_flight */
    f[10] = log1p(x[DECODE]);                          /* log_decode_in_flight */
    f[11] = log1p(queued);                             /* log_queued_prefill_work */
    f[12] = log1p(x[MAX_TOKENS]);                      /* log_max_tokens */
    f[13] = x[ROLE] == ROLE_PREFILL;                   /* role_prefill */
    f[14] = x[ROLE] == ROLE_DECODE;                    /* role_decode */
    f[15] = hw->log_tflops;                            /* log_tflops */
    f[16] = hw->log_hbm_gbps;                          /* log_hbm_gbps */
    f[17] = hw->log_memory_gb;                         /* log_memory_gb */
    f[18] = hw->known;                                 /* hardware_known */
    f[19] = f[11] - hw->log_tflops;                    /* log_prefill_compute_time */
    f[20] = log1p(x[DECODE] + x[RUNNING]) - hw->log_hbm_gbps; /* log_decode_memory_time */
}

static PyObject *build(PyObject *self, PyObject *args) {
    Py_buffer numbers, hardware, out;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*w*", &numbers, &hardware, &out)) {
        return NULL;
    }
    const Py_ssize_t row_bytes = N_NUMBERS * (Py_ssize_t)sizeof(double);
    const Py_ssize_t rows = numbers.len / row_bytes;
    const Py_ssize_t hw_rows = hardware.len / (N_HARDWARE * (Py_ssize_t)sizeof(double));
    PyObject *result = NULL;
    if (numbers.len != rows * row_bytes ||
        hardware.len != hw_rows * N_HARDWARE * (Py_ssize_t)sizeof(double) ||
        !(hw_rows == 1 || hw_rows == rows) ||
        out.len != rows * N_FEATURES * (Py_ssize_t)sizeof(double)) {
        PyErr_SetString(PyExc_ValueError, "build_features: arrays of inconsistent sizes");
    } else {
        const double *x = numbers.buf, *hw = hardware.buf;
        double *f = out.buf;
        Hardware shared = {0, 0, 0, 0};
        if (hw_rows == 1) {
            shared = logged(hw); /* one type for every row: logged once */
        }
        for (Py_ssize_t r = 0; r < rows; r++) {
            Hardware own;
            if (hw_rows > 1) {
                own = logged(hw + r * N_HARDWARE);
            }
            build_row(x + r * N_NUMBERS, hw_rows > 1 ? &own : &shared, f + r * N_FEATURES);
        }
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&numbers);
    PyBuffer_Release(&hardware);
    PyBuffer_Release(&out);
    return result;
}

static PyObject *gather(PyObject *self, PyObject *args) {
    PyObject *records, *names;
    Py_buffer out;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO!w*", &records, &PyTuple_Type, &names, &out)) {
        return NULL;
    }
    PyObject *seq = PySequence_Fast(records, "gather: records must be a sequence");
    if (seq == NULL) {
        PyBuffer_Release(&out);
        return NULL;
    }
    const Py_ssize_t rows = PySequence_Fast_GET_SIZE(seq), width = PyTuple_GET_SIZE(names);
    PyObject *result = NULL;
    if (out.len != rows * width * (Py_ssize_t)sizeof(double)) {
        PyErr_SetString(PyExc_ValueError, "gather: out has the wrong size");
        goto done;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    double *cell = out.buf;
    for (Py_ssize_t r = 0; r < rows; r++) {
        for (Py_ssize_t c = 0; c < width; c++, cell++) {
            PyObject *name = PyTuple_GET_ITEM(names, c);
            if (name == Py_None) {
                continue;
            }
            PyObject *value = PyObject_GetAttr(items[r], name);
            if (value == NULL) {
                goto done;
            }
            const double number = value == Py_None ? NAN : PyFloat_AsDouble(value);
            Py_DECREF(value);
            if (number == -1.0 && PyErr_Occurred()) {
                goto done;
            }
            *cell = number;
        }
    }
    result = Py_NewRef(Py_None);
done:
    Py_DECREF(seq);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"build", build, METH_VARARGS, "Write the model row of every row of raw numbers."},
    {"gather", gather, METH_VARARGS, "Write named number attributes of every record."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_feature_rows", "Compiled feature rows.", -1, methods,
};

PyMODINIT_FUNC PyInit__feature_rows(void) { return PyModule_Create(&module); }

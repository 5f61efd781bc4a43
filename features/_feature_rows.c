/*
 * The arithmetic of features/engineering.py's build_features: raw numbers in, model rows out.
 *
 * Training and serving both call this one function, so it is still the one feature
 * function; it is C because a single prediction is one row, and a numpy formulation pays
 * about a microsecond of call overhead for each of its ~20 array operations (35-50 us a
 * row here), where this loop takes well under one. The columns are named below and the
 * module exports the names (FEATURE_NAMES, NUMBER_FIELDS): features/engineering.py checks
 * them against its own when it imports this module, so a build from other sources fails
 * at import, not with wrong predictions; tests/test_schema_and_features.py checks every
 * column by name against its formula. features/_feature_rows_fallback.py is the same
 * arithmetic in numpy, for installs without a C compiler.
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

/* NUMBER_FIELDS of features/number_fields.py: the columns of a row of raw numbers. */
enum { INPUT, CACHED, MAX_TOKENS, RUNNING, WAITING, KV_CACHE, PREFILL, DECODE, ROLE, N_NUMBERS };
static const char *const NUMBER_FIELDS[N_NUMBERS] = {
    [INPUT] = "input_tokens",
    [CACHED] = "cached_tokens",
    [MAX_TOKENS] = "max_tokens",
    [RUNNING] = "running_requests",
    [WAITING] = "waiting_requests",
    [KV_CACHE] = "kv_cache_usage",
    [PREFILL] = "prefill_tokens_in_flight",
    [DECODE] = "decode_tokens_in_flight",
    [ROLE] = "role",
};

/* FEATURE_NAMES of features/engineering.py: the columns of a model row. */
enum {
    LOG_INPUT,
    LOG_CACHED,
    LOG_UNCACHED,
    HIT_FRACTION,
    RUNNING_REQUESTS,
    WAITING_REQUESTS,
    LOG_RUNNING,
    LOG_WAITING,
    KV_CACHE_USAGE,
    LOG_PREFILL,
    LOG_DECODE,
    LOG_QUEUED,
    LOG_MAX_TOKENS,
    ROLE_PREFILL_FLAG,
    ROLE_DECODE_FLAG,
    LOG_TFLOPS,
    LOG_HBM_GBPS,
    LOG_MEMORY_GB,
    HARDWARE_KNOWN,
    LOG_PREFILL_COMPUTE_TIME,
    LOG_DECODE_MEMORY_TIME,
    N_FEATURES
};
static const char *const FEATURE_NAMES[N_FEATURES] = {
    [LOG_INPUT] = "log_input_tokens",
    [LOG_CACHED] = "log_cached_tokens",
    [LOG_UNCACHED] = "log_uncached_tokens",
    [HIT_FRACTION] = "prefix_hit_fraction",
    [RUNNING_REQUESTS] = "running_requests",
    [WAITING_REQUESTS] = "waiting_requests",
    [LOG_RUNNING] = "log_running_requests",
    [LOG_WAITING] = "log_waiting_requests",
    [KV_CACHE_USAGE] = "kv_cache_usage",
    [LOG_PREFILL] = "log_prefill_in_flight",
    [LOG_DECODE] = "log_decode_in_flight",
    [LOG_QUEUED] = "log_queued_prefill_work",
    [LOG_MAX_TOKENS] = "log_max_tokens",
    [ROLE_PREFILL_FLAG] = "role_prefill",
    [ROLE_DECODE_FLAG] = "role_decode",
    [LOG_TFLOPS] = "log_tflops",
    [LOG_HBM_GBPS] = "log_hbm_gbps",
    [LOG_MEMORY_GB] = "log_memory_gb",
    [HARDWARE_KNOWN] = "hardware_known",
    [LOG_PREFILL_COMPUTE_TIME] = "log_prefill_compute_time",
    [LOG_DECODE_MEMORY_TIME] = "log_decode_memory_time",
};
enum { N_HARDWARE = 4 };
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
    f[LOG_INPUT] = log1p(x[INPUT]);
    f[LOG_CACHED] = log1p(x[CACHED]);
    f[LOG_UNCACHED] = log1p(uncached);
    f[HIT_FRACTION] = x[CACHED] / fmax(x[INPUT], 1.0);
    f[RUNNING_REQUESTS] = x[RUNNING];
    f[WAITING_REQUESTS] = x[WAITING];
    f[LOG_RUNNING] = log1p(x[RUNNING]);
    f[LOG_WAITING] = log1p(x[WAITING]);
    f[KV_CACHE_USAGE] = x[KV_CACHE];
    f[LOG_PREFILL] = log1p(x[PREFILL]);
    f[LOG_DECODE] = log1p(x[DECODE]);
    f[LOG_QUEUED] = log1p(queued);
    f[LOG_MAX_TOKENS] = log1p(x[MAX_TOKENS]);
    f[ROLE_PREFILL_FLAG] = x[ROLE] == ROLE_PREFILL;
    f[ROLE_DECODE_FLAG] = x[ROLE] == ROLE_DECODE;
    f[LOG_TFLOPS] = hw->log_tflops;
    f[LOG_HBM_GBPS] = hw->log_hbm_gbps;
    f[LOG_MEMORY_GB] = hw->log_memory_gb;
    f[HARDWARE_KNOWN] = hw->known;
    f[LOG_PREFILL_COMPUTE_TIME] = f[LOG_QUEUED] - hw->log_tflops;
    f[LOG_DECODE_MEMORY_TIME] = log1p(x[DECODE] + x[RUNNING]) - hw->log_hbm_gbps;
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

/* A tuple of the names, or NULL with an exception set. */
static PyObject *names_tuple(const char *const *names, Py_ssize_t count) {
    PyObject *tuple = PyTuple_New(count);
    for (Py_ssize_t i = 0; tuple != NULL && i < count; i++) {
        PyObject *name = PyUnicode_FromString(names[i]);
        if (name == NULL) {
            Py_CLEAR(tuple);
        } else {
            PyTuple_SET_ITEM(tuple, i, name);
        }
    }
    return tuple;
}

/* Adds the names as an attribute of the module; -1 with an exception set on failure. */
static int add_names(PyObject *module, const char *attribute, const char *const *names,
                     Py_ssize_t count) {
    PyObject *tuple = names_tuple(names, count);
    const int failed = tuple == NULL || PyModule_AddObjectRef(module, attribute, tuple) < 0;
    Py_XDECREF(tuple);
    return failed ? -1 : 0;
}

PyMODINIT_FUNC PyInit__feature_rows(void) {
    PyObject *self = PyModule_Create(&module);
    if (self != NULL && (add_names(self, "FEATURE_NAMES", FEATURE_NAMES, N_FEATURES) < 0 ||
                         add_names(self, "NUMBER_FIELDS", NUMBER_FIELDS, N_NUMBERS) < 0)) {
        Py_CLEAR(self);
    }
    return self;
}

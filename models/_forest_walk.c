/*
 * The inner loop of models/forest.py: every row walks every tree of a compiled forest.
 *
 * A numpy walk spends its time in per-call overhead: seven array operations per tree
 * level, each tiny for a router's 64 candidates. Here one pass over trees and rows does
 * the same comparisons with no temporaries. Arrays arrive through the buffer protocol (no
 * numpy headers at build time); sizes are checked here and every node index once by
 * CompiledForest when it compiles the forest, so the loop trusts them.
 *
 * walk(x, width, feature, threshold, left, value, roots, output, depth, out, n_outputs)
 *   x          float32 (rows, width) row-major
 *   feature    int32 (nodes,) split feature; threshold float32 (nodes,), +inf on leaves
 *   left       int32 (nodes,) left child (the right one is left + 1; leaves point at
 *              themselves); value float64 (nodes,) leaf values
 *   roots      int32 (trees,); output int32 (trees,): the column each tree adds to
 *   depth      splits on the longest path
 *   out        float64 (rows, n_outputs) row-major, added to (the caller puts the base in)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static int sized(const Py_buffer *buffer, Py_ssize_t count, Py_ssize_t item) {
    return buffer->len == count * item;
}

/* Tree-major: one tree's nodes (at most a few KB) stay in L1 while every row walks it, and
 * four rows at a time give the CPU four independent chains of dependent loads. */
static void walk_rows(const float *x, Py_ssize_t rows, Py_ssize_t width, const int32_t *feature,
                      const float *threshold, const int32_t *left, const double *value,
                      const int32_t *roots, const int32_t *output, Py_ssize_t trees, int depth,
                      double *out, Py_ssize_t n_outputs) {
    for (Py_ssize_t t = 0; t < trees; t++) {
        const int32_t root = roots[t];
        double *column = out + output[t];
        Py_ssize_t r = 0;
        for (; r + 4 <= rows; r += 4) {
            const float *a = x + r * width, *b = a + width, *c = b + width, *d = c + width;
            int32_t na = root, nb = root, nc = root, nd = root;
            for (int level = 0; level < depth; level++) {
                na = left[na] + (a[feature[na]] >= threshold[na]);
                nb = left[nb] + (b[feature[nb]] >= threshold[nb]);
                nc = left[nc] + (c[feature[nc]] >= threshold[nc]);
                nd = left[nd] + (d[feature[nd]] >= threshold[nd]);
            }
            column[r * n_outputs] += value[na];
            column[(r + 1) * n_outputs] += value[nb];
            column[(r + 2) * n_outputs] += value[nc];
            column[(r + 3) * n_outputs] += value[nd];
        }
        for (; r < rows; r++) {
            const float *row = x + r * width;
            int32_t node = root;
            for (int level = 0; level < depth; level++) {
                node = left[node] + (row[feature[node]] >= threshold[node]);
            }
            column[r * n_outputs] += value[node];
        }
    }
}

static PyObject *walk(PyObject *self, PyObject *args) {
    Py_buffer x, feature, threshold, left, value, roots, output, out;
    Py_ssize_t width, n_outputs;
    int depth;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*ny*y*y*y*y*y*iw*n", &x, &width, &feature, &threshold, &left,
                          &value, &roots, &output, &depth, &out, &n_outputs)) {
        return NULL;
    }
    const Py_ssize_t nodes = feature.len / (Py_ssize_t)sizeof(int32_t);
    const Py_ssize_t trees = roots.len / (Py_ssize_t)sizeof(int32_t);
    const Py_ssize_t rows = width > 0 ? x.len / (Py_ssize_t)sizeof(float) / width : 0;
    PyObject *result = NULL;
    if (width <= 0 || n_outputs <= 0 || depth < 0 || !sized(&x, rows * width, sizeof(float)) ||
        !sized(&threshold, nodes, sizeof(float)) || !sized(&left, nodes, sizeof(int32_t)) ||
        !sized(&value, nodes, sizeof(double)) || !sized(&output, trees, sizeof(int32_t)) ||
        !sized(&out, rows * n_outputs, sizeof(double))) {
        PyErr_SetString(PyExc_ValueError, "forest walk: arrays of inconsistent sizes");
    } else {
        /* The GIL stays held: a walk takes microseconds, and handing the GIL to the learning
         * thread mid-request could cost the request a whole switch interval (5 ms). */
        walk_rows(x.buf, rows, width, feature.buf, threshold.buf, left.buf, value.buf, roots.buf,
                  output.buf, trees, depth, out.buf, n_outputs);
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&feature);
    PyBuffer_Release(&threshold);
    PyBuffer_Release(&left);
    PyBuffer_Release(&value);
    PyBuffer_Release(&roots);
    PyBuffer_Release(&output);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS, "Add every tree's leaf value to its output column, per row."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_forest_walk", "Compiled forest evaluation.", -1, methods,
};

PyMODINIT_FUNC PyInit__forest_walk(void) { return PyModule_Create(&module); }

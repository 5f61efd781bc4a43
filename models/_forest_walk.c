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

/* Every row independent of the others and every tree of the others: a level of one walk
 * is two dependent L1 loads, so the loops below keep CHAINS walks in flight at once. */
enum { CHAINS = 16 };

/* Rows in blocks of CHAINS, tree-major: one tree's nodes (at most a few KB) stay in L1
 * while the block walks it. 1.4x faster than four at once on 64 rows. */
static void walk_blocks(const float *x, Py_ssize_t blocks, Py_ssize_t width,
                        const int32_t *feature, const float *threshold, const int32_t *left,
                        const double *value, const int32_t *roots, const int32_t *output,
                        Py_ssize_t trees, int depth, double *out, Py_ssize_t n_outputs) {
    for (Py_ssize_t t = 0; t < trees; t++) {
        double *column = out + output[t];
        for (Py_ssize_t b = 0; b < blocks; b++) {
            const float *row = x + b * CHAINS * width;
            int32_t node[CHAINS];
            for (int i = 0; i < CHAINS; i++) {
                node[i] = roots[t];
            }
            for (int level = 0; level < depth; level++) {
                for (int i = 0; i < CHAINS; i++) {
                    const int32_t n = node[i];
                    node[i] = left[n] + (row[i * width + feature[n]] >= threshold[n]);
                }
            }
            for (int i = 0; i < CHAINS; i++) {
                column[(b * CHAINS + i) * n_outputs] += value[node[i]];
            }
        }
    }
}

/* One row (a single prediction, or the rows past the last block): CHAINS trees at once.
 * Leaf values are still added in tree order, so the sums are the blocks' bit for bit. */
static void walk_row(const float *row, const int32_t *feature, const float *threshold,
                     const int32_t *left, const double *value, const int32_t *roots,
                     const int32_t *output, Py_ssize_t trees, int depth, double *out) {
    for (Py_ssize_t t = 0; t < trees; t += CHAINS) {
        const int chains = trees - t < CHAINS ? (int)(trees - t) : CHAINS;
        int32_t node[CHAINS];
        for (int i = 0; i < chains; i++) {
            node[i] = roots[t + i];
        }
        for (int level = 0; level < depth; level++) {
            for (int i = 0; i < chains; i++) {
                const int32_t n = node[i];
                node[i] = left[n] + (row[feature[n]] >= threshold[n]);
            }
        }
        for (int i = 0; i < chains; i++) {
            out[output[t + i]] += value[node[i]];
        }
    }
}

static void walk_rows(const float *x, Py_ssize_t rows, Py_ssize_t width, const int32_t *feature,
                      const float *threshold, const int32_t *left, const double *value,
                      const int32_t *roots, const int32_t *output, Py_ssize_t trees, int depth,
                      double *out, Py_ssize_t n_outputs) {
    const Py_ssize_t blocks = rows / CHAINS;
    walk_blocks(x, blocks, width, feature, threshold, left, value, roots, output, trees, depth,
                out, n_outputs);
    for (Py_ssize_t r = blocks * CHAINS; r < rows; r++) {
        walk_row(x + r * width, feature, threshold, left, value, roots, output, trees, depth,
                 out + r * n_outputs);
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

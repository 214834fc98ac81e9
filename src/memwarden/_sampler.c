/* memwarden._sampler: native sampling heap profiler (allocator hooks). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static struct PyModuleDef sampler_module = {
    PyModuleDef_HEAD_INIT, "_sampler", "Native sampling heap profiler.", -1, NULL,
};

PyMODINIT_FUNC
PyInit__sampler(void)
{
    return PyModule_Create(&sampler_module);
}

/*
 * memwarden._lrucore: the hit path of memwarden.cache.LRUCache in C.
 *
 * A Getter is bound to one cache's OrderedDict.  Calling it as getter(key, default=None)
 * does what LRUCache.get does in Python: look the key up, make it the most recently used
 * entry (OrderedDict.move_to_end) and count a hit or a miss.  LRUCache installs it as the
 * instance's `get`, so a lookup costs one C call instead of a Python frame and three C
 * calls.  Without this module (no compiler at install time) the Python method serves.
 *
 * Thread safety is the Python version's (see memwarden/cache.py): every step runs while
 * holding the GIL; only the dictionary lookups may run Python code (a key's __eq__), and
 * the lookup and the move are two steps, so a key evicted by another thread in between
 * makes move_to_end raise KeyError, which is reported as a miss.  The counters change
 * only while the GIL is held, so they are exact.
 *
 * References: the Getter owns a reference to the OrderedDict and to its bound
 * move_to_end method; the value found is held across the move_to_end call (which may
 * run Python code that drops the entry) and returned as a new reference.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    PyObject *od;           /* the cache's OrderedDict (owned) */
    PyObject *move_to_end;  /* od.move_to_end, bound once (owned) */
    Py_ssize_t hits;
    Py_ssize_t misses;
    vectorcallfunc vectorcall;
} GetterObject;

static PyObject *
getter_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    GetterObject *self = (GetterObject *)op;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);

    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) {
        PyErr_SetString(PyExc_TypeError, "get() takes no keyword arguments");
        return NULL;
    }
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError,
                     "get() takes 1 or 2 positional arguments (key, default) but %zd were given",
                     nargs);
        return NULL;
    }
    PyObject *key = args[0];
    PyObject *fallback = nargs == 2 ? args[1] : Py_None;

    /* An OrderedDict is a dict subclass whose items live in the dict proper. */
    PyObject *value = PyDict_GetItemWithError(self->od, key);  /* borrowed */
    if (value == NULL) {
        if (PyErr_Occurred()) {
            return NULL;  /* an unhashable key, or a failing __eq__ */
        }
        self->misses++;
        return Py_NewRef(fallback);
    }
    Py_INCREF(value);
    PyObject *moved = PyObject_CallOneArg(self->move_to_end, key);
    if (moved == NULL) {
        if (PyErr_ExceptionMatches(PyExc_KeyError)) {
            /* Evicted by another thread between the two steps: a miss. */
            PyErr_Clear();
            Py_DECREF(value);
            self->misses++;
            return Py_NewRef(fallback);
        }
        Py_DECREF(value);
        return NULL;
    }
    Py_DECREF(moved);
    self->hits++;
    return value;
}

static PyObject *
getter_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"od", "hits", "misses", NULL};
    PyObject *od;
    Py_ssize_t hits = 0;
    Py_ssize_t misses = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|nn:Getter", kwlist, &od, &hits, &misses)) {
        return NULL;
    }
    if (!PyODict_Check(od)) {
        PyErr_Format(PyExc_TypeError, "Getter(od=...): expected an OrderedDict, not %.100s",
                     Py_TYPE(od)->tp_name);
        return NULL;
    }
    if (hits < 0 || misses < 0) {
        PyErr_SetString(PyExc_ValueError, "Getter(): hits and misses must be >= 0");
        return NULL;
    }
    PyObject *move_to_end = PyObject_GetAttrString(od, "move_to_end");
    if (move_to_end == NULL) {
        return NULL;
    }
    GetterObject *self = (GetterObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(move_to_end);
        return NULL;
    }
    self->od = Py_NewRef(od);
    self->move_to_end = move_to_end;
    self->hits = hits;
    self->misses = misses;
    self->vectorcall = getter_vectorcall;
    return (PyObject *)self;
}

static int
getter_traverse(GetterObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->od);
    Py_VISIT(self->move_to_end);
    return 0;
}

static int
getter_clear(GetterObject *self)
{
    Py_CLEAR(self->od);
    Py_CLEAR(self->move_to_end);
    return 0;
}

static void
getter_dealloc(GetterObject *self)
{
    PyObject_GC_UnTrack(self);
    (void)getter_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
getter_repr(GetterObject *self)
{
    return PyUnicode_FromFormat("<memwarden._lrucore.Getter hits=%zd misses=%zd>",
                                self->hits, self->misses);
}

static PyMemberDef getter_members[] = {
    {"hits", T_PYSSIZET, offsetof(GetterObject, hits), READONLY,
     "lookups that found the key"},
    {"misses", T_PYSSIZET, offsetof(GetterObject, misses), READONLY,
     "lookups that did not"},
    {"od", T_OBJECT, offsetof(GetterObject, od), READONLY, "the OrderedDict looked up"},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(getter_doc,
"Getter(od, hits=0, misses=0)\n"
"--\n"
"\n"
"getter(key, default=None): od[key] made most recently used, or default;\n"
"counts hits and misses (LRUCache.get in C).");

static PyTypeObject GetterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "memwarden._lrucore.Getter",
    .tp_basicsize = sizeof(GetterObject),
    .tp_dealloc = (destructor)getter_dealloc,
    .tp_vectorcall_offset = offsetof(GetterObject, vectorcall),
    .tp_repr = (reprfunc)getter_repr,
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = getter_doc,
    .tp_traverse = (traverseproc)getter_traverse,
    .tp_clear = (inquiry)getter_clear,
    .tp_members = getter_members,
    .tp_new = getter_new,
};

static struct PyModuleDef lrucore_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "memwarden._lrucore",
    .m_doc = "The hit path of memwarden.cache.LRUCache in C (optional; see cache.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__lrucore(void)
{
    if (PyType_Ready(&GetterType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&lrucore_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "Getter", (PyObject *)&GetterType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
